package deploytest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/services/config"
	"github.com/forgebus/forgebus/services/provision"
	"github.com/forgebus/forgebus/workers/runtime"
)

// clusterScript runs scripts/cluster.sh on one directory and port range.
type clusterScript struct {
	t    *testing.T
	path string
	dir  string
	env  []string
}

func newClusterScript(t *testing.T, natsServer string) *clusterScript {
	return newClusterScriptWith(t, natsServer, buildForgebus(t))
}

// buildForgebus builds the forgebus binary, which the script runs to make
// the cluster's credentials and auth configuration.
func buildForgebus(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "forgebus")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/forgebus")
	cmd.Dir = filepath.Join(repoRoot(t), "services")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build forgebus: %v\n%s", err, out)
	}
	return bin
}

func newClusterScriptWith(t *testing.T, natsServer, forgebus string) *clusterScript {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not installed")
	}
	return &clusterScript{
		t:    t,
		path: filepath.Join(repoRoot(t), "scripts", "cluster.sh"),
		dir:  t.TempDir(),
		env: append(os.Environ(),
			"NATS_SERVER="+natsServer,
			"FORGEBUS="+forgebus,
			"CLUSTER_PORT_BASE="+strconv.Itoa(freePortBase(t)),
			"CLUSTER_WAIT=40",
		),
	}
}

// run runs the script with cmd and returns its output and error.
func (c *clusterScript) run(cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	x := exec.CommandContext(ctx, c.path, cmd, c.dir)
	x.Env = c.env
	out, err := x.CombinedOutput()
	return string(out), err
}

// pid is node n's pid from the script's pid file.
func (c *clusterScript) pid(n int) int {
	c.t.Helper()
	data, err := os.ReadFile(filepath.Join(c.dir, fmt.Sprintf("nats-%d.pid", n)))
	if err != nil {
		c.t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		c.t.Fatal(err)
	}
	return pid
}

// logs reports the nodes' logs, for a failed test.
func (c *clusterScript) logs() {
	for n := 1; n <= 3; n++ {
		data, _ := os.ReadFile(filepath.Join(c.dir, fmt.Sprintf("nats-%d.log", n)))
		if len(data) > 4000 {
			data = data[len(data)-4000:]
		}
		c.t.Logf("nats-%d.log (tail):\n%s", n, data)
	}
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// freePortBase finds a base for the script's nine ports.
func freePortBase(t *testing.T) int {
	t.Helper()
	base, err := natstest.ClusterPortBase(rand.IntN(1 << 20))
	if err != nil {
		t.Fatal(err)
	}
	return base
}

// buildNATSServer builds nats-server from the services module, as the
// script does when it has none.
func buildNATSServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nats-server")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	cmd.Dir = filepath.Join(repoRoot(t), "services")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build nats-server: %v\n%s", err, out)
	}
	return bin
}

// TestClusterScript starts the three-node cluster with scripts/cluster.sh,
// puts a three-replica stream on it, kills the node leading the stream,
// checks writes go on, restarts the node with the script, checks it catches
// up, and stops the cluster.
func TestClusterScript(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	c := newClusterScript(t, buildNATSServer(t))
	t.Cleanup(func() {
		if t.Failed() {
			c.logs()
		}
		if out, err := c.run("stop"); err != nil {
			t.Errorf("cluster.sh stop: %v\n%s", err, out)
		}
	})

	out, err := c.run("start")
	if err != nil {
		t.Fatalf("cluster.sh start: %v\n%s", err, out)
	}
	if !strings.Contains(out, "JetStream meta leader nats-") {
		t.Fatalf("start did not report a meta leader:\n%s", out)
	}
	if out, err := c.run("status"); err != nil {
		t.Fatalf("cluster.sh status after start: %v\n%s", err, out)
	}
	urls, err := c.run("urls")
	if err != nil {
		t.Fatal(err)
	}
	urls = strings.TrimSpace(urls)
	if n := len(strings.Split(urls, ",")); n != 3 {
		t.Fatalf("urls %q: want three", urls)
	}

	// Every node refuses a client without credentials.
	for _, u := range strings.Split(urls, ",") {
		if anon, err := nats.Connect(u, nats.Timeout(2*time.Second)); err == nil {
			anon.Close()
			t.Errorf("an anonymous client connected to %s", u)
		} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Errorf("anonymous connect to %s = %v, want an authorization error", u, err)
		}
	}
	creds, err := c.run("creds")
	if err != nil {
		t.Fatal(err)
	}
	opCreds := filepath.Join(strings.TrimSpace(creds), "operator.creds")
	nc, err := nats.Connect(urls, nats.ReconnectWait(100*time.Millisecond), nats.MaxReconnects(-1), nats.UserCredentials(opCreds))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:     "DEPLOYTEST",
		Subjects: []string{"deploytest.>"},
		Replicas: 3,
		Storage:  jetstream.FileStorage,
	})
	if err != nil {
		t.Fatalf("create R3 stream: %v", err)
	}
	publish := func(i int) error {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		defer pcancel()
		_, err := js.Publish(pctx, "deploytest.event", []byte(strconv.Itoa(i)), jetstream.WithMsgID(fmt.Sprintf("msg-%d", i)))
		return err
	}
	for i := range 5 {
		if err := publish(i); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	var leader string
	natstest.Eventually(t, 20*time.Second, "stream on three current replicas", func() bool {
		info, err := stream.Info(ctx)
		if err != nil || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
			return false
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current {
				return false
			}
		}
		leader = info.Cluster.Leader
		return true
	})

	checkNoShrink(ctx, t, js)

	// Kill the node that leads the stream (one the script started).
	n, err := strconv.Atoi(strings.TrimPrefix(leader, "nats-"))
	if err != nil {
		t.Fatalf("leader %q is not a node of the script", leader)
	}
	pid := c.pid(n)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, "killed node gone", func() bool { return !alive(pid) })
	if out, err := c.run("status"); err == nil {
		t.Errorf("status succeeds with %s down:\n%s", leader, out)
	}

	// Two nodes of three still take writes.
	natstest.Eventually(t, 30*time.Second, "publish with the leader down", func() bool { return publish(5) == nil })

	// start brings back only the missing node, which catches up.
	out, err = c.run("start")
	if err != nil {
		t.Fatalf("cluster.sh start again: %v\n%s", err, out)
	}
	if got := strings.Count(out, "already running"); got != 2 {
		t.Errorf("start again: %d nodes already running, want 2:\n%s", got, out)
	}
	if !strings.Contains(out, "started "+leader) {
		t.Errorf("start again did not restart %s:\n%s", leader, out)
	}
	natstest.Eventually(t, 30*time.Second, "restarted node catches up", func() bool {
		info, err := stream.Info(ctx)
		if err != nil || info.State.Msgs != 6 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			return false
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current || r.Lag != 0 || r.Offline {
				return false
			}
		}
		return true
	})

	pids := []int{c.pid(1), c.pid(2), c.pid(3)}
	if out, err := c.run("stop"); err != nil {
		t.Fatalf("cluster.sh stop: %v\n%s", err, out)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("pid %d still alive after stop", pid)
		}
	}
	if _, err := c.run("status"); err == nil {
		t.Error("status succeeds after stop")
	}
}

// TestClusterScriptStopsOnlyItsOwn: a pid file naming a process the script
// did not start (a reused pid) never gets that process killed.
func TestClusterScriptStopsOnlyItsOwn(t *testing.T) {
	c := newClusterScriptWith(t, "/nonexistent", "/nonexistent")
	other := exec.Command("sleep", "60")
	if err := other.Start(); err != nil {
		t.Skip("no sleep command")
	}
	t.Cleanup(func() {
		_ = other.Process.Kill()
		_ = other.Wait()
	})
	for n := 1; n <= 3; n++ {
		f := filepath.Join(c.dir, fmt.Sprintf("nats-%d.pid", n))
		if err := os.WriteFile(f, []byte(strconv.Itoa(other.Process.Pid)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, err := c.run("status")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || !strings.Contains(out, "nats-1: stopped") {
		t.Errorf("status with a foreign pid: err %v, output:\n%s", err, out)
	}
	if out, err := c.run("stop"); err != nil {
		t.Fatalf("stop: %v\n%s", err, out)
	}
	if !alive(other.Process.Pid) {
		t.Fatal("cluster.sh stop killed a process it did not start")
	}
	if _, err := os.Stat(filepath.Join(c.dir, "nats-1.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale pid file left: %v", err)
	}
}

// checkNoShrink: the streams and a worker's idempotency bucket are
// provisioned with three replicas, then again by a process configured with
// one (FORGEBUS_STREAM_REPLICAS unset on a cluster): they keep three.
// Raising the count still works (the bucket goes from one to three).
func checkNoShrink(ctx context.Context, t *testing.T, js jetstream.JetStream) {
	t.Helper()
	streams := config.Default().Streams
	w := runtime.Worker{Name: "shrinktest", Subjects: []string{"forge.events.x.push.*.*"}, Settings: runtime.DefaultSettings(),
		Handler: runtime.HandlerFunc(func(context.Context, *schemas.Envelope) (runtime.Report, error) { return runtime.Report{}, nil })}
	provisionAll := func(replicas int) {
		t.Helper()
		streams.Replicas = replicas
		w.Settings.Replicas = replicas
		if err := provision.Streams(ctx, js, streams); err != nil {
			t.Fatalf("provision streams with %d replicas: %v", replicas, err)
		}
		if err := provision.Worker(ctx, js, w); err != nil {
			t.Fatalf("provision worker with %d replicas: %v", replicas, err)
		}
	}
	replicas := func(stream string) int {
		t.Helper()
		st, err := js.Stream(ctx, stream)
		if err != nil {
			t.Fatalf("stream %s: %v", stream, err)
		}
		return st.CachedInfo().Config.Replicas
	}
	bucket := "KV_" + runtime.IdempotencyBucketPrefix + w.Name
	provisionAll(1)
	if got := replicas(bucket); got != 1 {
		t.Fatalf("%s has %d replicas after provisioning with 1", bucket, got)
	}
	provisionAll(3)
	provisionAll(1)
	for _, sc := range provision.StreamConfigs(streams) {
		if got := replicas(sc.Name); got != 3 {
			t.Errorf("%s has %d replicas after a process with 1 started; want 3 kept", sc.Name, got)
		}
	}
	if got := replicas(bucket); got != 3 {
		t.Errorf("%s has %d replicas after a process with 1 started; want 3 kept", bucket, got)
	}
}
