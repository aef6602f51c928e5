package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/services/config"
	"github.com/forgebus/forgebus/services/platform"
	"github.com/forgebus/forgebus/services/provision"
	"github.com/forgebus/forgebus/workers/runtime"
)

func TestWorkerAndDLQCommands(t *testing.T) {
	srv := natstest.Run(t)
	_, js := srv.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := provision.Streams(ctx, js, config.Default().Streams); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FORGEBUS_NATS_URL", srv.URL())
	t.Setenv("FORGEBUS_HTTP_ADDR", freeAddr(t))
	t.Setenv("FORGEBUS_CONFIG", writeTemp(t, "workers:\n  testfail:\n    runtime:\n      ack_wait: 2s\n      nak_delays: [10ms]\n      grace_period: 1s\n    policy:\n      deny_senders: [\"bot*\"]\n"))

	var fixed atomic.Bool
	workerFactories["testfail"] = func(p *platform.Platform, _ jetstream.JetStream) (runtime.Worker, error) {
		return runtime.Worker{Name: "testfail", Subjects: []string{"forge.>"},
			Handler: runtime.HandlerFunc(func(ctx context.Context, ev *schemas.Envelope) (runtime.Report, error) {
				if !fixed.Load() {
					return runtime.Report{}, runtime.Permanent(errors.New("bad input\x1b[31m"))
				}
				return runtime.Report{}, nil
			})}, nil
	}
	defer delete(workerFactories, "testfail")

	runCmd := func(args ...string) (int, string, string) {
		ranCommand = false
		var out, errOut bytes.Buffer
		code := run(args, &out, &errOut)
		return code, out.String(), errOut.String()
	}

	// The worker command, stopped by its context as SIGTERM would.
	wctx, wcancel := context.WithCancel(ctx)
	wdone := make(chan error, 1)
	go func() {
		root := newRoot(&bytes.Buffer{}, &bytes.Buffer{})
		root.SetArgs([]string{"worker", "testfail"})
		wdone <- root.ExecuteContext(wctx)
	}()
	defer func() {
		wcancel()
		select {
		case err := <-wdone:
			if err != nil {
				t.Errorf("worker command: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("worker command did not stop")
		}
	}()

	publish := func(id, sender string) {
		ev := schemas.Envelope{SpecVersion: "1.0", ID: id, Type: "forge.push", Repo: "o/r", Sender: sender,
			Subject: "refs/heads/main", Time: time.Now().UTC(), Data: []byte(`{}`)}
		data, _ := json.Marshal(ev)
		if _, err := js.Publish(ctx, schemas.EventSubject("gogs", "push", "o", "r"), data, jetstream.WithMsgID(id)); err != nil {
			t.Fatal(err)
		}
	}
	publish("e1", "alice")
	publish("e2", "bot-ci") // denied by the config file's policy
	natstest.Eventually(t, 20*time.Second, "a dead letter", func() bool {
		l, err := runtime.ListDeadLetters(ctx, js, "testfail")
		return err == nil && len(l) == 1
	})

	code, out, errOut := runCmd("dlq", "list")
	if code != exitOK || !strings.Contains(out, "e1") || !strings.Contains(out, "bad input") || strings.Contains(out, "\x1b") {
		t.Fatalf("dlq list = %d %q %q", code, out, errOut)
	}
	code, out, _ = runCmd("dlq", "list", "--json", "--worker", "testfail")
	if code != exitOK || !strings.Contains(out, `"event_id":"e1"`) {
		t.Fatalf("dlq list --json = %d %q", code, out)
	}
	code, out, _ = runCmd("dlq", "list", "--worker", "other")
	if code != exitOK || !strings.Contains(out, "no dead letters") {
		t.Fatalf("dlq list --worker other = %d %q", code, out)
	}

	fixed.Store(true)
	code, out, errOut = runCmd("dlq", "replay", "--all", "--worker", "testfail")
	if code != exitOK || !strings.Contains(out, "1 replayed, 0 failed") {
		t.Fatalf("dlq replay --all = %d %q %q", code, out, errOut)
	}
	natstest.Eventually(t, 20*time.Second, "replayed event succeeded", func() bool {
		st, _ := js.Stream(ctx, schemas.StreamResults)
		m, err := st.GetLastMsgForSubject(ctx, "forgebus.results.testfail.>")
		return err == nil && strings.Contains(string(m.Data), `"outcome":"succeeded"`)
	})
	code, out, _ = runCmd("dlq", "list")
	if code != exitOK || !strings.Contains(out, "no dead letters") {
		t.Fatalf("dlq list after replay = %d %q", code, out)
	}
	code, out, _ = runCmd("dlq", "replay", "1")
	if code != exitRuntime || !strings.Contains(out, "0 replayed, 1 failed") {
		t.Fatalf("replay of a gone letter = %d %q", code, out)
	}

	tests := []struct {
		name    string
		args    []string
		want    int
		wantOut string
	}{
		{"unknown worker", []string{"worker", "nope"}, exitUsage, "known workers: "},
		{"unknown worker lists the test worker", []string{"worker", "nope"}, exitUsage, "testfail"},
		{"replay nothing", []string{"dlq", "replay"}, exitUsage, "--all"},
		{"replay both", []string{"dlq", "replay", "3", "--all"}, exitUsage, "not both"},
		{"replay bad seq", []string{"dlq", "replay", "x1"}, exitUsage, "not a sequence"},
		{"worker without all", []string{"dlq", "replay", "3", "--worker", "w"}, exitUsage, "--worker goes with --all"},
		{"dlq alone", []string{"dlq"}, exitUsage, "needs a subcommand"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCmd(tc.args...)
			if code != tc.want || !strings.Contains(out+errOut, tc.wantOut) {
				t.Errorf("run(%v) = %d, %q %q; want %d and %q", tc.args, code, out, errOut, tc.want, tc.wantOut)
			}
		})
	}

	// The denied event has its result, with the rule from the config file.
	st, _ := js.Stream(ctx, schemas.StreamResults)
	found := false
	info, _ := st.Info(ctx)
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		rm, err := st.GetMsg(ctx, seq)
		if err == nil && strings.Contains(string(rm.Data), `"rule":"deny_senders: bot*"`) {
			found = true
		}
	}
	if !found {
		t.Error("no denied result with the config file's rule")
	}
}
