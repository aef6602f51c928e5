package spool

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/natstest"
)

func TestAppendReopen(t *testing.T) {
	dir := t.TempDir()
	want := testEntries(9)
	s := openT(t, dir, Limits{SegmentBytes: 500})
	appendAll(t, s, want)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, Limits{SegmentBytes: 500})
	sameEntries(t, pending(t, s), want)
	var size int64
	for _, e := range want {
		size += recordSize(&e)
	}
	if st := s.Stats(); st.Depth != len(want) || st.Bytes != size || !st.Oldest.Equal(want[0].Added) {
		t.Fatalf("Stats = %+v, want depth %d bytes %d oldest %v", st, len(want), size, want[0].Added)
	}
	// Appends after a reopen go after the old entries.
	more := testEntries(12)[9:]
	appendAll(t, s, more)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, Limits{SegmentBytes: 500})
	sameEntries(t, pending(t, s), append(want, more...))
}

func TestAppendSetsAdded(t *testing.T) {
	s := openT(t, t.TempDir(), Limits{})
	before := time.Now()
	if err := s.Append(Entry{MsgID: "d-1", Subject: "forge.x.push.o.r", Data: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	if o := s.Stats().Oldest; o.Before(before) || o.After(time.Now()) {
		t.Fatalf("Oldest = %v, want the time of the Append", o)
	}
}

func TestAppendConcurrent(t *testing.T) {
	const writers, each = 8, 50
	dir := t.TempDir()
	s := openT(t, dir, Limits{SegmentBytes: 4 << 10})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				e := Entry{MsgID: fmt.Sprintf("w%d-%03d", w, i), Subject: "forge.x.push.o.r", Data: []byte(fmt.Sprintf(`{"w":%d,"i":%d}`, w, i))}
				if err := s.Append(e); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if d := s.Depth(); d != writers*each {
		t.Fatalf("Depth = %d, want %d", d, writers*each)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Every entry is on disk once, and each writer's entries keep their order.
	s = openT(t, dir, Limits{})
	got := pending(t, s)
	if len(got) != writers*each {
		t.Fatalf("reopened with %d entries, want %d", len(got), writers*each)
	}
	last := map[string]int{}
	for _, e := range got {
		var w, i int
		if _, err := fmt.Sscanf(e.MsgID, "w%d-%d", &w, &i); err != nil {
			t.Fatalf("msg id %q: %v", e.MsgID, err)
		}
		k := fmt.Sprint(w)
		if prev, ok := last[k]; ok && i != prev+1 {
			t.Fatalf("writer %d: entry %d after %d", w, i, prev)
		} else if !ok && i != 0 {
			t.Fatalf("writer %d starts at %d", w, i)
		}
		last[k] = i
	}
}

func TestAppendBadEntry(t *testing.T) {
	s := openT(t, t.TempDir(), Limits{MaxBytes: 1000})
	tests := []struct {
		name string
		e    Entry
	}{
		{"no msg id", Entry{Subject: "forge.a.push.o.r"}},
		{"no subject", Entry{MsgID: "d"}},
		{"blank in subject", Entry{MsgID: "d", Subject: "forge.a push.o.r"}},
		{"newline in msg id", Entry{MsgID: "d\r\nX-Evil: 1", Subject: "forge.a.push.o.r"}},
		{"msg id too long", Entry{MsgID: strings.Repeat("d", 70000), Subject: "forge.a.push.o.r"}},
		{"record too large", Entry{MsgID: "d", Subject: "forge.a.push.o.r", Data: make([]byte, MaxRecordBytes)}},
		{"record larger than the spool", Entry{MsgID: "d", Subject: "forge.a.push.o.r", Data: make([]byte, 2000)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.Append(tt.e); !errors.Is(err, ErrBadEntry) {
				t.Fatalf("Append = %v, want ErrBadEntry", err)
			}
			if d := s.Depth(); d != 0 {
				t.Fatalf("Depth = %d after a refused entry", d)
			}
		})
	}
}

func TestAppendFull(t *testing.T) {
	es := testEntries(4)
	two := recordSize(&es[0]) + recordSize(&es[1])
	tests := []struct {
		name string
		lim  Limits
	}{
		{"entry limit", Limits{MaxEntries: 2}},
		{"byte limit", Limits{MaxBytes: two + recordSize(&es[2]) - 1}},
	}
	b := newBroker(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b.resetStream(t)
			dir := t.TempDir()
			logs := &syncBuffer{}
			s, err := Open(dir, tt.lim, zerolog.New(logs))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			appendAll(t, s, es[:2])
			segSize := func() int64 {
				fi, err := os.Stat(filepath.Join(dir, segFile(1)))
				if err != nil {
					t.Fatal(err)
				}
				return fi.Size()
			}
			before, size := s.Stats(), segSize()
			for range 3 {
				if err := s.Append(es[2]); !errors.Is(err, ErrFull) {
					t.Fatalf("Append past the limit = %v, want ErrFull", err)
				}
			}
			if after := s.Stats(); after != before {
				t.Fatalf("Stats changed by a refused Append: %+v, was %+v", after, before)
			}
			if got := segSize(); got != size {
				t.Fatalf("segment grew from %d to %d bytes on a refused Append", size, got)
			}
			if n := strings.Count(logs.String(), "spool full"); n != 1 {
				t.Fatalf("%d log lines say the spool is full, want 1 per episode", n)
			}
			if got := s.rejected.Load(); got != 3 {
				t.Fatalf("full rejections = %d, want 3", got)
			}

			stop := forward(t, s, b.js)
			natstest.Eventually(t, 10*time.Second, "forward frees space", func() bool { return s.Depth() == 0 })
			if err := s.Append(es[2]); err != nil {
				t.Fatalf("Append after the forward freed space: %v", err)
			}
			if err := s.Append(es[3]); err != nil {
				t.Fatalf("Append after the forward freed space: %v", err)
			}
			natstest.Eventually(t, 10*time.Second, "new entries forwarded", func() bool { return s.Depth() == 0 })
			stop()
			b.wantStream(t, es)
		})
	}
}

func TestOpenBadLimits(t *testing.T) {
	if _, err := Open(t.TempDir(), Limits{MaxEntries: -1}, zerolog.Nop()); err == nil {
		t.Fatal("Open with a negative limit succeeded")
	}
}

func TestLock(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Limits{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir, Limits{}, zerolog.Nop())
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), dir) {
		t.Errorf("ErrLocked message %q does not name the directory", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, Limits{}, zerolog.Nop())
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s.Close()
}

// TestLockHolderProcess is run as a child by TestLockOtherProcess: it
// holds the spool in $SPOOL_LOCK_HOLDER_DIR until it is killed.
func TestLockHolderProcess(t *testing.T) {
	dir := os.Getenv("SPOOL_LOCK_HOLDER_DIR")
	if dir == "" {
		t.Skip("helper process for TestLockOtherProcess")
	}
	s, err := Open(dir, Limits{}, zerolog.Nop())
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	if err := s.Append(testEntry(0)); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("locked")
	select {} // until killed
}

func TestLockOtherProcess(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHolderProcess$")
	cmd.Env = append(os.Environ(), "SPOOL_LOCK_HOLDER_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("child said %q, %v", line, err)
	}

	_, err = Open(dir, Limits{}, zerolog.Nop())
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("Open while another process holds the spool = %v, want ErrLocked", err)
	}
	if want := fmt.Sprintf("pid %d", cmd.Process.Pid); !strings.Contains(err.Error(), want) {
		t.Errorf("ErrLocked message %q does not say %q", err, want)
	}

	// SIGKILL: the kernel drops the lock, and the entry the child spooled
	// is still there.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	s := openT(t, dir, Limits{})
	sameEntries(t, pending(t, s), testEntries(1))
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := openT(t, t.TempDir(), Limits{MaxEntries: 2})
	NewMetrics(reg, s)
	es := testEntries(3)
	es[0].Added = time.Now().Add(-time.Minute)
	appendAll(t, s, es[:2])
	if err := s.Append(es[2]); !errors.Is(err, ErrFull) {
		t.Fatalf("Append = %v, want ErrFull", err)
	}
	got := gather(t, reg)
	want := map[string]float64{
		"forgebus_spool_depth":                 2,
		"forgebus_spool_bytes":                 float64(recordSize(&es[0]) + recordSize(&es[1])),
		"forgebus_spool_appended_total":        2,
		"forgebus_spool_forwarded_total":       0,
		"forgebus_spool_full_rejections_total": 1,
		"forgebus_spool_corrupt_total":         0,
	}
	for name, w := range want {
		if g, ok := got[name]; !ok || g != w {
			t.Errorf("%s = %v (present %v), want %v", name, g, ok, w)
		}
	}
	if age := got["forgebus_spool_oldest_age_seconds"]; age < 59 || age > 120 {
		t.Errorf("forgebus_spool_oldest_age_seconds = %v, want about 60", age)
	}
}

func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetGauge() != nil:
				out[mf.GetName()] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				out[mf.GetName()] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// BenchmarkAppend measures accepted webhooks per second with the broker
// down: every Append is fsync'd before it returns; concurrent Appends share
// fsyncs (group commit). "serial" is one goroutine, the others run
// goroutines concurrent Appends, as concurrent HTTP requests would.
func BenchmarkAppend(b *testing.B) {
	data := []byte(strings.Repeat(`{"k":"v"},`, 100)) // ~1 KiB envelope
	open := func(b *testing.B) *Spool {
		s, err := Open(b.TempDir(), Limits{MaxBytes: 1 << 40, MaxEntries: 1 << 30}, zerolog.Nop())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}
	b.Run("serial", func(b *testing.B) {
		s := open(b)
		b.SetBytes(int64(len(data)))
		i := 0
		for b.Loop() {
			i++
			if err := s.Append(Entry{MsgID: fmt.Sprintf("bench-%d", i), Subject: "forge.git.push.owner.repo", Data: data}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
	})
	for _, p := range []int{8, 32} {
		b.Run(fmt.Sprintf("goroutines=%d", p*runtimeProcs()), func(b *testing.B) {
			s := open(b)
			var n atomic.Int64
			b.SetBytes(int64(len(data)))
			b.SetParallelism(p)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					e := Entry{MsgID: fmt.Sprintf("bench-%d", n.Add(1)), Subject: "forge.git.push.owner.repo", Data: data}
					if err := s.Append(e); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
		})
	}
}

// BenchmarkForward measures how fast a backlog drains into JetStream (one
// publish, ack and fsync'd ack marker per entry, in order).
func BenchmarkForward(b *testing.B) {
	br := newBroker(b)
	s := openT(b, b.TempDir(), Limits{MaxBytes: 1 << 40, MaxEntries: 1 << 30})
	data := []byte(strings.Repeat(`{"k":"v"},`, 100))
	for i := range b.N {
		if err := s.Append(Entry{MsgID: fmt.Sprintf("bench-%d", i), Subject: "forge.git.push.owner.repo", Data: data}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	stop := forward(b, s, br.js)
	natstest.Eventually(b, time.Minute, "backlog drains", func() bool { return s.Depth() == 0 })
	b.StopTimer()
	stop()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "forwards/s")
}
