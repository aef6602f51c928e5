package main

import (
	"bufio"
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
		Short: "Verify, export and query the hash-chained audit log in " + schemas.StreamAudit,
		Long: `The audit worker appends one record per event, result and dead letter to
` + schemas.StreamAudit + `, each holding the hash of the one before it. These
commands connect as a client to FORGEBUS_NATS_URL or, when unset, to the
embedded server of a running forgebus at nats://FORGEBUS_NATS_LISTEN; they
never start a server of their own.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usage(errors.New("audit needs a subcommand: verify, export or query"))
		},
	}
	cmd.AddCommand(newAuditVerifyCmd(), newAuditExportCmd(), newAuditQueryCmd())
	return cmd
}

func auditStreamErr(err error) error {
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("%w: stream %s (is the audit worker set up against this NATS?)", err, schemas.StreamAudit)
	}
	return err
}

func newAuditVerifyCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Recompute every hash and prev link; exit non-zero naming the first broken record",
		Long: `verify walks ` + schemas.StreamAudit + ` (or, with --file, a file written by
"forgebus audit export" without filters), recomputes every record's hash over
its canonical form and checks every prev_hash link and that sequences are
contiguous. It prints how many records verified, or fails naming the first
record that does not.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var (
				n   int
				err error
			)
			if file != "" {
				ranCommand = true
				f, ferr := os.Open(file)
				if ferr != nil {
					return fmt.Errorf("open %s: %w", file, ferr)
				}
				defer f.Close()
				n, err = audit.Verify(f)
			} else {
				b, cerr := connectClient(cmd, "audit-verify")
				if cerr != nil {
					return cerr
				}
				defer b.Close()
				n, err = operate.VerifyAudit(cmd.Context(), b.JS)
				err = auditStreamErr(err)
			}
			if err != nil {
				return fmt.Errorf("%d records verified before the break: %w", n, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ok: %d records verified, chain unbroken\n", n)
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "verify an exported JSON-lines file instead of the stream")
	addClientFlags(cmd)
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
	var since, repo string
	cmd := &cobra.Command{
		Use:   "query",
		Short: "Show a repository's audit records as a table: time, who, what, worker, why (a skip reason), event id",
		Args:  cobra.NoArgs,
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
			b, err := connectClient(cmd, "audit-query")
			if err != nil {
				return err
			}
			defer b.Close()
			recs, err := audit.Query(cmd.Context(), b.JS, repo, t)
			if err != nil {
				return auditStreamErr(err)
			}
			return printTable(cmd.OutOrStdout(), recs)
		},
	}
	cmd.Flags().StringVar(&repo, "repo", "", "repository (owner/name), required")
	cmd.Flags().StringVar(&since, "since", "", "only records at or after this time (RFC 3339) or this long ago (24h)")
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
