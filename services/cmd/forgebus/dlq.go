package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/services/operate"
	"github.com/forgebus/forgebus/workers/runtime"
)

func init() { register(newDLQCmd) }

func newDLQCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "List the dead letters in " + schemas.StreamDLQ + " and replay them",
		Long: `A worker dead-letters an event it gives up on (a permanent error, or its
last allowed delivery failed) to ` + schemas.StreamDLQ + `, with the error. Fix the
cause, then replay: the event goes back to that worker alone, with a fresh
attempt count, and leaves the DLQ once republished. These commands connect as
a client to FORGEBUS_NATS_URL or, when unset, to the embedded server of a
running forgebus at nats://FORGEBUS_NATS_LISTEN.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usage(errors.New("dlq needs a subcommand: list or replay"))
		},
	}
	cmd.AddCommand(newDLQListCmd(), newDLQReplayCmd())
	return cmd
}

func dlqStreamErr(err error) error {
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("%w: stream %s (has forgebus run against this NATS?)", err, schemas.StreamDLQ)
	}
	return err
}

func newDLQListCmd() *cobra.Command {
	var worker string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the dead letters, oldest first: sequence, event id, repo, worker, attempts, time, error",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := connectClient(cmd, "dlq")
			if err != nil {
				return err
			}
			defer b.Close()
			list, err := runtime.ListDeadLetters(cmd.Context(), b.JS, worker)
			if err != nil {
				return dlqStreamErr(err)
			}
			if asJSON {
				return writeDLQJSON(cmd.OutOrStdout(), list)
			}
			return writeDLQTable(cmd.OutOrStdout(), list)
		},
	}
	cmd.Flags().StringVar(&worker, "worker", "", "only this worker's dead letters")
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line instead of a table")
	addClientFlags(cmd)
	return cmd
}

func writeDLQJSON(w io.Writer, list []runtime.DeadLetterEntry) error {
	enc := json.NewEncoder(w)
	for _, e := range list {
		if err := enc.Encode(e); err != nil {
			return err
		}
	}
	return nil
}

func writeDLQTable(w io.Writer, list []runtime.DeadLetterEntry) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tEVENT ID\tREPO\tWORKER\tATTEMPTS\tDEAD AT\tERROR")
	for _, e := range list {
		l := e.Letter
		errText := l.Error
		if e.Err != "" {
			errText = e.Err
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", e.Seq, dlqCell(l.EventID, 40), dlqCell(l.Repo, 40),
			dlqCell(l.Worker, 20), l.Attempts, l.DeadAt.UTC().Format(time.RFC3339), dlqCell(errText, 80))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "no dead letters")
		return err
	}
	return nil
}

// dlqCell makes a stranger's text safe for one table cell: one line, no
// control characters, at most n runes.
func dlqCell(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.IsSpace(r) && r != ' ' {
			return ' '
		}
		if !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if r := []rune(s); len(r) > n {
		s = string(r[:n-1]) + "…"
	}
	if s == "" {
		return "-"
	}
	return s
}

func newDLQReplayCmd() *cobra.Command {
	var worker string
	var all bool
	cmd := &cobra.Command{
		Use:   "replay <seq>... | --all [--worker W]",
		Short: "Send dead letters back to their worker, and remove each once republished",
		Long: `replay republishes each dead letter's original event to ` + schemas.StreamEvents + ` on its
original subject, for its worker alone (header ` + runtime.ReplayHeader + `), and removes it
from ` + schemas.StreamDLQ + ` once the broker has stored it. The worker handles it
with a fresh attempt count; an event it finished meanwhile is a duplicate.
Give the sequences "forgebus dlq list" shows, or --all (with --worker, one
worker's).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case all && len(args) > 0:
				return usage(errors.New("replay: give sequences or --all, not both"))
			case !all && len(args) == 0:
				return usage(errors.New("replay: give the sequences to replay, or --all"))
			case worker != "" && !all:
				return usage(errors.New("replay: --worker goes with --all"))
			}
			seqs := make([]uint64, 0, len(args))
			for _, a := range args {
				n, err := strconv.ParseUint(a, 10, 64)
				if err != nil || n == 0 {
					return usage(fmt.Errorf("replay: %q is not a sequence number", a))
				}
				seqs = append(seqs, n)
			}
			b, err := connectClient(cmd, "dlq")
			if err != nil {
				return err
			}
			defer b.Close()
			ctx := cmd.Context()
			if all {
				all, err := operate.AllDeadLetters(ctx, b.JS, worker)
				if err != nil {
					return dlqStreamErr(err)
				}
				seqs = append(seqs, all...)
			}
			return replaySeqs(ctx, b.JS, seqs, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&worker, "worker", "", "with --all: only this worker's dead letters")
	cmd.Flags().BoolVar(&all, "all", false, "replay every dead letter")
	addClientFlags(cmd)
	return cmd
}

func replaySeqs(ctx context.Context, js jetstream.JetStream, seqs []uint64, out io.Writer) error {
	failed := 0
	var first error
	for _, r := range operate.Replay(ctx, js, seqs) {
		if r.Err != nil {
			failed++
			if first == nil {
				first = dlqStreamErr(r.Err)
			}
			fmt.Fprintf(out, "dlq %d: not replayed: %s\n", r.Seq, dlqCell(r.Err.Error(), 200))
			continue
		}
		res := r.Result
		note := ""
		if res.Duplicate {
			note = " (already republished before)"
		}
		fmt.Fprintf(out, "dlq %d: event %s replayed to %s as event %d%s\n", r.Seq, dlqCell(res.EventID, 80), res.Worker, res.EventSeq, note)
	}
	fmt.Fprintf(out, "%d replayed, %d failed\n", len(seqs)-failed, failed)
	if first != nil {
		return fmt.Errorf("%d of %d not replayed; first: %w", failed, len(seqs), first)
	}
	return nil
}
