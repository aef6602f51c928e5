package spool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/schemas"
)

// Publisher is the part of [jetstream.JetStream] the forwarder needs.
type Publisher interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// ForwardOption changes how [Spool.Forward] publishes.
type ForwardOption func(*forwardOptions)

type forwardOptions struct {
	timeout    time.Duration
	minBackoff time.Duration
	maxBackoff time.Duration
	stream     string
}

// WithPublishTimeout bounds each publish attempt (default 2s).
func WithPublishTimeout(d time.Duration) ForwardOption {
	return func(o *forwardOptions) {
		if d > 0 {
			o.timeout = d
		}
	}
}

// WithBackoff sets the first and the longest pause between failed publish
// attempts (default 50ms and 2s); the pause doubles, with jitter.
func WithBackoff(initial, maxDelay time.Duration) ForwardOption {
	return func(o *forwardOptions) {
		if initial > 0 {
			o.minBackoff = initial
		}
		if maxDelay >= o.minBackoff {
			o.maxBackoff = maxDelay
		}
	}
}

// WithExpectStream sets the stream every publish must land in (default
// [schemas.StreamEvents]).
func WithExpectStream(stream string) ForwardOption {
	return func(o *forwardOptions) {
		if stream != "" {
			o.stream = stream
		}
	}
}

// Forward publishes the spooled entries in arrival order until ctx is done:
// it publishes the oldest entry with its Nats-Msg-Id, waits for JetStream's
// ack, records it as forwarded (fsync'd), then moves on to the next, and
// waits for new entries when the spool is empty. While the broker cannot
// take a write it retries the same entry with backoff, so order holds. A
// segment file is deleted once all of its entries are forwarded.
//
// Forward returns nil when ctx is done, [ErrClosed] when the spool is
// closed, and [ErrForwarding] when another Forward is running.
func (s *Spool) Forward(ctx context.Context, pub Publisher, opts ...ForwardOption) error {
	o := forwardOptions{timeout: 2 * time.Second, minBackoff: 50 * time.Millisecond, maxBackoff: 2 * time.Second, stream: schemas.StreamEvents}
	for _, opt := range opts {
		opt(&o)
	}
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return ErrClosed
	case s.fwd:
		s.mu.Unlock()
		return ErrForwarding
	}
	s.fwd = true
	s.fwdDone.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.fwd = false
		s.mu.Unlock()
		s.fwdDone.Done()
	}()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	}()

	f := forwarder{s: s, pub: pub, o: o}
	err := f.run(ctx)
	select {
	case <-s.done:
		return ErrClosed
	default:
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

type forwarder struct {
	s      *Spool
	pub    Publisher
	o      forwardOptions
	buf    []byte
	paused bool // publishing has been failing
	failed int  // failed attempts since the last success
}

func (f *forwarder) run(ctx context.Context) error {
	s := f.s
	for {
		if _, err := s.reap(); err != nil {
			s.log.Error().Err(err).Str("dir", s.dir).Msg("spool cannot remove a forwarded segment")
		}
		r, err := s.next(ctx)
		if err != nil {
			return err
		}
		e, err := f.read(ctx, r)
		if err != nil {
			return err
		}
		if e == nil { // corrupt on disk since Open: nothing to publish
			s.complete(r)
			continue
		}
		if err := f.publish(ctx, r, e); err != nil {
			return err
		}
		s.forwarded.Add(1)
		s.complete(r)
	}
}

// next waits for the oldest durable entry.
func (s *Spool) next(ctx context.Context) (*record, error) {
	for {
		s.mu.Lock()
		if s.head < len(s.queue) && s.queue[s.head].seq <= s.syncedSeq {
			r := s.queue[s.head]
			s.mu.Unlock()
			return r, nil
		}
		s.mu.Unlock()
		select {
		case <-s.notify:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// read loads r's entry from its segment. A record that no longer passes its
// checksum (the disk changed it after Open) is logged and skipped: it
// returns nil. A read error is retried with backoff until ctx is done.
func (f *forwarder) read(ctx context.Context, r *record) (*Entry, error) {
	if int64(cap(f.buf)) < r.size {
		f.buf = make([]byte, r.size)
	}
	buf := f.buf[:r.size]
	delay := f.o.minBackoff
	for {
		_, err := r.seg.f.ReadAt(buf, r.off)
		if err == nil {
			break
		}
		f.s.log.Error().Err(err).Str("segment", filepath.Base(r.seg.path)).Msg("spool read failed; retrying")
		if err := sleep(ctx, delay); err != nil {
			return nil, err
		}
		delay = min(2*delay, f.o.maxBackoff)
	}
	e, ok := decodeRecord(buf)
	if !ok {
		f.s.corrupt.Add(1)
		f.s.log.Error().Str("segment", filepath.Base(r.seg.path)).Int64("offset", r.off).Str("msg_id", r.msgID).
			Msg("spool record corrupted on disk after it was written; dropping it")
		return nil, nil
	}
	return &e, nil
}

// publish publishes e until JetStream acks it or ctx is done.
func (f *forwarder) publish(ctx context.Context, r *record, e *Entry) error {
	delay := f.o.minBackoff
	for {
		msg := &nats.Msg{Subject: e.Subject, Data: e.Data, Header: nats.Header{}}
		msg.Header.Set(nats.MsgIdHdr, e.MsgID)
		pctx, cancel := context.WithTimeout(ctx, f.o.timeout)
		ack, err := f.pub.PublishMsg(pctx, msg, jetstream.WithExpectStream(f.o.stream))
		cancel()
		if err == nil {
			if f.paused {
				f.s.log.Info().Int("failed_attempts", f.failed).Int("depth", f.s.Depth()).
					Msg("spool forwarding resumed")
			}
			f.paused, f.failed = false, 0
			f.s.log.Debug().Str("msg_id", e.MsgID).Str("subject", e.Subject).Uint64("seq", ack.Sequence).
				Bool("duplicate", ack.Duplicate).Msg("spooled entry forwarded")
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		f.failed++
		if !f.paused || f.failed%50 == 0 {
			f.s.log.Warn().Err(err).Str("msg_id", e.MsgID).Str("subject", e.Subject).Int("attempt", f.failed).
				Int("depth", f.s.Depth()).Msg("spool forwarding paused: publish failed; retrying")
			f.paused = true
		}
		if err := sleep(ctx, jitter(delay)); err != nil {
			return err
		}
		delay = min(2*delay, f.o.maxBackoff)
	}
}

// complete removes r, the head of the queue, and records it as forwarded in
// its segment's ack file, unless the segment can simply be deleted.
func (s *Spool) complete(r *record) {
	s.mu.Lock()
	if s.head >= len(s.queue) || s.queue[s.head] != r {
		s.mu.Unlock()
		panic("spool: forwarded record is not the head of the queue")
	}
	s.queue[s.head] = nil
	s.head++
	if s.head == len(s.queue) {
		s.queue, s.head = s.queue[:0], 0
	} else if s.head >= 1024 && s.head*2 >= len(s.queue) {
		n := copy(s.queue, s.queue[s.head:])
		clear(s.queue[n:])
		s.queue, s.head = s.queue[:n], 0
	}
	s.bytes -= r.size
	seg := r.seg
	seg.pending--
	// Nothing left at all: retire the active segment too, so the directory
	// empties. Every record written to it is forwarded, so no group commit
	// is waiting on it.
	if len(s.queue) == 0 && s.active != nil && s.active.pending == 0 && !s.syncing && s.syncedSeq == s.writeSeq {
		s.active = nil
	}
	deletable := seg.pending == 0 && seg != s.active
	s.mu.Unlock()
	if deletable {
		return // reap deletes the whole segment; no marker needed
	}
	if err := s.markForwarded(seg, r.off+r.size); err != nil {
		// Not fatal: after a crash the entry is published again and the
		// stream's duplicate window drops it.
		s.log.Error().Err(err).Str("segment", filepath.Base(seg.path)).Msg("spool cannot record a forwarded entry")
	}
}

// markForwarded appends an fsync'd ack marker for end to seg's ack file.
// Only the forwarder calls it.
func (s *Spool) markForwarded(seg *segment, end int64) error {
	if seg.ack == nil {
		f, err := os.OpenFile(filepath.Join(s.dir, ackFile(seg.id)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("open %s: %w", ackFile(seg.id), err)
		}
		if err := syncDir(s.dir); err != nil {
			f.Close()
			return err
		}
		seg.ack = f
	}
	var b [ackSize]byte
	if _, err := seg.ack.Write(appendAck(b[:0], end)); err != nil {
		return fmt.Errorf("write %s: %w", ackFile(seg.id), err)
	}
	if err := seg.ack.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", ackFile(seg.id), err)
	}
	return nil
}

// reap deletes the segments (and their ack files) that are not being
// appended to and have nothing left to forward. It reports whether it
// removed any.
func (s *Spool) reap() (bool, error) {
	s.mu.Lock()
	var drop []*segment
	keep := s.segs[:0]
	for _, seg := range s.segs {
		if seg != s.active && seg.pending == 0 {
			drop = append(drop, seg)
		} else {
			keep = append(keep, seg)
		}
	}
	clear(s.segs[len(keep):])
	s.segs = keep
	s.mu.Unlock()
	if len(drop) == 0 {
		return false, nil
	}
	var errs []error
	for _, seg := range drop {
		seg.f.Close()
		if seg.ack != nil {
			seg.ack.Close()
		}
		// The segment goes first: an ack file without its segment is
		// removed at Open, a segment without its ack file is re-published
		// (and deduplicated).
		if err := os.Remove(seg.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove %s: %w", filepath.Base(seg.path), err))
		}
		if err := os.Remove(filepath.Join(s.dir, ackFile(seg.id))); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove %s: %w", ackFile(seg.id), err))
		}
	}
	if err := syncDir(s.dir); err != nil {
		errs = append(errs, err)
	}
	return true, errors.Join(errs...)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// jitter spreads d by ±20%.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d - d/5 + rand.N(2*d/5+1)
}
