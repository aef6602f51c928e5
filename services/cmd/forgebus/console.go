package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"github.com/forgebus/forgebus/workers/audit"
	"io"
	"net"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/forgebus/forgebus/services/config"
	"github.com/forgebus/forgebus/services/console"
)

func init() { register(newConsoleCmd) }

func newConsoleCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "console",
		Short: "Serve the web console: deliveries, timelines, workers, dead letters, audit; sign-in with Gogs",
		Long: `console serves the web console on FORGEBUS_CONSOLE_ADDR (default
127.0.0.1:8081; never the webhook address). People sign in with their Gogs
username and password or an access token, checked against FORGEBUS_GOGS_URL;
FORGEBUS_CONSOLE_OPERATOR_ORGS and FORGEBUS_CONSOLE_VIEWER_ORGS map Gogs
organisations to roles. It connects as a client to FORGEBUS_NATS_URL or, when
unset, to the embedded server of a running forgebus at nats://FORGEBUS_NATS_LISTEN.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			if err := validateNoWebhook(cfg); err != nil {
				return err
			}
			if err := cfg.ValidateConsole(); err != nil {
				return usage(err)
			}
			b, err := connectClient(cmd, "console")
			if err != nil {
				return err
			}
			defer b.Close()
			log, err := newLogger(cmd, cfg)
			if err != nil {
				return err
			}
			r, err := consoleRunner(cfg, b.JS, log, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			return r.run(cmd.Context())
		},
	}
	addClientFlags(cmd)
	addFlag(cmd, "data-dir", "data directory (the console's session key lives in <data-dir>/creds)")
	return cmd
}

// consoleRunner takes the console's address, prints its URL and returns
// the runner that serves it.
func consoleRunner(cfg config.Config, js jetstream.JetStream, log zerolog.Logger, out io.Writer) (runner, error) {
	key, err := console.LoadKey(cfg.Console.Key.Reveal(), cfg.DataDir)
	if err != nil {
		return runner{}, err
	}
	// The Audit page verifies against the configured signing key's public half.
	var auditKeys []ed25519.PublicKey
	if k, err := audit.LoadKey(cfg.AuditKeyPath()); err == nil {
		auditKeys = append(auditKeys, k.Public().(ed25519.PublicKey))
	} else {
		log.Warn().Err(err).Msg("console: no audit key to verify with (FORGEBUS_AUDIT_KEY_FILE); the Audit page's verify will fail")
	}
	srv, err := console.New(js, console.Config{
		GogsURL: cfg.Gogs.URL, Key: key, SessionTTL: cfg.Console.SessionTTL, AuditKeys: auditKeys,
		OperatorOrgs: cfg.Console.OperatorOrgs, ViewerOrgs: cfg.Console.ViewerOrgs,
		SecureCookie: cfg.Console.SecureCookie || cfg.Console.TLSCert != "",
	}, log)
	if err != nil {
		return runner{}, err
	}
	ln, err := net.Listen("tcp", cfg.Console.Addr)
	if err != nil {
		return runner{}, fmt.Errorf("listen on %s (FORGEBUS_CONSOLE_ADDR): %w", cfg.Console.Addr, err)
	}
	scheme := "http"
	if cfg.Console.TLSCert != "" {
		scheme = "https"
	}
	fmt.Fprintf(out, "  console:           %s://%s/  (sign in with Gogs at %s)\n", scheme, ln.Addr(), cfg.Gogs.URL)
	return runner{name: "console", run: func(ctx context.Context) error {
		return srv.Serve(ctx, ln, cfg.Console.TLSCert, cfg.Console.TLSKey)
	}}, nil
}
