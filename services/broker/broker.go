package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/services/config"
	"github.com/forgebus/forgebus/services/creds"
)

const (
	readyTimeout = 10 * time.Second
	drainTimeout = 10 * time.Second
)

// Broker is a live connection to JetStream, and the embedded server when
// there is one.
type Broker struct {
	// Conn is the client connection.
	Conn *nats.Conn
	// JS is the JetStream API on Conn.
	JS jetstream.JetStream

	srv     *server.Server
	store   *creds.Store
	role    string
	closed  chan struct{}
	closing atomic.Bool
	log     zerolog.Logger
}

type options struct {
	name         string
	clientOnly   bool
	retryConnect bool
	onConnect    []func()
	credsFile    string
	inbox        string
}

// Option changes how [Connect] connects.
type Option func(*options)

// WithRole names the client connection "forgebus-<role>", as the server's
// connection list shows it. The default role is "service".
func WithRole(role string) Option { return func(o *options) { o.name = "forgebus-" + role } }

// CredsFile names the credentials file in <data_dir>/creds that a client
// uses when FORGEBUS_NATS_CREDS is unset and that file exists (else
// operator.creds when it exists): a worker's own role's file.
func CredsFile(name string) Option { return func(o *options) { o.credsFile = name } }

// ClientOnly never starts an embedded server: with no FORGEBUS_NATS_URL it
// connects to the embedded server of another forgebus process at
// nats://FORGEBUS_NATS_LISTEN. Tools such as "forgebus events tail" use it.
func ClientOnly() Option { return func(o *options) { o.clientOnly = true } }

// RetryConnect makes [Connect] return a [Broker] even when no NATS server
// can be reached yet: the client keeps trying in the background, as it does
// after any disconnect, and [OnConnect] callbacks run once it is connected.
// It also turns off the client's reconnect buffer (nats.ReconnectBufSize(-1)):
// a publish while disconnected fails at once instead of being held in memory
// and sent later behind its caller's back. ingest uses it so that it starts,
// and spools, while NATS is down.
func RetryConnect() Option { return func(o *options) { o.retryConnect = true } }

// OnConnect runs f every time the client connects: the first time
// (immediately after [Connect] returns when it connected at once) and after
// every reconnect. f runs on the client's callback goroutine and must not
// block.
func OnConnect(f func()) Option {
	return func(o *options) {
		if f != nil {
			o.onConnect = append(o.onConnect, f)
		}
	}
}

// EmbeddedMaxPayload is the embedded server's max message size. An external
// server keeps its own (1 MiB by default): ingest answers 413 to an event
// larger than the server takes.
const EmbeddedMaxPayload = 8 << 20

// Connect starts the embedded server when cfg has no NATS URL (unless
// [ClientOnly]), then connects a client to it or to the external servers.
// The caller calls [Broker.Close].
func Connect(ctx context.Context, cfg config.Config, log zerolog.Logger, opts ...Option) (*Broker, error) {
	o := options{name: "forgebus-service"}
	for _, opt := range opts {
		opt(&o)
	}
	b := &Broker{closed: make(chan struct{}), log: log}
	url := cfg.ClientURL()
	if cfg.Embedded() && !o.clientOnly {
		if !cfg.NATS.NoAuth {
			st, err := creds.Open(cfg.CredsDir())
			if err != nil {
				return nil, err
			}
			if err := st.EnsureServices(creds.Workers); err != nil {
				return nil, err
			}
			b.store = st
			// The server's owner administers it: provisioning, streams.
			cfg.NATS.Creds, cfg.NATS.User = st.Path(creds.OperatorCreds), ""
		}
		srv, err := startEmbedded(cfg, b.store, log)
		if err != nil {
			return nil, err
		}
		b.srv = srv
		url = srv.ClientURL()
	} else if cfg.NATS.Creds == "" && cfg.NATS.User == "" {
		cfg.NATS.Creds = defaultCreds(cfg, o.credsFile)
	}
	if cfg.NATS.Creds != "" {
		role, inbox, err := readCreds(cfg.NATS.Creds)
		if err != nil {
			b.shutdownServer()
			return nil, err
		}
		b.role, o.inbox = role, inbox
	}
	nc, err := nats.Connect(url, b.clientOptions(ctx, cfg, o)...)
	if err != nil {
		b.shutdownServer()
		return nil, fmt.Errorf("connect to nats %s: %w", redactURLs(url), err)
	}
	b.Conn = nc
	// The workers publish results and idempotency records asynchronously
	// and wait for each ack with their own deadline; this timeout only
	// clears an ack that never comes (a connection lost mid-publish) from
	// the client's pending list.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(asyncAckTimeout))
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	b.JS = js
	if !nc.IsConnected() {
		// Only with RetryConnect: the connect handler logs the connection.
		log.Warn().Str("nats_url", redactURLs(url)).Msg("nats unreachable: retrying in the background")
	}
	return b, nil
}

// asyncAckTimeout bounds how long an async publish waits for its ack.
const asyncAckTimeout = time.Minute

func (b *Broker) clientOptions(ctx context.Context, cfg config.Config, o options) []nats.Option {
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d > 0 && d < timeout {
			timeout = d
		}
	}
	opts := []nats.Option{
		nats.Name(o.name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.Timeout(timeout),
		// A partitioned node keeps the TCP connection open and silent: give
		// it up after three unanswered pings, not the client's default
		// minutes, and reconnect to another node.
		nats.PingInterval(5 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if b.closing.Load() {
				return
			}
			ev := b.log.Warn()
			if err != nil {
				ev = ev.Err(err)
			}
			ev.Msg("nats disconnected")
		}),
		nats.ConnectHandler(func(nc *nats.Conn) {
			b.log.Info().Str("nats_url", redactURLs(nc.ConnectedUrlRedacted())).Bool("embedded", b.srv != nil).Msg("connected to nats")
			for _, f := range o.onConnect {
				f()
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.log.Info().Str("nats_url", redactURLs(nc.ConnectedUrlRedacted())).Msg("nats reconnected")
			for _, f := range o.onConnect {
				f()
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			ev := b.log.Error().Err(err)
			if sub != nil {
				ev = ev.Str("subject", sub.Subject)
			}
			ev.Msg("nats async error")
		}),
		nats.ClosedHandler(func(*nats.Conn) { close(b.closed) }),
	}
	if o.retryConnect {
		opts = append(opts, nats.RetryOnFailedConnect(true), nats.ReconnectBufSize(-1))
	}
	n := cfg.NATS
	if o.inbox != "" {
		opts = append(opts, nats.CustomInboxPrefix(o.inbox))
	}
	if n.Creds != "" {
		opts = append(opts, nats.UserCredentials(n.Creds))
	}
	if n.TLS.CA != "" {
		opts = append(opts, nats.RootCAs(n.TLS.CA))
	}
	if n.TLS.Cert != "" {
		opts = append(opts, nats.ClientCert(n.TLS.Cert, n.TLS.Key))
	}
	if n.User != "" {
		opts = append(opts, nats.UserInfo(n.User, n.Password.Reveal()))
	}
	return opts
}

func startEmbedded(cfg config.Config, store *creds.Store, log zerolog.Logger) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(cfg.NATS.Listen)
	if err != nil {
		return nil, fmt.Errorf("FORGEBUS_NATS_LISTEN %q: %w", cfg.NATS.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("FORGEBUS_NATS_LISTEN %q: bad port", cfg.NATS.Listen)
	}
	// The server only logs a bind failure; find out first, and say what to do.
	if port != 0 {
		ln, err := net.Listen("tcp", cfg.NATS.Listen)
		if err != nil {
			return nil, fmt.Errorf("%w: another forgebus or nats-server is running on %s? set FORGEBUS_NATS_LISTEN (or FORGEBUS_NATS_URL to use that server): %v",
				ErrListenInUse, cfg.NATS.Listen, err)
		}
		ln.Close()
	}
	dir := cfg.NATSDir()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("nats store %s: %w", dir, err)
	}
	opts := &server.Options{
		ServerName: "forgebus",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		SyncAlways: cfg.NATS.SyncAlways,
		NoSigs:     true,
		// Room for the largest delivery ingest accepts by default (5 MiB)
		// once normalized; the NATS default is 1 MiB.
		MaxPayload: EmbeddedMaxPayload,
	}
	if store != nil {
		if err := store.Configure(opts); err != nil {
			return nil, fmt.Errorf("embedded nats-server auth: %w", err)
		}
	} else {
		// Validate allows this on a loopback address only.
		log.Warn().Str("nats_listen", cfg.NATS.Listen).Msg("FORGEBUS_NATS_AUTH=off: the embedded NATS server lets in any local client without credentials")
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats-server: %w", err)
	}
	srv.SetLoggerV2(serverLog{log.With().Str("component", "nats-server").Logger()}, true, false, false)
	srv.Start()
	if !srv.ReadyForConnections(readyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("%w on %s within %s", ErrNotReady, cfg.NATS.Listen, readyTimeout)
	}
	log.Info().Str("nats_listen", srv.Addr().String()).Str("store_dir", dir).Bool("sync_always", cfg.NATS.SyncAlways).Bool("auth", store != nil).Msg("embedded nats-server started")
	return srv, nil
}

// Embedded reports whether b runs the embedded server.
func (b *Broker) Embedded() bool { return b.srv != nil }

// ClientURL is the URL other processes use to reach the embedded server, or
// "" when there is none.
func (b *Broker) ClientURL() string {
	if b.srv == nil {
		return ""
	}
	return b.srv.ClientURL()
}

// Close drains the client (pending publishes and subscriptions finish), then
// shuts the embedded server down. It is safe to call more than once.
func (b *Broker) Close() {
	b.closing.Store(true)
	if b.Conn != nil && !b.Conn.IsClosed() {
		if err := b.Conn.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			b.Conn.Close()
		}
		select {
		case <-b.closed:
		case <-time.After(drainTimeout):
			b.log.Warn().Dur("timeout", drainTimeout).Msg("nats drain timed out")
			b.Conn.Close()
		}
	}
	b.shutdownServer()
}

func (b *Broker) shutdownServer() {
	if b.srv == nil {
		return
	}
	b.srv.Shutdown()
	b.srv.WaitForShutdown()
	b.srv = nil
	b.log.Info().Msg("embedded nats-server stopped")
}

// serverLog sends the embedded server's log to zerolog: notices, debug and
// trace at debug level, warnings and errors at their own.
type serverLog struct{ log zerolog.Logger }

func (l serverLog) Noticef(format string, v ...any) { l.log.Debug().Msgf(format, v...) }
func (l serverLog) Warnf(format string, v ...any)   { l.log.Warn().Msgf(format, v...) }
func (l serverLog) Fatalf(format string, v ...any)  { l.log.Error().Msgf(format, v...) }
func (l serverLog) Errorf(format string, v ...any)  { l.log.Error().Msgf(format, v...) }
func (l serverLog) Debugf(format string, v ...any)  { l.log.Debug().Msgf(format, v...) }
func (l serverLog) Tracef(format string, v ...any)  { l.log.Trace().Msgf(format, v...) }
