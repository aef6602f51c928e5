package platform

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/services/broker"
	"github.com/forgebus/forgebus/services/config"
	"github.com/forgebus/forgebus/services/health"
	"github.com/forgebus/forgebus/services/provision"
)

// Platform is a started service's shared parts.
type Platform struct {
	Config   config.Config
	Log      zerolog.Logger
	Broker   *broker.Broker
	Registry *prometheus.Registry
	// Health serves /healthz, /readyz and /metrics; add checks with
	// Health.Add.
	Health *health.Health

	stop func()         // stops the background provisioner, if any
	wg   sync.WaitGroup // the background provisioner
}

// StartOption changes how [Start] starts.
type StartOption func(*startOptions)

type startOptions struct {
	natsDown     bool
	natsAdvisory bool
}

// AllowNATSDown makes [Start] succeed while NATS is unreachable: the client
// keeps connecting in the background (see [broker.RetryConnect]: nothing is
// buffered client-side while disconnected), and the streams are provisioned
// as soon as it connects, retried with backoff, and again after every
// reconnect (a server that lost its store gets them back). When NATS is up
// at start, the streams are provisioned before Start returns, and a failure
// fails Start as without this option. Only ingest uses it: it spools while
// NATS is down; workers cannot work without it.
func AllowNATSDown() StartOption { return func(o *startOptions) { o.natsDown = true } }

// NATSAdvisory adds the NATS readiness check with [health.Health.AddAdvisory]:
// /readyz shows NATS down but stays 200. ingest uses it when its spool is on,
// since it then accepts deliveries while NATS is down.
func NATSAdvisory() StartOption { return func(o *startOptions) { o.natsAdvisory = true } }

// Start connects to NATS (starting the embedded server when cfg says so),
// provisions the streams, and sets up metrics and health. role names the
// NATS connection "forgebus-<role>". The caller calls [Platform.Close].
// See [AllowNATSDown] for a service that starts while NATS is down.
func Start(ctx context.Context, cfg config.Config, log zerolog.Logger, role string, opts ...StartOption) (*Platform, error) {
	var o startOptions
	for _, opt := range opts {
		opt(&o)
	}
	// The effective settings, never a secret: only how many there are.
	log.Info().Str("role", role).Str("instance", cfg.Instance).Str("data_dir", cfg.DataDir).
		Bool("nats_embedded", cfg.Embedded()).Str("config_file", cfg.File).
		Int("gogs_secrets", len(cfg.Gogs.Secrets)).Bool("allow_unsigned", cfg.Gogs.AllowUnsigned).
		Bool("spool", cfg.Spool.Enabled).Int("stream_replicas", cfg.Streams.Replicas).
		Msg("starting")
	bopts := []broker.Option{broker.WithRole(role), broker.CredsFile(role + ".creds")}
	var pv *provisioner
	if o.natsDown {
		pv = &provisioner{streams: cfg.Streams, log: log, kick: make(chan struct{}, 1)}
		bopts = append(bopts, broker.RetryConnect(), broker.OnConnect(pv.wake))
	}
	b, err := broker.Connect(ctx, cfg, log, bopts...)
	if err != nil {
		return nil, err
	}
	if !b.Admin() {
		// A role without stream rights (a worker, ingest on a cluster):
		// the operator provisions the streams.
		pv = nil
	} else if pv == nil || b.Conn.IsConnected() {
		if err := provision.Streams(ctx, b.JS, cfg.Streams); err != nil {
			b.Close()
			return nil, err
		}
		if pv != nil {
			pv.skipFirst = true
		}
	}
	reg := health.NewRegistry()
	p := &Platform{
		Config:   cfg,
		Log:      log,
		Broker:   b,
		Registry: reg,
		Health:   health.New(reg),
	}
	if o.natsAdvisory {
		p.Health.AddAdvisory(health.NATS(b.Conn, b.JS))
	} else {
		p.Health.Add(health.NATS(b.Conn, b.JS))
	}
	if pv != nil {
		pv.nc, pv.js = b.Conn, b.JS
		pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		p.stop = cancel
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			pv.run(pctx)
		}()
	}
	return p, nil
}

// Close stops background provisioning, drains the NATS client and stops
// the embedded server.
func (p *Platform) Close() {
	if p.stop != nil {
		p.stop()
		p.wg.Wait()
	}
	if p.Broker != nil {
		p.Broker.Close()
	}
}

// Mux returns a new mux with /healthz, /readyz and /metrics.
func (p *Platform) Mux() *http.ServeMux {
	mux := http.NewServeMux()
	p.Health.Register(mux)
	return mux
}

// ServeHTTP listens on addr and serves mux until ctx is done, then shuts
// down gracefully; see [Platform.Serve].
func (p *Platform) ServeHTTP(ctx context.Context, addr string, mux *http.ServeMux) error {
	ln, err := Listen(addr)
	if err != nil {
		return err
	}
	return p.Serve(ctx, ln, mux)
}

// Listen opens a TCP listener on addr with a clear error when it is taken.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (FORGEBUS_HTTP_ADDR): %w", addr, err)
	}
	return ln, nil
}

// Serve serves h on ln and logs the bound address. When ctx is done it stops
// accepting connections and waits for in-flight requests to finish, at
// most Config.ShutdownGrace; it returns nil after a clean stop.
func (p *Platform) Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	return Serve(ctx, ln, h, p.Config.ShutdownGrace, p.Log)
}

// Serve is [Platform.Serve] without a platform.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, grace time.Duration, log zerolog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		// In-flight requests keep running through a shutdown.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	log.Info().Str("http_addr", ln.Addr().String()).Msg("http listening")
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		return fmt.Errorf("serve http on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	log.Info().Str("grace", grace.String()).Msg("http shutting down: finishing in-flight requests")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		srv.Close()
		return fmt.Errorf("shutdown http: %w", err)
	}
	log.Info().Msg("http stopped")
	return nil
}
