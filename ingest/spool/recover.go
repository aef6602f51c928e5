package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// recover loads the segments found in s.dir.
func (s *Spool) recover() error {
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("read spool dir: %w", err)
	}
	segIDs := map[uint64]bool{}
	var ids, acks []uint64
	for _, de := range des {
		id, isSeg, ok := parseName(de.Name())
		if !ok || !de.Type().IsRegular() {
			continue
		}
		if isSeg {
			ids = append(ids, id)
			segIDs[id] = true
		} else {
			acks = append(acks, id)
		}
		s.nextID = max(s.nextID, id+1)
	}
	slices.Sort(ids)
	changed := false
	for _, id := range acks {
		if !segIDs[id] { // its segment was deleted; the ack file is left over
			if err := os.Remove(filepath.Join(s.dir, ackFile(id))); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("remove %s: %w", ackFile(id), err)
			}
			changed = true
		}
	}
	for _, id := range ids {
		c, err := s.loadSegment(id)
		if err != nil {
			return err
		}
		changed = changed || c
	}
	// Segments with nothing left to forward go now.
	reaped, err := s.reap()
	if err != nil {
		return err
	}
	if reaped {
		changed = true
	}
	if changed {
		return syncDir(s.dir)
	}
	return nil
}

// loadSegment scans one segment, moves a bad tail aside and queues its
// records past the committed offset. It reports whether it changed the
// directory.
func (s *Spool) loadSegment(id uint64) (bool, error) {
	path := filepath.Join(s.dir, segFile(id))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false, fmt.Errorf("open %s: %w", segFile(id), err)
	}
	seg := &segment{id: id, path: path, f: f}
	s.segs = append(s.segs, seg)
	fi, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("stat %s: %w", segFile(id), err)
	}
	recs, good, err := scanSegment(f, fi.Size())
	if err != nil {
		return false, fmt.Errorf("scan %s: %w", segFile(id), err)
	}
	seg.size = good
	changed := false
	if good < fi.Size() {
		name, err := moveTail(seg, good, fi.Size(), time.Now())
		if err != nil {
			return false, fmt.Errorf("move corrupt tail aside: %w", err)
		}
		changed = true
		s.corrupt.Add(1)
		s.log.Error().Str("segment", segFile(id)).Int64("offset", good).
			Int64("tail_bytes", fi.Size()-good).Int("good_records", len(recs)).
			Str("moved_to", name).Msg("spool segment has a corrupt or truncated tail; moved it aside, kept the records before it")
	}
	committed, err := readAcks(filepath.Join(s.dir, ackFile(id)))
	if err != nil {
		return false, err
	}
	for _, r := range recs {
		if r.off+r.size <= committed {
			continue
		}
		s.writeSeq++
		s.queue = append(s.queue, &record{seg: seg, off: r.off, size: r.size, seq: s.writeSeq, msgID: r.msgID, added: r.added})
		s.bytes += r.size
		seg.pending++
	}
	s.syncedSeq = s.writeSeq
	return changed, nil
}
