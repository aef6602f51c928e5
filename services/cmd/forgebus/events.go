package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/workers/runtime"
)

func init() { register(newEventsCmd) }

func newEventsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Look at the events in " + schemas.StreamEvents,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usage(errors.New("events needs a subcommand: tail or show"))
		},
	}
	cmd.AddCommand(newEventsTailCmd(), newEventsShowCmd())
	return cmd
}

type tailOptions struct {
	subject string
	since   time.Duration
	all     bool
}

func newEventsTailCmd() *cobra.Command {
	var o tailOptions
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Print each new event's JSON on one line as it arrives, until Ctrl-C",
		Long: `tail reads ` + schemas.StreamEvents + ` with an ephemeral ordered consumer and prints
each event (a CloudEvent) as one JSON line on stdout. It connects as a client
to FORGEBUS_NATS_URL or, when unset, to the embedded server of a running
"forgebus dev" or "forgebus ingest" at nats://FORGEBUS_NATS_LISTEN; it never
starts a server of its own. By default it shows only new events.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.since < 0 {
				return usage(errors.New("--since must not be negative"))
			}
			if o.all && o.since > 0 {
				return usage(errors.New("--all and --since: set one"))
			}
			if err := checkSubject(o.subject); err != nil {
				return usage(err)
			}
			b, err := connectClient(cmd, "events-tail")
			if err != nil {
				return err
			}
			defer b.Close()
			ctx := cmd.Context()
			return tail(ctx, b.JS, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&o.subject, "subject", schemas.EventsRoot+".>", "subject filter, e.g. forge.gogs.push.>")
	cmd.Flags().DurationVar(&o.since, "since", 0, "start with the events of the last DURATION, e.g. 10m")
	cmd.Flags().BoolVar(&o.all, "all", false, "print every stored event first")
	addClientFlags(cmd)
	return cmd
}

func checkSubject(s string) error {
	if s == "" || strings.ContainsAny(s, " \t\r\n") {
		return fmt.Errorf("--subject %q: want a NATS subject such as forge.>", s)
	}
	if s != schemas.EventsRoot+".>" && !strings.HasPrefix(s, schemas.EventsRoot+".") {
		return fmt.Errorf("--subject %q: events are under %s.>", s, schemas.EventsRoot)
	}
	return nil
}

// tail prints each event of the ordered consumer as one JSON line to w
// until ctx is done.
func tail(ctx context.Context, js jetstream.JetStream, o tailOptions, w, status io.Writer) error {
	cc := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{o.subject},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	}
	switch {
	case o.all:
		cc.DeliverPolicy = jetstream.DeliverAllPolicy
	case o.since > 0:
		start := time.Now().Add(-o.since)
		cc.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cc.OptStartTime = &start
	}
	cons, done, err := runtime.OrderedReader(ctx, js, schemas.StreamEvents, cc)
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("stream %s not found: is 'forgebus dev' or 'forgebus ingest' running against this NATS?", schemas.StreamEvents)
		}
		return fmt.Errorf("consume %s: %w", schemas.StreamEvents, err)
	}
	defer done()
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("consume %s: %w", schemas.StreamEvents, err)
	}
	fmt.Fprintf(status, "tailing %s on %s (Ctrl-C to stop)\n", o.subject, schemas.StreamEvents)
	go func() {
		<-ctx.Done()
		it.Stop()
	}()
	out := bufio.NewWriter(w)
	var line bytes.Buffer
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				return out.Flush()
			}
			return fmt.Errorf("consume %s: %w", schemas.StreamEvents, err)
		}
		line.Reset()
		if err := json.Compact(&line, msg.Data()); err != nil {
			// Not ours to judge, but never break the one-line format.
			line.Reset()
			b, _ := json.Marshal(map[string]string{"subject": msg.Subject(), "error": "not JSON"})
			line.Write(b)
		}
		line.WriteByte('\n')
		if _, err := out.Write(line.Bytes()); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		if err := out.Flush(); err != nil {
			return fmt.Errorf("write: %w", err)
		}
	}
}
