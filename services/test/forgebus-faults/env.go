package main

import (
	"context"
	"fmt"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/workers/audit"
)

const (
	webhookSecret = "faults-webhook-secret"
	modelsSecret  = "faults-models-secret"
	modelsOwner   = "lab"
	modelsRepo    = "models"
	docsOwner     = "lab"
	docsRepoName  = "handbook"
	// envBucket is envsync's KV bucket (its default).
	envBucket = "forgebus_env"
)

// env is everything one run starts; close stops all of it.
type env struct {
	opts    options
	dir     string
	cluster *cluster
	urls    string
	creds   string   // the cluster's credentials directory
	repo    *gitRepo // lab/models, and the git server
	docs    *gitRepo // lab/handbook, on the same server
	envRepo *envRepo // lab/config, on the fake Gogs API
	self    string   // this program: the docs build command
	fx      *effects
	nc      *nats.Conn
	js      jetstream.JetStream

	mu      sync.Mutex
	procs   []*proc
	ingest  []*proc
	workers map[string][]*proc // runtime workers' replicas by worker name
	audit   []*proc
	started bool // the cluster
	exits   []string
	notes   []string
}

func (e *env) note(format string, a ...any) {
	line := fmt.Sprintf("%s  ", time.Now().UTC().Format("15:04:05.000")) + fmt.Sprintf(format, a...)
	e.mu.Lock()
	e.notes = append(e.notes, line)
	e.mu.Unlock()
	fmt.Println(line)
}

// runtimeWorkers are the runtime workers this run starts, in start order.
func (e *env) runtimeWorkers() []string {
	if e.opts.bench {
		return []string{"models"}
	}
	return []string{"models", "docs", "envsync"}
}

func (e *env) docsRoot() string { return filepath.Join(e.dir, "docs-root") }

// config is the forgebus.yaml of every process. The docs build command is
// this program ("docs-build" mode, see docsBuild), so each build reports
// itself to the effect server. Job timeouts are far above what a job
// takes here, so no effect is cut off midway and redone by a timeout.
func (e *env) config() string {
	return fmt.Sprintf(`instance: gogs
shutdown_grace: 5s
log:
  level: info
  format: json
workers:
  models:
    rules:
      - name: refresh
        repo: %q
        paths: ["models/**"]
        post:
          url: %q
          timeout: 5s
%s  docs:
    rules:
      - name: handbook
        repo: %q
        branch: master
        command: [%q, %q, %q]
        output: site
        root: %q
        timeout: 8s
        keep: 3
%s  envsync:
    rules:
      - name: app-env
        repo: %q
        branch: master
        file: %q
%s`, modelsOwner+"/"+modelsRepo, e.fx.url+"/refresh", runtimeYAML(8, "4s", "10s"),
		docsOwner+"/"+docsRepoName, e.self, buildArg, e.fx.url+"/docs-build", e.docsRoot(), runtimeYAML(4, "10s", "20s"),
		envOwner+"/"+envRepoN, envFile, runtimeYAML(4, "5s", "10s"))
}

// runtimeYAML is a worker's runtime and policy sections: what differs
// between the workers, and the rest the same for all (three replicas of
// the idempotency bucket, short waits so the run stays bounded).
func runtimeYAML(maxInFlight int, jobTimeout, ackWait string) string {
	return fmt.Sprintf(`    runtime:
      max_in_flight: %d
      job_timeout: %s
      ack_wait: %s
      max_deliver: 10
      nak_delays: [1s]
      grace_period: 5s
      replicas: 3
      retry:
        initial: 200ms
        max_interval: 1s
        max_elapsed: 3s
    policy:
      events: ["push"]
`, maxInFlight, jobTimeout, ackWait)
}

// workerEnv is the extra environment of a runtime worker's replicas.
func (e *env) workerEnv(worker string) []string {
	switch worker {
	case "models":
		return []string{"FORGEBUS_GOGS_URL=" + e.repo.url, "FORGEBUS_MODELS_SECRET=" + modelsSecret}
	case "docs":
		return []string{"FORGEBUS_GOGS_URL=" + e.repo.url}
	case "envsync":
		return []string{"FORGEBUS_GOGS_URL=" + e.fx.url, "FORGEBUS_GOGS_TOKEN=" + envToken}
	}
	return nil
}

// baseEnv is the environment of every forgebus process: PATH and HOME
// only from ours, everything else set here.
func (e *env) baseEnv(dataDir, addr string) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dataDir,
		"FORGEBUS_CONFIG=" + filepath.Join(e.dir, "forgebus.yaml"),
		"FORGEBUS_NATS_URL=" + e.urls,
		"FORGEBUS_STREAM_REPLICAS=3",
		"FORGEBUS_DATA_DIR=" + dataDir,
		"FORGEBUS_HTTP_ADDR=" + addr,
		"FORGEBUS_INSTANCE=gogs",
		"FORGEBUS_SOURCE_URL=http://127.0.0.1:3000",
		"FORGEBUS_AUDIT_KEY_FILE=" + filepath.Join(e.dir, "audit.key"),
	}
}

func (e *env) newProc(name string, extra []string, args ...string) (*proc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	// Each process connects with its own role's credentials.
	role := args[0]
	if role == "worker" {
		role = "worker-" + args[1]
	}
	extra = append([]string{"FORGEBUS_NATS_CREDS=" + filepath.Join(e.creds, role+".creds")}, extra...)
	data := filepath.Join(e.dir, name)
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	p := &proc{
		name: name, bin: e.opts.bin, args: args, addr: addr,
		env:    append(e.baseEnv(data, addr), extra...),
		log:    filepath.Join(e.dir, name+".log"),
		onExit: e.supervise,
	}
	e.mu.Lock()
	e.procs = append(e.procs, p)
	e.mu.Unlock()
	return p, p.start()
}

// supervise restarts a process that exited on its own, after a second,
// as the compose file's restart policy would, and records it.
func (e *env) supervise(p *proc, err error) {
	e.mu.Lock()
	e.exits = append(e.exits, p.name)
	e.mu.Unlock()
	e.note("unplanned exit of %s (%v); restarting it in 1s (last log line: %s)", p.name, err, lastLine(p.log))
	time.Sleep(time.Second)
	if err := p.start(); err != nil {
		e.note("restart %s: %v", p.name, err)
	}
}

// lastLine is the last line of a log file, cut to 300 bytes.
func lastLine(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	l := lines[len(lines)-1]
	if len(l) > 300 {
		l = l[:300]
	}
	return l
}

func (e *env) start(ctx context.Context) error {
	var err error
	if e.self, err = os.Executable(); err != nil {
		return fmt.Errorf("this program's path (the docs build command): %w", err)
	}
	m := e.opts.mix()
	if e.repo, err = newGitRepo(filepath.Join(e.dir, "git"), modelsOwner, modelsRepo, 21); err != nil {
		return err
	}
	chain, err := e.repo.addChain(envOwner, envRepoN, max(m.count(e.opts.hooks, kindEnvsync), 1))
	if err != nil {
		return err
	}
	e.envRepo = envRepoOf(chain.commits)
	gitURL, err := url.Parse(e.repo.url)
	if err != nil {
		return err
	}
	if e.fx, err = startEffects(e.envRepo, httputil.NewSingleHostReverseProxy(gitURL)); err != nil {
		return err
	}
	if e.docs, err = e.repo.addChain(docsOwner, docsRepoName, m.count(e.opts.hooks, kindDocs)+1); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(e.dir, "forgebus.yaml"), []byte(e.config()), 0o600); err != nil {
		return err
	}
	// Both audit replicas sign with this key; "audit verify" checks with it.
	if _, err := audit.CreateKey(filepath.Join(e.dir, "audit.key")); err != nil {
		return err
	}
	if e.cluster, err = newCluster(e.opts.root, e.opts.bin, filepath.Join(e.dir, "cluster")); err != nil {
		return err
	}
	e.started = true
	if _, err := e.cluster.run("start"); err != nil {
		return err
	}
	out, err := e.cluster.run("urls")
	if err != nil {
		return err
	}
	e.urls = strings.TrimSpace(out)
	if out, err = e.cluster.run("creds"); err != nil {
		return err
	}
	e.creds = strings.TrimSpace(out)
	opCreds := filepath.Join(e.creds, "operator.creds")
	e.nc, err = nats.Connect(e.urls, nats.Name("forgebus-faults"), nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond),
		nats.UserCredentials(opCreds))
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if e.js, err = jetstream.New(e.nc); err != nil {
		return err
	}
	fmt.Printf("cluster up: %s\n", e.urls)

	// The operator provisions the streams: ingest's role may not.
	prov := exec.CommandContext(ctx, e.opts.bin, "provision")
	prov.Env = append(e.baseEnv(e.dir, "127.0.0.1:0"), "FORGEBUS_NATS_CREDS="+opCreds)
	if out, err := prov.CombinedOutput(); err != nil {
		return fmt.Errorf("forgebus provision: %w: %s", err, strings.TrimSpace(string(out)))
	}
	for i := range 2 {
		p, err := e.newProc(fmt.Sprintf("ingest-%d", i+1), []string{"FORGEBUS_GOGS_SECRETS=" + webhookSecret}, "ingest")
		if err != nil {
			return err
		}
		e.ingest = append(e.ingest, p)
		if err := p.ready(ctx, 60*time.Second); err != nil {
			return err
		}
	}
	// One replica after the other: each must be pulling before the next
	// starts, so the run begins with every replica working.
	e.workers = map[string][]*proc{}
	for _, w := range e.runtimeWorkers() {
		for i := range 2 {
			t := time.Now()
			p, err := e.newProc(fmt.Sprintf("%s-%d", w, i+1), e.workerEnv(w), "worker", w)
			if err != nil {
				return err
			}
			e.workers[w] = append(e.workers[w], p)
			if err := p.ready(ctx, 60*time.Second); err != nil {
				return err
			}
			if err := e.waitPulling(ctx, w, i+1, 60*time.Second); err != nil {
				return err
			}
			fmt.Printf("%s pulling after %s\n", p.name, time.Since(t).Round(time.Millisecond))
		}
	}
	for i := range 2 {
		p, err := e.newProc(fmt.Sprintf("audit-%d", i+1), nil, "worker", "audit")
		if err != nil {
			return err
		}
		e.audit = append(e.audit, p)
		if err := p.ready(ctx, 60*time.Second); err != nil {
			return err
		}
	}
	if err := e.waitSetup(ctx, 60*time.Second); err != nil {
		return err
	}
	fmt.Printf("processes up: 2 ingest, 2 each of %s, 2 audit (logs in %s)\n", strings.Join(e.runtimeWorkers(), ", "), e.dir)
	return nil
}

// restart SIGKILLs p, waits, and starts it again with the same settings
// (and so the same data directory: an ingest finds its spool again).
func (e *env) restart(ctx context.Context, p *proc, down time.Duration) {
	e.note("fault: SIGKILL %s", p.name)
	p.kill()
	time.Sleep(down)
	if err := p.start(); err != nil {
		e.note("restart %s: %v", p.name, err)
		return
	}
	if err := p.ready(ctx, 60*time.Second); err != nil {
		e.note("restart %s: %v", p.name, err)
		return
	}
	e.note("restarted %s, ready", p.name)
}

// killNATS SIGKILLs the node leading FORGE_EVENTS (else nats-2) and starts
// it again with cluster.sh.
func (e *env) killNATS(ctx context.Context, down time.Duration) {
	n := 2
	ictx, cancel := context.WithTimeout(ctx, 3*time.Second)
	if s, err := e.js.Stream(ictx, schemas.StreamEvents); err == nil {
		if info, err := s.Info(ictx); err == nil && info.Cluster != nil {
			var k int
			if _, err := fmt.Sscanf(info.Cluster.Leader, "nats-%d", &k); err == nil && k >= 1 && k <= 3 {
				n = k
			}
		}
	}
	cancel()
	e.note("fault: SIGKILL nats-%d (FORGE_EVENTS leader)", n)
	if err := e.cluster.killNode(n); err != nil {
		e.note("kill nats-%d: %v", n, err)
		return
	}
	time.Sleep(down)
	if _, err := e.cluster.run("start"); err != nil {
		e.note("restart nats-%d: %v", n, err)
		return
	}
	e.note("restarted nats-%d, cluster has a meta leader", n)
}

func (e *env) close() {
	e.mu.Lock()
	procs := append([]*proc(nil), e.procs...)
	e.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop(10 * time.Second) }()
	}
	wg.Wait()
	if e.nc != nil {
		e.nc.Close()
	}
	if e.started {
		if out, err := e.cluster.run("stop"); err != nil {
			fmt.Fprintf(os.Stderr, "%v\n%s", err, out)
		}
	}
	e.repo.close()
	e.fx.close()
}

// auditVerify runs "forgebus audit verify" against the cluster.
func (e *env) auditVerify(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.opts.bin, "audit", "verify")
	cmd.Env = append(e.baseEnv(e.dir, "127.0.0.1:0"), "FORGEBUS_NATS_CREDS="+filepath.Join(e.creds, "operator.creds"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return lastNonEmpty(stderr.String()), err
	}
	return strings.TrimSpace(string(out)), nil
}

// waitSetup waits until the workers have set up what they need on the
// broker (/readyz answers before that): each runtime worker's consumer and
// idempotency bucket, and the audit worker's consumer on every source.
func (e *env) waitSetup(ctx context.Context, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if e.setupDone(ctx) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("workers did not set up their consumers and bucket within %s: %w", d, errTimeout)
}

func (e *env) setupDone(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	for _, w := range e.runtimeWorkers() {
		if _, err := e.js.KeyValue(ctx, "forgebus_idem_"+w); err != nil {
			return false
		}
		if _, err := e.js.Consumer(ctx, schemas.StreamEvents, w); err != nil {
			return false
		}
	}
	for _, name := range []string{schemas.StreamEvents, schemas.StreamResults, schemas.StreamDLQ} {
		s, err := e.js.Stream(ctx, name)
		if err != nil {
			return false
		}
		n := 0
		for range s.ListConsumers(ctx).Info() {
			n++
		}
		if n == 0 {
			return false
		}
	}
	return true
}

// waitPulling waits until the worker's consumer has at least n waiting
// pull requests: n replicas are running and asking for messages.
func (e *env) waitPulling(ctx context.Context, worker string, n int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		ictx, cancel := context.WithTimeout(ctx, 3*time.Second)
		c, err := e.js.Consumer(ictx, schemas.StreamEvents, worker)
		if err == nil {
			var info *jetstream.ConsumerInfo
			if info, err = c.Info(ictx); err == nil && info.NumWaiting >= n {
				cancel()
				return nil
			}
		}
		cancel()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("worker %s: fewer than %d replicas pulling after %s: %w", worker, n, d, errTimeout)
}

func lastNonEmpty(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
