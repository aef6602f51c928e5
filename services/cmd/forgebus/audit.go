package main

import (
	"bufio"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/services/history"
	"github.com/forgebus/forgebus/services/operate"
	"github.com/forgebus/forgebus/workers/audit"
)

func init() { register(newAuditCmd) }

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify, export and query the signed, hash-chained audit log in " + schemas.StreamAudit,
		Long: `The audit worker appends one record per event, result and dead letter to
` + schemas.StreamAudit + `, each holding the hash of the one before it and signed
with the key of FORGEBUS_AUDIT_KEY_FILE. These
commands connect as a client to FORGEBUS_NATS_URL or, when unset, to the
embedded server of a running forgebus at nats://FORGEBUS_NATS_LISTEN; they
never start a server of their own.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usage(errors.New("audit needs a subcommand: verify, head, export, query, pubkey, keygen or rotate-key"))
		},
	}
	cmd.AddCommand(newAuditVerifyCmd(), newAuditExportCmd(), newAuditQueryCmd(), newAuditHeadCmd(), newAuditPubkeyCmd(), newAuditKeygenCmd(), newAuditRotateCmd())
	return cmd
}

func auditStreamErr(err error) error {
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("%w: stream %s (is the audit worker set up against this NATS?)", err, schemas.StreamAudit)
	}
	return err
}

// auditPublicKeys are the keys verify trusts: --pubkey values, else the
// public half of the configured signing key.
func auditPublicKeys(cmd *cobra.Command, flags []string) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for _, f := range flags {
		k, err := audit.ParsePublicKey(strings.TrimSpace(f))
		if err != nil {
			return nil, usage(fmt.Errorf("--pubkey: %w", err))
		}
		keys = append(keys, k)
	}
	if len(keys) > 0 {
		return keys, nil
	}
	priv, err := configuredAuditKey(cmd)
	if err != nil {
		return nil, usage(fmt.Errorf("%w; or give the public key with --pubkey", err))
	}
	return []ed25519.PublicKey{priv.Public().(ed25519.PublicKey)}, nil
}

// configuredAuditKey loads FORGEBUS_AUDIT_KEY_FILE, or the key "forgebus
// dev" created under the data directory.
func configuredAuditKey(cmd *cobra.Command) (ed25519.PrivateKey, error) {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return nil, err
	}
	return audit.LoadKey(cfg.AuditKeyPath())
}

func newAuditVerifyCmd() *cobra.Command {
	var (
		file, sinceHead string
		pubkeys         []string
		asJSON          bool
	)
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check signatures, chain, anchor, stream configuration and coverage; exit non-zero naming each problem",
		Long: `verify walks ` + schemas.StreamAudit + ` (or, with --file, a file written by
"forgebus audit export" without filters) and checks every record's hash,
its link to the one before, and its ed25519 signature against the public
key given with --pubkey (or the one of FORGEBUS_AUDIT_KEY_FILE). The log must
start at its genesis record or at a signed checkpoint. On the stream it also
checks that ` + schemas.StreamAudit + ` denies delete and purge and has no limit
that could drop records without a checkpoint, and that every message of
FORGE_EVENTS, FORGE_RESULTS and FORGE_DLQ up to the head has its record.
--since-head takes a head printed earlier by "forgebus audit head" and
checks that the log still holds it unchanged. It prints how many records
verified, or every problem found (the first one first) and exits 1.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ranCommand = true
			keys, err := auditPublicKeys(cmd, pubkeys)
			if err != nil {
				return err
			}
			opts := audit.Options{Keys: keys}
			if sinceHead != "" {
				f, err := os.Open(sinceHead)
				if err != nil {
					return fmt.Errorf("open %s: %w", sinceHead, err)
				}
				h, err := audit.ReadHead(f)
				f.Close()
				if err != nil {
					return usage(fmt.Errorf("--since-head %s: %w", sinceHead, err))
				}
				opts.SinceHead = &h
			}
			var rep *audit.Report
			if file != "" {
				f, err := os.Open(file)
				if err != nil {
					return fmt.Errorf("open %s: %w", file, err)
				}
				defer f.Close()
				rep = audit.VerifyFile(f, opts)
			} else {
				b, err := connectClient(cmd, "audit-verify")
				if err != nil {
					return err
				}
				defer b.Close()
				rep, err = operate.VerifyAudit(cmd.Context(), b.JS, opts)
				if err != nil {
					return auditStreamErr(err)
				}
			}
			return printReport(cmd.OutOrStdout(), cmd.ErrOrStderr(), rep, asJSON)
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "verify an exported JSON-lines file instead of the stream (offline: no configuration or coverage check)")
	cmd.Flags().StringArrayVar(&pubkeys, "pubkey", nil, "trusted audit public key (base64, as 'forgebus audit pubkey' prints it); repeatable")
	cmd.Flags().StringVar(&sinceHead, "since-head", "", "a file holding a head printed by 'forgebus audit head': the log must still hold it unchanged")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	addClientFlags(cmd)
	return cmd
}

// printReport prints rep; a log with problems is an error (exit 1).
func printReport(out, errOut io.Writer, rep *audit.Report, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	}
	if rep.OK() {
		if !asJSON {
			head := "empty log"
			if rep.Head != nil {
				head = fmt.Sprintf("head seq %d %s", rep.Head.Seq, rep.Head.Hash)
			}
			fmt.Fprintf(out, "ok: %d records verified from %s, %s; checked %s\n", rep.Count, orDash(rep.Anchor), head, strings.Join(rep.Checked, ", "))
		}
		return nil
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(errOut, "problem: %s\n", printable(p.String()))
	}
	if rep.Dropped > 0 {
		fmt.Fprintf(errOut, "problem: %d more not listed\n", rep.Dropped)
	}
	return errors.New(printable(fmt.Sprintf("%d of %d records intact: %v", rep.Count, rep.Read, rep.Err())))
}

// printable replaces what a terminal could act on: problems quote record
// fields, which come from anyone who can publish.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, s)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newAuditHeadCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "head",
		Short: "Print the signed head of the audit log (seq, hash, time, key, signature) as JSON, to keep elsewhere",
		Long: `head prints the last record of ` + schemas.StreamAudit + ` as a JSON object: its
seq, hash, time, the key that signed it and the signature. Keep it outside
the bus (a ticket, a backup); "forgebus audit verify --since-head <file>"
later proves that nothing up to it has changed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := connectClient(cmd, "audit-head")
			if err != nil {
				return err
			}
			defer b.Close()
			h, err := audit.LastHead(cmd.Context(), b.JS)
			if err != nil {
				return auditStreamErr(err)
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			if err := enc.Encode(h); err != nil {
				return fmt.Errorf("write head: %w", err)
			}
			return nil
		},
	}
	addClientFlags(cmd)
	return cmd
}

func newAuditPubkeyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pubkey",
		Short: "Print the public key of the audit signing key (FORGEBUS_AUDIT_KEY_FILE)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			priv, err := configuredAuditKey(cmd)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), audit.EncodePublicKey(priv.Public().(ed25519.PublicKey)))
			return nil
		},
	}
	addFlag(cmd, "data-dir", "data directory")
	return cmd
}

// parseSince reads an RFC 3339 time or a duration back from now ("24h").
func parseWhen(flag, s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--%s %q: want an RFC 3339 time (2026-11-24T12:00:00Z) or a duration back from now (24h)", flag, s)
}

func checkRepo(repo string) error {
	if repo == "" {
		return nil
	}
	owner, name, ok := strings.Cut(repo, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		return fmt.Errorf("--repo %q: want owner/name", repo)
	}
	return nil
}

func newAuditExportCmd() *cobra.Command {
	var since, until, repo string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write the audit records as JSON lines to stdout",
		Long: `export writes the records of ` + schemas.StreamAudit + ` to stdout, one JSON
line each, exactly as stored. --since and --until bound the record's time
(the event's, result's or dead letter's own time); --repo keeps one
repository. An export without filters can be checked with
"forgebus audit verify --file".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			now := time.Now()
			var f audit.Filter
			var err error
			if f.Since, err = parseWhen("since", since, now); err != nil {
				return usage(err)
			}
			if f.Until, err = parseWhen("until", until, now); err != nil {
				return usage(err)
			}
			if err := checkRepo(repo); err != nil {
				return usage(err)
			}
			f.Repo = repo
			b, err := connectClient(cmd, "audit-export")
			if err != nil {
				return err
			}
			defer b.Close()
			out := bufio.NewWriter(cmd.OutOrStdout())
			if _, err := audit.Export(cmd.Context(), b.JS, f, out); err != nil {
				return auditStreamErr(err)
			}
			return out.Flush()
		},
	}
	cmd.Flags().StringVar(&since, "since", "", "only records at or after this time (RFC 3339) or this long ago (24h)")
	cmd.Flags().StringVar(&until, "until", "", "only records at or before this time (RFC 3339) or this long ago")
	cmd.Flags().StringVar(&repo, "repo", "", "only records of this repository (owner/name)")
	addClientFlags(cmd)
	return cmd
}

func newAuditQueryCmd() *cobra.Command {
	var (
		since, repo string
		pubkeys     []string
	)
	cmd := &cobra.Command{
		Use:   "query",
		Short: "Show a repository's verified audit records as a table: time, who, what, worker, why (a skip reason), event id",
		Long: `query lists the records of one repository that verify (hash, link and
signature by the chain's key, checked against --pubkey or the configured
key). Records that do not verify are left out, with a warning on stderr:
run "forgebus audit verify" to see why.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if repo == "" {
				return usage(errors.New("query needs --repo owner/name"))
			}
			if err := checkRepo(repo); err != nil {
				return usage(err)
			}
			t, err := parseWhen("since", since, time.Now())
			if err != nil {
				return usage(err)
			}
			keys, err := auditPublicKeys(cmd, pubkeys)
			if err != nil {
				return err
			}
			b, err := connectClient(cmd, "audit-query")
			if err != nil {
				return err
			}
			defer b.Close()
			recs, rep, err := audit.QueryVerified(cmd.Context(), b.JS, repo, t, audit.Options{Keys: keys})
			if err != nil {
				return auditStreamErr(err)
			}
			if !rep.OK() {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: the audit log does not verify (%d problems, the first: %s); records that do not verify are left out: run 'forgebus audit verify'\n",
					len(rep.Problems)+rep.Dropped, printable(rep.Problems[0].String()))
			}
			return printTable(cmd.OutOrStdout(), recs)
		},
	}
	cmd.Flags().StringVar(&repo, "repo", "", "repository (owner/name), required")
	cmd.Flags().StringVar(&since, "since", "", "only records at or after this time (RFC 3339) or this long ago (24h)")
	cmd.Flags().StringArrayVar(&pubkeys, "pubkey", nil, "trusted audit public key (base64); default: the configured key's")
	addClientFlags(cmd)
	return cmd
}

// printTable writes one row per record. Fields come from webhooks, so
// anything unprintable is replaced: a terminal gets no escape sequences.
func printTable(w io.Writer, recs []schemas.AuditRecord) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tWHO\tWHAT\tWORKER\tWHY\tEVENT ID")
	for _, r := range recs {
		what := r.EventType
		switch r.Kind {
		case schemas.AuditKindResult, schemas.AuditKindDeadLetter:
			what = strings.TrimSpace(r.EventType + " " + string(r.Outcome))
		}
		when := "-"
		if !r.Time.IsZero() {
			when = r.Time.UTC().Format(time.RFC3339)
		}
		// A job that did nothing says why (a skip, a newer event).
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", when, cell(r.Sender), cell(what), cell(r.Worker), cell(history.Reason(r.Detail)), cell(r.EventID))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

func cell(s string) string {
	if s == "" {
		return "-"
	}
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return strings.Map(func(r rune) rune {
		if !unicode.IsPrint(r) || r == '\t' {
			return '?'
		}
		return r
	}, s)
}

func newAuditRotateCmd() *cobra.Command {
	var newKey string
	cmd := &cobra.Command{
		Use:   "rotate-key",
		Short: "Hand the audit chain from the configured key to a new one with a signed key-change record",
		Long: `rotate-key appends a key_change record signed by the current key
(FORGEBUS_AUDIT_KEY_FILE) and by the new one (--new-key, created 0600 if the
file does not exist), then prints the new public key. Stop the audit
workers first; start them again with FORGEBUS_AUDIT_KEY_FILE set to the new
key. verify accepts either public key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if newKey == "" {
				return usage(errors.New("rotate-key needs --new-key <file>"))
			}
			old, err := configuredAuditKey(cmd)
			if err != nil {
				return err
			}
			if _, err := audit.CreateKey(newKey); err != nil {
				return err
			}
			next, err := audit.LoadKey(newKey)
			if err != nil {
				return err
			}
			b, err := connectClient(cmd, "audit-rotate")
			if err != nil {
				return err
			}
			defer b.Close()
			h, err := audit.RotateKey(cmd.Context(), b.JS, old, next)
			if err != nil {
				return auditStreamErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "key change recorded at seq %d; new public key:\n%s\n", h.Seq, audit.EncodePublicKey(next.Public().(ed25519.PublicKey)))
			return nil
		},
	}
	cmd.Flags().StringVar(&newKey, "new-key", "", "file of the new signing key (created if absent)")
	addClientFlags(cmd)
	return cmd
}

func newAuditKeygenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keygen <file>",
		Short: "Create an audit signing key file (ed25519, mode 0600) and print its public key",
		Long: `keygen writes a new ed25519 key to <file> (PEM PKCS #8, mode 0600, its
directory 0700) for FORGEBUS_AUDIT_KEY_FILE, and prints the public key to give
to "forgebus audit verify --pubkey". It never overwrites a file.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ranCommand = true
			created, err := audit.CreateKey(args[0])
			if err != nil {
				return err
			}
			if !created {
				return usage(fmt.Errorf("%s exists: keygen never overwrites a key", args[0]))
			}
			priv, err := audit.LoadKey(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), audit.EncodePublicKey(priv.Public().(ed25519.PublicKey)))
			return nil
		},
	}
	return cmd
}
