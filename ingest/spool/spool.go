package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Defaults for the zero values of [Limits].
const (
	DefaultMaxBytes     int64 = 256 << 20
	DefaultMaxEntries         = 100_000
	DefaultSegmentBytes int64 = 64 << 20
)

// Entry is one verified, normalized event waiting for JetStream.
type Entry struct {
	// MsgID is published as Nats-Msg-Id (ingest's hash of the signed
	// payload), so that a re-publish, or a copy published directly, is
	// deduplicated by the stream.
	MsgID string
	// Subject is the NATS subject the entry is published on.
	Subject string
	// Data is the message body (the CloudEvents envelope).
	Data []byte
	// Added is when the entry was spooled; Append sets it when zero.
	Added time.Time
}

// Limits bound a spool. A zero field takes its default.
type Limits struct {
	// MaxBytes bounds the encoded size of the entries not yet forwarded
	// (default [DefaultMaxBytes]). Disk use can exceed it by up to one
	// segment of already forwarded entries.
	MaxBytes int64
	// MaxEntries bounds the number of entries not yet forwarded (default
	// [DefaultMaxEntries]).
	MaxEntries int
	// SegmentBytes is the size after which appends go to a new segment
	// file (default [DefaultSegmentBytes]). A segment file is deleted once
	// every entry in it is forwarded.
	SegmentBytes int64
}

func (l Limits) withDefaults() (Limits, error) {
	if l.MaxBytes < 0 || l.MaxEntries < 0 || l.SegmentBytes < 0 {
		return l, errors.New("negative spool limit")
	}
	if l.MaxBytes == 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxEntries == 0 {
		l.MaxEntries = DefaultMaxEntries
	}
	if l.SegmentBytes == 0 {
		l.SegmentBytes = DefaultSegmentBytes
	}
	return l, nil
}

// Stats is a snapshot of a spool, for metrics and /readyz.
type Stats struct {
	// Depth is the number of entries not yet forwarded.
	Depth int
	// Bytes is their encoded size.
	Bytes int64
	// Oldest is when the oldest of them was added; zero when Depth is 0.
	Oldest time.Time
}

// Spool is a durable, bounded, append-only queue of entries in one
// directory, owned by one process at a time. Create it with [Open]. All
// methods are safe for concurrent use; only one [Spool.Forward] runs at a
// time.
type Spool struct {
	dir  string
	lim  Limits
	log  zerolog.Logger
	lock *os.File

	mu        sync.Mutex
	cond      *sync.Cond // signalled when a group commit ends
	closed    bool
	failed    error      // sticky: a write could not be undone or a sync failed
	segs      []*segment // oldest first
	active    *segment   // segment appends go to; nil until the next Append
	nextID    uint64
	queue     []*record // entries not yet forwarded, queue[head:] in order
	head      int
	bytes     int64
	writeSeq  uint64 // seq of the last record written
	syncedSeq uint64 // seq up to which records are synced (visible to Forward)
	syncing   bool   // a group commit leader is in fsync
	full      bool   // the last Append was refused with ErrFull
	buf       []byte
	fwd       bool // a Forward is running

	notify  chan struct{} // wakes the forwarder; capacity 1
	done    chan struct{} // closed by Close
	fwdDone sync.WaitGroup

	appended, forwarded, rejected, corrupt atomic.Uint64
}

// Open opens (creating it if needed) the spool in dir, takes its lock and
// recovers what a previous run left: every whole record not yet forwarded
// is queued again in order; a corrupt or truncated tail is moved aside to
// <segment>.corrupt-<time> and logged. Corruption never makes Open fail; an
// I/O error does, and a directory locked by someone else gives [ErrLocked].
func Open(dir string, lim Limits, log zerolog.Logger) (*Spool, error) {
	lim, err := lim.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create spool dir: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	s := &Spool{
		dir:    dir,
		lim:    lim,
		log:    log,
		lock:   lock,
		notify: make(chan struct{}, 1),
		done:   make(chan struct{}),
		nextID: 1,
	}
	s.cond = sync.NewCond(&s.mu)
	if err := s.recover(); err != nil {
		s.closeFiles()
		lock.Close()
		return nil, err
	}
	st := s.Stats()
	ev := log.Info().Str("dir", dir).Int("depth", st.Depth).Int64("bytes", st.Bytes).Int("segments", len(s.segs))
	if !st.Oldest.IsZero() {
		ev = ev.Time("oldest", st.Oldest)
	}
	ev.Msg("spool opened")
	return s, nil
}

// Append writes e to the spool and returns once it is on disk (fsync'd).
// Concurrent Appends share one fsync (group commit). It returns [ErrFull]
// when e would take the spool past its limits (nothing is written then),
// [ErrBadEntry] for an entry that can never be spooled or published, and
// [ErrClosed] after Close. After an fsync error, or a failed write that
// cannot be undone, the disk is suspect: Append returns that error from then
// on (the entries already written are still forwarded) until the spool is
// reopened.
func (s *Spool) Append(e Entry) error {
	if e.Added.IsZero() {
		e.Added = time.Now()
	}
	if err := validate(&e); err != nil {
		return err
	}
	size := recordSize(&e)

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.failed != nil {
		return fmt.Errorf("append: %w", s.failed)
	}
	if size > s.lim.MaxBytes {
		return fmt.Errorf("%w: record of %d bytes is larger than the spool (%d bytes)", ErrBadEntry, size, s.lim.MaxBytes)
	}
	depth := len(s.queue) - s.head
	if depth+1 > s.lim.MaxEntries || s.bytes+size > s.lim.MaxBytes {
		s.rejected.Add(1)
		if !s.full {
			s.full = true
			s.log.Warn().Str("dir", s.dir).Int("depth", depth).Int64("bytes", s.bytes).
				Int("max_entries", s.lim.MaxEntries).Int64("max_bytes", s.lim.MaxBytes).
				Msg("spool full: refusing new entries until the forwarder frees space")
		}
		return fmt.Errorf("%w: %d entries, %d bytes queued", ErrFull, depth, s.bytes)
	}
	seg, err := s.segmentFor(size)
	if err != nil {
		return err
	}
	s.buf = appendRecord(s.buf[:0], &e)
	off := seg.size
	if _, err := seg.f.WriteAt(s.buf, off); err != nil {
		// Undo a partial write so that later records stay readable.
		if terr := seg.f.Truncate(off); terr != nil {
			s.failed = fmt.Errorf("segment %s unusable after a failed write: %w", filepath.Base(seg.path), terr)
			s.log.Error().Err(terr).Str("segment", filepath.Base(seg.path)).Msg("spool cannot undo a partial write; refusing further appends")
		}
		return fmt.Errorf("append to %s: %w", filepath.Base(seg.path), err)
	}
	seg.size += size
	seg.pending++
	s.writeSeq++
	seq := s.writeSeq
	s.queue = append(s.queue, &record{seg: seg, off: off, size: size, seq: seq, msgID: e.MsgID, added: e.Added})
	s.bytes += size

	// Group commit: one caller fsyncs everything written so far while the
	// others wait for it.
	for s.syncedSeq < seq {
		if s.syncing {
			s.cond.Wait()
			continue
		}
		s.syncing = true
		target, f := s.writeSeq, s.active.f
		s.mu.Unlock()
		err := f.Sync()
		s.mu.Lock()
		s.syncing = false
		s.syncedSeq = max(s.syncedSeq, target)
		if err != nil && s.failed == nil {
			s.failed = fmt.Errorf("sync %s: %w", filepath.Base(f.Name()), err)
			s.log.Error().Err(err).Str("dir", s.dir).Msg("spool fsync failed; refusing further appends")
		}
		s.cond.Broadcast()
		s.wake()
	}
	if s.failed != nil {
		return fmt.Errorf("append: %w", s.failed)
	}
	s.appended.Add(1)
	if s.full {
		s.full = false
		s.log.Info().Str("dir", s.dir).Int("depth", depth+1).Msg("spool accepting entries again")
	}
	return nil
}

// segmentFor returns the segment to append size bytes to, starting a new
// one when there is none or the active one is full. Called with s.mu held.
func (s *Spool) segmentFor(size int64) (*segment, error) {
	if a := s.active; a != nil && (a.size == 0 || a.size+size <= s.lim.SegmentBytes) {
		return a, nil
	}
	if a := s.active; a != nil {
		// Everything written to the old segment must be durable before a
		// group commit moves on to the new file.
		if err := a.f.Sync(); err != nil {
			return nil, fmt.Errorf("sync %s: %w", filepath.Base(a.path), err)
		}
		s.syncedSeq = s.writeSeq
		s.active = nil
		s.cond.Broadcast()
		s.wake()
	}
	id := s.nextID
	path := filepath.Join(s.dir, segFile(id))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create segment: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	s.nextID++
	seg := &segment{id: id, path: path, f: f}
	s.segs = append(s.segs, seg)
	s.active = seg
	return seg, nil
}

// wake tells the forwarder that there may be work. Called with s.mu held.
func (s *Spool) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Depth is the number of entries not yet forwarded.
func (s *Spool) Depth() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue) - s.head
}

// Stats returns the depth, size and oldest entry's time of the spool.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Depth: len(s.queue) - s.head, Bytes: s.bytes}
	if st.Depth > 0 {
		st.Oldest = s.queue[s.head].added
	}
	return st
}

// Dir is the spool's directory.
func (s *Spool) Dir() string { return s.dir }

// Close waits for a running [Spool.Forward] to stop, syncs and closes the
// files and releases the directory lock. Entries not yet forwarded stay on
// disk for the next Open. Close is idempotent.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	for s.syncing {
		s.cond.Wait()
	}
	var errs []error
	if s.active != nil && s.syncedSeq < s.writeSeq {
		if err := s.active.f.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("sync %s: %w", filepath.Base(s.active.path), err))
			if s.failed == nil {
				s.failed = errs[0]
			}
		}
		s.syncedSeq = s.writeSeq
	}
	s.cond.Broadcast()
	s.mu.Unlock()

	s.fwdDone.Wait()

	s.mu.Lock()
	errs = append(errs, s.closeFiles())
	s.mu.Unlock()
	if err := s.lock.Close(); err != nil {
		errs = append(errs, fmt.Errorf("release lock: %w", err))
	}
	s.log.Info().Str("dir", s.dir).Int("depth", len(s.queue)-s.head).Msg("spool closed")
	return errors.Join(errs...)
}

// closeFiles closes every segment and ack file.
func (s *Spool) closeFiles() error {
	var errs []error
	for _, seg := range s.segs {
		if err := seg.f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", filepath.Base(seg.path), err))
		}
		if seg.ack != nil {
			if err := seg.ack.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close %s: %w", ackFile(seg.id), err))
			}
		}
	}
	return errors.Join(errs...)
}
