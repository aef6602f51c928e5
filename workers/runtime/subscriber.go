package runtime

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// pullWait is how long one pull request waits for messages on an idle
// stream. A stop waits for the open pull, so it also bounds how long a stop
// takes to stop fetching.
const pullWait = time.Second

// Pull iterators (prefetch) ask for their messages with requests that last
// prefetchExpiry, and the server beats every prefetchHeartbeat while one
// waits. nats.go's defaults (30 s and 15 s) let the iterator go 30 s
// without a pull the server still holds before it sees two beats missed
// and pulls again: measured here, a pull loop stopped for 30 s once in
// about 1,000 rounds of 5,000 messages, the consumer with messages pending
// and no waiting pull (as in nats-io/nats.go#1622). With these, such a
// stop lasts about three seconds: two beats missed, then the loop's pause
// (TestLostPullRecovers). Idle, a replica pulls again every 5 s.
const (
	prefetchExpiry    = 5 * time.Second
	prefetchHeartbeat = time.Second
)

// PullOpts are the options of the runtime's pull iterator for short jobs;
// the benchmark's reference loops pull with them too.
func PullOpts(maxMessages int) []jetstream.PullMessagesOpt {
	return []jetstream.PullMessagesOpt{
		jetstream.PullMaxMessages(maxMessages),
		jetstream.PullExpiry(prefetchExpiry),
		jetstream.PullHeartbeat(prefetchHeartbeat),
	}
}

// delivery is one JetStream delivery of an event and its settlement: the
// first of ack, nak and term wins, later ones do nothing.
type delivery struct {
	msg     jetstream.Msg
	seq     uint64
	attempt int
	stored  time.Time // when FORGE_EVENTS stored the message (the server's clock)
	job     *job      // set by settle before the inner layers run

	mu      sync.Mutex
	settled bool

	sub      *subscriber
	doneOnce sync.Once
}

// done gives the delivery's slot back to its subscriber. The runtime calls
// it once the delivery is settled; the grace period's end calls it for
// jobs still running. Only the first call counts.
func (d *delivery) done() {
	if d.sub == nil {
		return
	}
	d.doneOnce.Do(func() {
		d.sub.untrack(d)
		d.sub.release(1)
		d.sub.inflight.Done()
	})
}

func (d *delivery) settle(f func() error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.settled {
		return nil
	}
	d.settled = true
	return f()
}

func (d *delivery) ack() error { return d.settle(d.msg.Ack) }

func (d *delivery) nak(delay time.Duration) error {
	return d.settle(func() error { return d.msg.NakWithDelay(max(delay, promptNak)) })
}

// promptNak is the delay of a nak "at once". A nak without a delay only
// queues the message in the server's memory, so after a server restart it
// waited out the ack wait; one with a delay stores when it is due.
const promptNak = time.Millisecond

// inProgress resets the server's ack timer while the job runs.
func (d *delivery) inProgress() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.settled {
		return nil
	}
	return d.msg.InProgress()
}

// subscriber is a watermill [message.Subscriber] over a durable JetStream
// pull consumer. It pulls only as many messages as it has free slots
// (MaxInFlight), so a replica never holds messages it is not working on:
// the others get them. Each message goes to the router with its
// [delivery] in its context; the runtime settles the delivery (ack, nak
// with a delay, ...) and then frees its slot with [delivery.done]. When the
// grace period of a stop is over, every delivery still out is nak'ed and
// its slot freed.
type subscriber struct {
	cons     jetstream.Consumer
	prefetch bool
	slots    chan struct{}
	base     context.Context // parent of every job's context
	force    <-chan struct{} // closed when the grace period is over
	log      zerolog.Logger

	inflight sync.WaitGroup
	liveMu   sync.Mutex
	live     map[*delivery]struct{}
	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

var _ message.Subscriber = (*subscriber)(nil)

func newSubscriber(cons jetstream.Consumer, maxInFlight int, prefetch bool, base context.Context, force <-chan struct{}, log zerolog.Logger) *subscriber {
	return &subscriber{
		cons:     cons,
		prefetch: prefetch,
		slots:    make(chan struct{}, maxInFlight),
		base:     base,
		force:    force,
		log:      log,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		live:     map[*delivery]struct{}{},
	}
}

func (s *subscriber) track(d *delivery) {
	s.liveMu.Lock()
	s.live[d] = struct{}{}
	s.liveMu.Unlock()
}

func (s *subscriber) untrack(d *delivery) {
	s.liveMu.Lock()
	delete(s.live, d)
	s.liveMu.Unlock()
}

// forceOut naks every delivery still out, with no delay, once force is
// closed: their jobs ran past the grace period.
func (s *subscriber) forceOut() {
	<-s.force
	s.liveMu.Lock()
	out := make([]*delivery, 0, len(s.live))
	for d := range s.live {
		out = append(out, d)
	}
	s.liveMu.Unlock()
	for _, d := range out {
		if err := d.nak(0); err != nil {
			s.log.Warn().Err(err).Uint64("event_seq", d.seq).Msg("nak at the end of the grace period")
		}
		d.done()
	}
}

// Subscribe starts pulling. The topic is only a name for the router: the
// consumer's filter decides what arrives. It must be called once.
func (s *subscriber) Subscribe(ctx context.Context, _ string) (<-chan *message.Message, error) {
	out := make(chan *message.Message)
	go s.forceOut()
	if s.prefetch {
		it, err := s.cons.Messages(PullOpts(cap(s.slots))...)
		if err != nil {
			return nil, fmt.Errorf("pull from consumer: %w", err)
		}
		go func() {
			s.prefetchLoop(ctx, it, out)
			close(out)
			close(s.done)
		}()
		return out, nil
	}
	// Several pull loops share the slots, so one's round trip overlaps
	// another's: a single loop would pull one or two messages per round
	// trip under load, as slots free one by one.
	n := min(maxFetchers, cap(s.slots))
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() { defer wg.Done(); s.loop(ctx, out) }()
	}
	go func() {
		wg.Wait()
		close(out)
		close(s.done)
	}()
	return out, nil
}

// maxFetchers bounds the pull loops of one replica.
const maxFetchers = 4

// Close stops pulling and waits until the pull loop has ended; messages
// already handed out keep running. It is safe to call more than once.
func (s *subscriber) Close() error {
	s.stopFetching()
	<-s.done
	return nil
}

func (s *subscriber) stopFetching() { s.stopOnce.Do(func() { close(s.stop) }) }

func (s *subscriber) stopped(ctx context.Context) bool {
	select {
	case <-s.stop:
		return true
	case <-ctx.Done():
		return true
	default:
		return false
	}
}

func (s *subscriber) loop(ctx context.Context, out chan<- *message.Message) {
	for {
		// One free slot at least, then every other free one.
		select {
		case s.slots <- struct{}{}:
		case <-s.stop:
			return
		case <-ctx.Done():
			return
		}
		n := 1
	more:
		for n < cap(s.slots) {
			select {
			case s.slots <- struct{}{}:
				n++
			default:
				break more
			}
		}
		if s.stopped(ctx) {
			s.release(n)
			return
		}
		batch, err := s.cons.Fetch(n, jetstream.FetchMaxWait(pullWait))
		if err != nil {
			s.release(n)
			s.log.Warn().Err(err).Msg("pull from consumer")
			s.pause(ctx)
			continue
		}
		got := 0
		for m := range batch.Messages() {
			got++
			s.dispatch(m, out)
		}
		s.release(n - got)
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			s.log.Warn().Err(err).Msg("pull from consumer")
			s.pause(ctx)
		}
	}
}

// prefetchLoop hands out messages from a pull iterator that keeps up to
// MaxInFlight more messages buffered, for throughput. On stop it drains
// the buffer and naks what it holds, with no delay.
func (s *subscriber) prefetchLoop(ctx context.Context, it jetstream.MessagesContext, out chan<- *message.Message) {
	stopped := make(chan struct{})
	go func() {
		select {
		case <-s.stop:
		case <-ctx.Done():
		}
		it.Drain()
		close(stopped)
	}()
	for {
		select {
		case s.slots <- struct{}{}:
		case <-stopped:
			s.nakBuffered(it)
			return
		}
		m, err := it.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			s.release(1)
			s.nakBuffered(it)
			return
		}
		if err != nil {
			s.release(1)
			s.log.Warn().Err(err).Msg("pull from consumer")
			s.pause(ctx)
			continue
		}
		select {
		case <-stopped:
			// Pulled after the stop: not ours to start.
			s.release(1)
			_ = m.NakWithDelay(promptNak)
			s.nakBuffered(it)
			return
		default:
		}
		s.dispatch(m, out)
	}
}

// nakBuffered naks every message left in a drained iterator.
func (s *subscriber) nakBuffered(it jetstream.MessagesContext) {
	for {
		m, err := it.Next()
		if err != nil {
			return
		}
		_ = m.NakWithDelay(promptNak)
	}
}

// pause waits a little after a failed pull, so a broker outage does not
// spin.
func (s *subscriber) pause(ctx context.Context) {
	t := time.NewTimer(pullWait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.stop:
	case <-ctx.Done():
	}
}

func (s *subscriber) release(n int) {
	for range n {
		<-s.slots
	}
}

// dispatch hands m to the router; the slot it holds is freed once the
// router is done with it (or the grace period is over).
func (s *subscriber) dispatch(m jetstream.Msg, out chan<- *message.Message) {
	meta, err := m.Metadata()
	if err != nil {
		// Not a JetStream delivery: nothing to ack.
		s.log.Error().Err(err).Msg("message without jetstream metadata")
		s.release(1)
		return
	}
	d := &delivery{msg: m, seq: meta.Sequence.Stream, attempt: int(meta.NumDelivered), stored: meta.Timestamp, sub: s}
	id := m.Headers().Get(jetstream.MsgIDHeader)
	if id == "" {
		id = strconv.FormatUint(d.seq, 10)
	}
	wm := message.NewMessageWithContext(withDelivery(s.base, d), id, m.Data())
	s.inflight.Add(1)
	s.track(d)
	out <- wm
}
