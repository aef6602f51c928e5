package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/forgebus/forgebus/services/broker"
	"github.com/forgebus/forgebus/services/config"
	"github.com/forgebus/forgebus/services/creds"
)

func init() { register(newCredsCmd) }

func newCredsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "creds",
		Short: "Issue, list and revoke NATS credentials (one role each, least privilege)",
		Long: `creds manages the NATS identities in FORGEBUS_DATA_DIR/creds: the operator
and account keys the embedded server trusts (created on first start of
"forgebus dev" or "forgebus ingest"), and the users issued from them. Each
user has one role: operator, ingest, worker (--worker NAME), audit, or
subscriber (--subjects, read-only). See docs/nats-auth.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usage(errors.New("creds needs a subcommand: issue, list, revoke, server-config"))
		},
	}
	cmd.AddCommand(newCredsIssueCmd(), newCredsListCmd(), newCredsRevokeCmd(), newCredsServerConfigCmd())
	return cmd
}

// openStore loads the configuration and opens the credentials store.
func openStore(cmd *cobra.Command) (config.Config, *creds.Store, error) {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return cfg, nil, err
	}
	if err := validateNoWebhook(cfg); err != nil {
		return cfg, nil, err
	}
	st, err := creds.Open(cfg.CredsDir())
	return cfg, st, err
}

func addStoreFlags(cmd *cobra.Command) {
	addFlag(cmd, "data-dir", "data directory (its creds/ holds the keys)")
	addClientFlags(cmd)
}

func newCredsIssueCmd() *cobra.Command {
	var (
		spec    creds.Spec
		expires string
	)
	cmd := &cobra.Command{
		Use:   "issue",
		Short: "Issue a user's credentials file, printed on stdout",
		Example: `  forgebus creds issue --role subscriber --name billing --subjects 'forge.gogs.push.acme.>' --expires 90d > billing.creds
  forgebus creds issue --role worker --worker docs > docs.creds
  forgebus creds issue --role ingest > ingest.creds`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := parseExpiry(expires)
			if err != nil {
				return usage(err)
			}
			spec.Expires = d
			if err := spec.Validate(); err != nil {
				return usage(err)
			}
			_, st, err := openStore(cmd)
			if err != nil {
				return err
			}
			us, err := st.Users()
			if err != nil {
				return err
			}
			for _, u := range us {
				if u.Name == spec.Name && u.RevokedAt.IsZero() {
					return usage(fmt.Errorf("%w: %s (revoke it first)", creds.ErrExists, spec.Name))
				}
			}
			if spec.Role == creds.RoleSubscriber {
				// The subscriber's consumers first: it may not create them.
				if err := makeConsumers(cmd, spec); err != nil {
					return err
				}
			}
			data, u, err := st.Issue(spec)
			if errors.Is(err, creds.ErrExists) || errors.Is(err, creds.ErrInvalid) {
				return usage(err)
			}
			if err != nil {
				return err
			}
			if _, err := cmd.OutOrStdout().Write(data); err != nil {
				return err
			}
			msg := fmt.Sprintf("issued %s (role %s, key %s)", u.Name, u.Role, u.PublicKey)
			if !u.ExpiresAt.IsZero() {
				msg += ", expires " + u.ExpiresAt.Format(time.RFC3339)
			}
			fmt.Fprintln(cmd.ErrOrStderr(), msg)
			if spec.Role == creds.RoleSubscriber {
				fmt.Fprintf(cmd.ErrOrStderr(), "its durable consumer: %s (set nats.CustomInboxPrefix(%q))\n", spec.ConsumerName(), creds.InboxPrefix(u.Name))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&spec.Role, "role", "", "role: "+strings.Join(creds.Roles, ", "))
	f.StringVar(&spec.Name, "name", "", "user name (default: the role, or worker-<worker>)")
	f.StringVar(&spec.Worker, "worker", "", "the worker a worker user runs (docs, models, envsync, ...)")
	f.StringSliceVar(&spec.Subjects, "subjects", nil, "a subscriber's subject filters (forge.<instance>.… or forgebus.results.…)")
	f.StringSliceVar(&spec.Buckets, "buckets", nil, "extra KV buckets a worker may use (envsync targets)")
	f.StringVar(&expires, "expires", "", "validity, e.g. 90d or 720h (default: no expiry)")
	addStoreFlags(cmd)
	return cmd
}

// makeConsumers creates a subscriber's durable consumers as the operator.
func makeConsumers(cmd *cobra.Command, spec creds.Spec) error {
	b, err := connectClient(cmd, "creds")
	if err != nil {
		return err
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
	defer cancel()
	made, err := creds.EnsureSubscriberConsumers(ctx, b.JS, spec)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "consumers: %s\n", strings.Join(made, ", "))
	return nil
}

// parseExpiry reads 90d (days) or a Go duration; "" is no expiry.
func parseExpiry(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days <= 0 {
			return 0, fmt.Errorf("--expires %q: want e.g. 90d or 720h", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("--expires %q: want e.g. 90d or 720h", s)
	}
	return d, nil
}

func newCredsListCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the issued users",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, st, err := openStore(cmd)
			if err != nil {
				return err
			}
			us, err := st.Users()
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tROLE\tSCOPE\tISSUED\tEXPIRES\tSTATUS")
			for _, u := range us {
				scope := u.Worker
				if u.Role == creds.RoleSubscriber {
					scope = strings.Join(u.Subjects, ",")
				}
				exp, status := "never", "active"
				if !u.ExpiresAt.IsZero() {
					exp = u.ExpiresAt.Format(time.RFC3339)
					if time.Now().After(u.ExpiresAt) {
						status = "expired"
					}
				}
				if !u.RevokedAt.IsZero() {
					status = "revoked " + u.RevokedAt.Format(time.RFC3339)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", u.Name, u.Role, scope, u.Issued.Format(time.RFC3339), exp, status)
			}
			return w.Flush()
		},
	}
	addStoreFlags(cmd)
	return cmd
}

func newCredsRevokeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revoke <name>",
		Short: "Revoke a user: the running servers cut it off at once",
		Long: `revoke records the revocation in the account JWT and pushes that JWT to the
running server (the embedded one, or every node of a cluster through the
system account): the user's connections are closed and it cannot connect
again. A server started later reads the revocation from the store (the
embedded server) or from its configuration (regenerate it with
"forgebus creds server-config").`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, st, err := openStore(cmd)
			if err != nil {
				return err
			}
			accJWT, err := st.Revoke(args[0])
			if errors.Is(err, creds.ErrNotFound) {
				return usage(err)
			}
			if err != nil {
				return err
			}
			if err := pushAccount(cmd.Context(), cfg, st, accJWT); err != nil {
				return fmt.Errorf("revoked %s in %s, but no running server took it (it will at its next start): %w", args[0], st.Dir(), err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "revoked %s\n", args[0])
			return nil
		},
	}
	addStoreFlags(cmd)
	return cmd
}

// pushAccount sends the account JWT to the servers as the system user.
func pushAccount(ctx context.Context, cfg config.Config, st *creds.Store, accJWT string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cfg.NATS.Creds, cfg.NATS.User = st.Path(creds.SystemCreds), ""
	b, err := broker.Connect(ctx, cfg, zerolog.Nop(), broker.ClientOnly(), broker.WithRole("creds"))
	if err != nil {
		return err
	}
	defer b.Close()
	return creds.Push(ctx, b.Conn, accJWT)
}

func newCredsServerConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "server-config",
		Short: "Print the nats-server configuration that trusts these credentials",
		Long: `server-config prints the operator, system account and account JWTs as a
nats-server configuration block (resolver MEMORY, preloaded). Include it in
each node's configuration of an existing NATS cluster; regenerate and reload
after a revocation so that a restarted node keeps it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, st, err := openStore(cmd)
			if err != nil {
				return err
			}
			if err := st.EnsureServices(creds.Workers); err != nil {
				return err
			}
			s, err := st.ServerConfig()
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), s)
			return err
		},
	}
	addStoreFlags(cmd)
	return cmd
}
