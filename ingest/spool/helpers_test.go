package spool

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
)

// testEntry is the i-th entry of a test; sizes vary so that cut points land
// everywhere in headers and payloads.
func testEntry(i int) Entry {
	return Entry{
		MsgID:   fmt.Sprintf("delivery-%04d", i),
		Subject: fmt.Sprintf("forge.git_example_com.push.owner%d.repo", i%3),
		Data:    bytes.Repeat([]byte{byte('a' + i%26)}, 20+(i*37)%90),
		Added:   time.Unix(1_700_000_000+int64(i), int64(i)).UTC(),
	}
}

func testEntries(n int) []Entry {
	es := make([]Entry, n)
	for i := range es {
		es[i] = testEntry(i)
	}
	return es
}

// openT opens a spool in dir and closes it with t.Cleanup.
func openT(t testing.TB, dir string, lim Limits) *Spool {
	t.Helper()
	s, err := Open(dir, lim, zerolog.Nop())
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func appendAll(t testing.TB, s *Spool, es []Entry) {
	t.Helper()
	for _, e := range es {
		if err := s.Append(e); err != nil {
			t.Fatalf("Append %s: %v", e.MsgID, err)
		}
	}
}

// broker is a real JetStream with the FORGE_EVENTS stream.
type broker struct {
	srv *natstest.Server
	nc  *nats.Conn
	js  jetstream.JetStream
}

func newBroker(t testing.TB) *broker {
	t.Helper()
	srv := natstest.Run(t)
	nc, js := srv.Connect(t)
	b := &broker{srv: srv, nc: nc, js: js}
	b.resetStream(t)
	return b
}

// resetStream deletes and recreates FORGE_EVENTS (clearing its duplicate
// window too). The server removes a deleted stream's store in the
// background, so creating it again is retried until it succeeds.
func (b *broker) resetStream(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = b.js.DeleteStream(ctx, schemas.StreamEvents)
	var err error
	natstest.Eventually(t, 5*time.Second, "stream created", func() bool {
		_, err = b.js.CreateStream(ctx, jetstream.StreamConfig{
			Name:       schemas.StreamEvents,
			Subjects:   schemas.EventsSubjects,
			Storage:    jetstream.FileStorage,
			Duplicates: time.Hour,
		})
		return err == nil
	})
}

// messages returns every message in FORGE_EVENTS, in stream order.
func (b *broker) messages(t testing.TB) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := b.js.Stream(ctx, schemas.StreamEvents)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	var msgs []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get msg %d: %v", seq, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// wantStream checks that the stream holds exactly want, in order, each once,
// with its Nats-Msg-Id, subject and data.
func (b *broker) wantStream(t testing.TB, want []Entry) {
	t.Helper()
	got := b.messages(t)
	if len(got) != len(want) {
		ids := make([]string, len(got))
		for i, m := range got {
			ids[i] = m.Header.Get(nats.MsgIdHdr)
		}
		t.Fatalf("stream has %d messages %v, want %d", len(got), ids, len(want))
	}
	for i, m := range got {
		w := want[i]
		if id := m.Header.Get(nats.MsgIdHdr); id != w.MsgID {
			t.Fatalf("message %d: Nats-Msg-Id %q, want %q", i, id, w.MsgID)
		}
		if m.Subject != w.Subject || !bytes.Equal(m.Data, w.Data) {
			t.Fatalf("message %d (%s): subject %q data %q, want %q %q", i, w.MsgID, m.Subject, m.Data, w.Subject, w.Data)
		}
	}
}

// forward runs s.Forward in the background until the test ends, and returns
// a func that stops it and returns its error.
func forward(t testing.TB, s *Spool, pub Publisher, opts ...ForwardOption) func() error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	opts = append([]ForwardOption{WithPublishTimeout(500 * time.Millisecond), WithBackoff(10*time.Millisecond, 200*time.Millisecond)}, opts...)
	go func() { errc <- s.Forward(ctx, pub, opts...) }()
	var once sync.Once
	var err error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-errc:
			case <-time.After(10 * time.Second):
				err = fmt.Errorf("Forward did not return")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// files lists the names in dir, sorted.
func files(t testing.TB, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	slices.Sort(names)
	return names
}

func countSuffix(names []string, suffix string) int {
	n := 0
	for _, name := range names {
		if strings.HasSuffix(name, suffix) {
			n++
		}
	}
	return n
}

func corruptFiles(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	for _, name := range files(t, dir) {
		if strings.Contains(name, corruptTag) {
			out = append(out, name)
		}
	}
	return out
}

// copyDir copies the regular files of src into a new temp dir: a snapshot of
// the spool as a crash at this moment would leave it.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	for _, name := range files(t, src) {
		in, err := os.Open(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(filepath.Join(dst, name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, in); err != nil {
			t.Fatal(err)
		}
		in.Close()
		out.Close()
	}
	return dst
}

// pending reads back every queued entry of s from disk, in order, the way
// the forwarder does.
func pending(t testing.TB, s *Spool) []Entry {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Entry
	for _, r := range s.queue[s.head:] {
		buf := make([]byte, r.size)
		if _, err := r.seg.f.ReadAt(buf, r.off); err != nil {
			t.Fatalf("read record: %v", err)
		}
		e, ok := decodeRecord(buf)
		if !ok {
			t.Fatalf("record at %d does not decode", r.off)
		}
		out = append(out, e)
	}
	return out
}

func sameEntries(t testing.TB, got, want []Entry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.MsgID != w.MsgID || g.Subject != w.Subject || !bytes.Equal(g.Data, w.Data) || !g.Added.Equal(w.Added) {
			t.Fatalf("entry %d = %s %s %q %v, want %s %s %q %v", i, g.MsgID, g.Subject, g.Data, g.Added, w.MsgID, w.Subject, w.Data, w.Added)
		}
	}
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
