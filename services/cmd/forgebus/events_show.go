package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/services/history"
)

func newEventsShowCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show <event id>",
		Short: "Print one delivery's whole story: the event, each worker's attempts, dead letters, replays and audit records",
		Long: `show reads the event (its id is the Gogs delivery id) from ` + schemas.StreamEvents + `,
every result of every worker from ` + schemas.StreamResults + `, the dead letters still
in ` + schemas.StreamDLQ + `, the replays, and the audit records that cover it, and prints
them as one timeline, oldest first, then each worker's attempts with their
detail, error and output tail. --json prints the same as one JSON object.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if id == "" || len(id) > 256 || strings.ContainsFunc(id, unicode.IsControl) {
				return usage(fmt.Errorf("show: %q is not an event id", id))
			}
			b, err := connectClient(cmd, "events-show")
			if err != nil {
				return err
			}
			defer b.Close()
			s, err := history.Load(cmd.Context(), b.JS, id)
			if errors.Is(err, history.ErrNotFound) {
				return fmt.Errorf("event %s is not in %s (wrong id, or older than the stream keeps)", dlqCell(id, 80), schemas.StreamEvents)
			}
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(s)
			}
			return writeStory(cmd.OutOrStdout(), s)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the story as one JSON object")
	addClientFlags(cmd)
	return cmd
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// writeStory prints s for a terminal. Every field can come from a
// webhook, so each goes through dlqCell (one line, no control characters).
func writeStory(w io.Writer, s history.Story) error {
	d := s.Delivery
	fmt.Fprintf(w, "event       %s\n", dlqCell(d.EventID, 80))
	fmt.Fprintf(w, "type        %s\n", dlqCell(d.Event, 40))
	fmt.Fprintf(w, "repo        %s\n", dlqCell(d.Repo, 80))
	fmt.Fprintf(w, "ref         %s\n", dlqCell(d.Ref, 80))
	fmt.Fprintf(w, "sender      %s\n", dlqCell(d.Sender, 80))
	fmt.Fprintf(w, "delivery    %s\n", dlqCell(d.DeliveryID, 80))
	fmt.Fprintf(w, "stream seq  %d (%s)\n", d.StreamSeq, schemas.StreamEvents)
	fmt.Fprintf(w, "accepted at %s\n", stamp(d.AcceptedAt))
	how := "directly"
	if d.Spooled {
		how = "spooled by ingest while the broker was away"
	}
	fmt.Fprintf(w, "stored at   %s (%s)\n", stamp(d.StoredAt), how)
	for _, c := range d.Commits {
		fmt.Fprintf(w, "commit      %s %s (%s)\n", dlqCell(shortID(c.ID), 12), dlqCell(c.Message, 72), dlqCell(c.Author, 40))
		for _, p := range c.Added {
			fmt.Fprintf(w, "              + %s\n", dlqCell(p, 120))
		}
		for _, p := range c.Modified {
			fmt.Fprintf(w, "              ~ %s\n", dlqCell(p, 120))
		}
		for _, p := range c.Removed {
			fmt.Fprintf(w, "              - %s\n", dlqCell(p, 120))
		}
	}

	fmt.Fprintf(w, "\ntimeline\n")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  TIME\tWORKER\tSTEP\tERROR")
	for _, st := range s.Steps {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", stamp(st.At), dlqCell(st.Worker, 20), dlqCell(st.Text, 120), dlqCell(st.Error, 120))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write: %w", err)
	}

	for _, ws := range s.Workers {
		fmt.Fprintf(w, "\nworker %s: %s\n", dlqCell(ws.Worker, 40), ws.Outcome)
		for _, a := range ws.Attempts {
			fmt.Fprintf(w, "  attempt %d  %s  %s  %.0f ms\n", a.Attempt, a.Outcome, stamp(a.Finished), a.DurationMS)
			if a.Rule != "" {
				fmt.Fprintf(w, "    rule:   %s\n", dlqCell(a.Rule, 80))
			}
			if a.Error != "" {
				fmt.Fprintf(w, "    error:  %s\n", dlqCell(a.Error, 300))
			}
			for _, k := range slices.Sorted(maps.Keys(a.Detail)) {
				if k == "output_tail" {
					continue
				}
				fmt.Fprintf(w, "    %s: %s\n", dlqCell(k, 40), dlqCell(a.Detail[k], 200))
			}
			if tail := a.Detail["output_tail"]; tail != "" {
				fmt.Fprintf(w, "    output tail:\n")
				for _, line := range strings.Split(strings.TrimRight(tail, "\n"), "\n") {
					fmt.Fprintf(w, "      | %s\n", dlqCell(line, 200))
				}
			}
		}
		for _, dl := range ws.DeadLetters {
			fmt.Fprintf(w, "  in %s as seq %d since %s: %s (replay: forgebus dlq replay %d)\n",
				schemas.StreamDLQ, dl.Seq, stamp(dl.Stored), dlqCell(dl.Letter.Error, 200), dl.Seq)
		}
	}

	fmt.Fprintf(w, "\naudit records (%s)\n", schemas.StreamAudit)
	if len(s.Audit) == 0 {
		fmt.Fprintln(w, "  none")
		return nil
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  SEQ\tTIME\tKIND\tWORKER\tOUTCOME\tWHY\tHASH")
	for _, r := range s.Audit {
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Seq, stamp(r.Time), r.Kind, dlqCell(r.Worker, 20),
			dlqCell(string(r.Outcome), 20), dlqCell(history.Reason(r.Detail), 80), dlqCell(shortID(r.Hash), 12))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

func shortID(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
