package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/forgebus/forgebus/services/config"
	"github.com/forgebus/forgebus/services/platform"
	"github.com/forgebus/forgebus/workers/audit"
)

func init() { register(newDevCmd) }

// runner is one long-running part of "forgebus dev": run blocks until ctx is
// done (then stops cleanly and returns nil) or it fails.
type runner struct {
	name string
	run  func(ctx context.Context) error
}

func newDevCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run everything in one process: embedded NATS, ingest and every worker",
		Long: `dev starts an embedded NATS server (FORGEBUS_NATS_LISTEN, default
127.0.0.1:4222, store in FORGEBUS_DATA_DIR), ingest and every worker in one
process, and prints the URL to give Gogs. With no FORGEBUS_GOGS_SECRETS it
generates a secret and prints it once: paste it into the Gogs webhook, and set
FORGEBUS_GOGS_SECRETS to it to keep it across restarts. The NATS server lets
in only clients with credentials: dev creates them on first start in
FORGEBUS_DATA_DIR/creds (operator.creds for the CLIs, one file per role).
Ctrl-C stops cleanly.
Watch the events with "forgebus events tail" in another terminal.`,
		Args: cobra.NoArgs,
		RunE: runDev,
	}
	addFlag(cmd, "http-addr", "HTTP listen address")
	addFlag(cmd, "data-dir", "data directory")
	addFlag(cmd, "nats-listen", "embedded NATS server listen address")
	addFlag(cmd, "instance", "forge instance name in event subjects")
	return cmd
}

func runDev(cmd *cobra.Command, _ []string) error {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if cfg.NATS.URL != "" {
		return usage(errors.New("dev runs its own embedded NATS server: unset FORGEBUS_NATS_URL, or run 'forgebus ingest' against that server"))
	}
	generated := false
	if len(cfg.Gogs.Secrets) == 0 && !cfg.Gogs.AllowUnsigned {
		secret, err := newSecret()
		if err != nil {
			return err
		}
		cfg.Gogs.Secrets = []config.Secret{secret}
		generated = true
	}
	if err := cfg.Validate(); err != nil {
		return usage(err)
	}
	log, err := newLogger(cmd, cfg)
	if err != nil {
		return err
	}
	ctx := cmd.Context()

	// Take the HTTP port first: a clash fails before anything starts.
	ln, err := platform.Listen(cfg.HTTPAddr)
	if err != nil {
		return err
	}
	defer ln.Close()

	p, err := platform.Start(ctx, cfg, log, "dev")
	if err != nil {
		return err
	}
	defer p.Close()

	svc, err := newIngestService(ctx, p)
	if err != nil {
		return err
	}
	defer svc.close()
	// The audit worker signs with a key the bus does not hold: on first
	// start, one is created under <data_dir>/creds/ (0600).
	if cfg.AuditKeyFile == "" {
		created, err := audit.CreateKey(cfg.AuditKeyPath())
		if err != nil {
			return err
		}
		if created {
			log.Info().Str("path", cfg.AuditKeyPath()).Msg("created audit signing key")
		}
	}
	workers, closeWorkers, err := devWorkers(ctx, p)
	if err != nil {
		return err
	}
	defer closeWorkers()

	runners := append(svc.runners(ln), workers...)
	var consoleLine strings.Builder
	if err := cfg.ValidateConsole(); err != nil {
		fmt.Fprintf(&consoleLine, "  console:           off (%s)\n", oneLine(err.Error()))
	} else {
		r, err := consoleRunner(cfg, p.Broker.JS, log, &consoleLine)
		if err != nil {
			return err
		}
		runners = append(runners, r)
	}
	printBanner(out, ln.Addr(), p.Broker.ClientURL(), cfg, generated, len(workers), consoleLine.String())

	return runAll(ctx, p, runners)
}

// runAll runs every runner until ctx is done or one fails; then it stops the
// others and waits for them. It returns the first failure.
func runAll(ctx context.Context, p *platform.Platform, runners []runner) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for _, r := range runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := r.run(ctx)
			if err != nil {
				p.Log.Error().Err(err).Str("runner", r.name).Msg("stopped with an error")
				once.Do(func() { first = fmt.Errorf("%s: %w", r.name, err) })
			}
			cancel()
		}()
	}
	wg.Wait()
	return first
}

// newSecret returns 32 random bytes, hex-encoded.
func newSecret() (config.Secret, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return config.Secret{}, fmt.Errorf("generate secret: %w", err)
	}
	return config.NewSecret(hex.EncodeToString(b)), nil
}

func printBanner(w io.Writer, addr net.Addr, natsURL string, cfg config.Config, generated bool, workers int, console string) {
	fmt.Fprintf(w, "forgebus dev is running.\n")
	fmt.Fprintf(w, "  Gogs webhook URL:  %s\n", hookURL(addr))
	fmt.Fprintf(w, "  content type:      application/json (or form)\n")
	if generated {
		// The one place a secret is printed, on purpose, for the operator.
		fmt.Fprintf(w, "  Gogs webhook secret (generated, paste it into Gogs): %s\n", cfg.Gogs.Secrets[0].Reveal())
		fmt.Fprintf(w, "  to keep it across restarts: export FORGEBUS_GOGS_SECRETS=<that secret>\n")
	} else if cfg.Gogs.AllowUnsigned && len(cfg.Gogs.Secrets) == 0 {
		fmt.Fprintf(w, "  Gogs webhook secret: none (FORGEBUS_ALLOW_UNSIGNED is on)\n")
	} else {
		fmt.Fprintf(w, "  Gogs webhook secret: from FORGEBUS_GOGS_SECRETS (%d configured)\n", len(cfg.Gogs.Secrets))
	}
	fmt.Fprintf(w, "  NATS:              %s  (watch: forgebus events tail)\n", natsURL)
	if cfg.NATS.NoAuth {
		fmt.Fprintf(w, "  NATS auth:         OFF (FORGEBUS_NATS_AUTH=off)\n")
	} else {
		fmt.Fprintf(w, "  NATS credentials:  %s  (one per role; forgebus creds --help)\n", cfg.CredsDir())
	}
	fmt.Fprintf(w, "  data:              %s\n", cfg.DataDir)
	fmt.Fprintf(w, "  workers:           %d\n", workers)
	fmt.Fprint(w, console)
	fmt.Fprintf(w, "Ctrl-C to stop.\n")
}

// hookURL is the URL Gogs should post to: the bound port, and this host's
// name when listening on every interface.
func hookURL(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "http://" + addr.String() + hooksPath
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
		if h, err := os.Hostname(); err == nil && h != "" {
			host = h
		}
	}
	return "http://" + net.JoinHostPort(host, port) + hooksPath
}
