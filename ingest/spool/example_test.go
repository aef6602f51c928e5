package spool_test

import (
	"context"
	"errors"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/ingest/spool"
)

// How ingest wires the spool: open it once per process, register its
// metrics, run the forwarder for the life of the process, and append when
// a publish fails.
func Example() {
	log := zerolog.New(os.Stderr)
	sp, err := spool.Open("/var/lib/forgebus/spool", spool.Limits{MaxBytes: 512 << 20, MaxEntries: 200_000}, log)
	if errors.Is(err, spool.ErrLocked) {
		log.Fatal().Err(err).Msg("another ingest uses this spool directory")
	}
	if err != nil {
		log.Fatal().Err(err).Msg("open spool")
	}
	defer sp.Close()
	spool.NewMetrics(prometheus.DefaultRegisterer, sp)

	nc, err := nats.Connect(nats.DefaultURL, nats.MaxReconnects(-1))
	if err != nil {
		log.Fatal().Err(err).Msg("connect")
	}
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal().Err(err).Msg("jetstream")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go sp.Forward(ctx, js)

	// In the HTTP handler, after a failed publish:
	err = sp.Append(spool.Entry{MsgID: "f0c5bd35-0d7a-4bd4-9b4f-8ad2c5e0f6a1", Subject: "forge.git_example_com.push.alice.repo", Data: []byte(`{"specversion":"1.0"}`)})
	switch {
	case errors.Is(err, spool.ErrFull):
		// answer 503 with Retry-After
	case err != nil:
		// answer 503
	default:
		// answer 202 {"spooled": true}
	}
}
