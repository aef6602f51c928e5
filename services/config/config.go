package config

import (
	"fmt"
	"path/filepath"
	"time"

	"go.yaml.in/yaml/v3"
)

// Defaults.
const (
	DefaultHTTPAddr        = ":8080"
	DefaultNATSListen      = "127.0.0.1:4222"
	DefaultDataDir         = "./data"
	DefaultInstance        = "gogs"
	DefaultLogLevel        = "info"
	DefaultLogFormat       = "auto"
	DefaultMaxBodyBytes    = 5 << 20
	DefaultMaxInFlight     = 4096
	DefaultMaxBuffered     = 64 << 20
	DefaultPublishTimeout  = 3 * time.Second
	DefaultRetryAfter      = 5 * time.Second
	DefaultShutdownGrace   = 10 * time.Second
	DefaultGogsAPITimeout  = 15 * time.Second
	DefaultReplicas        = 1
	DefaultDuplicateWindow = 24 * time.Hour
	DefaultEventsMaxAge    = 30 * 24 * time.Hour
	DefaultResultsMaxAge   = 30 * 24 * time.Hour
	DefaultSpoolMaxBytes   = 1 << 30
	DefaultSpoolMaxEntries = 100000
)

// Config is the whole configuration of the forgebus program. Build it with
// [Default] or [Load], then call [Config.Validate].
//
// The yaml tags are the config file's keys; fields tagged "-" are secrets or
// bookkeeping and come only from the environment.
type Config struct {
	// HTTPAddr is where ingest listens (FORGEBUS_HTTP_ADDR).
	HTTPAddr string `yaml:"http_addr"`
	// ShutdownGrace bounds how long a graceful stop waits for in-flight work
	// (FORGEBUS_SHUTDOWN_GRACE).
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// Instance names this forge in event subjects (FORGEBUS_INSTANCE).
	Instance string `yaml:"instance"`
	// SourceURL is the CloudEvents source (FORGEBUS_SOURCE_URL); see
	// [Config.Source].
	SourceURL string `yaml:"source_url"`
	// DataDir holds the embedded server's store and the spool (FORGEBUS_DATA_DIR).
	DataDir string `yaml:"data_dir"`

	Log     Log     `yaml:"log"`
	Gogs    Gogs    `yaml:"gogs"`
	NATS    NATS    `yaml:"nats"`
	Streams Streams `yaml:"streams"`
	Ingest  Ingest  `yaml:"ingest"`
	Spool   Spool   `yaml:"spool"`
	Console Console `yaml:"console"`

	// AuditKeyFile is the audit worker's ed25519 signing key
	// (FORGEBUS_AUDIT_KEY_FILE); see [Config.AuditKeyPath].
	AuditKeyFile string `yaml:"-"`

	// ModelsSecret is the models worker's secret (FORGEBUS_MODELS_SECRET[_FILE]).
	ModelsSecret Secret `yaml:"-"`

	// SecretFiles are the *_FILE secret files read; see [Config.SecretValues].
	SecretFiles []string `yaml:"-" json:"-"`

	// BuildPath is the PATH the docs and models workers run git and build
	// commands with: FORGEBUS_BUILD_PATH, else this process's PATH.
	BuildPath string `yaml:"-"`

	// Workers holds each worker's own section of the config file, keyed by
	// worker name, for the worker package to decode.
	Workers map[string]yaml.Node `yaml:"workers"`

	// File is the config file that was read, if any (FORGEBUS_CONFIG).
	File string `yaml:"-"`
}

// Log configures logging.
type Log struct {
	// Level is a zerolog level name (FORGEBUS_LOG_LEVEL).
	Level string `yaml:"level"`
	// Format is json, console or auto (FORGEBUS_LOG_FORMAT).
	Format string `yaml:"format"`
}

// Gogs configures the forge.
type Gogs struct {
	// Secrets are the webhook secrets; a delivery signed with any of them is
	// accepted (FORGEBUS_GOGS_SECRETS or FORGEBUS_GOGS_SECRETS_FILE).
	Secrets []Secret `yaml:"-"`
	// AllowUnsigned accepts deliveries without a signature
	// (FORGEBUS_ALLOW_UNSIGNED).
	AllowUnsigned bool `yaml:"allow_unsigned"`
	// URL is the Gogs base URL for API calls and clones (FORGEBUS_GOGS_URL).
	URL string `yaml:"url"`
	// Token is the Gogs API token (FORGEBUS_GOGS_TOKEN[_FILE]).
	Token Secret `yaml:"-"`
	// APITimeout bounds each Gogs API call (FORGEBUS_GOGS_API_TIMEOUT).
	APITimeout time.Duration `yaml:"api_timeout"`
}

// NATS configures the broker connection.
type NATS struct {
	// URL lists external servers, comma-separated; empty starts an embedded
	// server (FORGEBUS_NATS_URL).
	URL string `yaml:"url"`
	// Listen is the embedded server's client address (FORGEBUS_NATS_LISTEN).
	Listen string `yaml:"listen"`
	// SyncAlways makes the embedded server fsync every write
	// (FORGEBUS_NATS_SYNC_ALWAYS).
	SyncAlways bool `yaml:"sync_always"`
	// NoAuth starts the embedded server without authentication
	// (FORGEBUS_NATS_AUTH=off); only on a loopback listen address.
	NoAuth bool `yaml:"no_auth"`
	// Creds is a credentials file (FORGEBUS_NATS_CREDS).
	Creds string `yaml:"creds"`
	// TLS holds client TLS files.
	TLS TLS `yaml:"tls"`
	// User and Password authenticate to an external server
	// (FORGEBUS_NATS_USER, FORGEBUS_NATS_PASSWORD[_FILE]).
	User     string `yaml:"user"`
	Password Secret `yaml:"-"`
}

// TLS names PEM files (FORGEBUS_NATS_TLS_CA, _CERT, _KEY).
type TLS struct {
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Streams configures the JetStream streams.
type Streams struct {
	// Replicas of every stream (FORGEBUS_STREAM_REPLICAS): 1, or 3 on a cluster.
	Replicas int `yaml:"replicas"`
	// DuplicateWindow of FORGE_EVENTS: a redelivery with the same delivery id
	// inside it is stored once (FORGEBUS_DUPLICATE_WINDOW).
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
	// Per-stream limits. FORGEBUS_STREAM_MAX_AGE sets Events.MaxAge.
	Events  StreamLimits `yaml:"events"`
	Results StreamLimits `yaml:"results"`
	DLQ     StreamLimits `yaml:"dlq"`
	Audit   StreamLimits `yaml:"audit"`
}

// StreamLimits bound one stream. Zero means unlimited.
type StreamLimits struct {
	MaxAge   time.Duration `yaml:"max_age"`
	MaxBytes ByteSize      `yaml:"max_bytes"`
}

// Ingest configures the webhook handler.
type Ingest struct {
	// MaxBodyBytes caps a delivery's body (FORGEBUS_MAX_BODY_BYTES).
	MaxBodyBytes ByteSize `yaml:"max_body_bytes"`
	// MaxInFlight bounds the requests handled at once; past it, 503 with
	// Retry-After (FORGEBUS_MAX_IN_FLIGHT).
	MaxInFlight int `yaml:"max_in_flight"`
	// MaxBufferedBytes bounds the body bytes all requests hold at once;
	// past it, 503 with Retry-After (FORGEBUS_MAX_BUFFERED_BYTES).
	MaxBufferedBytes ByteSize `yaml:"max_buffered_bytes"`
	// PublishTimeout bounds the wait for the JetStream ack
	// (FORGEBUS_PUBLISH_TIMEOUT).
	PublishTimeout time.Duration `yaml:"publish_timeout"`
	// RetryAfter is the Retry-After of a 503 (FORGEBUS_RETRY_AFTER).
	RetryAfter time.Duration `yaml:"retry_after"`
}

// Spool configures ingest's local spool for when the broker is down.
type Spool struct {
	// Enabled turns the spool on (FORGEBUS_SPOOL).
	Enabled bool `yaml:"enabled"`
	// Dir defaults to <DataDir>/spool (FORGEBUS_SPOOL_DIR).
	Dir string `yaml:"dir"`
	// MaxBytes and MaxEntries bound it (FORGEBUS_SPOOL_MAX_BYTES, _MAX_ENTRIES).
	MaxBytes   ByteSize `yaml:"max_bytes"`
	MaxEntries int      `yaml:"max_entries"`
}

// Default returns the built-in defaults.
func Default() Config {
	return Config{
		HTTPAddr:      DefaultHTTPAddr,
		ShutdownGrace: DefaultShutdownGrace,
		Instance:      DefaultInstance,
		DataDir:       DefaultDataDir,
		Log:           Log{Level: DefaultLogLevel, Format: DefaultLogFormat},
		NATS:          NATS{Listen: DefaultNATSListen},
		Gogs:          Gogs{APITimeout: DefaultGogsAPITimeout},
		Streams: Streams{
			Replicas:        DefaultReplicas,
			DuplicateWindow: DefaultDuplicateWindow,
			Events:          StreamLimits{MaxAge: DefaultEventsMaxAge},
			Results:         StreamLimits{MaxAge: DefaultResultsMaxAge},
		},
		Ingest: Ingest{
			MaxBodyBytes:     DefaultMaxBodyBytes,
			MaxInFlight:      DefaultMaxInFlight,
			MaxBufferedBytes: DefaultMaxBuffered,
			PublishTimeout:   DefaultPublishTimeout,
			RetryAfter:       DefaultRetryAfter,
		},
		Spool: Spool{
			Enabled:    true,
			MaxBytes:   DefaultSpoolMaxBytes,
			MaxEntries: DefaultSpoolMaxEntries,
		},
		Console: defaultConsole(),
	}
}

// NATSDir is the embedded server's store directory.
func (c Config) NATSDir() string { return filepath.Join(c.DataDir, "nats") }

// AuditKeyPath is the audit signing key file: AuditKeyFile, or
// <DataDir>/creds/audit.key, where "forgebus dev" creates one.
func (c Config) AuditKeyPath() string {
	if c.AuditKeyFile != "" {
		return c.AuditKeyFile
	}
	return filepath.Join(c.DataDir, "creds", "audit.key")
}

// CredsDir holds the embedded server's keys and each role's credentials.
func (c Config) CredsDir() string { return filepath.Join(c.DataDir, "creds") }

// SpoolDir is the spool directory: Spool.Dir, or <DataDir>/spool.
func (c Config) SpoolDir() string {
	if c.Spool.Dir != "" {
		return c.Spool.Dir
	}
	return filepath.Join(c.DataDir, "spool")
}

// Embedded reports whether the program runs its own NATS server.
func (c Config) Embedded() bool { return c.NATS.URL == "" }

// ClientURL is the URL a client connects to: NATS.URL, or the embedded
// server's listen address.
func (c Config) ClientURL() string {
	if c.NATS.URL != "" {
		return c.NATS.URL
	}
	return "nats://" + c.NATS.Listen
}

// SecretBytes returns the Gogs secrets as byte slices, as ingest takes them.
func (c Config) SecretBytes() [][]byte {
	out := make([][]byte, len(c.Gogs.Secrets))
	for i, s := range c.Gogs.Secrets {
		out[i] = s.Bytes()
	}
	return out
}

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}
