// Package natstest starts a real, in-process NATS server with JetStream for
// tests: random port on 127.0.0.1, a t.TempDir() store, shut down by
// t.Cleanup. It never fakes the broker.
package natstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/schemas"
)

// Server is a running test server. Stop and Start it again with
// [Server.Shutdown] and [Server.Restart]; the port and store survive.
type Server struct {
	t    testing.TB
	opts server.Options
	srv  *server.Server
}

// Run starts a JetStream server for t on 127.0.0.1 with a random port.
func Run(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, opts: server.Options{
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT,
		NoLog:     true,
		NoSigs:    true,
		JetStream: true,
		StoreDir:  t.TempDir(),
	}}
	s.start()
	_, port, err := net.SplitHostPort(s.srv.Addr().String())
	if err != nil {
		t.Fatalf("natstest: server address: %v", err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("natstest: server port %q: %v", port, err)
	}
	s.opts.Port = p
	t.Cleanup(s.Shutdown)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	opts := s.opts
	srv, err := server.NewServer(&opts)
	if err != nil {
		s.t.Fatalf("natstest: new server: %v", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		s.t.Fatalf("natstest: server not ready")
	}
	s.srv = srv
}

// URL is the client URL of the server. The port stays the same across
// [Server.Shutdown] and [Server.Restart], so URL works while it is down.
func (s *Server) URL() string {
	return "nats://" + net.JoinHostPort(s.opts.Host, strconv.Itoa(s.opts.Port))
}

// StoreDir is the server's JetStream store.
func (s *Server) StoreDir() string { return s.opts.StoreDir }

// Shutdown stops the server and waits until it is down. It is safe to call
// more than once.
func (s *Server) Shutdown() {
	if s.srv == nil {
		return
	}
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	s.srv = nil
}

// Restart starts the server again on the same port with the same store.
func (s *Server) Restart() {
	s.t.Helper()
	s.Shutdown()
	s.start()
}

// Conns lists the server's open client connections, as its monitoring
// endpoint /connz would: name, messages in and out, subscriptions.
func (s *Server) Conns() []*server.ConnInfo {
	s.t.Helper()
	if s.srv == nil {
		s.t.Fatalf("natstest: Conns: the server is down")
	}
	c, err := s.srv.Connz(&server.ConnzOptions{Subscriptions: true, Limit: 1024})
	if err != nil {
		s.t.Fatalf("natstest: connz: %v", err)
	}
	return c.Conns
}

// Connect opens a client connection with a JetStream context, both closed by
// t.Cleanup. The connection reconnects forever, so it survives a Restart;
// opts come after those defaults.
func (s *Server) Connect(t testing.TB, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	return Dial(t, s.URL(), append([]nats.Option{
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
	}, opts...)...)
}

// Dial opens a client connection to url with opts, and a JetStream context
// on it, both closed by t.Cleanup.
func Dial(t testing.TB, url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("natstest: connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("natstest: jetstream: %v", err)
	}
	return nc, js
}

// Eventually polls cond every 10 ms until it is true or timeout passes, then
// fails t with msg. Use it instead of fixed sleeps.
func Eventually(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s: %s", timeout, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Streams creates FORGE_EVENTS, FORGE_RESULTS and FORGE_DLQ with the
// subjects forgebus provisions them with (one replica, file storage, a
// one-hour duplicate window), for tests of what crosses the broker.
func Streams(t testing.TB, js jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, sc := range []jetstream.StreamConfig{
		{Name: schemas.StreamEvents, Subjects: schemas.EventsSubjects, Duplicates: time.Hour},
		{Name: schemas.StreamResults, Subjects: schemas.ResultsSubjects},
		{Name: schemas.StreamDLQ, Subjects: schemas.DLQSubjects},
	} {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			t.Fatalf("natstest: stream %s: %v", sc.Name, err)
		}
	}
}

// StreamState is stream's state now (messages, sequences, consumers); an
// error reading it fails t.
func StreamState(t testing.TB, js jetstream.JetStream, stream string) jetstream.StreamState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("natstest: stream %s: %v", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatalf("natstest: stream %s info: %v", stream, err)
	}
	return info.State
}

// StreamMsgs returns every message stream holds now, in stream order; a
// deleted message leaves a gap, any other read error fails t.
func StreamMsgs(t testing.TB, js jetstream.JetStream, stream string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("natstest: stream %s: %v", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatalf("natstest: stream %s info: %v", stream, err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("natstest: %s seq %d: %v", stream, seq, err)
		}
		out = append(out, m)
	}
	return out
}

// ClusterPortBase finds a base port for scripts/cluster.sh's nine ports
// (client base+0..2, cluster +10..12, monitor +20..22) that are all free on
// 127.0.0.1 now. seed spreads concurrent callers over the range.
func ClusterPortBase(seed int) (int, error) {
	for i := range 200 {
		base := 20000 + (seed*7919+i*131)%30000
		if portsFree(base, 0, 1, 2, 10, 11, 12, 20, 21, 22) {
			return base, nil
		}
	}
	return 0, fmt.Errorf("natstest: no free range of cluster ports on 127.0.0.1")
}

func portsFree(base int, offsets ...int) bool {
	for _, off := range offsets {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(base+off)))
		if err != nil {
			return false
		}
		ln.Close()
	}
	return true
}
