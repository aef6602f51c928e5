package spool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/schemas"
)

// Publisher is the part of [jetstream.JetStream] the forwarder needs.
type Publisher interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// Forward publishes the spooled entries in arrival order until ctx is done:
// it publishes the oldest entry with its Nats-Msg-Id, waits for JetStream's
// ack, records it as forwarded (an ack marker, fsync'd in small batches and
// whenever Forward catches up), then moves on to the next, and waits for
// new entries when the spool is empty. While the broker cannot
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

// Ack markers are written after every forwarded entry and fsync'd in
// batches: after ackBatch markers, after ackDelay, and whenever the
// forwarder catches up. A crash loses at most the unsynced markers, and the
// entries they cover are re-published and deduplicated.
const (
	ackBatch = 64
	ackDelay = 100 * time.Millisecond
)

type forwarder struct {
	s        *Spool
	pub      Publisher
	o        forwardOptions
	buf      []byte
	paused   bool // publishing has been failing
	failed   int  // failed attempts since the last success
	dirty    []*segment
	unsynced int
	lastSync time.Time
}

func (f *forwarder) run(ctx context.Context) error {
	s := f.s
	defer f.flush()
	for {
		if _, err := s.reap(); err != nil {
			s.log.Error().Err(err).Str("dir", s.dir).Msg("spool cannot remove a forwarded segment")
		}
		r := s.peek()
		if r == nil {
			f.flush()
			var err error
			if r, err = s.next(ctx); err != nil {
				return err
			}
		}
		e, err := f.read(ctx, r)
		if err != nil {
			return err
		}
		if e != nil { // nil: corrupt on disk since Open, nothing to publish
			if err := f.publish(ctx, e); err != nil {
				return err
			}
			s.forwarded.Add(1)
		}
		f.complete(r)
	}
}

// complete removes r from the queue and writes its ack marker.
func (f *forwarder) complete(r *record) {
	seg, mark := f.s.dequeue(r)
	if !mark {
		return
	}
	if err := f.s.markForwarded(seg, r.off+r.size); err != nil {
		// Not fatal: after a crash the entry is published again and the
		// stream's duplicate window drops it.
		f.s.log.Error().Err(err).Str("segment", filepath.Base(seg.path)).Msg("spool cannot record a forwarded entry")
		return
	}
	if !slices.Contains(f.dirty, seg) {
		f.dirty = append(f.dirty, seg)
	}
	f.unsynced++
	if f.unsynced >= ackBatch || time.Since(f.lastSync) >= ackDelay {
		f.flush()
	}
}

// flush fsyncs the ack files written since the last flush.
func (f *forwarder) flush() {
	for _, seg := range f.dirty {
		if seg.ack == nil { // reaped meanwhile
			continue
		}
		if err := seg.ack.Sync(); err != nil {
			f.s.log.Error().Err(err).Str("segment", filepath.Base(seg.path)).Msg("spool cannot sync an ack file")
		}
	}
	clear(f.dirty)
	f.dirty = f.dirty[:0]
	f.unsynced = 0
	f.lastSync = time.Now()
}

// peek returns the oldest durable entry, or nil.
func (s *Spool) peek() *record {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.head < len(s.queue) && s.queue[s.head].seq <= s.syncedSeq {
		return s.queue[s.head]
	}
	return nil
}

// next waits for the oldest durable entry.
func (s *Spool) next(ctx context.Context) (*record, error) {
	for {
		if r := s.peek(); r != nil {
			return r, nil
		}
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
func (f *forwarder) publish(ctx context.Context, e *Entry) error {
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
		if f.unsynced > 0 {
			f.flush() // the broker may stay away: make progress so far durable
		}
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

// dequeue removes r, the head of the queue, and reports whether an ack
// marker must record it: not when its segment can simply be deleted.
func (s *Spool) dequeue(r *record) (*segment, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.head >= len(s.queue) || s.queue[s.head] != r {
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
	return seg, seg.pending > 0 || seg == s.active
}

// markForwarded appends an ack marker for end to seg's ack file; the
// forwarder fsyncs it in batches. Only the forwarder calls it.
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
	return nil
}

// reap deletes the segments (and their ack files) that are not being
// appended to and have nothing left to forward. It reports whether it
// removed any.
func (s *Spool) reap() (bool, error) {
	s.mu.Lock()
	if s.syncing {
		// A group commit may still be about to fsync a segment that has
		// just been rotated out; its end wakes the forwarder to try again.
		s.mu.Unlock()
		return false, nil
	}
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
			seg.ack = nil
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
