// Command forgebus-bench is `make bench`: it starts the stack in one process
// (an embedded JetStream server on 127.0.0.1 with NATS auth on, the streams,
// the real ingest handler on a real HTTP listener) and a load generator, and
// prints each figure beside the ceiling measured in the same run on the same
// server, then what auth costs against the same stack without it.
package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

type options struct {
	fixture   string
	requests  int
	clients   int
	serial    int
	workerN   int
	inFlight  int
	rounds    int
	skipSpool bool
	skipAuth  bool
}

func main() {
	var o options
	flag.StringVar(&o.fixture, "fixture", filepath.Join("testdata", "gogs", "push-multi-commit.json"), "captured Gogs delivery to post")
	flag.IntVar(&o.requests, "requests", 20000, "requests per concurrent run")
	flag.IntVar(&o.clients, "clients", 64, "concurrent clients")
	flag.IntVar(&o.serial, "serial", 3000, "requests per serial run")
	flag.IntVar(&o.workerN, "worker-messages", 20000, "messages for the worker runtime run")
	flag.IntVar(&o.inFlight, "worker-inflight", 64, "worker max in-flight")
	flag.IntVar(&o.rounds, "worker-rounds", 5, "rounds of runtime, ceiling and ceiling+KV put; the median round by ratio is shown")
	flag.BoolVar(&o.skipSpool, "skip-spool", false, "skip the broker-down (spool) run")
	flag.BoolVar(&o.skipAuth, "skip-auth-cost", false, "skip the NATS auth on/off comparison")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "forgebus-bench:", err)
		os.Exit(1)
	}
}

// fixtureFile is the capture format of testdata/gogs.
type fixtureFile struct {
	Headers map[string]string `json:"headers"`
	Body    []byte            `json:"body_base64"`
}

func loadFixture(path string) (fixtureFile, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fixtureFile{}, fmt.Errorf("read fixture: %w", err)
	}
	var f fixtureFile
	if err := json.Unmarshal(raw, &f); err != nil {
		return fixtureFile{}, fmt.Errorf("decode fixture %s: %w", path, err)
	}
	return f, nil
}

func sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

func run(o options) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	fx, err := loadFixture(o.fixture)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	fmt.Printf("forgebus bench  %s  %s/%s  %d CPU  %s  host %s\n",
		time.Now().UTC().Format(time.RFC3339), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(), host)
	fmt.Printf("fixture %s (%d bytes, event %s)\n\n", filepath.Base(o.fixture), len(fx.Body), fx.Headers["X-Gogs-Event"])

	// NATS auth on, as forgebus runs; the cost of auth is measured below
	// against a stack without it.
	st, err := startStack(ctx, true)
	if err != nil {
		return err
	}
	defer st.close()

	if err := benchIngest(ctx, st, fx, o); err != nil {
		return err
	}
	if err := benchWorker(ctx, st, o); err != nil {
		return err
	}
	if !o.skipAuth {
		if err := benchAuthCost(ctx, fx, o); err != nil {
			return err
		}
	}
	if !o.skipSpool {
		if err := benchSpool(ctx, st, fx, o); err != nil {
			return err
		}
	}
	return nil
}
