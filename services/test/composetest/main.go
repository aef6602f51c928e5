package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"github.com/forgebus/forgebus/services/test/streamcheck"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/schemas"
)

type options struct {
	steps   string        // comma-separated step keys to run, empty for all
	keep    bool          // leave the project up for a look
	timeout time.Duration // the whole run
}

func main() {
	var o options
	flag.StringVar(&o.steps, "steps", "", "run only these steps (comma-separated: baseline,scale,kill,partition,rolling,downup)")
	flag.BoolVar(&o.keep, "keep", false, "leave the compose project running (remove it with docker compose -p <project> down -v)")
	flag.DurationVar(&o.timeout, "timeout", 20*time.Minute, "give up after this long")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "composetest:", err)
		os.Exit(1)
	}
}

// findRoot is the nearest parent of the working directory with go.work.
func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find repository root: no go.work above the working directory")
		}
		dir = parent
	}
}

// freePort is a port of 127.0.0.1 free at the time of the call.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// the containers of the documented stack: three NATS nodes, two ingest,
// two docs, one of each other worker, the load balancer.
const stackSize = 3 + 2 + 2 + 1 + 1 + 1 + 1

func run(ctx context.Context, o options) (err error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	root, err := findRoot()
	if err != nil {
		return err
	}
	compose, err := composeCommand(ctx)
	if err != nil {
		return err
	}
	httpPort, err := freePort()
	if err != nil {
		return err
	}
	natsPort, err := freePort()
	if err != nil {
		return err
	}
	secret := randomHex(32)
	s := &stack{
		root: root, compose: compose, project: "fbcomposetest" + randomHex(3),
		env: []string{
			"FORGEBUS_GOGS_SECRETS=" + secret,
			"FORGEBUS_MODELS_SECRET=" + randomHex(32),
			// No rule of deploy/forgebus.yaml matches the captures' repository,
			// so the workers never call it; they only refuse to start without it.
			"FORGEBUS_GOGS_URL=http://gogs.invalid:3000",
			"FORGEBUS_HTTP_BIND=127.0.0.1",
			"FORGEBUS_HTTP_PORT=" + strconv.Itoa(httpPort),
			"FORGEBUS_NATS_PORT=" + strconv.Itoa(natsPort),
		},
		log: func(format string, a ...any) {
			fmt.Printf("[%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, a...))
		},
	}
	s.log("compose %q, project %s, lb 127.0.0.1:%d, nats-1 127.0.0.1:%d", strings.Join(compose, " "), s.project, httpPort, natsPort)
	defer func() {
		if o.keep {
			s.log("left running: %s -p %s down -v", strings.Join(compose, " "), s.project)
			return
		}
		if derr := s.down(context.WithoutCancel(ctx), true); derr != nil {
			err = errors.Join(err, fmt.Errorf("clean up: %w", derr))
		}
		s.log("removed the containers, network and volumes of %s", s.project)
	}()

	caps, err := loadCaptures(root)
	if err != nil {
		return err
	}
	t := &tester{s: s, caps: caps, secret: []byte(secret), sent: map[string]bool{}, explained: map[string]bool{},
		url: fmt.Sprintf("http://127.0.0.1:%d", httpPort), natsURL: fmt.Sprintf("nats://127.0.0.1:%d", natsPort)}

	// NATS auth and the audit key, as the runbook makes them.
	if _, err := s.run(ctx, time.Minute, filepath.Join(root, "deploy", "auth.sh"), filepath.Join(root, "bin", "image", "forgebus")); err != nil {
		return fmt.Errorf("deploy/auth.sh: %w", err)
	}
	pubCmd := exec.CommandContext(ctx, filepath.Join(root, "bin", "image", "forgebus"), "audit", "pubkey")
	pubCmd.Env = append(os.Environ(), "FORGEBUS_AUDIT_KEY_FILE="+filepath.Join(root, "deploy", "creds", "audit.key"))
	pub, err := pubCmd.Output()
	if err != nil {
		return fmt.Errorf("audit pubkey: %w", err)
	}
	t.auditPub = strings.TrimSpace(string(pub))
	if _, err := s.composeRun(ctx, 5*time.Minute, "up", "-d"); err != nil {
		return fmt.Errorf("up: %w", err)
	}
	if err := s.waitHealthy(ctx, stackSize, 4*time.Minute); err != nil {
		return err
	}
	s.log("all %d containers healthy", stackSize)
	if err := t.connect(ctx); err != nil {
		return err
	}
	defer func() { t.nc.Close() }()
	if err := t.waitConsumers(ctx, 2*time.Minute); err != nil {
		return err
	}
	steps := []struct {
		key, name string
		zeroFail  bool // every delivery must get a 2xx
		f         func(context.Context) (sendResult, error)
	}{
		{"baseline", "baseline", true, t.baseline},
		{"scale", "scale worker-docs=3", true, t.scaleUp},
		{"kill", "docker kill nats-2", false, t.killNATS},
		{"partition", "partition nats-3 30s", false, t.partition},
		{"rolling", "rolling restart ingest", true, t.rollingRestart},
		{"downup", "down, up (volumes kept)", true, t.downUp},
	}
	var failed []string
	var table []string
	for _, st := range steps {
		if o.steps != "" && !containsStr(strings.Split(o.steps, ","), st.key) {
			continue
		}
		s.log("step: %s", st.name)
		res, err := st.f(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", st.name, err)
		}
		for id, ok := range res.accepted {
			t.sent[id] = ok
		}
		v, verify, err := t.check(ctx)
		if err != nil {
			return fmt.Errorf("%s: check: %w", st.name, err)
		}
		probs := v.problems()
		if verify != nil {
			probs = append(probs, "audit verify: "+verify.Error())
		}
		if st.zeroFail && res.non2xx() > 0 {
			probs = append(probs, fmt.Sprintf("%d deliveries got no 2xx (want 0)", res.non2xx()))
		}
		line := fmt.Sprintf("%-26s sent %5d  non-2xx %4d  lost %d  stored-twice %d  stored %5d (of them non-2xx %d)  codes [%s]  %.1fs",
			st.name, res.sent, res.non2xx(), v.lost, v.storedTwice, v.stored, v.storedNon2xx, res.codeList(), res.elapsed.Seconds())
		table = append(table, line)
		s.log("%s", line)
		for _, p := range probs {
			s.log("  FAIL %s", p)
			failed = append(failed, st.name+": "+p)
		}
	}
	fmt.Println()
	fmt.Println("compose test: " + s.project)
	for _, l := range table {
		fmt.Println("  " + l)
	}
	fmt.Printf("  total %.0fs\n", time.Since(start).Seconds())
	if len(failed) > 0 {
		return fmt.Errorf("%d problems: %s", len(failed), strings.Join(failed, "; "))
	}
	return nil
}

// tester holds what the steps share.
type tester struct {
	s       *stack
	caps    []capture
	secret  []byte
	url     string
	natsURL string
	nc      *nats.Conn
	js      jetstream.JetStream
	sent    map[string]bool // every delivery sent so far: id -> answered 2xx
	// explained: "worker event-id" pairs with extra results already told.
	explained map[string]bool
	scaled    bool // worker-docs runs three replicas
	// auditPub is the audit key's public half, for "audit verify --pubkey".
	auditPub string
}

func (t *tester) connect(ctx context.Context) error {
	nc, err := nats.Connect(t.natsURL, nats.UserCredentials(filepath.Join(t.s.root, "deploy", "creds", "operator.creds")), nats.MaxReconnects(-1), nats.ReconnectWait(500*time.Millisecond), nats.Timeout(5*time.Second))
	if err != nil {
		return fmt.Errorf("connect nats-1: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return fmt.Errorf("jetstream: %w", err)
	}
	t.nc, t.js = nc, js
	return nil
}

// waitConsumers waits until each runtime worker and the audit worker has
// its consumer: /readyz answers before they are set up.
func (t *tester) waitConsumers(ctx context.Context, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		n := 0
		if st, err := t.js.Stream(ctx, schemas.StreamEvents); err == nil {
			l := st.ListConsumers(ctx)
			for range l.Info() {
				n++
			}
		}
		if n >= len(workers)+1 {
			return nil
		}
		if err := sleep(ctx, time.Second); err != nil {
			return err
		}
	}
	return fmt.Errorf("the workers' consumers on %s did not appear: %w", schemas.StreamEvents, errTimeout)
}

// check waits for the consumers to drain, counts the streams against every
// delivery sent so far, and runs "forgebus audit verify" in the audit
// a one-off operator container.
func (t *tester) check(ctx context.Context) (verdict, error, error) {
	streams := []string{schemas.StreamEvents, schemas.StreamResults, schemas.StreamDLQ}
	// Up to 9 minutes: a job that failed three times while a node was
	// away waits out the runtime's delays (10 s, 1 min, then 5 min) and
	// its ack waits before it runs again.
	if err := streamcheck.Drained(ctx, t.js, streams, 9*time.Minute, time.Second); err != nil {
		t.diagnose(ctx, streams)
		return verdict{}, nil, err
	}
	// The cluster's JetStream API can answer "no responders" or time out
	// for a moment after a leader moved: count again.
	var c *counts
	var err error
	for try := 0; ; try++ {
		c, err = countStreams(ctx, t.js)
		if err == nil || try == 9 || !(errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout)) {
			break
		}
		t.s.log("count: %v; again", err)
		if err := sleep(ctx, time.Second); err != nil {
			return verdict{}, nil, err
		}
	}
	if err != nil {
		return verdict{}, nil, err
	}
	v := judge(c, t.sent)
	t.explainExtra(ctx, c)
	t.redeliveriesOfDone(ctx)
	// As the operator, in a one-off container: the audit role may not read
	// what coverage needs, and verify trusts the public key given to it.
	out, verr := t.s.composeRun(ctx, 2*time.Minute, "run", "--rm", "--no-deps", "-T", "provision", "audit", "verify", "--pubkey", t.auditPub)
	if verr == nil {
		// stdout's verdict, not the logs beside it on stderr.
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "ok") {
				t.s.log("audit verify: %s", line)
			}
		}
	}
	return v, verr, nil
}

func (t *tester) deliveries(n int) ([]delivery, error) {
	return makeDeliveries(t.caps, n, t.secret)
}

func (t *tester) baseline(ctx context.Context) (sendResult, error) {
	ds, err := t.deliveries(200)
	if err != nil {
		return sendResult{}, err
	}
	return newPoster(t.url).run(ctx, ds, 5*time.Second, 8, nil), nil
}
