package creds

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestRevokeCutsOff: a revoked subscriber is disconnected from a running
// server within seconds, with no restart, and cannot connect again; other
// users stay connected.
func TestRevokeCutsOff(t *testing.T) {
	st, err := Open(filepath.Join(t.TempDir(), "creds"))
	if err != nil {
		t.Fatal(err)
	}
	url := authServer(t, st)
	spec := Spec{Role: RoleSubscriber, Name: "billing", Subjects: []string{"forge.gogs.*.acme.>"}}
	sub := dial(t, url, st, spec)
	other := dial(t, url, st, Spec{Role: RoleSubscriber, Name: "crm", Subjects: []string{"forge.gogs.*.acme.>"}})
	if _, err := st.EnsureFile(SystemCreds, Spec{Role: "system", Name: "system"}); err != nil {
		t.Fatal(err)
	}
	sys, err := nats.Connect(url, nats.UserCredentials(st.Path(SystemCreds)))
	if err != nil {
		t.Fatalf("connect as system: %v", err)
	}
	defer sys.Close()

	accJWT, err := st.Revoke("billing")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := Push(ctx, sys, accJWT); err != nil {
		t.Fatalf("Push() = %v", err)
	}
	for sub.nc.Status() == nats.CONNECTED {
		if time.Since(start) > 5*time.Second {
			t.Fatal("the revoked subscriber is still connected after 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("revoked subscriber cut off after %s", time.Since(start).Round(time.Millisecond))
	if other.nc.Status() != nats.CONNECTED {
		t.Errorf("another subscriber was disconnected: %v", other.nc.Status())
	}

	us, _ := st.Users()
	for _, u := range us {
		if u.Name == "billing" && u.RevokedAt.IsZero() {
			t.Error("the store does not show billing revoked")
		}
	}
	nc, err := nats.Connect(url, nats.UserCredentials(sub.creds))
	if err == nil {
		nc.Close()
		t.Fatal("the revoked creds connected again")
	}
	t.Logf("reconnect with the revoked creds: %v", err)
}
