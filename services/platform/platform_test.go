package platform

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/services/config"
)

func TestStartExternal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv := natstest.Run(t)
	cfg := config.Default()
	cfg.NATS.URL = srv.URL()
	p, err := Start(ctx, cfg, zerolog.Nop(), "test")
	if err != nil {
		t.Fatalf("Start() = %v", err)
	}
	defer p.Close()
	for _, name := range []string{schemas.StreamEvents, schemas.StreamResults, schemas.StreamDLQ, schemas.StreamAudit} {
		if _, err := p.Broker.JS.Stream(ctx, name); err != nil {
			t.Errorf("stream %s not provisioned: %v", name, err)
		}
	}
	if rep := p.Health.Run(ctx); !rep.Ready {
		t.Errorf("not ready after Start: %+v", rep)
	}
	if p.Broker.Conn.Opts.Name != "forgebus-test" {
		t.Errorf("connection name = %q", p.Broker.Conn.Opts.Name)
	}
}

func TestServeGraceful(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "done")
	})
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, ln, mux, 5*time.Second, zerolog.Nop()) }()

	url := "http://" + ln.Addr().String()
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get(url + "/slow")
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- string(b)
	}()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("request never reached the handler")
	}
	stop() // SIGTERM
	// New connections are refused while the in-flight request is still running.
	natstest.Eventually(t, 5*time.Second, "listener closed", func() bool {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 100*time.Millisecond)
		if err == nil {
			c.Close()
			return false
		}
		return true
	})
	close(release)
	select {
	case body := <-got:
		if body != "done" {
			t.Errorf("in-flight request got %q, want it finished", body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("in-flight request never finished")
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve() = %v, want nil after a clean stop", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
}

func TestListenInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = Listen(ln.Addr().String())
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Errorf("Listen on a taken port = %v", err)
	}
}

func TestPlatformServeHTTP(t *testing.T) {
	srv := natstest.Run(t)
	cfg := config.Default()
	cfg.NATS.URL = srv.URL()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := Start(ctx, cfg, zerolog.Nop(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- p.ServeHTTP(sctx, addr, p.Mux()) }()
	natstest.Eventually(t, 5*time.Second, "readyz 200 through ServeHTTP", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	stop()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("ServeHTTP() = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeHTTP did not return after ctx was done")
	}
}

func TestStartAllowNATSDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := natstest.Run(t)
	cfg := config.Default()
	cfg.NATS.URL = srv.URL()
	cfg.DataDir = t.TempDir()
	srv.Shutdown()

	if _, err := Start(ctx, cfg, zerolog.Nop(), "test"); err == nil {
		t.Fatal("Start() with NATS down succeeded without AllowNATSDown")
	}

	tests := []struct {
		name      string
		opts      []StartOption
		wantReady bool // while NATS is down
	}{
		{"required", []StartOption{AllowNATSDown()}, false},
		{"advisory", []StartOption{AllowNATSDown(), NATSAdvisory()}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Start(ctx, cfg, zerolog.Nop(), "test", tt.opts...)
			if err != nil {
				t.Fatalf("Start() with NATS down = %v", err)
			}
			defer p.Close()
			rep := p.Health.Run(ctx)
			if rep.Ready != tt.wantReady || rep.Checks["nats"].OK {
				t.Errorf("readiness with NATS down = %+v, want ready=%v and nats failing", rep, tt.wantReady)
			}
		})
	}

	// The streams are provisioned once NATS is up, and again after it
	// comes back without them.
	p, err := Start(ctx, cfg, zerolog.Nop(), "test", AllowNATSDown())
	if err != nil {
		t.Fatalf("Start() = %v", err)
	}
	defer p.Close()
	srv.Restart()
	streams := []string{schemas.StreamEvents, schemas.StreamResults, schemas.StreamDLQ, schemas.StreamAudit}
	natstest.Eventually(t, 15*time.Second, "streams provisioned after NATS came up", func() bool {
		for _, name := range streams {
			if _, err := p.Broker.JS.Stream(ctx, name); err != nil {
				return false
			}
		}
		return true
	})
	if rep := p.Health.Run(ctx); !rep.Ready {
		t.Errorf("not ready once NATS is up and the streams provisioned: %+v", rep)
	}
	if err := p.Broker.JS.DeleteStream(ctx, schemas.StreamEvents); err != nil {
		t.Fatal(err)
	}
	srv.Restart()
	natstest.Eventually(t, 15*time.Second, "FORGE_EVENTS provisioned again after a reconnect", func() bool {
		return p.Health.Run(ctx).Ready
	})
	p.Close()
	p.Close() // safe twice
}
