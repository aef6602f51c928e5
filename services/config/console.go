package config

import (
	"net"
	"strings"
	"time"
)

// Console defaults.
const (
	DefaultConsoleAddr       = "127.0.0.1:8081"
	DefaultConsoleSessionTTL = 30 * time.Minute
)

// Console configures the web console ("forgebus console", and part of
// "forgebus dev").
type Console struct {
	// Addr is where the console listens (FORGEBUS_CONSOLE_ADDR); never the
	// webhook address.
	Addr string `yaml:"addr"`
	// Key signs the session tokens (FORGEBUS_CONSOLE_KEY[_FILE]); empty means
	// a key generated once under <data_dir>/creds/console.key.
	Key Secret `yaml:"-"`
	// SessionTTL is how long a sign-in lasts (FORGEBUS_CONSOLE_SESSION_TTL).
	SessionTTL time.Duration `yaml:"session_ttl"`
	// OperatorOrgs and ViewerOrgs map Gogs organisations to roles
	// (FORGEBUS_CONSOLE_OPERATOR_ORGS, FORGEBUS_CONSOLE_VIEWER_ORGS,
	// comma-separated). A user in neither cannot sign in.
	OperatorOrgs []string `yaml:"operator_orgs"`
	ViewerOrgs   []string `yaml:"viewer_orgs"`
	// SecureCookie marks the session cookie Secure even without TLS here,
	// for a console behind a TLS proxy (FORGEBUS_CONSOLE_SECURE_COOKIE).
	SecureCookie bool `yaml:"secure_cookie"`
	// TLSCert and TLSKey serve the console over TLS
	// (FORGEBUS_CONSOLE_TLS_CERT, FORGEBUS_CONSOLE_TLS_KEY).
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
}

func defaultConsole() Console {
	return Console{Addr: DefaultConsoleAddr, SessionTTL: DefaultConsoleSessionTTL}
}

func (c *Config) applyConsoleEnv(e *env) {
	e.str("FORGEBUS_CONSOLE_ADDR", &c.Console.Addr)
	e.secret("FORGEBUS_CONSOLE_KEY", &c.Console.Key)
	e.duration("FORGEBUS_CONSOLE_SESSION_TTL", &c.Console.SessionTTL)
	e.list("FORGEBUS_CONSOLE_OPERATOR_ORGS", &c.Console.OperatorOrgs)
	e.list("FORGEBUS_CONSOLE_VIEWER_ORGS", &c.Console.ViewerOrgs)
	e.boolean("FORGEBUS_CONSOLE_SECURE_COOKIE", &c.Console.SecureCookie)
	e.str("FORGEBUS_CONSOLE_TLS_CERT", &c.Console.TLSCert)
	e.str("FORGEBUS_CONSOLE_TLS_KEY", &c.Console.TLSKey)
}

// list reads a comma-separated list; empty items are dropped.
func (e *env) list(name string, dst *[]string) {
	v := e.get(name)
	if strings.TrimSpace(v) == "" {
		return
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	*dst = out
}

// ValidateConsole reports what keeps the console from starting: it needs
// the Gogs URL to check sign-ins, its own address, and a role mapping.
func (c Config) ValidateConsole() error {
	var errs []string
	host, port, err := net.SplitHostPort(c.Console.Addr)
	if err != nil {
		errs = append(errs, "FORGEBUS_CONSOLE_ADDR "+quote(c.Console.Addr)+": want host:port, e.g. 127.0.0.1:8081")
	} else if whost, wport, err := net.SplitHostPort(c.HTTPAddr); err == nil && wport == port && (sameHost(host, whost)) {
		errs = append(errs, "FORGEBUS_CONSOLE_ADDR "+quote(c.Console.Addr)+" is the webhook address (FORGEBUS_HTTP_ADDR): give the console its own")
	}
	if c.Gogs.URL == "" || !(strings.HasPrefix(c.Gogs.URL, "http://") || strings.HasPrefix(c.Gogs.URL, "https://")) {
		errs = append(errs, "FORGEBUS_GOGS_URL "+quote(c.Gogs.URL)+": the console checks sign-ins against Gogs; want http(s)://host")
	}
	if c.Console.SessionTTL < time.Minute || c.Console.SessionTTL > 24*time.Hour {
		errs = append(errs, "FORGEBUS_CONSOLE_SESSION_TTL: want 1m to 24h")
	}
	if len(c.Console.OperatorOrgs)+len(c.Console.ViewerOrgs) == 0 {
		errs = append(errs, "FORGEBUS_CONSOLE_OPERATOR_ORGS and FORGEBUS_CONSOLE_VIEWER_ORGS are empty: nobody could sign in")
	}
	if (c.Console.TLSCert == "") != (c.Console.TLSKey == "") {
		errs = append(errs, "FORGEBUS_CONSOLE_TLS_CERT and FORGEBUS_CONSOLE_TLS_KEY: set both or neither")
	}
	if len(errs) > 0 {
		return invalid("%s", strings.Join(errs, "; "))
	}
	return nil
}

func quote(s string) string { return `"` + s + `"` }

// sameHost: two listen hosts that can take the same connections.
func sameHost(a, b string) bool {
	unspecified := func(h string) bool {
		ip := net.ParseIP(h)
		return h == "" || ip != nil && ip.IsUnspecified()
	}
	return a == b || unspecified(a) || unspecified(b)
}
