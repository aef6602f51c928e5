package main

import (
	"context"
	"fmt"
	"github.com/forgebus/forgebus/services/test/streamcheck"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// during runs f while n deliveries are sent over d, f starting at the
// delivery at fraction at of the run; f's error is returned after the run.
func (t *tester) during(ctx context.Context, n int, d time.Duration, at float64, f func() error) (sendResult, error) {
	ds, err := t.deliveries(n)
	if err != nil {
		return sendResult{}, err
	}
	var ferr error
	var once sync.Once
	hook := map[int]func(){int(float64(n) * at): func() { once.Do(func() { ferr = f() }) }}
	res := newPoster(t.url).run(ctx, ds, d, 32, hook)
	return res, ferr
}

// size is the number of containers the stack has now: the documented
// stack, plus the third docs replica once the scale-up step ran.
func (t *tester) size() int {
	if t.scaled {
		return stackSize + 1
	}
	return stackSize
}

// scaleUp scales worker-docs to three while deliveries flow, then checks
// that the new replica handled jobs (its jobs counter).
func (t *tester) scaleUp(ctx context.Context) (sendResult, error) {
	before, err := t.s.containers(ctx, "worker-docs")
	if err != nil {
		return sendResult{}, err
	}
	res, err := t.during(ctx, 1000, 20*time.Second, 0.1, func() error {
		_, err := t.s.composeRun(ctx, 3*time.Minute, "up", "-d", "--scale", "worker-docs=3")
		return err
	})
	if err != nil {
		return res, err
	}
	after, err := t.s.containers(ctx, "worker-docs")
	if err != nil {
		return res, err
	}
	var added []string
	for _, id := range after {
		if !containsStr(before, id) {
			added = append(added, id)
		}
	}
	t.scaled = true
	if len(added) != 1 || len(after) != 3 {
		return res, fmt.Errorf("worker-docs: %d containers, %d new, want 3 and 1", len(after), len(added))
	}
	if err := t.s.waitHealthy(ctx, t.size(), 2*time.Minute); err != nil {
		return res, err
	}
	if err := streamcheck.Drained(ctx, t.js, []string{"FORGE_EVENTS"}, 4*time.Minute, time.Second); err != nil {
		return res, err
	}
	jobs, err := t.jobsHandled(ctx, added[0])
	if err != nil {
		return res, err
	}
	t.s.log("the new worker-docs replica handled %d jobs", jobs)
	if jobs == 0 {
		return res, fmt.Errorf("the new worker-docs replica handled no job")
	}
	return res, nil
}

var jobsLine = regexp.MustCompile(`(?m)^forgebus_worker_jobs_total\{[^}]*\} ([0-9.e+]+)$`)

// jobsHandled sums the forgebus_worker_jobs_total counter of a tools-image
// container, read from its /metrics with bash (the image has no curl).
func (t *tester) jobsHandled(ctx context.Context, id string) (int, error) {
	out, err := t.s.docker(ctx, "exec", id, "bash", "-c",
		`exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n' >&3 && cat <&3`)
	if err != nil {
		return 0, fmt.Errorf("read metrics: %w", err)
	}
	total := 0.0
	for _, m := range jobsLine.FindAllStringSubmatch(out, -1) {
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			return 0, fmt.Errorf("parse metrics: %w", err)
		}
		total += v
	}
	return int(total), nil
}

// killNATS kills nats-2 (SIGKILL) during the deliveries, then starts it
// again and waits for it to be healthy.
func (t *tester) killNATS(ctx context.Context) (sendResult, error) {
	id, err := t.s.container(ctx, "nats-2")
	if err != nil {
		return sendResult{}, err
	}
	res, err := t.during(ctx, 2000, 25*time.Second, 0.25, func() error {
		if _, err := t.s.docker(ctx, "kill", id); err != nil {
			return err
		}
		t.s.log("killed nats-2")
		if err := sleep(ctx, 10*time.Second); err != nil {
			return err
		}
		if _, err := t.s.docker(ctx, "start", id); err != nil {
			return err
		}
		t.s.log("started nats-2")
		return nil
	})
	if err != nil {
		return res, err
	}
	return res, t.s.waitHealthy(ctx, t.size(), 3*time.Minute)
}

// partition disconnects nats-3 from the project's network for 30 s during
// the deliveries, then connects it again under its service name.
func (t *tester) partition(ctx context.Context) (sendResult, error) {
	id, err := t.s.container(ctx, "nats-3")
	if err != nil {
		return sendResult{}, err
	}
	netID, err := t.s.network(ctx)
	if err != nil {
		return sendResult{}, err
	}
	res, err := t.during(ctx, 2000, 45*time.Second, 0.1, func() error {
		if _, err := t.s.docker(ctx, "network", "disconnect", netID, id); err != nil {
			return err
		}
		t.s.log("disconnected nats-3")
		if err := sleep(ctx, 30*time.Second); err != nil {
			return err
		}
		if _, err := t.s.docker(ctx, "network", "connect", "--alias", "nats-3", netID, id); err != nil {
			return err
		}
		t.s.log("reconnected nats-3")
		return nil
	})
	if err != nil {
		return res, err
	}
	return res, t.s.waitHealthy(ctx, t.size(), 3*time.Minute)
}

// rollingRestart stops each ingest replica with SIGTERM (docker stop) and
// starts it again, one at a time, waiting for it to be healthy, while
// deliveries flow.
func (t *tester) rollingRestart(ctx context.Context) (sendResult, error) {
	ids, err := t.s.containers(ctx, "ingest")
	if err != nil {
		return sendResult{}, err
	}
	if len(ids) < 2 {
		return sendResult{}, fmt.Errorf("ingest has %d replicas, want 2", len(ids))
	}
	return t.during(ctx, 2000, 60*time.Second, 0.05, func() error {
		for i, id := range ids {
			if _, err := t.s.docker(ctx, "stop", "-t", "60", id); err != nil {
				return err
			}
			if _, err := t.s.docker(ctx, "start", id); err != nil {
				return err
			}
			if err := t.s.waitHealthy(ctx, t.size(), 2*time.Minute); err != nil {
				return err
			}
			t.s.log("ingest replica %d of %d restarted and healthy", i+1, len(ids))
		}
		return nil
	})
}

// downUp stops and removes the project with its volumes kept, brings it
// up again, and sends a few deliveries: the check then counts every
// earlier delivery too, from the kept volumes.
func (t *tester) downUp(ctx context.Context) (sendResult, error) {
	t.nc.Close()
	if err := t.s.down(ctx, false); err != nil {
		return sendResult{}, err
	}
	t.s.log("down (volumes kept)")
	if _, err := t.s.composeRun(ctx, 5*time.Minute, "up", "-d"); err != nil {
		return sendResult{}, err
	}
	if err := t.s.waitHealthy(ctx, stackSize, 4*time.Minute); err != nil {
		return sendResult{}, err
	}
	t.s.log("up again, all healthy")
	if err := t.connect(ctx); err != nil {
		return sendResult{}, err
	}
	if err := t.waitConsumers(ctx, 2*time.Minute); err != nil {
		return sendResult{}, err
	}
	return t.baseline(ctx)
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}
