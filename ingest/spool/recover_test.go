package spool

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/natstest"
)

// writeSpool writes es into a fresh spool in a temp dir, closes it and
// returns the directory, the segment's path and the end offset of each
// record.
func writeSpool(t testing.TB, es []Entry) (dir, seg string, ends []int64) {
	t.Helper()
	dir = t.TempDir()
	s, err := Open(dir, Limits{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	var off int64
	for _, e := range es {
		if err := s.Append(e); err != nil {
			t.Fatal(err)
		}
		off += recordSize(&e)
		ends = append(ends, off)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, filepath.Join(dir, segFile(1)), ends
}

// spoolWith creates a spool dir holding one segment with the given bytes.
func spoolWith(t testing.TB, b []byte) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, segFile(1)), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// whole counts the records that end at or before cut.
func whole(ends []int64, cut int64) int {
	n := 0
	for _, e := range ends {
		if e <= cut {
			n++
		}
	}
	return n
}

// checkRecovered opens dir and checks that exactly want is queued and that
// a tail of tailBytes was moved aside (none when 0); with rounds > 1 it
// opens again and checks that nothing more is moved aside.
func checkRecovered(t *testing.T, dir string, want []Entry, tailBytes int64, rounds int) {
	t.Helper()
	for round := range rounds {
		s, err := Open(dir, Limits{}, zerolog.Nop())
		if err != nil {
			t.Fatalf("round %d: Open: %v", round, err)
		}
		sameEntries(t, pending(t, s), want)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		cs := corruptFiles(t, dir)
		switch {
		case tailBytes == 0 && len(cs) != 0:
			t.Fatalf("round %d: tail moved aside to %v, want nothing moved", round, cs)
		case tailBytes > 0 && len(cs) != 1:
			t.Fatalf("round %d: corrupt files %v, want exactly one", round, cs)
		case tailBytes > 0:
			fi, err := os.Stat(filepath.Join(dir, cs[0]))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size() != tailBytes {
				t.Fatalf("round %d: moved-aside tail is %d bytes, want %d", round, fi.Size(), tailBytes)
			}
		}
	}
}

func TestOpenCutAtEveryByte(t *testing.T) {
	es := testEntries(3)
	_, seg, ends := writeSpool(t, es)
	full, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(full)) != ends[len(ends)-1] {
		t.Fatalf("segment is %d bytes, want %d", len(full), ends[len(ends)-1])
	}
	for cut := int64(0); cut <= int64(len(full)); cut++ {
		n := whole(ends, cut)
		good := int64(0)
		if n > 0 {
			good = ends[n-1]
		}
		dir := spoolWith(t, full[:cut])
		checkRecovered(t, dir, es[:n], cut-good, 1+int(cut%5/4)) // every 5th cut: reopen once more
		if t.Failed() {
			t.Fatalf("cut at byte %d of %d", cut, len(full))
		}
	}
}

func TestOpenDetectsCorruption(t *testing.T) {
	es := testEntries(5)
	_, seg, ends := writeSpool(t, es)
	full, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	last := ends[3] // start of the last record
	flip := func(at int64) []byte {
		b := bytes.Clone(full)
		b[at] ^= 0x10
		return b
	}
	zeros := make([]byte, 4096)
	garbage := make([]byte, 300)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range garbage {
		garbage[i] = byte(r.UintN(256))
	}
	// A header that claims a huge record: must not be trusted.
	huge := append([]byte(recordMagic), 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0)
	tests := []struct {
		name  string
		bytes []byte
		want  int   // whole entries kept
		tail  int64 // bytes moved aside
	}{
		{"garbage appended", append(bytes.Clone(full), garbage...), 5, int64(len(garbage))},
		{"zeros appended (power cut on a preallocated block)", append(bytes.Clone(full), zeros...), 5, int64(len(zeros))},
		{"huge length appended", append(bytes.Clone(full), huge...), 5, int64(len(huge))},
		{"bit flipped in the middle of the last record", flip(last + (ends[4]-last)/2), 4, ends[4] - last},
		{"bit flipped in the last record's length", flip(last + 5), 4, ends[4] - last},
		{"bit flipped in the last record's checksum", flip(last + 9), 4, ends[4] - last},
		{"bit flipped in the last record's magic", flip(last), 4, ends[4] - last},
		{"bit flipped in the last byte", flip(ends[4] - 1), 4, ends[4] - last},
		{"bit flipped in the second record", flip(ends[0] + 20), 1, ends[4] - ends[0]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkRecovered(t, spoolWith(t, tt.bytes), es[:tt.want], tt.tail, 2)
		})
	}
}

// TestOpenCutForwards cuts a spool at random bytes (fixed seed), some in
// an older segment, and checks that every whole entry before the cut, and
// every entry of the later segments, reaches JetStream once, in order.
func TestOpenCutForwards(t *testing.T) {
	const n = 24
	es := testEntries(n)
	src := t.TempDir()
	s := openT(t, src, Limits{SegmentBytes: 1500})
	appendAll(t, s, es)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Which entries are in which segment, and where each ends.
	type span struct {
		name  string
		first int
		ends  []int64
	}
	var segs []span
	next := 0
	for _, name := range files(t, src) {
		if _, isSeg, ok := parseName(name); !ok || !isSeg {
			continue
		}
		sp := span{name: name, first: next}
		var off int64
		fi, err := os.Stat(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		for off < fi.Size() {
			off += recordSize(&es[next])
			sp.ends = append(sp.ends, off)
			next++
		}
		segs = append(segs, sp)
	}
	if len(segs) < 2 || next != n {
		t.Fatalf("want several segments holding %d entries; got %d segments, %d entries", n, len(segs), next)
	}

	b := newBroker(t)
	r := rand.New(rand.NewPCG(7, 11))
	for i := range 50 {
		victim := segs[r.IntN(len(segs))]
		size := victim.ends[len(victim.ends)-1]
		cut := r.Int64N(size + 1)
		dir := copyDir(t, src)
		if err := os.Truncate(filepath.Join(dir, victim.name), cut); err != nil {
			t.Fatal(err)
		}
		k := whole(victim.ends, cut)
		want := append(append([]Entry{}, es[:victim.first+k]...), es[victim.first+len(victim.ends):]...)

		b.resetStream(t)
		s, err := Open(dir, Limits{SegmentBytes: 1500}, zerolog.Nop())
		if err != nil {
			t.Fatalf("cut %d (%s at %d): Open: %v", i, victim.name, cut, err)
		}
		if s.Depth() != len(want) {
			t.Fatalf("cut %d (%s at %d): Depth %d, want %d", i, victim.name, cut, s.Depth(), len(want))
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Forward(ctx, b.js, WithPublishTimeout(time.Second)) }()
		natstest.Eventually(t, 10*time.Second, "cut spool drains", func() bool { return s.Depth() == 0 })
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Forward: %v", err)
		}
		b.wantStream(t, want)
		s.Close()
		var partial int64
		if k == 0 {
			partial = cut
		} else {
			partial = cut - victim.ends[k-1]
		}
		if got := len(corruptFiles(t, dir)); (partial > 0) != (got == 1) || got > 1 {
			t.Fatalf("cut %d (%s at %d): %d corrupt files, want one iff the cut splits a record", i, victim.name, cut, got)
		}
	}
}

func FuzzOpen(f *testing.F) {
	_, seg, _ := writeSpool(f, testEntries(3))
	full, err := os.ReadFile(seg)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(full)
	f.Add(full[:len(full)-3])
	f.Add(full[:7])
	f.Add([]byte{})
	f.Add([]byte(recordMagic + "\xff\xff\xff\xff\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, segFile(1))
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(dir, Limits{}, zerolog.Nop())
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		got := pending(t, s)
		var size int64
		for _, e := range got {
			size += recordSize(&e)
		}
		if st := s.Stats(); st.Depth != len(got) || st.Bytes != size {
			t.Fatalf("Stats %+v, want depth %d bytes %d", st, len(got), size)
		}
		// The good prefix is kept byte for byte; the rest is moved aside.
		if len(got) > 0 {
			kept, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(kept, b[:size]) {
				t.Fatal("kept segment is not a prefix of the input")
			}
		}
		// Appending after recovery works and survives a reopen.
		if err := s.Append(testEntry(99)); err != nil {
			t.Fatalf("Append after recovery: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s, err = Open(dir, Limits{}, zerolog.Nop())
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		defer s.Close()
		if d := s.Depth(); d != len(got)+1 {
			t.Fatalf("Depth after reopen = %d, want %d", d, len(got)+1)
		}
	})
}

func TestOpenAckFiles(t *testing.T) {
	es := testEntries(4)
	dir, _, ends := writeSpool(t, es)
	ack := filepath.Join(dir, ackFile(1))
	// The first entry is forwarded; a marker for the second was torn.
	torn := appendAck(nil, ends[0])
	torn = append(torn, appendAck(nil, ends[1])[:9]...)
	if err := os.WriteFile(ack, torn, 0o600); err != nil {
		t.Fatal(err)
	}
	// An ack file whose segment is gone (deleted just before a crash).
	orphan := filepath.Join(dir, ackFile(7))
	if err := os.WriteFile(orphan, appendAck(nil, 100), 0o600); err != nil {
		t.Fatal(err)
	}

	s, err := Open(dir, Limits{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	sameEntries(t, pending(t, s), es[1:])
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Errorf("orphan ack file still there (%v)", err)
	}
	// Markers written after the torn one count: the torn tail was cut off.
	seg := s.queue[s.head].seg
	if _, mark := s.dequeue(s.queue[s.head]); !mark {
		t.Fatal("dequeue says no marker is needed for a segment with entries left")
	}
	if err := s.markForwarded(seg, ends[1]); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, Limits{})
	sameEntries(t, pending(t, s), es[2:])
}
