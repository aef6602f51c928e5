package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// acker publishes the runtime's results, dead letters and idempotency
// records to their streams, and collects the streams' acks on one
// subscription of its own. nats.go's async publish does the same job, but
// builds a future with two channels for every message and decodes every ack
// with reflection: 6% of a no-op job's CPU in the runtime benchmark
// (`make bench`). Here an ack that names the expected stream and holds no
// error is read by its prefix; any other answer is decoded in full.
//
// Like nats.go's, a publish answered "no responders" (the stream has no
// leader for a moment) is sent again, twice, after pubRetryWait; one still
// waiting when the connection is lost fails at once (nats.ErrDisconnected);
// and one left unanswered fails after its timeout (one sweep for all of
// them, not a timer each).
type acker struct {
	nc      *nats.Conn
	timeout time.Duration
	inbox   string // _INBOX.<unique>. ; acks arrive on inbox+<token>
	sub     *nats.Subscription
	status  chan nats.Status // the connection's reconnecting and closed
	stop    chan struct{}

	mu     sync.Mutex
	closed bool
	token  uint64
	open   map[uint64]*pubAck // by token
}

// pubAck is one publish waiting for its ack.
type pubAck struct {
	msg     *nats.Msg
	stream  string
	sent    time.Time
	retries int
	done    chan error // buffered: the verdict, nil when the stream stored it
}

// settle gives p its verdict. Only one is ever given (whoever takes p out
// of acker.open gives it); were there a second, it is dropped rather than
// block the sender.
func (p *pubAck) settle(err error) {
	select {
	case p.done <- err:
	default:
	}
}

// No-responders retries, as nats.go's defaults.
const (
	pubRetries   = 2
	pubRetryWait = 250 * time.Millisecond
)

// newAcker subscribes to the acks; a publish fails when its ack has not
// come within timeout.
func newAcker(nc *nats.Conn, timeout time.Duration) (*acker, error) {
	a := &acker{
		nc:      nc,
		timeout: timeout,
		inbox:   nc.NewInbox() + ".", // the connection's inbox prefix: its role may receive only there
		stop:    make(chan struct{}),
		open:    map[uint64]*pubAck{},
	}
	sub, err := nc.Subscribe(a.inbox+"*", a.deliver)
	if err != nil {
		return nil, fmt.Errorf("publish acks: subscribe: %w", err)
	}
	a.sub = sub
	a.status = nc.StatusChanged(nats.RECONNECTING, nats.CLOSED)
	go a.sweep(min(timeout/4, time.Second))
	return a, nil
}

// errAckerClosed: the runtime stopped before the publish was acked.
var errAckerClosed = errors.New("publish acks: runtime stopped")

// close ends the subscription and the sweep; publishes still waiting fail
// with errAckerClosed, and so does every later one.
func (a *acker) close() {
	if a == nil {
		return
	}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	a.closed = true
	open := a.open
	a.open = map[uint64]*pubAck{}
	a.mu.Unlock()
	for _, p := range open {
		p.settle(errAckerClosed)
	}
	_ = a.sub.Unsubscribe()
	a.nc.RemoveStatusListener(a.status)
	close(a.stop)
}

// publish sends m, which stream must store, and returns what waits for the
// stream's ack.
func (a *acker) publish(m *nats.Msg, stream string) (*pubAck, error) {
	p := &pubAck{msg: m, stream: stream, sent: time.Now(), done: make(chan error, 1)}
	if err := a.send(p); err != nil {
		return nil, err
	}
	return p, nil
}

// send (again) publishes p's message with a reply subject of its own.
func (a *acker) send(p *pubAck) error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return errAckerClosed
	}
	a.token++
	t := a.token
	a.open[t] = p
	a.mu.Unlock()
	p.msg.Reply = a.inbox + strconv.FormatUint(t, 36)
	if err := a.nc.PublishMsg(p.msg); err != nil {
		a.mu.Lock()
		delete(a.open, t)
		a.mu.Unlock()
		return err
	}
	return nil
}

// wait waits for p's verdict, or for ctx.
func (p *pubAck) wait(ctx context.Context) error {
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// deliver takes an ack to the publish waiting for it.
func (a *acker) deliver(m *nats.Msg) {
	t, err := strconv.ParseUint(strings.TrimPrefix(m.Subject, a.inbox), 36, 64)
	if err != nil {
		return
	}
	a.mu.Lock()
	p := a.open[t]
	delete(a.open, t)
	a.mu.Unlock()
	if p == nil {
		return // timed out, or not ours
	}
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" && p.retries < pubRetries {
		p.retries++
		time.AfterFunc(pubRetryWait, func() {
			if err := a.send(p); err != nil {
				p.settle(err)
			}
		})
		return
	}
	p.settle(verdict(m, p.stream))
}

// verdict reads an ack: nil when stream stored the message (or had it
// already: a duplicate).
func verdict(m *nats.Msg, stream string) error {
	if len(m.Data) == 0 {
		if m.Header.Get("Status") == "503" {
			return jetstream.ErrNoStreamResponse
		}
		return fmt.Errorf("%w: status %q", jetstream.ErrInvalidJSAck, m.Header.Get("Status"))
	}
	if cleanAck(m.Data, stream) {
		return nil
	}
	var resp struct {
		Error  *jetstream.APIError `json:"error"`
		Stream string              `json:"stream"`
	}
	switch {
	case json.Unmarshal(m.Data, &resp) != nil:
		return fmt.Errorf("%w: %.200q", jetstream.ErrInvalidJSAck, m.Data)
	case resp.Error != nil:
		return resp.Error
	case resp.Stream == "":
		return fmt.Errorf("%w: %.200q", jetstream.ErrInvalidJSAck, m.Data)
	case resp.Stream != stream:
		return fmt.Errorf("%w: stored by %q, not %q", errWrongStream, resp.Stream, stream)
	}
	return nil
}

// cleanAck reports whether data starts {"stream":"<stream>" and holds no
// error: the usual ack, read without decoding it. A name JSON would escape
// does not match here and is decoded in full.
func cleanAck(data []byte, stream string) bool {
	rest, ok := bytes.CutPrefix(data, []byte(`{"stream":"`))
	return ok && len(rest) > len(stream) &&
		string(rest[:len(stream)]) == stream && rest[len(stream)] == '"' &&
		!bytes.Contains(data, []byte(`"error"`))
}

// errWrongStream: another stream than the expected one acked a publish.
var errWrongStream = errors.New("publish ack from the wrong stream")

// sweep fails every publish whose ack has not come within a.timeout,
// looking every tick; and, as nats.go's async publish does, every publish
// still waiting when the connection is lost: its ack will not come.
func (a *acker) sweep(tick time.Duration) {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case st, ok := <-a.status:
			if !ok {
				return
			}
			err := nats.ErrDisconnected
			if st == nats.CLOSED {
				err = nats.ErrConnectionClosed
			}
			a.mu.Lock()
			open := a.open
			a.open = map[uint64]*pubAck{}
			a.mu.Unlock()
			for _, p := range open {
				p.settle(fmt.Errorf("%w: no ack from stream %s", err, p.stream))
			}
		case now := <-t.C:
			a.mu.Lock()
			for tok, p := range a.open {
				if now.Sub(p.sent) >= a.timeout {
					delete(a.open, tok)
					p.settle(fmt.Errorf("%w: no ack from stream %s within %s", nats.ErrTimeout, p.stream, a.timeout))
				}
			}
			a.mu.Unlock()
		}
	}
}
