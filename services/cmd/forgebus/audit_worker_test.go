package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/workers/audit"
)

// newAuditKeyFile creates a signing key in a temporary directory and
// returns its path.
func newAuditKeyFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "creds", "audit.key")
	if _, err := audit.CreateKey(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// startAuditWorker runs an audit worker signing with the key in keyFile
// until the returned stop is called (or the test ends).
func startAuditWorker(t *testing.T, js jetstream.JetStream, keyFile string) (stop func()) {
	t.Helper()
	key, err := audit.LoadKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	w, err := audit.New(js, audit.Config{FetchWait: 100 * time.Millisecond, AckWait: 5 * time.Second, Key: key}, zerolog.Nop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("audit worker: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}
