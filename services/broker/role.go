package broker

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/services/config"
	"github.com/forgebus/forgebus/services/creds"
)

// defaultCreds is the credentials file a client uses when none is
// configured: <data_dir>/creds/<name> when it exists, else operator.creds
// when it exists, else none.
func defaultCreds(cfg config.Config, name string) string {
	for _, n := range []string{name, creds.OperatorCreds} {
		if n == "" {
			continue
		}
		p := filepath.Join(cfg.CredsDir(), n)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// readCreds reads the user JWT of a credentials file: its forgebus role
// (from its tags) and its reply-inbox prefix (from its subscribe
// permissions), both "" when it has none.
func readCreds(path string) (role, inbox string, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", "", fmt.Errorf("nats creds %s: %w", path, err)
	}
	if err != nil {
		return "", "", fmt.Errorf("nats creds: %w", err)
	}
	t, err := jwt.ParseDecoratedJWT(data)
	if err != nil {
		return "", "", fmt.Errorf("nats creds %s: %w", path, err)
	}
	uc, err := jwt.DecodeUserClaims(t)
	if err != nil {
		// Not a user JWT of ours: let the server judge it.
		return "", "", nil
	}
	for _, tag := range uc.Tags {
		if r, ok := strings.CutPrefix(tag, "forgebus-role:"); ok {
			role = r
		}
	}
	for _, s := range uc.Sub.Allow {
		if p, ok := strings.CutSuffix(s, ".>"); ok && strings.HasPrefix(p, "_INBOX_") {
			inbox = p
		}
	}
	return role, inbox, nil
}

// Role is the forgebus role of the connection's credentials, or "" when it
// has none of ours (no credentials, a password, another issuer's creds).
func (b *Broker) Role() string { return b.role }

// Admin reports whether the connection may administer the streams: it is
// the operator's, or one with no forgebus role (as before roles existed).
func (b *Broker) Admin() bool { return b.role == "" || b.role == creds.RoleOperator }

// Store is the embedded server's credentials store, or nil.
func (b *Broker) Store() *creds.Store { return b.store }

// DialRole opens a second connection to b's embedded server as the given
// service role (the name of its file in <data_dir>/creds without .creds),
// so that each part of one process runs with its own rights. Without an
// embedded server or with auth off, it connects as cfg says.
func (b *Broker) DialRole(ctx context.Context, cfg config.Config, log zerolog.Logger, role string) (*Broker, error) {
	if b.srv != nil {
		cfg.NATS.URL = b.srv.ClientURL()
		cfg.NATS.Creds, cfg.NATS.User = "", ""
		if b.store != nil {
			cfg.NATS.Creds = b.store.Path(role + ".creds")
		}
	}
	return Connect(ctx, cfg, log, ClientOnly(), WithRole(role), CredsFile(role+".creds"))
}
