package runtime

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
)

// cutProxy forwards a client's NATS connection to the server. The first
// time the client writes a chunk holding trigger, the proxy drops that
// chunk and cuts the connection, as a node that dies with the request on
// its way does: the request never arrives, no reply comes back, and the
// client reconnects (through the proxy, which then forwards everything).
type cutProxy struct {
	ln      net.Listener
	target  string
	trigger []byte
	armed   atomic.Bool
	cut     atomic.Bool
	seen    atomic.Value // the chunk that was dropped
	wg      sync.WaitGroup
}

func newCutProxy(t *testing.T, target, trigger string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: strings.TrimPrefix(target, "nats://"), trigger: []byte(trigger)}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *cutProxy) url() string { return "nats://" + p.ln.Addr().String() }

func (p *cutProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.wg.Add(2)
		go func() { defer p.wg.Done(); _, _ = io.Copy(c, s); c.Close() }()
		go func() { defer p.wg.Done(); p.clientToServer(c, s); s.Close() }()
	}
}

func (p *cutProxy) clientToServer(c, s net.Conn) {
	defer c.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if p.armed.Load() && !p.cut.Load() && bytes.Contains(buf[:n], p.trigger) && p.cut.CompareAndSwap(false, true) {
				p.seen.Store(string(buf[:n]))
				return // dropped, and both ends cut
			}
			if _, werr := s.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// A node dies while the event's claim is on its way: the request is lost
// and its reply never comes. The job must not wait for that reply until
// its job timeout, keeping the message with its heartbeat all that time
// (seen in the compose test: a message held 10 minutes after a NATS node
// was killed). It gives up after the publish timeout, and the event is
// handled once.
func TestLostClaimReplyDoesNotHoldTheJob(t *testing.T) {
	srv, _, js := broker(t)
	s := fastSettings()
	s.AckWait = 2 * time.Second
	s.JobTimeout = 5 * time.Minute
	w := Worker{Name: "lost", Subjects: []string{"forge.>"}, Settings: s}
	p := newCutProxy(t, srv.URL(), "$KV."+IdempotencyBucket(w).Bucket+".")
	_, wjs := natstest.Dial(t, p.url(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	calls := newCounter()
	w.Handler = HandlerFunc(func(ctx context.Context, ev *schemas.Envelope) (Report, error) {
		calls.inc(ev.ID)
		return Report{}, nil
	})
	start(t, wjs, w)
	natstest.Eventually(t, 10*time.Second, "the worker pulls", func() bool {
		ci, err := consumerInfo(js, "lost")
		return err == nil && ci.NumWaiting > 0
	})
	p.armed.Store(true)
	publish(t, js, envelope("lost-1"), "")

	began := time.Now()
	deadline := began.Add(45 * time.Second)
	for len(resultsOf(results(t, js), "lost-1", schemas.OutcomeSucceeded)) == 0 {
		if time.Now().After(deadline) {
			ci, err := consumerInfo(js, "lost")
			if err != nil {
				t.Fatal(err)
			}
			t.Fatalf("no result after %s (connection cut: %v): pending=%d ack_pending=%d redelivered=%d delivered=%d; results %+v",
				time.Since(began).Round(time.Second), p.cut.Load(), ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.Delivered.Stream, results(t, js))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !p.cut.Load() {
		t.Fatal("the claim never went through the proxy")
	}
	if n := calls.get("lost-1"); n != 1 {
		t.Errorf("handler ran %d times, want once", n)
	}
	t.Logf("dropped %q", p.seen.Load())
	t.Logf("handled %s after the claim was lost", time.Since(began).Round(100*time.Millisecond))
}
