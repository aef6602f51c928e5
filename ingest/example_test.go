package ingest_test

import (
	"net/http"
	"os"
	"time"

	"github.com/forgebus/forgebus/ingest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// ExampleNewHandler wires the handler the way the services module does:
// a JetStream context whose connection does not buffer while reconnecting
// (so nothing answered 503 is sent later), metrics, and the route.
func ExampleNewHandler() {
	nc, err := nats.Connect(nats.DefaultURL, nats.MaxReconnects(-1), nats.ReconnectBufSize(-1))
	if err != nil {
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return
	}
	h, err := ingest.NewHandler(ingest.Config{
		Secrets:        [][]byte{[]byte(os.Getenv("FORGEBUS_GOGS_SECRET"))},
		PublishTimeout: 3 * time.Second,
	}, js, zerolog.New(os.Stderr), ingest.WithMetrics(ingest.NewMetrics(prometheus.DefaultRegisterer)))
	if err != nil {
		return
	}
	mux := http.NewServeMux()
	mux.Handle("/hooks/gogs", h) // no method pattern: the handler answers 405 in JSON itself
	_ = http.ListenAndServe("127.0.0.1:8080", mux)
}
