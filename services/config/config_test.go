package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func revealAll(ss []Secret) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Reveal())
	}
	return out
}

func TestLoadDefaults(t *testing.T) {
	c, err := Load(envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"http addr", c.HTTPAddr, ":8080"},
		{"instance", c.Instance, "gogs"},
		{"data dir", c.DataDir, "./data"},
		{"nats listen", c.NATS.Listen, "127.0.0.1:4222"},
		{"embedded", c.Embedded(), true},
		{"client url", c.ClientURL(), "nats://127.0.0.1:4222"},
		{"allow unsigned", c.Gogs.AllowUnsigned, false},
		{"sync always", c.NATS.SyncAlways, false},
		{"log level", c.Log.Level, "info"},
		{"log format", c.Log.Format, "auto"},
		{"max body", c.Ingest.MaxBodyBytes, ByteSize(5 << 20)},
		{"publish timeout", c.Ingest.PublishTimeout, 3 * time.Second},
		{"gogs api timeout", c.Gogs.APITimeout, 15 * time.Second},
		{"replicas", c.Streams.Replicas, 1},
		{"duplicates", c.Streams.DuplicateWindow, 24 * time.Hour},
		{"events max age", c.Streams.Events.MaxAge, 30 * 24 * time.Hour},
		{"results max age", c.Streams.Results.MaxAge, 30 * 24 * time.Hour},
		{"dlq max age", c.Streams.DLQ.MaxAge, time.Duration(0)},
		{"audit max age", c.Streams.Audit.MaxAge, time.Duration(0)},
		{"spool on", c.Spool.Enabled, true},
		{"spool dir", c.SpoolDir(), filepath.Join("data", "spool")},
		{"nats dir", c.NATSDir(), filepath.Join("data", "nats")},
		{"spool max bytes", c.Spool.MaxBytes, ByteSize(1 << 30)},
		{"spool max entries", c.Spool.MaxEntries, 100000},
		{"source", c.Source(), ""},
	}
	for _, tc := range checks {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	// Defaults alone lack a secret: Validate says exactly that.
	if err := c.Validate(); !errors.Is(err, ErrNoSecret) {
		t.Errorf("Validate() = %v, want ErrNoSecret", err)
	}
}

func TestLoadEnv(t *testing.T) {
	secretsFile := writeFile(t, "secrets", "first-secret\n\n  second-secret  \r\n")
	tokenFile := writeFile(t, "token", "tok-from-file\n")
	tests := []struct {
		name    string
		env     map[string]string
		check   func(t *testing.T, c Config)
		wantErr error
	}{
		{
			name: "secrets comma separated",
			env:  map[string]string{"FORGEBUS_GOGS_SECRETS": " a-secret , ,b-secret"},
			check: func(t *testing.T, c Config) {
				if got := strings.Join(revealAll(c.Gogs.Secrets), "|"); got != "a-secret|b-secret" {
					t.Errorf("secrets = %q", got)
				}
			},
		},
		{
			name: "secrets file one per line",
			env:  map[string]string{"FORGEBUS_GOGS_SECRETS_FILE": secretsFile},
			check: func(t *testing.T, c Config) {
				if got := strings.Join(revealAll(c.Gogs.Secrets), "|"); got != "first-secret|second-secret" {
					t.Errorf("secrets = %q", got)
				}
				if got := string(c.SecretBytes()[1]); got != "second-secret" {
					t.Errorf("SecretBytes()[1] = %q", got)
				}
			},
		},
		{
			name:    "secrets and secrets file both set",
			env:     map[string]string{"FORGEBUS_GOGS_SECRETS": "x", "FORGEBUS_GOGS_SECRETS_FILE": secretsFile},
			wantErr: ErrConflict,
		},
		{
			name:    "secrets file missing",
			env:     map[string]string{"FORGEBUS_GOGS_SECRETS_FILE": filepath.Join(t.TempDir(), "nope")},
			wantErr: ErrInvalid,
		},
		{
			name: "token file",
			env:  map[string]string{"FORGEBUS_GOGS_TOKEN_FILE": tokenFile, "FORGEBUS_MODELS_SECRET": "m", "FORGEBUS_NATS_USER": "u", "FORGEBUS_NATS_PASSWORD": "p"},
			check: func(t *testing.T, c Config) {
				if c.Gogs.Token.Reveal() != "tok-from-file" || c.ModelsSecret.Reveal() != "m" || c.NATS.Password.Reveal() != "p" {
					t.Errorf("token %q models %q password %q", c.Gogs.Token.Reveal(), c.ModelsSecret.Reveal(), c.NATS.Password.Reveal())
				}
			},
		},
		{
			name:    "token and token file both set",
			env:     map[string]string{"FORGEBUS_GOGS_TOKEN": "x", "FORGEBUS_GOGS_TOKEN_FILE": tokenFile},
			wantErr: ErrConflict,
		},
		{
			name: "every plain setting",
			env: map[string]string{
				"FORGEBUS_HTTP_ADDR": "127.0.0.1:9000", "FORGEBUS_ALLOW_UNSIGNED": "on",
				"FORGEBUS_NATS_URL": "nats://a:4222,nats://b:4222", "FORGEBUS_NATS_LISTEN": "0.0.0.0:5222",
				"FORGEBUS_NATS_CREDS": "/c.creds", "FORGEBUS_NATS_TLS_CA": "/ca", "FORGEBUS_NATS_TLS_CERT": "/cert", "FORGEBUS_NATS_TLS_KEY": "/key",
				"FORGEBUS_DATA_DIR": "/var/lib/forgebus", "FORGEBUS_INSTANCE": "git-main", "FORGEBUS_SOURCE_URL": "https://git.example.com",
				"FORGEBUS_LOG_LEVEL": "debug", "FORGEBUS_LOG_FORMAT": "json", "FORGEBUS_MAX_BODY_BYTES": "2MiB",
				"FORGEBUS_MAX_IN_FLIGHT": "64", "FORGEBUS_MAX_BUFFERED_BYTES": "16MiB",
				"FORGEBUS_PUBLISH_TIMEOUT": "5s", "FORGEBUS_STREAM_REPLICAS": "3", "FORGEBUS_STREAM_MAX_AGE": "48h",
				"FORGEBUS_DUPLICATE_WINDOW": "2h", "FORGEBUS_NATS_SYNC_ALWAYS": "true", "FORGEBUS_SPOOL": "off",
				"FORGEBUS_SPOOL_DIR": "/spool", "FORGEBUS_SPOOL_MAX_BYTES": "10485760", "FORGEBUS_SPOOL_MAX_ENTRIES": "7",
				"FORGEBUS_GOGS_URL": "https://git.example.com/",
			},
			check: func(t *testing.T, c Config) {
				want := Default()
				want.HTTPAddr = "127.0.0.1:9000"
				want.Gogs.AllowUnsigned = true
				want.NATS = NATS{URL: "nats://a:4222,nats://b:4222", Listen: "0.0.0.0:5222", SyncAlways: true, Creds: "/c.creds", TLS: TLS{CA: "/ca", Cert: "/cert", Key: "/key"}}
				want.DataDir = "/var/lib/forgebus"
				want.Instance = "git-main"
				want.SourceURL = "https://git.example.com"
				want.Log = Log{Level: "debug", Format: "json"}
				want.Ingest.MaxBodyBytes = 2 << 20
				want.Ingest.MaxInFlight = 64
				want.Ingest.MaxBufferedBytes = 16 << 20
				want.Ingest.PublishTimeout = 5 * time.Second
				want.Streams.Replicas = 3
				want.Streams.Events.MaxAge = 48 * time.Hour
				want.Streams.DuplicateWindow = 2 * time.Hour
				want.Spool = Spool{Enabled: false, Dir: "/spool", MaxBytes: 10 << 20, MaxEntries: 7}
				want.Gogs.URL = "https://git.example.com/"
				if fmt.Sprintf("%+v", c) != fmt.Sprintf("%+v", want) {
					t.Errorf("got  %+v\nwant %+v", c, want)
				}
				if c.Embedded() {
					t.Error("Embedded() with FORGEBUS_NATS_URL set")
				}
				if err := c.Validate(); err != nil {
					t.Errorf("Validate() = %v", err)
				}
			},
		},
		{name: "bad bool", env: map[string]string{"FORGEBUS_ALLOW_UNSIGNED": "maybe"}, wantErr: ErrInvalid},
		{name: "bad duration", env: map[string]string{"FORGEBUS_PUBLISH_TIMEOUT": "3"}, wantErr: ErrInvalid},
		{name: "bad integer", env: map[string]string{"FORGEBUS_STREAM_REPLICAS": "three"}, wantErr: ErrInvalid},
		{name: "bad size", env: map[string]string{"FORGEBUS_MAX_BODY_BYTES": "5MB"}, wantErr: ErrInvalid},
		{name: "negative size", env: map[string]string{"FORGEBUS_SPOOL_MAX_BYTES": "-1"}, wantErr: ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(envOf(tc.env))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Load() error = %v, want %v", err, tc.wantErr)
			}
			if err == nil && tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

func TestLoadYAML(t *testing.T) {
	full := `
http_addr: ":9090"
instance: forge2
source_url: https://git.example.com
data_dir: /data
shutdown_grace: 20s
log: {level: warn, format: console}
gogs: {url: "https://git.example.com", allow_unsigned: false}
nats:
  url: nats://n1:4222
  listen: 127.0.0.1:4333
  sync_always: true
  creds: /run/nats.creds
  tls: {ca: /ca.pem}
streams:
  replicas: 3
  duplicate_window: 1h
  events: {max_age: 168h, max_bytes: 1GiB}
  results: {max_age: 72h}
  dlq: {max_age: 0s}
  audit: {max_age: 2160h}
ingest: {max_body_bytes: 1MiB, max_in_flight: 100, max_buffered_bytes: 8MiB, publish_timeout: 2s, retry_after: 30s}
spool: {enabled: false, dir: /spool, max_bytes: 2GiB, max_entries: 10}
workers:
  docs: {output_dir: /srv/docs, branches: [main]}
  envsync: {target: k8s}
`
	tests := []struct {
		name    string
		yaml    string
		env     map[string]string
		check   func(t *testing.T, c Config)
		wantErr error
	}{
		{
			name: "every key",
			yaml: full,
			check: func(t *testing.T, c Config) {
				if c.HTTPAddr != ":9090" || c.Instance != "forge2" || c.DataDir != "/data" || c.ShutdownGrace != 20*time.Second {
					t.Errorf("top level: %+v", c)
				}
				if c.Log != (Log{Level: "warn", Format: "console"}) {
					t.Errorf("log = %+v", c.Log)
				}
				if c.NATS.URL != "nats://n1:4222" || c.NATS.Listen != "127.0.0.1:4333" || !c.NATS.SyncAlways || c.NATS.Creds != "/run/nats.creds" || c.NATS.TLS.CA != "/ca.pem" {
					t.Errorf("nats = %+v", c.NATS)
				}
				s := c.Streams
				if s.Replicas != 3 || s.DuplicateWindow != time.Hour || s.Events.MaxAge != 168*time.Hour || s.Events.MaxBytes != 1<<30 ||
					s.Results.MaxAge != 72*time.Hour || s.DLQ.MaxAge != 0 || s.Audit.MaxAge != 90*24*time.Hour {
					t.Errorf("streams = %+v", s)
				}
				if c.Ingest != (Ingest{MaxBodyBytes: 1 << 20, MaxInFlight: 100, MaxBufferedBytes: 8 << 20, PublishTimeout: 2 * time.Second, RetryAfter: 30 * time.Second}) {
					t.Errorf("ingest = %+v", c.Ingest)
				}
				if c.Spool != (Spool{Dir: "/spool", MaxBytes: 2 << 30, MaxEntries: 10}) {
					t.Errorf("spool = %+v", c.Spool)
				}
				if len(c.Workers) != 2 {
					t.Fatalf("workers = %v", c.Workers)
				}
				var docs struct {
					OutputDir string   `yaml:"output_dir"`
					Branches  []string `yaml:"branches"`
				}
				node := c.Workers["docs"]
				if err := node.Decode(&docs); err != nil || docs.OutputDir != "/srv/docs" || len(docs.Branches) != 1 {
					t.Errorf("workers.docs decode = %+v, %v", docs, err)
				}
			},
		},
		{
			name: "env overrides yaml",
			yaml: full,
			env:  map[string]string{"FORGEBUS_HTTP_ADDR": ":7000", "FORGEBUS_STREAM_REPLICAS": "1", "FORGEBUS_NATS_SYNC_ALWAYS": "false"},
			check: func(t *testing.T, c Config) {
				if c.HTTPAddr != ":7000" || c.Streams.Replicas != 1 || c.NATS.SyncAlways {
					t.Errorf("env did not win: addr %s replicas %d sync %v", c.HTTPAddr, c.Streams.Replicas, c.NATS.SyncAlways)
				}
				if c.Instance != "forge2" {
					t.Errorf("instance = %s, want the file's", c.Instance)
				}
			},
		},
		{
			name: "partial file keeps defaults",
			yaml: "instance: other\n",
			check: func(t *testing.T, c Config) {
				if c.Instance != "other" || c.HTTPAddr != DefaultHTTPAddr || c.Ingest.PublishTimeout != DefaultPublishTimeout {
					t.Errorf("got %+v", c)
				}
			},
		},
		{name: "empty file", yaml: "", check: func(t *testing.T, c Config) {}},
		{name: "unknown key", yaml: "http_adr: :1\n", wantErr: ErrInvalid},
		{name: "unknown nested key", yaml: "nats: {lisen: x}\n", wantErr: ErrInvalid},
		{name: "bad duration", yaml: "ingest: {publish_timeout: soon}\n", wantErr: ErrInvalid},
		{name: "bad size", yaml: "ingest: {max_body_bytes: lots}\n", wantErr: ErrInvalid},
		{name: "not yaml", yaml: "a: [\n", wantErr: ErrInvalid},
		{name: "gogs secrets in file", yaml: "gogs: {secrets: [abc]}\n", wantErr: ErrSecretInFile},
		{name: "nats password in file", yaml: "nats: {password: hunter2}\n", wantErr: ErrSecretInFile},
		{name: "token at top", yaml: "gogs_token: x\n", wantErr: ErrSecretInFile},
		{name: "secret in a worker section", yaml: "workers: {models: {models_secret: x}}\n", wantErr: ErrSecretInFile},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"FORGEBUS_CONFIG": writeFile(t, "forgebus.yaml", tc.yaml)}
			for k, v := range tc.env {
				env[k] = v
			}
			c, err := Load(envOf(env))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Load() error = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("error reveals the secret: %v", err)
				}
				return
			}
			if c.File == "" {
				t.Error("File not recorded")
			}
			tc.check(t, c)
		})
	}
	t.Run("missing file", func(t *testing.T) {
		if _, err := Load(envOf(map[string]string{"FORGEBUS_CONFIG": filepath.Join(t.TempDir(), "none.yaml")})); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Load() = %v, want ErrNotExist", err)
		}
	})
}

func TestValidate(t *testing.T) {
	valid := func() Config {
		c := Default()
		c.Gogs.Secrets = []Secret{NewSecret("s")}
		return c
	}
	tests := []struct {
		name    string
		mutate  func(c *Config)
		wantErr error
		wantMsg string
	}{
		{name: "valid", mutate: func(c *Config) {}},
		{name: "unsigned allowed without secret", mutate: func(c *Config) { c.Gogs.Secrets = nil; c.Gogs.AllowUnsigned = true }},
		{name: "no secret", mutate: func(c *Config) { c.Gogs.Secrets = nil }, wantErr: ErrNoSecret, wantMsg: "FORGEBUS_GOGS_SECRETS"},
		{name: "http addr", mutate: func(c *Config) { c.HTTPAddr = "8080" }, wantErr: ErrInvalid, wantMsg: "FORGEBUS_HTTP_ADDR"},
		{name: "instance with dot", mutate: func(c *Config) { c.Instance = "a.b" }, wantErr: ErrInvalid, wantMsg: "FORGEBUS_INSTANCE"},
		{name: "instance wildcard", mutate: func(c *Config) { c.Instance = ">" }, wantErr: ErrInvalid, wantMsg: "FORGEBUS_INSTANCE"},
		{name: "instance empty", mutate: func(c *Config) { c.Instance = "" }, wantErr: ErrInvalid, wantMsg: "FORGEBUS_INSTANCE"},
		{name: "instance upper", mutate: func(c *Config) { c.Instance = "Gogs" }, wantErr: ErrInvalid, wantMsg: "FORGEBUS_INSTANCE"},
		{name: "source not url", mutate: func(c *Config) { c.SourceURL = "git.example.com" }, wantErr: ErrInvalid, wantMsg: "FORGEBUS_SOURCE_URL"},
		{name: "log level", mutate: func(c *Config) { c.Log.Level = "loud" }, wantErr: ErrInvalid, wantMsg: "FORGEBUS_LOG_LEVEL"},
		{name: "log format", mutate: func(c *Config) { c.Log.Format = "xml" }, wantErr: ErrInvalid, wantMsg: "FORGEBUS_LOG_FORMAT"},
		{name: "nats url scheme", mutate: func(c *Config) { c.NATS.URL = "http://x:4222" }, wantErr: ErrInvalid, wantMsg: "FORGEBUS_NATS_URL"},
		{name: "nats url password hidden", mutate: func(c *Config) { c.NATS.URL = "http://me:hunter2@x:4222" }, wantErr: ErrInvalid, wantMsg: "xxxxx"},
		{name: "nats listen", mutate: func(c *Config) { c.NATS.Listen = "4222" }, wantErr: ErrInvalid, wantMsg: "FORGEBUS_NATS_LISTEN"},
		{name: "tls cert without key", mutate: func(c *Config) { c.NATS.TLS.Cert = "/c" }, wantErr: ErrInvalid, wantMsg: "FORGEBUS_NATS_TLS_KEY"},
		{name: "user without password", mutate: func(c *Config) { c.NATS.User = "u" }, wantErr: ErrInvalid, wantMsg: "FORGEBUS_NATS_PASSWORD"},
		{name: "creds and user", mutate: func(c *Config) { c.NATS.Creds = "/c"; c.NATS.User = "u"; c.NATS.Password = NewSecret("p") }, wantErr: ErrConflict},
		{name: "replicas", mutate: func(c *Config) { c.Streams.Replicas = 0 }, wantErr: ErrInvalid, wantMsg: "FORGEBUS_STREAM_REPLICAS"},
		{name: "replicas on the embedded server", mutate: func(c *Config) { c.Streams.Replicas = 3 }, wantErr: ErrInvalid, wantMsg: "needs a NATS cluster"},
		{name: "replicas on a cluster", mutate: func(c *Config) { c.Streams.Replicas = 3; c.NATS.URL = "nats://a:4222,nats://b:4222" }},
		{name: "duplicate window", mutate: func(c *Config) { c.Streams.DuplicateWindow = 0 }, wantErr: ErrInvalid, wantMsg: "FORGEBUS_DUPLICATE_WINDOW"},
		{name: "window longer than max age", mutate: func(c *Config) { c.Streams.Events.MaxAge = time.Hour }, wantErr: ErrInvalid, wantMsg: "longer than"},
		{name: "negative max age", mutate: func(c *Config) { c.Streams.DLQ.MaxAge = -time.Second }, wantErr: ErrInvalid, wantMsg: "streams.dlq"},
		{name: "audit max bytes", mutate: func(c *Config) { c.Streams.Audit.MaxBytes = 10 << 30 }, wantErr: ErrInvalid, wantMsg: "streams.audit.max_bytes"},
		{name: "audit max age", mutate: func(c *Config) { c.Streams.Audit.MaxAge = 90 * 24 * time.Hour }},
		{name: "max body zero", mutate: func(c *Config) { c.Ingest.MaxBodyBytes = 0 }, wantErr: ErrInvalid, wantMsg: "FORGEBUS_MAX_BODY_BYTES"},
		{name: "max in flight zero", mutate: func(c *Config) { c.Ingest.MaxInFlight = 0 }, wantErr: ErrInvalid, wantMsg: "FORGEBUS_MAX_IN_FLIGHT"},
		{name: "buffered below one body", mutate: func(c *Config) { c.Ingest.MaxBufferedBytes = c.Ingest.MaxBodyBytes }, wantErr: ErrInvalid, wantMsg: "FORGEBUS_MAX_BUFFERED_BYTES"},
		{name: "publish timeout past gogs", mutate: func(c *Config) { c.Ingest.PublishTimeout = 11 * time.Second }, wantErr: ErrInvalid, wantMsg: "Gogs gives up"},
		{name: "spool entries", mutate: func(c *Config) { c.Spool.MaxEntries = 0 }, wantErr: ErrInvalid, wantMsg: "FORGEBUS_SPOOL_MAX_ENTRIES"},
		{name: "spool off ignores limits", mutate: func(c *Config) { c.Spool.Enabled = false; c.Spool.MaxEntries = 0 }},
		{name: "gogs url", mutate: func(c *Config) { c.Gogs.URL = "ftp://x" }, wantErr: ErrInvalid, wantMsg: "FORGEBUS_GOGS_URL"},
		{name: "gogs api timeout", mutate: func(c *Config) { c.Gogs.APITimeout = 0 }, wantErr: ErrInvalid, wantMsg: "FORGEBUS_GOGS_API_TIMEOUT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.mutate(&c)
			err := c.Validate()
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Validate() = %v, want %v", err, tc.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("Validate() = %q, want it to mention %q", err, tc.wantMsg)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("Validate() reveals a password: %v", err)
			}
		})
	}
	t.Run("every problem reported", func(t *testing.T) {
		c := valid()
		c.HTTPAddr, c.Instance = "x", "a.b"
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), "FORGEBUS_HTTP_ADDR") || !strings.Contains(err.Error(), "FORGEBUS_INSTANCE") {
			t.Errorf("Validate() = %v, want both problems", err)
		}
	})
}

func TestSecretNeverRenders(t *testing.T) {
	const value = "hunter2-very-secret"
	s := NewSecret(value)
	c := Default()
	c.Gogs.Secrets = []Secret{s}
	c.Gogs.Token = s
	c.NATS.Password = s
	c.ModelsSecret = s

	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var buf strings.Builder
	log := zerolog.New(&buf)
	log.Info().Stringer("secret", s).Interface("config", c).Interface("s", s).Msg("x")

	renders := map[string]string{
		"%v":      fmt.Sprintf("%v", s),
		"%s":      fmt.Sprintf("[%s]", s),
		"%+v":     fmt.Sprintf("%+v", c),
		"%#v":     fmt.Sprintf("%#v", s),
		"%x":      fmt.Sprintf("%x", s),
		"json":    string(js),
		"zerolog": buf.String(),
	}
	for name, out := range renders {
		if strings.Contains(out, value) || strings.Contains(out, fmt.Sprintf("%x", value)) {
			t.Errorf("%s reveals the secret: %s", name, out)
		}
	}
	if !strings.Contains(renders["%v"], Redacted) || !strings.Contains(renders["zerolog"], Redacted) {
		t.Errorf("want %s, got %q / %q", Redacted, renders["%v"], renders["zerolog"])
	}
	if s.Reveal() != value {
		t.Error("Reveal lost the value")
	}
}

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in      string
		want    ByteSize
		wantErr bool
	}{
		{"0", 0, false}, {"1024", 1024, false}, {"5MiB", 5 << 20, false}, {"1 GiB", 1 << 30, false},
		{"512KiB", 512 << 10, false}, {"7B", 7, false}, {"", 0, true}, {"5MB", 0, true}, {"-1", 0, true},
		{"1.5GiB", 0, true}, {"99999999999TiB", 0, true},
	}
	for _, tc := range tests {
		got, err := ParseByteSize(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d, err %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}
