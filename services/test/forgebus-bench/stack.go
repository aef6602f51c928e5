package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/services/config"
	"github.com/forgebus/forgebus/services/creds"
	"github.com/forgebus/forgebus/services/provision"
)

// stack is one embedded JetStream server with forgebus's streams, and the
// HTTP servers under test. With auth, the server trusts a forgebus
// operator as the embedded server of "forgebus dev" does: nc is the
// operator's connection and ingestJS ingest's own role's; without, both are
// one anonymous connection.
type stack struct {
	dir      string
	auth     bool
	srv      *server.Server
	nc       *nats.Conn
	js       jetstream.JetStream
	ingestNC *nats.Conn
	ingestJS jetstream.JetStream
	servers  []*http.Server
}

func startStack(ctx context.Context, auth bool) (*stack, error) {
	dir, err := os.MkdirTemp("", "forgebus-bench-")
	if err != nil {
		return nil, err
	}
	st := &stack{dir: dir, auth: auth}
	var store *creds.Store
	if auth {
		if store, err = creds.Open(filepath.Join(dir, "creds")); err == nil {
			err = store.EnsureServices(nil)
		}
		if err != nil {
			st.close()
			return nil, err
		}
	}
	srv, err := startServer(filepath.Join(dir, "nats"), store)
	if err != nil {
		st.close()
		return nil, err
	}
	st.srv = srv
	var opCreds, ingestCreds []nats.Option
	if store != nil {
		opCreds = []nats.Option{nats.UserCredentials(store.Path(creds.OperatorCreds))}
		ingestCreds = []nats.Option{nats.UserCredentials(store.Path("ingest.creds")), nats.CustomInboxPrefix(creds.InboxPrefix("ingest"))}
	}
	st.nc, st.js, err = connect(srv.ClientURL(), opCreds...)
	if err != nil {
		st.close()
		return nil, err
	}
	st.ingestNC, st.ingestJS = st.nc, st.js
	if store != nil {
		if st.ingestNC, st.ingestJS, err = connect(srv.ClientURL(), ingestCreds...); err != nil {
			st.close()
			return nil, err
		}
	}
	if err := provision.Streams(ctx, st.js, config.Default().Streams); err != nil {
		st.close()
		return nil, fmt.Errorf("provision: %w", err)
	}
	return st, nil
}

// startServer starts a JetStream server storing in dir; with store, it
// trusts store's operator and lets no anonymous client in.
func startServer(dir string, store *creds.Store) (*server.Server, error) {
	opts := &server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: dir,
	}
	if store != nil {
		if err := store.Configure(opts); err != nil {
			return nil, err
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		return nil, fmt.Errorf("nats server not ready")
	}
	return srv, nil
}

func connect(url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(url, append([]nats.Option{nats.Name("forgebus-bench"), nats.ReconnectBufSize(-1)}, opts...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// serve runs h on a fresh 127.0.0.1 port and returns its base URL.
func (st *stack) serve(h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	st.servers = append(st.servers, hs)
	go func() { _ = hs.Serve(ln) }()
	return "http://" + ln.Addr().String(), nil
}

// purge empties a stream between runs so every run starts from the same
// store size.
func (st *stack) purge(ctx context.Context, name string) error {
	s, err := st.js.Stream(ctx, name)
	if err != nil {
		return err
	}
	return s.Purge(ctx)
}

func (st *stack) close() {
	for _, hs := range st.servers {
		_ = hs.Close()
	}
	if st.ingestNC != nil && st.ingestNC != st.nc {
		st.ingestNC.Close()
	}
	if st.nc != nil {
		st.nc.Close()
	}
	if st.srv != nil {
		st.srv.Shutdown()
		st.srv.WaitForShutdown()
	}
	_ = os.RemoveAll(st.dir)
}

func quietLogger() zerolog.Logger { return zerolog.Nop() }
