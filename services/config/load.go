package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// maxFileBytes bounds the config file and every *_FILE secret file.
const maxFileBytes = 1 << 20

// Load builds the configuration: defaults, then the YAML file named by
// FORGEBUS_CONFIG (if set), then the environment read through getenv (pass
// os.Getenv). It reports malformed values but does not call
// [Config.Validate]; the caller does, after applying command-line flags.
func Load(getenv func(string) string) (Config, error) {
	c := Default()
	if path := getenv("FORGEBUS_CONFIG"); path != "" {
		if err := c.loadFile(path); err != nil {
			return Config{}, err
		}
	}
	if err := c.applyEnv(getenv); err != nil {
		return Config{}, err
	}
	return c, nil
}

// LoadFile reads the YAML file at path over c. Keys not in [Config] and
// secret keys are errors.
func (c *Config) LoadFile(path string) error { return c.loadFile(path) }

func (c *Config) loadFile(path string) error {
	data, err := readBounded(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	if err := c.decodeYAML(data); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	c.File = path
	return nil
}

func (c *Config) decodeYAML(data []byte) error {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if key, line := findSecretKey(&root); key != "" {
		return fmt.Errorf("%w: key %q at line %d", ErrSecretInFile, key, line)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

// secretWords are the last words of a key that holds a secret.
var secretWords = map[string]bool{
	"secret": true, "secrets": true, "password": true, "passwd": true,
	"token": true, "tokens": true, "credentials": true,
}

// findSecretKey walks every mapping of the document, worker sections
// included, and returns the first key that names a secret.
func findSecretKey(n *yaml.Node) (string, int) {
	if n == nil {
		return "", 0
	}
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			words := strings.FieldsFunc(strings.ToLower(k.Value), func(r rune) bool { return r == '_' || r == '-' || r == '.' })
			if len(words) > 0 && secretWords[words[len(words)-1]] {
				return k.Value, k.Line
			}
		}
	}
	for _, ch := range n.Content {
		if k, l := findSecretKey(ch); k != "" {
			return k, l
		}
	}
	return "", 0
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxFileBytes {
		return nil, fmt.Errorf("read %s: larger than %d bytes", path, maxFileBytes)
	}
	return data, nil
}

// env reads variables and remembers the first error.
type env struct {
	get   func(string) string
	err   error
	files []string // secret files read
}

func (e *env) fail(name string, err error) {
	if e.err == nil {
		e.err = fmt.Errorf("%w: %s: %v", ErrInvalid, name, err)
	}
}

func (e *env) str(name string, dst *string) {
	if v := e.get(name); v != "" {
		*dst = strings.TrimSpace(v)
	}
}

func (e *env) boolean(name string, dst *bool) {
	v := strings.TrimSpace(e.get(name))
	if v == "" {
		return
	}
	b, err := parseBool(v)
	if err != nil {
		e.fail(name, err)
		return
	}
	*dst = b
}

func (e *env) duration(name string, dst *time.Duration) {
	v := strings.TrimSpace(e.get(name))
	if v == "" {
		return
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		e.fail(name, fmt.Errorf("duration %q: want e.g. 5s, 10m, 720h", v))
		return
	}
	*dst = d
}

func (e *env) integer(name string, dst *int) {
	v := strings.TrimSpace(e.get(name))
	if v == "" {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		e.fail(name, fmt.Errorf("integer %q", v))
		return
	}
	*dst = n
}

func (e *env) size(name string, dst *ByteSize) {
	v := strings.TrimSpace(e.get(name))
	if v == "" {
		return
	}
	b, err := ParseByteSize(v)
	if err != nil {
		e.fail(name, err)
		return
	}
	*dst = b
}

// secret reads name or name_FILE (not both). A file's value is trimmed of
// surrounding white space.
func (e *env) secret(name string, dst *Secret) {
	v, ok := e.secretText(name)
	if ok {
		*dst = NewSecret(strings.TrimSpace(v))
	}
}

func (e *env) secretText(name string) (string, bool) {
	v, file := e.get(name), e.get(name+"_FILE")
	switch {
	case v != "" && file != "":
		if e.err == nil {
			e.err = fmt.Errorf("%w: %s and %s_FILE: set one", ErrConflict, name, name)
		}
		return "", false
	case file != "":
		data, err := readSecretFile(name+"_FILE", file)
		if err != nil {
			// The path is not secret; the content never reaches the error.
			if e.err == nil {
				e.err = err
			}
			return "", false
		}
		e.files = append(e.files, file)
		return string(data), true
	case v != "":
		return v, true
	}
	return "", false
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "1", "t", "true", "y", "yes", "on":
		return true, nil
	case "0", "f", "false", "n", "no", "off":
		return false, nil
	}
	return false, fmt.Errorf("boolean %q: want true/false, on/off, yes/no or 1/0", v)
}

func (c *Config) applyEnv(getenv func(string) string) error {
	e := &env{get: getenv}
	e.str("FORGEBUS_HTTP_ADDR", &c.HTTPAddr)
	e.duration("FORGEBUS_SHUTDOWN_GRACE", &c.ShutdownGrace)
	e.str("FORGEBUS_INSTANCE", &c.Instance)
	e.str("FORGEBUS_SOURCE_URL", &c.SourceURL)
	e.str("FORGEBUS_DATA_DIR", &c.DataDir)
	e.str("FORGEBUS_LOG_LEVEL", &c.Log.Level)
	e.str("FORGEBUS_LOG_FORMAT", &c.Log.Format)

	if text, ok := e.secretText("FORGEBUS_GOGS_SECRETS"); ok {
		if getenv("FORGEBUS_GOGS_SECRETS_FILE") != "" {
			c.Gogs.Secrets = splitSecrets(text, func(r rune) bool { return r == '\n' || r == '\r' })
		} else {
			c.Gogs.Secrets = splitSecrets(text, func(r rune) bool { return r == ',' })
		}
	}
	e.boolean("FORGEBUS_ALLOW_UNSIGNED", &c.Gogs.AllowUnsigned)
	e.str("FORGEBUS_GOGS_URL", &c.Gogs.URL)
	e.secret("FORGEBUS_GOGS_TOKEN", &c.Gogs.Token)
	e.duration("FORGEBUS_GOGS_API_TIMEOUT", &c.Gogs.APITimeout)
	e.secret("FORGEBUS_MODELS_SECRET", &c.ModelsSecret)
	e.str("FORGEBUS_AUDIT_KEY_FILE", &c.AuditKeyFile)
	c.BuildPath = getenv("PATH")
	e.str("FORGEBUS_BUILD_PATH", &c.BuildPath)

	e.str("FORGEBUS_NATS_URL", &c.NATS.URL)
	e.str("FORGEBUS_NATS_LISTEN", &c.NATS.Listen)
	e.boolean("FORGEBUS_NATS_SYNC_ALWAYS", &c.NATS.SyncAlways)
	e.str("FORGEBUS_NATS_CREDS", &c.NATS.Creds)
	var auth string
	e.str("FORGEBUS_NATS_AUTH", &auth)
	switch strings.ToLower(auth) {
	case "off":
		c.NATS.NoAuth = true
	case "on":
		c.NATS.NoAuth = false
	case "":
	default:
		e.fail("FORGEBUS_NATS_AUTH", fmt.Errorf("%q: want on or off", auth))
	}
	e.str("FORGEBUS_NATS_TLS_CA", &c.NATS.TLS.CA)
	e.str("FORGEBUS_NATS_TLS_CERT", &c.NATS.TLS.Cert)
	e.str("FORGEBUS_NATS_TLS_KEY", &c.NATS.TLS.Key)
	e.str("FORGEBUS_NATS_USER", &c.NATS.User)
	e.secret("FORGEBUS_NATS_PASSWORD", &c.NATS.Password)

	e.integer("FORGEBUS_STREAM_REPLICAS", &c.Streams.Replicas)
	e.duration("FORGEBUS_STREAM_MAX_AGE", &c.Streams.Events.MaxAge)
	e.duration("FORGEBUS_DUPLICATE_WINDOW", &c.Streams.DuplicateWindow)

	e.size("FORGEBUS_MAX_BODY_BYTES", &c.Ingest.MaxBodyBytes)
	e.integer("FORGEBUS_MAX_IN_FLIGHT", &c.Ingest.MaxInFlight)
	e.size("FORGEBUS_MAX_BUFFERED_BYTES", &c.Ingest.MaxBufferedBytes)
	e.duration("FORGEBUS_PUBLISH_TIMEOUT", &c.Ingest.PublishTimeout)
	e.duration("FORGEBUS_RETRY_AFTER", &c.Ingest.RetryAfter)

	e.boolean("FORGEBUS_SPOOL", &c.Spool.Enabled)
	e.str("FORGEBUS_SPOOL_DIR", &c.Spool.Dir)
	e.size("FORGEBUS_SPOOL_MAX_BYTES", &c.Spool.MaxBytes)
	e.integer("FORGEBUS_SPOOL_MAX_ENTRIES", &c.Spool.MaxEntries)
	c.SecretFiles = e.files
	c.applyConsoleEnv(e)
	return e.err
}
