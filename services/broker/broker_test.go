package broker

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/services/config"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// externalConfig is the default configuration with FORGEBUS_NATS_URL set
// to url and a data dir of its own.
func externalConfig(t *testing.T, url string) config.Config {
	c := config.Default()
	c.DataDir = t.TempDir()
	c.NATS.URL = url
	return c
}

func embeddedConfig(t *testing.T) config.Config {
	c := config.Default()
	c.DataDir = t.TempDir()
	c.NATS.Listen = freeAddr(t)
	return c
}

func TestConnectEmbedded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg := embeddedConfig(t)
	b, err := Connect(ctx, cfg, zerolog.Nop(), WithRole("test"))
	if err != nil {
		t.Fatalf("Connect() = %v", err)
	}
	defer b.Close()
	if !b.Embedded() || b.Conn.Opts.Name != "forgebus-test" {
		t.Errorf("embedded %v, name %q", b.Embedded(), b.Conn.Opts.Name)
	}
	if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatalf("create stream on embedded server: %v", err)
	}

	// Another process (here: a client-only broker) reaches it on the listen address.
	other, err := Connect(ctx, cfg, zerolog.Nop(), ClientOnly())
	if err != nil {
		t.Fatalf("client-only Connect() = %v", err)
	}
	if other.Embedded() {
		t.Error("ClientOnly started a server")
	}
	if _, err := other.JS.Publish(ctx, "t.x", []byte("hi")); err != nil {
		t.Errorf("publish through the listen address: %v", err)
	}
	other.Close()

	// A second embedded server on the same address fails clearly.
	cfg2 := cfg
	cfg2.DataDir = t.TempDir()
	_, err = Connect(ctx, cfg2, zerolog.Nop())
	if !errors.Is(err, ErrListenInUse) || !strings.Contains(err.Error(), "FORGEBUS_NATS_LISTEN") {
		t.Errorf("second embedded Connect() = %v, want ErrListenInUse naming FORGEBUS_NATS_LISTEN", err)
	}

	b.Close()
	b.Close() // safe twice
	if !b.Conn.IsClosed() {
		t.Error("client not closed")
	}
	// The port is free again once the server is down.
	ln, err := net.Listen("tcp", cfg.NATS.Listen)
	if err != nil {
		t.Fatalf("listen address still taken after Close: %v", err)
	}
	ln.Close()
}

func TestConnectExternal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv := natstest.Run(t)
	cfg := externalConfig(t, srv.URL())
	b, err := Connect(ctx, cfg, zerolog.Nop())
	if err != nil {
		t.Fatalf("Connect() = %v", err)
	}
	defer b.Close()
	if b.Embedded() {
		t.Error("started an embedded server with FORGEBUS_NATS_URL set")
	}
	if _, err := b.JS.AccountInfo(ctx); err != nil {
		t.Errorf("account info: %v", err)
	}
	// It reconnects after a server restart.
	srv.Restart()
	natstest.Eventually(t, 10*time.Second, "reconnect", b.Conn.IsConnected)

	t.Run("unreachable", func(t *testing.T) {
		c := cfg
		c.NATS.URL = "nats://me:hunter2@" + freeAddr(t)
		_, err := Connect(ctx, c, zerolog.Nop())
		if err == nil {
			t.Fatal("Connect() to nothing succeeded")
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error reveals the password: %v", err)
		}
	})
}

func TestConnectRetryWhileDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv := natstest.Run(t)
	cfg := externalConfig(t, srv.URL())
	srv.Shutdown()

	// Without RetryConnect an unreachable server fails Connect.
	if _, err := Connect(ctx, cfg, zerolog.Nop()); err == nil {
		t.Fatal("Connect() to a stopped server succeeded without RetryConnect")
	}

	connects := make(chan struct{}, 10)
	b, err := Connect(ctx, cfg, zerolog.Nop(), RetryConnect(), OnConnect(func() { connects <- struct{}{} }))
	if err != nil {
		t.Fatalf("Connect() with RetryConnect while the server is down = %v", err)
	}
	defer b.Close()
	if b.Conn.IsConnected() {
		t.Fatal("connected to a stopped server")
	}
	// Nothing is buffered while disconnected: a publish fails at once.
	if _, err := b.JS.Publish(ctx, "t.x", []byte("held?")); err == nil {
		t.Error("publish while disconnected succeeded")
	}

	srv.Restart()
	natstest.Eventually(t, 10*time.Second, "connected once the server is up", b.Conn.IsConnected)
	select {
	case <-connects:
	case <-ctx.Done():
		t.Fatal("OnConnect not called on the first connect")
	}
	if _, err := b.JS.AccountInfo(ctx); err != nil {
		t.Errorf("account info after connecting: %v", err)
	}
	// The message published while down never reached the server.
	if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatal(err)
	}
	st, err := b.JS.Stream(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != 0 {
		t.Errorf("stream holds %d messages published while disconnected, want 0", n)
	}

	srv.Restart()
	select {
	case <-connects:
	case <-ctx.Done():
		t.Fatal("OnConnect not called after a reconnect")
	}
}
