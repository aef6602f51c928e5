package audit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCreateAndLoadKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "creds", "audit.key")
	created, err := CreateKey(path)
	if err != nil || !created {
		t.Fatalf("CreateKey = %v, %v", created, err)
	}
	st, _ := os.Stat(path)
	dir, _ := os.Stat(filepath.Dir(path))
	if st.Mode().Perm() != 0o600 || dir.Mode().Perm() != 0o700 {
		t.Fatalf("key mode %v, directory mode %v; want 0600 and 0700", st.Mode().Perm(), dir.Mode().Perm())
	}
	k1, err := LoadKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if created, err := CreateKey(path); created || err != nil {
		t.Fatalf("CreateKey over an existing key = %v, %v; want it kept", created, err)
	}
	if k2, _ := LoadKey(path); !k1.Equal(k2) {
		t.Fatal("the key changed on a second CreateKey")
	}
	pub := EncodePublicKey(pubOf(k1))
	if back, err := ParsePublicKey(pub); err != nil || !back.Equal(pubOf(k1)) {
		t.Fatalf("ParsePublicKey(EncodePublicKey) = %v, %v", back, err)
	}
}

func TestLoadKeyRefuses(t *testing.T) {
	dir := t.TempDir()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(ec)
	files := map[string][]byte{
		"not pem":     []byte("hello"),
		"wrong type":  pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}),
		"not pkcs8":   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}),
		"not ed25519": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		"too large":   []byte(strings.Repeat("x", maxKeyFileBytes+1)),
	}
	for name, b := range files {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadKey(path); err == nil {
			t.Errorf("%s: LoadKey accepted it", name)
		}
	}
	for _, s := range []string{"", "abc", EncodePublicKey(make([]byte, 31)), "!!!!"} {
		if _, err := ParsePublicKey(s); err == nil {
			t.Errorf("ParsePublicKey(%q) accepted it", s)
		}
	}
}
