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
