package runtime

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
)

// TestLostPullRecovers: a pull request that never reaches the broker leaves
// the consumer with messages pending and no waiting pull, while the
// replica's iterator waits for that pull's messages; so the stalls of
// nats-io/nats.go#1622 look, and one measured in the benchmark's pull loop
// lasted 30 s, nats.go's default. A replica that pulls ahead notices within
// two of its 1 s heartbeats and pulls again.
func TestLostPullRecovers(t *testing.T) {
	srv, _, js := broker(t)
	const n = 200
	for i := range n {
		publish(t, js, envelope(fmt.Sprintf("lost-pull-%d", i)), "")
	}
	p := newDropProxy(t, srv.URL(), 3)
	_, pjs := natstest.Dial(t, p.url, nats.MaxReconnects(-1))
	s := fastSettings()
	s.AckWait = 30 * time.Second
	s.JobTimeout = 10 * time.Second // at most AckWait/2: the replica pulls ahead
	if !s.prefetch() {
		t.Fatal("settings do not pull ahead")
	}
	began := time.Now()
	start(t, pjs, Worker{Name: "pull", Subjects: []string{"forge.>"}, Settings: s,
		Handler: HandlerFunc(func(context.Context, *schemas.Envelope) (Report, error) { return Report{}, nil })})
	natstest.Eventually(t, 45*time.Second, "every event handled", func() bool {
		return streamCount(t, js, schemas.StreamResults) == n
	})
	took := time.Since(began)
	if d := p.dropped.Load(); d != 1 {
		t.Fatalf("the proxy dropped %d pull requests (of %d), want 1", d, p.pulls.Load())
	}
	if took > 10*time.Second {
		t.Errorf("%d events took %s with one pull request lost: the replica waited for it", n, took.Round(time.Millisecond))
	}
	t.Logf("%d events in %s, %d pull requests, one dropped", n, took.Round(time.Millisecond), p.pulls.Load())
}

// dropProxy forwards NATS connections to a server and drops the client's
// dropAt-th pull request ($JS.API.CONSUMER.MSG.NEXT.…) on the way.
type dropProxy struct {
	url     string
	target  string
	dropAt  int32
	pulls   atomic.Int32
	dropped atomic.Int32

	mu    sync.Mutex
	conns []net.Conn
}

func newDropProxy(t *testing.T, target string, dropAt int) *dropProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dropProxy{url: "nats://" + ln.Addr().String(), target: strings.TrimPrefix(target, "nats://"), dropAt: int32(dropAt)}
	t.Cleanup(func() {
		_ = ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			_ = c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() {
				_, _ = io.Copy(c, s)
				_ = c.Close()
			}()
			go p.forward(c, s)
		}
	}()
	return p
}

// forward copies the client's protocol to the server, a line (and the
// payload of a PUB or HPUB) at a time.
func (p *dropProxy) forward(c, s net.Conn) {
	defer s.Close()
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		out := line
		if f := strings.Fields(string(line)); len(f) >= 3 && (f[0] == "PUB" || f[0] == "HPUB") {
			size, err := strconv.Atoi(f[len(f)-1])
			if err != nil {
				return
			}
			payload := make([]byte, size+2) // and its CRLF
			if _, err := io.ReadFull(r, payload); err != nil {
				return
			}
			if strings.HasPrefix(f[1], "$JS.API.CONSUMER.MSG.NEXT.") && p.pulls.Add(1) == p.dropAt {
				p.dropped.Add(1)
				continue
			}
			out = append(append([]byte{}, line...), payload...)
		}
		if _, err := s.Write(out); err != nil {
			return
		}
	}
}
