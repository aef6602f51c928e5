package console

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	k1, err := LoadKey("", dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "creds", "console.key"))
	if err != nil || st.Mode().Perm() != 0o600 || len(k1) < 32 {
		t.Fatalf("generated key: %v, mode %v, %d bytes; want 0600 and at least 32 bytes", err, st.Mode(), len(k1))
	}
	k2, err := LoadKey("", dir)
	if err != nil || string(k2) != string(k1) {
		t.Errorf("second load gave another key (%v): sessions would not survive a restart", err)
	}
	if _, err := LoadKey("short", dir); err == nil {
		t.Errorf("a 5-character configured key was accepted")
	}
	if k, err := LoadKey("configured-key-0123456789", dir); err != nil || string(k) != "configured-key-0123456789" {
		t.Errorf("configured key = %q, %v", k, err)
	}
}
