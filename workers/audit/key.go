package audit

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/forgebus/forgebus/schemas"
)

// maxKeyFileBytes bounds a key file read.
const maxKeyFileBytes = 16 << 10

// EncodePublicKey is the text form of an audit public key: standard base64
// of its 32 bytes, as records carry it in "key".
func EncodePublicKey(pub ed25519.PublicKey) string {
	return base64.StdEncoding.EncodeToString(pub)
}

// ParsePublicKey reads [EncodePublicKey]'s form.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("parse audit public key: want the standard base64 of %d bytes", ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}

// LoadKey reads an ed25519 private key from a PEM "PRIVATE KEY" (PKCS #8)
// file, as [CreateKey] writes it.
func LoadKey(path string) (ed25519.PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open audit key: %w", err)
	}
	defer f.Close()
	buf, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read audit key: %w", err)
	}
	if len(buf) > maxKeyFileBytes {
		return nil, fmt.Errorf("read audit key %s: file too large", path)
	}
	block, _ := pem.Decode(buf)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("read audit key %s: not a PEM PRIVATE KEY", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("read audit key %s: not a PKCS #8 key", path)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("read audit key %s: not an ed25519 key", path)
	}
	return priv, nil
}

// CreateKey writes a new ed25519 key to path (mode 0600, its directory 0700)
// unless a file is there already; it reports whether it wrote one.
func CreateKey(path string) (bool, error) {
	if _, err := os.Stat(path); err == nil {
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("stat audit key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, fmt.Errorf("create audit key directory: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return false, fmt.Errorf("generate audit key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return false, fmt.Errorf("encode audit key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false, fmt.Errorf("create audit key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return false, fmt.Errorf("write audit key: %w", err)
	}
	if err := f.Close(); err != nil {
		return false, fmt.Errorf("write audit key: %w", err)
	}
	return true, nil
}

// sign sets r's Key and Sig with priv; r must be sealed.
func sign(r *schemas.AuditRecord, priv ed25519.PrivateKey) {
	r.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(priv, r.SignedBytes()))
}

// checkSig verifies sig (standard base64) by the key named pub over r's
// signed bytes.
func checkSig(r schemas.AuditRecord, pub, sig string) error {
	k, err := ParsePublicKey(pub)
	if err != nil {
		return errors.New("the record's key is not an ed25519 public key")
	}
	s, err := base64.StdEncoding.Strict().DecodeString(sig)
	if err != nil || len(s) != ed25519.SignatureSize || !ed25519.Verify(k, r.SignedBytes(), s) {
		return errors.New("the signature does not verify")
	}
	return nil
}

// checkSigned verifies that r is a signed record whose signature is by its
// Key, and, for a key change, that NextKey signed it too. It does not say
// whether Key is to be trusted.
func checkSigned(r schemas.AuditRecord) error {
	if r.V < schemas.AuditRecordVersion || r.Sig == "" || r.Key == "" {
		return errors.New("the record is not signed")
	}
	if err := checkSig(r, r.Key, r.Sig); err != nil {
		return err
	}
	if r.Kind == schemas.AuditKindKeyChange {
		if r.NextKey == "" || r.NextKeySig == "" {
			return errors.New("the key change has no next key signature")
		}
		if err := checkSig(r, r.NextKey, r.NextKeySig); err != nil {
			return fmt.Errorf("next key: %w", err)
		}
	}
	return nil
}

// keyAfter is the key that must sign the record after r.
func keyAfter(r schemas.AuditRecord) string {
	if r.Kind == schemas.AuditKindKeyChange {
		return r.NextKey
	}
	return r.Key
}
