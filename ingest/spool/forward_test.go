package spool

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/natstest"
)

func TestForwardAfterOutage(t *testing.T) {
	b := newBroker(t)
	dir := t.TempDir()
	logs := &syncBuffer{}
	// Small segments, so the outage spans several files.
	s, err := Open(dir, Limits{SegmentBytes: 400}, zerolog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	b.srv.Shutdown()
	stop := forward(t, s, b.js)
	want := testEntries(20)
	appendAll(t, s, want)

	natstest.Eventually(t, 5*time.Second, "forwarder reports the outage", func() bool {
		return strings.Contains(logs.String(), "forwarding paused")
	})
	if got := s.Depth(); got != len(want) {
		t.Fatalf("Depth while the broker is down = %d, want %d", got, len(want))
	}
	if n := countSuffix(files(t, dir), segExt); n < 2 {
		t.Fatalf("%d segment files, want several", n)
	}

	b.srv.Restart()
	natstest.Eventually(t, 15*time.Second, "spool drains after restart", func() bool { return s.Depth() == 0 })
	b.wantStream(t, want)
	natstest.Eventually(t, 5*time.Second, "segment files removed", func() bool {
		names := files(t, dir)
		return len(names) == 1 && names[0] == lockName
	})
	if st := s.Stats(); st.Depth != 0 || st.Bytes != 0 || !st.Oldest.IsZero() {
		t.Fatalf("Stats after drain = %+v, want zero", st)
	}
	if !strings.Contains(logs.String(), "forwarding resumed") {
		t.Error("no log line says forwarding resumed")
	}

	// New entries after the drain are forwarded right away.
	more := testEntries(23)[20:]
	appendAll(t, s, more)
	natstest.Eventually(t, 5*time.Second, "new entries forwarded", func() bool { return s.Depth() == 0 })
	b.wantStream(t, append(want, more...))
	if err := stop(); err != nil {
		t.Fatalf("Forward returned %v after its context ended, want nil", err)
	}
}

func TestForwardReopened(t *testing.T) {
	b := newBroker(t)
	dir := t.TempDir()
	want := testEntries(7)
	s := openT(t, dir, Limits{})
	appendAll(t, s, want)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openT(t, dir, Limits{})
	st := s.Stats()
	if st.Depth != len(want) || !st.Oldest.Equal(want[0].Added) {
		t.Fatalf("reopened Stats = %+v, want depth %d oldest %v", st, len(want), want[0].Added)
	}
	sameEntries(t, pending(t, s), want)
	forward(t, s, b.js)
	natstest.Eventually(t, 10*time.Second, "reopened spool drains", func() bool { return s.Depth() == 0 })
	b.wantStream(t, want)
}

// errCrashed is what a crashed process's publisher "returns": nothing
// reaches the broker any more.
var errCrashed = errors.New("process crashed")

// snapPublisher publishes through JetStream and calls a hook around the
// publishes; once a hook returns true the process counts as crashed and
// nothing more is published.
type snapPublisher struct {
	js      jetstream.JetStream
	before  func(n int) bool // before publish number n (1-based)
	after   func(n int) bool // after publish number n was acked, before the spool records it
	n       int
	crashed bool
	dups    atomic.Int32
}

func (p *snapPublisher) PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	p.n++
	if p.crashed || (p.before != nil && p.before(p.n)) {
		p.crashed = true
		return nil, errCrashed
	}
	ack, err := p.js.PublishMsg(ctx, msg, opts...)
	if err != nil {
		return ack, err
	}
	if ack.Duplicate {
		p.dups.Add(1)
	}
	if p.after != nil && p.after(p.n) {
		p.crashed = true
	}
	return ack, nil
}

func TestCrashWhileForwarding(t *testing.T) {
	const n = 10
	want := testEntries(n)
	tests := []struct {
		name     string
		k        int  // crash around the k-th publish
		afterAck bool // true: after JetStream acked it, before the spool recorded it
		wantDups int32
	}{
		{name: "before the first publish", k: 1, wantDups: 0},
		{name: "after first ack, before it is recorded", k: 1, afterAck: true, wantDups: 1},
		{name: "halfway, after recording", k: n/2 + 1, wantDups: 0},
		{name: "halfway, between ack and record", k: n / 2, afterAck: true, wantDups: 1},
		{name: "last entry, between ack and record", k: n, afterAck: true, wantDups: 1},
	}
	b := newBroker(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b.resetStream(t)
			dir := t.TempDir()
			// Two segments: the crash lands in either one.
			s := openT(t, dir, Limits{SegmentBytes: 700})
			appendAll(t, s, want)

			var snap string
			taken := make(chan struct{})
			p := &snapPublisher{js: b.js}
			hook := func(i int) bool {
				if i != tt.k {
					return false
				}
				snap = copyDir(t, dir)
				close(taken)
				return true
			}
			if tt.afterAck {
				p.after = hook
			} else {
				p.before = hook
			}
			stop := forward(t, s, p)
			select {
			case <-taken:
			case <-time.After(10 * time.Second):
				t.Fatal("no snapshot taken")
			}
			stop()
			s.Close()

			// "Restart" on the crashed copy and forward the rest.
			s2 := openT(t, snap, Limits{SegmentBytes: 700})
			if d := s2.Depth(); d != n-tt.k+1 {
				t.Fatalf("Depth after the crash = %d, want %d", d, n-tt.k+1)
			}
			p2 := &snapPublisher{js: b.js}
			forward(t, s2, p2)
			natstest.Eventually(t, 10*time.Second, "crashed spool drains", func() bool { return s2.Depth() == 0 })
			b.wantStream(t, want)
			if got := p2.dups.Load(); got != tt.wantDups {
				t.Errorf("re-published duplicates = %d, want %d", got, tt.wantDups)
			}
			names := files(t, snap)
			natstest.Eventually(t, 5*time.Second, "crashed spool's segments removed", func() bool {
				names = files(t, snap)
				return countSuffix(names, segExt)+countSuffix(names, ackExt) == 0
			})
		})
	}
}

func TestForwardSingleAndClosed(t *testing.T) {
	b := newBroker(t)
	s := openT(t, t.TempDir(), Limits{})
	errc := make(chan error, 1)
	go func() { errc <- s.Forward(context.Background(), b.js) }()
	natstest.Eventually(t, 5*time.Second, "forwarder running", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.fwd
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.Forward(ctx, b.js); !errors.Is(err, ErrForwarding) {
		t.Fatalf("second Forward = %v, want ErrForwarding", err)
	}

	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Forward after Close returned %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Forward still running after Close returned")
	}
	if err := s.Forward(context.Background(), b.js); !errors.Is(err, ErrClosed) {
		t.Fatalf("Forward on a closed spool = %v, want ErrClosed", err)
	}
	if err := s.Append(testEntry(0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append on a closed spool = %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v, want nil", err)
	}
}
