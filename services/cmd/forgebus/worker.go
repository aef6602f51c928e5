package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/forgebus/forgebus/services/platform"
	"github.com/forgebus/forgebus/workers/runtime"
)

// workerFactories builds each worker "forgebus worker <name>" can run, by
// name, from the started platform and the worker's own JetStream connection. A factory returns the worker's Name,
// Subjects and Handler; when it leaves Settings zero (MaxInFlight 0), the
// command fills Settings and Policy from the `runtime:` and `policy:` keys
// of the worker's section in the config file (runtime.DecodeConfig).
var workerFactories = map[string]func(p *platform.Platform, js jetstream.JetStream) (runtime.Worker, error){}

func init() { register(newWorkerCmd) }

// knownWorkers lists the names "forgebus worker" takes.
func knownWorkers() string {
	names := slices.Sorted(maps.Keys(workerFactories))
	names = append(names, auditWorker)
	return strings.Join(names, ", ")
}

func newWorkerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "worker <name>",
		Short: "Run one replica of a worker (start as many as the load needs)",
		Long: `worker runs one replica of the named worker: it binds to the worker's
durable consumer on FORGE_EVENTS (created or updated at start), so every
replica, in any number of processes, shares its events. Each event is
checked against the worker's policy and its idempotency record, handled with
retries, and its outcome published to FORGE_RESULTS; what cannot be done goes
to FORGE_DLQ ("forgebus dlq"). It serves /healthz, /readyz and /metrics on
FORGEBUS_HTTP_ADDR. It connects as a client to FORGEBUS_NATS_URL or, when
unset, to the embedded server of a running "forgebus ingest" or "forgebus
dev" at nats://FORGEBUS_NATS_LISTEN; it never starts a server. SIGINT or SIGTERM stops pulling, lets running jobs finish
within the worker's grace period, and hands the rest back.

The worker's section of the config file (workers.<name>) holds its own
settings and, under runtime: and policy:, the runtime's.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if _, ok := workerFactories[name]; !ok && name != auditWorker {
				ranCommand = true
				return usage(fmt.Errorf("unknown worker %q; known workers: %s", name, knownWorkers()))
			}
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			// A worker handles no webhook: the secret settings do not matter.
			if err := validateNoWebhook(cfg); err != nil {
				return err
			}
			log, err := newLogger(cmd, cfg)
			if err != nil {
				return err
			}
			// Replicas must share one broker: never an embedded one.
			cfg.NATS.URL = cfg.ClientURL()
			ctx := cmd.Context()
			ln, err := platform.Listen(cfg.HTTPAddr)
			if err != nil {
				return err
			}
			defer ln.Close()
			p, err := platform.Start(ctx, cfg, log, "worker-"+name)
			if err != nil {
				return err
			}
			defer p.Close()
			w, err := workerRunner(p, name, p.Broker.JS)
			if err != nil {
				return err
			}
			mux := p.Mux()
			return runAll(ctx, p, []runner{
				w,
				{name: "http", run: func(ctx context.Context) error { return p.Serve(ctx, ln, mux) }},
			})
		},
	}
	addFlag(cmd, "http-addr", "HTTP listen address for health and metrics")
	addFlag(cmd, "nats-url", "NATS server URLs")
	addFlag(cmd, "nats-listen", "address of a running forgebus's embedded NATS")
	addFlag(cmd, "instance", "forge instance name in event subjects")
	return cmd
}

// buildWorker builds the named worker and gives it its runtime settings
// and policy from the config file.
func buildWorker(p *platform.Platform, js jetstream.JetStream, name string, factory func(*platform.Platform, jetstream.JetStream) (runtime.Worker, error)) (runtime.Worker, error) {
	w, err := factory(p, js)
	if err != nil {
		return w, fmt.Errorf("worker %s: %w", name, err)
	}
	if w.Name == "" {
		w.Name = name
	}
	if w.Settings.MaxInFlight == 0 {
		node := p.Config.Workers[name]
		s, pol, err := runtime.DecodeConfig(&node)
		if err != nil {
			return w, usage(fmt.Errorf("config workers.%s: %w", name, err))
		}
		// The idempotency bucket lives as the streams do.
		s.Replicas = max(p.Config.Streams.Replicas, 1)
		w.Settings, w.Policy = s, pol
	}
	if err := w.Validate(); err != nil {
		if errors.Is(err, runtime.ErrInvalidSettings) || errors.Is(err, runtime.ErrInvalidWorker) {
			return w, usage(err)
		}
		return w, err
	}
	return w, nil
}
