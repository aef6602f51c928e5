package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// gogsTimeout is how long Gogs waits for an answer to a delivery;
// maxPublishTimeout leaves the answer time to reach it (ingest's bound too).
const (
	gogsTimeout       = 15 * time.Second
	maxPublishTimeout = 10 * time.Second
)

// instanceRE is a sane subject token: lower-case letters, digits, '-' and
// '_', starting with a letter or digit.
var instanceRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// Source is the CloudEvents source of accepted events: SourceURL, else
// Gogs.URL, else "" (ingest then derives it from each payload's repository
// URL).
func (c Config) Source() string {
	if c.SourceURL != "" {
		return c.SourceURL
	}
	return c.Gogs.URL
}

// Validate reports every problem of c, one per line, each wrapping
// [ErrInvalid], [ErrConflict] or [ErrNoSecret].
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, invalid(format, a...)) }

	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		bad("FORGEBUS_HTTP_ADDR %q: want host:port, e.g. :8080", c.HTTPAddr)
	}
	if c.ShutdownGrace <= 0 {
		bad("FORGEBUS_SHUTDOWN_GRACE must be positive")
	}
	if !instanceRE.MatchString(c.Instance) {
		bad("FORGEBUS_INSTANCE %q: want 1-63 of a-z, 0-9, '-', '_', starting with a letter or digit", c.Instance)
	}
	if c.SourceURL != "" {
		if err := checkURL(c.SourceURL, "http", "https", "urn"); err != nil {
			bad("FORGEBUS_SOURCE_URL: %v", err)
		}
	}
	if c.DataDir == "" {
		bad("FORGEBUS_DATA_DIR must not be empty")
	}
	if _, err := zerolog.ParseLevel(c.Log.Level); err != nil || c.Log.Level == "" {
		bad("FORGEBUS_LOG_LEVEL %q: want trace, debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "console", "auto":
	default:
		bad("FORGEBUS_LOG_FORMAT %q: want json, console or auto", c.Log.Format)
	}

	if len(c.Gogs.Secrets) == 0 && !c.Gogs.AllowUnsigned {
		errs = append(errs, ErrNoSecret)
	}
	if c.Gogs.URL != "" {
		if err := checkURL(c.Gogs.URL, "http", "https"); err != nil {
			bad("FORGEBUS_GOGS_URL: %v", err)
		}
	}

	if c.Gogs.APITimeout <= 0 {
		bad("FORGEBUS_GOGS_API_TIMEOUT: must be positive, got %v", c.Gogs.APITimeout)
	}

	if c.NATS.URL != "" {
		for _, u := range strings.Split(c.NATS.URL, ",") {
			if err := checkURL(strings.TrimSpace(u), "nats", "tls", "ws", "wss"); err != nil {
				bad("FORGEBUS_NATS_URL: %v", err)
			}
		}
	} else if _, _, err := net.SplitHostPort(c.NATS.Listen); err != nil {
		bad("FORGEBUS_NATS_LISTEN %q: want host:port, e.g. 127.0.0.1:4222", c.NATS.Listen)
	}
	if c.NATS.NoAuth && c.NATS.URL == "" && !loopback(c.NATS.Listen) {
		bad("FORGEBUS_NATS_AUTH=off is only allowed on a loopback FORGEBUS_NATS_LISTEN, not %q", c.NATS.Listen)
	}
	if (c.NATS.TLS.Cert == "") != (c.NATS.TLS.Key == "") {
		bad("FORGEBUS_NATS_TLS_CERT and FORGEBUS_NATS_TLS_KEY go together")
	}
	if (c.NATS.User == "") != c.NATS.Password.IsZero() {
		bad("FORGEBUS_NATS_USER and FORGEBUS_NATS_PASSWORD go together")
	}
	if c.NATS.Creds != "" && c.NATS.User != "" {
		errs = append(errs, fmt.Errorf("%w: FORGEBUS_NATS_CREDS and FORGEBUS_NATS_USER: set one", ErrConflict))
	}

	s := c.Streams
	if s.Replicas < 1 || s.Replicas > 5 {
		bad("FORGEBUS_STREAM_REPLICAS %d: want 1 to 5 (1 on one node, 3 on a cluster)", s.Replicas)
	}
	if s.Replicas > 1 && c.Embedded() {
		bad("FORGEBUS_STREAM_REPLICAS %d needs a NATS cluster (FORGEBUS_NATS_URL): the embedded server is one node", s.Replicas)
	}
	if s.DuplicateWindow <= 0 {
		bad("FORGEBUS_DUPLICATE_WINDOW must be positive")
	}
	for _, l := range []struct {
		name string
		lim  StreamLimits
	}{{"events", s.Events}, {"results", s.Results}, {"dlq", s.DLQ}, {"audit", s.Audit}} {
		if l.lim.MaxAge < 0 || l.lim.MaxBytes < 0 {
			bad("streams.%s: max_age and max_bytes must not be negative", l.name)
		}
	}
	if s.Audit.MaxBytes > 0 {
		// The server would drop the oldest records by size, with no
		// checkpoint before them: the log could no longer be verified.
		bad("streams.audit.max_bytes %d: the audit log is bounded by age only (streams.audit.max_age, with checkpoints); see docs/audit.md", s.Audit.MaxBytes)
	}
	if s.Events.MaxAge > 0 && s.DuplicateWindow > s.Events.MaxAge {
		bad("FORGEBUS_DUPLICATE_WINDOW %s is longer than FORGEBUS_STREAM_MAX_AGE %s", s.DuplicateWindow, s.Events.MaxAge)
	}

	in := c.Ingest
	if in.MaxBodyBytes <= 0 || in.MaxBodyBytes > 1<<30 {
		bad("FORGEBUS_MAX_BODY_BYTES %d: want 1 byte to 1GiB", in.MaxBodyBytes)
	}
	if in.MaxInFlight <= 0 {
		bad("FORGEBUS_MAX_IN_FLIGHT %d: want at least 1", in.MaxInFlight)
	}
	if in.MaxBufferedBytes <= in.MaxBodyBytes {
		bad("FORGEBUS_MAX_BUFFERED_BYTES %d: want more than FORGEBUS_MAX_BODY_BYTES %d, or no body of the largest size fits", in.MaxBufferedBytes, in.MaxBodyBytes)
	}
	if in.PublishTimeout <= 0 || in.PublishTimeout > maxPublishTimeout {
		bad("FORGEBUS_PUBLISH_TIMEOUT %s: want more than 0 and at most %s (Gogs gives up after %s)", in.PublishTimeout, maxPublishTimeout, gogsTimeout)
	}
	if in.RetryAfter <= 0 {
		bad("FORGEBUS_RETRY_AFTER must be positive")
	}

	if c.Spool.Enabled {
		if c.Spool.MaxBytes <= 0 {
			bad("FORGEBUS_SPOOL_MAX_BYTES must be positive")
		}
		if c.Spool.MaxEntries <= 0 {
			bad("FORGEBUS_SPOOL_MAX_ENTRIES must be positive")
		}
	}
	return errors.Join(errs...)
}

func checkURL(raw string, schemes ...string) error {
	u, err := url.Parse(raw)
	if err != nil {
		// raw may carry a password: never echo it.
		return errors.New("not a URL")
	}
	shown := u.Redacted()
	for _, s := range schemes {
		if u.Scheme == s {
			if s != "urn" && u.Host == "" {
				return fmt.Errorf("%q has no host", shown)
			}
			return nil
		}
	}
	return fmt.Errorf("%q: scheme must be one of %s", shown, strings.Join(schemes, ", "))
}

// loopback reports whether addr's host is a loopback address or localhost.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
