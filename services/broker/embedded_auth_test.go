package broker

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// TestEmbeddedRefusesAnonymous: the embedded server of "forgebus dev" and
// "forgebus ingest" lets no client in without credentials, and the
// credentials it creates on first start are private files that a second
// start reuses.
func TestEmbeddedRefusesAnonymous(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg := embeddedConfig(t)
	b, err := Connect(ctx, cfg, zerolog.Nop())
	if err != nil {
		t.Fatalf("Connect() = %v", err)
	}
	defer b.Close()

	nc, err := nats.Connect(b.ClientURL(), nats.Timeout(2*time.Second))
	if err == nil {
		nc.Close()
		t.Fatal("an anonymous client connected to the embedded server")
	}
	if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Errorf("anonymous connect = %v, want an authorization error", err)
	}

	dir := filepath.Join(cfg.DataDir, "creds")
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatalf("creds dir: %v", err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("creds dir mode %v, want 0700", st.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		fi, _ := e.Info()
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", e.Name(), fi.Mode().Perm())
		}
	}
	op := filepath.Join(dir, "operator.creds")
	before, err := os.ReadFile(op)
	if err != nil {
		t.Fatalf("operator creds: %v", err)
	}
	nc, err = nats.Connect(b.ClientURL(), nats.UserCredentials(op))
	if err != nil {
		t.Fatalf("connect with operator.creds: %v", err)
	}
	nc.Close()

	// A second start reuses the keys: the old operator creds still work.
	b.Close()
	b2, err := Connect(ctx, cfg, zerolog.Nop())
	if err != nil {
		t.Fatalf("second Connect() = %v", err)
	}
	defer b2.Close()
	after, _ := os.ReadFile(op)
	if string(before) != string(after) {
		t.Error("operator.creds changed on the second start")
	}
	nc, err = nats.Connect(b2.ClientURL(), nats.UserCredentials(op))
	if err != nil {
		t.Fatalf("connect with the first start's operator.creds: %v", err)
	}
	nc.Close()
}

// TestEmbeddedAuthOffWarns: with FORGEBUS_NATS_AUTH=off on loopback the
// embedded server lets a client in without credentials, and says so at
// every start.
func TestEmbeddedAuthOffWarns(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg := embeddedConfig(t)
	cfg.NATS.NoAuth = true
	var logs strings.Builder
	log := zerolog.New(&logs)
	for start := 1; start <= 2; start++ {
		b, err := Connect(ctx, cfg, log)
		if err != nil {
			t.Fatalf("Connect() = %v", err)
		}
		nc, err := nats.Connect(b.ClientURL())
		if err != nil {
			t.Errorf("anonymous connect with auth off: %v", err)
		} else {
			nc.Close()
		}
		b.Close()
		if got := strings.Count(logs.String(), "FORGEBUS_NATS_AUTH=off"); got != start {
			t.Errorf("after start %d: %d warnings, want %d:\n%s", start, got, start, logs.String())
		}
	}
	if !strings.Contains(logs.String(), `"level":"warn"`) {
		t.Errorf("the auth-off message is not a warning:\n%s", logs.String())
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "creds")); err == nil {
		t.Error("auth off still made a creds dir")
	}
}

// TestRoleConnections: the parts of one process connect as their own roles,
// and a worker process on the same data dir finds its role's credentials.
func TestRoleConnections(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg := embeddedConfig(t)
	b, err := Connect(ctx, cfg, zerolog.Nop())
	if err != nil {
		t.Fatalf("Connect() = %v", err)
	}
	defer b.Close()
	if b.Role() != "operator" || !b.Admin() {
		t.Errorf("the server's owner connects as %q (admin %v), want the operator", b.Role(), b.Admin())
	}
	in, err := b.DialRole(ctx, cfg, zerolog.Nop(), "ingest")
	if err != nil {
		t.Fatalf("DialRole(ingest) = %v", err)
	}
	defer in.Close()
	if in.Role() != "ingest" || in.Admin() {
		t.Errorf("ingest connects as %q (admin %v)", in.Role(), in.Admin())
	}
	// A worker process: a client of the same data dir, by its role's file.
	w, err := Connect(ctx, cfg, zerolog.Nop(), ClientOnly(), CredsFile("worker-docs.creds"))
	if err != nil {
		t.Fatalf("worker Connect() = %v", err)
	}
	defer w.Close()
	if w.Role() != "worker" || w.Admin() {
		t.Errorf("worker connects as %q (admin %v)", w.Role(), w.Admin())
	}
	// The client commands: operator.creds when nothing else is set.
	c, err := Connect(ctx, cfg, zerolog.Nop(), ClientOnly())
	if err != nil {
		t.Fatalf("client Connect() = %v", err)
	}
	defer c.Close()
	if c.Role() != "operator" {
		t.Errorf("a client command connects as %q, want the operator", c.Role())
	}
	// An explicit FORGEBUS_NATS_CREDS wins.
	ecfg := cfg
	ecfg.NATS.Creds = filepath.Join(cfg.CredsDir(), "worker-audit.creds")
	e, err := Connect(ctx, ecfg, zerolog.Nop(), ClientOnly())
	if err != nil {
		t.Fatalf("Connect() with FORGEBUS_NATS_CREDS = %v", err)
	}
	defer e.Close()
	if e.Role() != "audit" {
		t.Errorf("FORGEBUS_NATS_CREDS=worker-audit.creds connects as %q", e.Role())
	}
	// ingest's connection is refused what is not its job.
	pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
	defer pcancel()
	if _, err := in.JS.Publish(pctx, "forgebus.audit", []byte("{}")); err == nil {
		t.Error("ingest appended to the audit stream")
	}
}
