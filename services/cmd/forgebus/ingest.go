package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/forgebus/forgebus/ingest"
	"github.com/forgebus/forgebus/ingest/spool"
	"github.com/forgebus/forgebus/services/broker"
	"github.com/forgebus/forgebus/services/platform"
)

// hooksPath is where Gogs posts deliveries.
const hooksPath = "/hooks/gogs"

func init() { register(newIngestCmd) }

func newIngestCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ingest",
		Short: "Receive Gogs webhooks on POST " + hooksPath + " and publish them to JetStream",
		Long: `ingest verifies each Gogs delivery's signature, normalizes it into a
CloudEvent and answers 202 only after JetStream has stored it (or, with the
spool on, after it is on local disk while JetStream is unreachable). It also
serves /healthz, /readyz and /metrics on the same address. SIGINT or SIGTERM
stops accepting and finishes in-flight requests.

ingest starts even while NATS is unreachable, and provisions the streams
once it connects. Meanwhile, with the spool on (the default), it spools
every verified delivery and /readyz answers 200 with "nats" failing but
advisory, as long as the spool has room (503 once it is full); with
FORGEBUS_SPOOL=off it answers deliveries 503 with Retry-After, and /readyz
503. Each replica needs its own spool directory: a second process on the
same one exits with "spool directory locked by another process".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := setup(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			ln, err := platform.Listen(cfg.HTTPAddr)
			if err != nil {
				return err
			}
			defer ln.Close()
			// ingest starts while NATS is down: it spools (or answers 503)
			// until NATS is back. With the spool on, /readyz stays 200 while
			// the spool has room, showing NATS down as an advisory check.
			popts := []platform.StartOption{platform.AllowNATSDown()}
			if cfg.Spool.Enabled {
				popts = append(popts, platform.NATSAdvisory())
			}
			p, err := platform.Start(ctx, cfg, log, "ingest", popts...)
			if err != nil {
				return err
			}
			defer p.Close()
			svc, err := newIngestService(ctx, p)
			if err != nil {
				return err
			}
			defer svc.close()
			return runAll(ctx, p, svc.runners(ln))
		},
	}
	addFlag(cmd, "http-addr", "HTTP listen address")
	addFlag(cmd, "data-dir", "data directory")
	addFlag(cmd, "nats-url", "NATS server URLs; empty starts an embedded server")
	addFlag(cmd, "nats-listen", "embedded NATS server listen address")
	addFlag(cmd, "instance", "forge instance name in event subjects")
	return cmd
}

// ingestService is the webhook handler on the platform's mux, and the spool
// with its forwarder when the spool is on.
type ingestService struct {
	p     *platform.Platform
	js    jetstream.JetStream
	conn  *broker.Broker
	mux   *http.ServeMux
	spool *spool.Spool
}

// newIngestService builds the handler. Beside an embedded server it
// publishes over a connection of its own, as the ingest role; otherwise
// over the platform's.
func newIngestService(ctx context.Context, p *platform.Platform) (*ingestService, error) {
	cfg := p.Config
	log := p.Log.With().Str("component", "ingest").Logger()
	s := &ingestService{p: p, js: p.Broker.JS}
	if p.Broker.Embedded() {
		b, err := p.Broker.DialRole(ctx, cfg, p.Log, "ingest")
		if err != nil {
			return nil, fmt.Errorf("ingest: %w", err)
		}
		s.conn, s.js = b, b.JS
	}
	opts := []ingest.Option{ingest.WithMetrics(ingest.NewMetrics(p.Registry))}
	if cfg.Spool.Enabled {
		sp, err := spool.Open(cfg.SpoolDir(), spool.Limits{
			MaxBytes:   int64(cfg.Spool.MaxBytes),
			MaxEntries: cfg.Spool.MaxEntries,
		}, p.Log.With().Str("component", "spool").Logger())
		if err != nil {
			s.close()
			return nil, fmt.Errorf("open spool %s: %w", cfg.SpoolDir(), err)
		}
		s.spool = sp
		spool.NewMetrics(p.Registry, sp)
		p.Health.Add(spoolCheck(sp, cfg.Spool.MaxEntries, int64(cfg.Spool.MaxBytes)))
		opts = append(opts, ingest.WithSpool(spooler{sp}))
	}
	h, err := ingest.NewHandler(ingest.Config{
		Secrets:          cfg.SecretBytes(),
		AllowUnsigned:    cfg.Gogs.AllowUnsigned,
		MaxBodyBytes:     int64(cfg.Ingest.MaxBodyBytes),
		MaxInFlight:      cfg.Ingest.MaxInFlight,
		MaxBufferedBytes: int64(cfg.Ingest.MaxBufferedBytes),
		PublishTimeout:   cfg.Ingest.PublishTimeout,
		RetryAfter:       cfg.Ingest.RetryAfter,
		Instance:         cfg.Instance,
		Source:           cfg.Source(),
	}, s.js, log, opts...)
	if err != nil {
		s.close()
		return nil, usage(fmt.Errorf("ingest: %w", err))
	}
	switch {
	case cfg.Gogs.AllowUnsigned && len(cfg.Gogs.Secrets) > 0:
		log.Warn().Msg("FORGEBUS_ALLOW_UNSIGNED is ignored: secrets are configured, so deliveries without a signature are refused")
	case cfg.Gogs.AllowUnsigned:
		log.Warn().Msg("FORGEBUS_ALLOW_UNSIGNED is on: deliveries without a signature are accepted")
	}
	s.mux = p.Mux()
	// No method in the pattern: the handler answers other methods with its
	// own JSON 405.
	s.mux.Handle(hooksPath, h)
	return s, nil
}

// runners are the HTTP server on ln and, with the spool on, its forwarder.
func (s *ingestService) runners(ln net.Listener) []runner {
	rs := []runner{{name: "ingest", run: func(ctx context.Context) error { return s.p.Serve(ctx, ln, s.mux) }}}
	if s.spool != nil {
		rs = append(rs, runner{name: "spool-forwarder", run: func(ctx context.Context) error {
			return s.spool.Forward(ctx, s.js, spool.WithPublishTimeout(s.p.Config.Ingest.PublishTimeout))
		}})
	}
	return rs
}

// close closes the spool (what is left in it is forwarded at the next
// start) and ingest's own connection.
func (s *ingestService) close() {
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
	if s.spool == nil {
		return
	}
	if err := s.spool.Close(); err != nil {
		s.p.Log.Error().Err(err).Msg("close spool")
	}
	s.spool = nil
}

// spooler adapts [spool.Spool] to [ingest.Spooler].
type spooler struct{ s *spool.Spool }

func (a spooler) Append(msgID, subject string, data []byte) error {
	err := a.s.Append(spool.Entry{MsgID: msgID, Subject: subject, Data: data})
	if errors.Is(err, spool.ErrFull) {
		return fmt.Errorf("%w: %w", ingest.ErrSpoolFull, err)
	}
	return err
}

func (a spooler) Depth() int { return a.s.Depth() }

// spoolCheck reports the spool's depth and oldest age on /readyz; it fails
// only when the spool is full, since ingest accepts deliveries until then.
func spoolCheck(sp *spool.Spool, maxEntries int, maxBytes int64) func(context.Context) (string, bool, any) {
	return func(context.Context) (string, bool, any) {
		st := sp.Stats()
		age := 0.0
		if !st.Oldest.IsZero() {
			age = time.Since(st.Oldest).Seconds()
		}
		full := (maxEntries > 0 && st.Depth >= maxEntries) || (maxBytes > 0 && st.Bytes >= maxBytes)
		return "spool", !full, map[string]any{
			"depth":              st.Depth,
			"bytes":              st.Bytes,
			"oldest_age_seconds": age,
			"full":               full,
		}
	}
}
