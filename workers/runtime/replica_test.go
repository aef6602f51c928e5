package runtime

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/services/creds"
	"github.com/forgebus/forgebus/services/natstest"
)

// The replica tests run the test binary itself as worker processes: with
// FORGEBUS_RUNTIME_TEST_REPLICA=1 TestMain runs one replica instead of the
// tests. Its handler appends "start <id> <pid>" and "done <id> <pid>" lines
// to FORGEBUS_RUNTIME_TEST_FILE (O_APPEND: one write per line), with a job
// of FORGEBUS_RUNTIME_TEST_JOB between them.
const (
	envReplica  = "FORGEBUS_RUNTIME_TEST_REPLICA"
	envURL      = "FORGEBUS_RUNTIME_TEST_URL"
	envFile     = "FORGEBUS_RUNTIME_TEST_FILE"
	envJob      = "FORGEBUS_RUNTIME_TEST_JOB"
	envInFlight = "FORGEBUS_RUNTIME_TEST_IN_FLIGHT"
	envPrefetch = "FORGEBUS_RUNTIME_TEST_PREFETCH"
	envCreds    = "FORGEBUS_RUNTIME_TEST_CREDS"
	envInbox    = "FORGEBUS_RUNTIME_TEST_INBOX"
)

const replicaWorker = "replica"

func TestMain(m *testing.M) {
	if os.Getenv(envReplica) == "1" {
		os.Exit(runReplica())
	}
	os.Exit(m.Run())
}

func runReplica() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	job, err := time.ParseDuration(os.Getenv(envJob))
	if err != nil {
		fmt.Fprintln(os.Stderr, "replica:", err)
		return 2
	}
	inFlight, _ := strconv.Atoi(os.Getenv(envInFlight))
	f, err := os.OpenFile(os.Getenv(envFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, "replica:", err)
		return 2
	}
	defer f.Close()
	nc, err := nats.Connect(os.Getenv(envURL), nats.UserCredentials(os.Getenv(envCreds)), nats.CustomInboxPrefix(os.Getenv(envInbox)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "replica:", err)
		return 2
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		fmt.Fprintln(os.Stderr, "replica:", err)
		return 2
	}
	pid := os.Getpid()
	s := fastSettings()
	s.MaxInFlight = max(inFlight, 1)
	s.GracePeriod = 10 * time.Second
	if os.Getenv(envPrefetch) == "1" {
		s.AckWait, s.JobTimeout = 10*time.Second, 5*time.Second
	}
	rt, err := New(js, Worker{Name: replicaWorker, Subjects: []string{"forge.>"}, Settings: s,
		Handler: HandlerFunc(func(ctx context.Context, ev *schemas.Envelope) (Report, error) {
			fmt.Fprintf(f, "start %s %d\n", ev.ID, pid)
			select {
			case <-time.After(job):
			case <-ctx.Done():
				return Report{}, ctx.Err()
			}
			fmt.Fprintf(f, "done %s %d\n", ev.ID, pid)
			return Report{}, nil
		})}, zerolog.New(os.Stderr).Level(zerolog.WarnLevel), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "replica:", err)
		return 2
	}
	if err := rt.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "replica:", err)
		return 1
	}
	return 0
}

// replicaN numbers the replicas' users.
var replicaN int

type replica struct {
	cmd  *exec.Cmd
	done chan error
}

// startReplica starts a replica process on srv (with NATS auth on), as a
// worker user of its own.
func startReplica(t *testing.T, srv *natstest.Server, file string, job time.Duration, inFlight int, prefetch ...bool) *replica {
	t.Helper()
	replicaN++
	credsFile, inbox := srv.Creds(t, creds.Spec{Role: creds.RoleWorker, Worker: replicaWorker, Name: fmt.Sprintf("%s-%d", replicaWorker, replicaN)})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envReplica+"=1", envURL+"="+srv.URL(), envFile+"="+file, envCreds+"="+credsFile, envInbox+"="+inbox,
		envJob+"="+job.String(), envInFlight+"="+strconv.Itoa(inFlight))
	if len(prefetch) > 0 && prefetch[0] {
		cmd.Env = append(cmd.Env, envPrefetch+"=1")
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start replica: %v", err)
	}
	r := &replica{cmd: cmd, done: make(chan error, 1)}
	go func() { r.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-r.done
	})
	return r
}

// effectLog reads the replicas' lines: per kind ("start", "done"), per
// event id, the pids.
func effectLog(t *testing.T, file string) map[string]map[string][]string {
	t.Helper()
	out := map[string]map[string][]string{"start": {}, "done": {}}
	f, err := os.Open(file)
	if os.IsNotExist(err) {
		return out
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 {
			continue // a line being written
		}
		out[fields[0]][fields[1]] = append(out[fields[0]][fields[1]], fields[2])
	}
	return out
}

// waitPulling waits until n replicas have a pull request open.
func waitPulling(t *testing.T, js jetstream.JetStream, n int) {
	t.Helper()
	natstest.Eventually(t, 20*time.Second, fmt.Sprintf("%d replicas pulling", n), func() bool {
		info, err := consumerInfo(js, replicaWorker)
		return err == nil && info.NumWaiting >= n
	})
}

func TestReplicaProcessesShareWork(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	for _, prefetch := range []bool{false, true} {
		t.Run(fmt.Sprintf("prefetch=%v", prefetch), func(t *testing.T) { shareWork(t, prefetch) })
	}
}

func shareWork(t *testing.T, prefetch bool) {
	srv, _, js := authBroker(t)
	file := filepath.Join(t.TempDir(), "effects")
	for range 3 {
		startReplica(t, srv, file, 2*time.Millisecond, 8, prefetch)
	}
	waitPulling(t, js, 3)
	const n = 1000
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range n {
		ev := envelope(fmt.Sprintf("ev-%04d", i))
		data, _ := jsonMarshal(ev)
		if _, err := js.PublishAsync(testSubject, data, jetstream.WithMsgID(ev.ID)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("publish timed out")
	}
	natstest.Eventually(t, 30*time.Second, "1000 results", func() bool {
		return streamCount(t, js, schemas.StreamResults) >= n
	})
	rs := results(t, js)
	if got := len(resultsOf(rs, "", schemas.OutcomeSucceeded)); got != n || len(rs) != n {
		t.Errorf("%d results, %d succeeded; want %d and %d", len(rs), got, n, n)
	}
	log := effectLog(t, file)
	perPID := map[string]int{}
	for i := range n {
		id := fmt.Sprintf("ev-%04d", i)
		pids := log["done"][id]
		if len(pids) != 1 {
			t.Errorf("%s done %d times", id, len(pids))
			continue
		}
		perPID[pids[0]]++
	}
	t.Logf("events per replica: %v", perPID)
	if len(perPID) != 3 {
		t.Errorf("work went to %d replicas, want 3: %v", len(perPID), perPID)
	}
}

func TestKilledReplicaJobMoves(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	srv, _, js := authBroker(t)
	file := filepath.Join(t.TempDir(), "effects")
	reps := map[string]*replica{}
	for range 2 {
		r := startReplica(t, srv, file, 2*time.Second, 1)
		reps[strconv.Itoa(r.cmd.Process.Pid)] = r
	}
	waitPulling(t, js, 2)
	publish(t, js, envelope("job"), "")
	var first string
	natstest.Eventually(t, 10*time.Second, "job started", func() bool {
		if p := effectLog(t, file)["start"]["job"]; len(p) > 0 {
			first = p[0]
			return true
		}
		return false
	})
	if err := reps[first].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 15*time.Second, "job done by the other replica", func() bool {
		return len(resultsOf(results(t, js), "job", schemas.OutcomeSucceeded)) == 1
	})
	log := effectLog(t, file)
	if done := log["done"]["job"]; len(done) != 1 || done[0] == first {
		t.Errorf("done by %v; want once, not by the killed %s", done, first)
	}
	if r := resultsOf(results(t, js), "job", schemas.OutcomeSucceeded)[0]; r.Attempt != 2 {
		t.Errorf("attempt = %d, want 2", r.Attempt)
	}
}

func TestSIGTERMDrainsReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	srv, _, js := authBroker(t)
	file := filepath.Join(t.TempDir(), "effects")
	r := startReplica(t, srv, file, 700*time.Millisecond, 4)
	waitPulling(t, js, 1)
	const n = 8
	for i := range n {
		publish(t, js, envelope(fmt.Sprintf("t-%d", i)), "")
	}
	natstest.Eventually(t, 10*time.Second, "4 jobs started", func() bool {
		return len(effectLog(t, file)["start"]) >= 4
	})
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		if err != nil {
			t.Fatalf("replica exit after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("replica did not stop after SIGTERM")
	}
	log := effectLog(t, file)
	if len(log["start"]) != 4 || len(log["done"]) != 4 {
		t.Errorf("before stop: %d started, %d done; want 4 and 4", len(log["start"]), len(log["done"]))
	}
	startReplica(t, srv, file, 700*time.Millisecond, 4)
	natstest.Eventually(t, 15*time.Second, "all done", func() bool {
		return len(resultsOf(results(t, js), "", schemas.OutcomeSucceeded)) == n
	})
	log = effectLog(t, file)
	for i := range n {
		id := fmt.Sprintf("t-%d", i)
		if d := log["done"][id]; len(d) != 1 {
			t.Errorf("%s done %d times", id, len(d))
		}
	}
	if f := resultsOf(results(t, js), "", schemas.OutcomeFailed); len(f) != 0 {
		t.Errorf("failed results: %+v", f)
	}
}
