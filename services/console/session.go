package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Roles.
const (
	RoleOperator = "operator"
	RoleViewer   = "viewer"
)

const (
	cookieName = "forgebus_session"
	issuer     = "forgebus-console"
	// maxRepos bounds a viewer's repository list, which rides in the cookie.
	maxRepos = 200
)

// Claims are the session token's claims.
type Claims struct {
	Role string `json:"role"`
	// Repos are what a viewer may see; empty for an operator, who sees all.
	Repos []string `json:"repos,omitempty"`
	jwt.RegisteredClaims
}

// Session is a signed-in person.
type Session struct {
	Login string
	Role  string
	Repos []string
	// CSRF is the token state-changing requests must carry.
	CSRF    string
	Expires time.Time
}

// Operator reports whether s may change things.
func (s *Session) Operator() bool { return s != nil && s.Role == RoleOperator }

// Allows reports whether s may see repo.
func (s *Session) Allows(repo string) bool {
	return s != nil && (s.Role == RoleOperator || slices.Contains(s.Repos, repo))
}

// signer makes and checks session tokens with one HMAC key.
type signer struct {
	key []byte
	ttl time.Duration
	now func() time.Time
}

func (s *signer) issue(login, role string, repos []string) (string, time.Time, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return "", time.Time{}, fmt.Errorf("session id: %w", err)
	}
	now := s.now()
	exp := now.Add(s.ttl)
	c := Claims{Role: role, Repos: repos, RegisteredClaims: jwt.RegisteredClaims{
		Issuer: issuer, Subject: login, ID: hex.EncodeToString(id),
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(exp),
	}}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(s.key)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign session: %w", err)
	}
	return tok, exp, nil
}

// parse checks a token's signature, algorithm, issuer and lifetime.
func (s *signer) parse(tok string) (*Session, error) {
	var c Claims
	_, err := jwt.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return s.key, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithIssuer(issuer),
		jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithTimeFunc(s.now))
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	if c.Subject == "" || c.ID == "" || (c.Role != RoleOperator && c.Role != RoleViewer) {
		return nil, errors.New("session: incomplete claims")
	}
	return &Session{Login: c.Subject, Role: c.Role, Repos: c.Repos, CSRF: s.csrf(c.ID), Expires: c.ExpiresAt.Time}, nil
}

// csrf derives a session's CSRF token from its id: a form or header must
// echo it, which a cross-site page cannot read.
func (s *signer) csrf(id string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("csrf:" + id))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// LoadKey returns the configured key, or the one kept under
// <dataDir>/creds/console.key, generating it (0600) the first time.
func LoadKey(configured, dataDir string) ([]byte, error) {
	if configured != "" {
		if len(configured) < 16 {
			return nil, errors.New("console key: want at least 16 characters")
		}
		return []byte(configured), nil
	}
	path := filepath.Join(dataDir, "creds", "console.key")
	if b, err := os.ReadFile(path); err == nil {
		if len(b) < 32 {
			return nil, fmt.Errorf("console key %s: too short", path)
		}
		return b, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("console key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("console key: %w", err)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("console key: %w", err)
	}
	key := []byte(hex.EncodeToString(b))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return LoadKey("", dataDir)
	}
	if err != nil {
		return nil, fmt.Errorf("console key: %w", err)
	}
	if _, err := f.Write(key); err != nil {
		f.Close()
		return nil, fmt.Errorf("console key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("console key: %w", err)
	}
	return key, nil
}
