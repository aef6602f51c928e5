package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/forgebus/forgebus/natstest"
	"github.com/nats-io/nats.go"

	"github.com/forgebus/forgebus/schemas"
)

const fixtures = "../../../testdata/gogs"

var (
	buildOnce sync.Once
	binPath   string
	binDir    string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// forgebusBin builds the real binary once per test run.
func forgebusBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "forgebus-e2e-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "forgebus")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "build", "-ldflags", "-X main.version=e2e", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// freeAddr returns a 127.0.0.1 address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// syncBuffer is a bytes.Buffer safe for a process writing and a test reading.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a started forgebus process.
type proc struct {
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{}
	err    error
}

// start runs the binary with only env (plus PATH and HOME) and kills it, by
// PID, at cleanup if it is still running.
func start(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(forgebusBin(t), args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	p := &proc{cmd: cmd, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("forgebus %s stdout:\n%s\nstderr:\n%s", strings.Join(args, " "), p.stdout, p.stderr)
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and returns the exit code, failing t past timeout.
func (p *proc) stop(t *testing.T, timeout time.Duration) int {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !p.exited() {
		t.Fatalf("SIGTERM: %v", err)
	}
	return p.wait(t, timeout)
}

func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("process did not exit within %s", timeout)
	}
	return p.cmd.ProcessState.ExitCode()
}

type fixture struct {
	Headers    map[string]string `json:"headers"`
	BodyBase64 string            `json:"body_base64"`
}

// postFixture replays a recorded Gogs delivery to url.
func postFixture(t *testing.T, url, name string) (*http.Response, string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(fixtures, name))
	if err != nil {
		t.Fatal(err)
	}
	var f fixture
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	body, err := base64.StdEncoding.DecodeString(f.BodyBase64)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range f.Headers {
		switch k {
		case "Host", "Content-Length", "Accept-Encoding":
		default:
			req.Header.Set(k, v)
		}
	}
	client := &http.Client{Timeout: 15 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", name, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp, b.String()
}

func httpStatus(url string) int {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestDevEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	httpAddr, natsAddr := freeAddr(t), freeAddr(t)
	base := "http://" + httpAddr
	dataDir := t.TempDir()
	dev := start(t, []string{
		"FORGEBUS_DATA_DIR=" + dataDir,
		"FORGEBUS_HTTP_ADDR=" + httpAddr,
		"FORGEBUS_NATS_LISTEN=" + natsAddr,
		"FORGEBUS_GOGS_SECRETS=fixture-secret-1",
		"FORGEBUS_LOG_FORMAT=json",
	}, "dev")
	natstest.Eventually(t, 30*time.Second, "dev /readyz 200", func() bool {
		if dev.exited() {
			t.Fatalf("dev exited early: %v\n%s", dev.err, dev.stderr)
		}
		return httpStatus(base+"/readyz") == http.StatusOK
	})
	// Other methods get ingest's own JSON answer, not the mux's plain text.
	if resp, err := http.Get(base + "/hooks/gogs"); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("GET /hooks/gogs = %d %q, want 405 application/json", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
	// /readyz can answer before the pipe has carried the banner.
	natstest.Eventually(t, 10*time.Second, "dev prints the hook URL "+base+"/hooks/gogs", func() bool {
		return strings.Contains(dev.stdout.String(), base+"/hooks/gogs")
	})
	out := dev.stdout.String()
	if strings.Contains(out+dev.stderr.String(), "fixture-secret-1") {
		t.Error("dev printed or logged the configured secret")
	}

	// tail, a second process, as a client of dev's embedded NATS.
	// An anonymous client is refused by dev's embedded server.
	if nc, err := nats.Connect("nats://"+natsAddr, nats.Timeout(2*time.Second)); err == nil {
		nc.Close()
		t.Error("an anonymous client connected to dev's NATS")
	}
	// tail finds the operator's credentials in the shared data dir.
	tail := start(t, []string{"FORGEBUS_NATS_LISTEN=" + natsAddr, "FORGEBUS_DATA_DIR=" + dataDir, "FORGEBUS_LOG_FORMAT=json"}, "events", "tail")
	natstest.Eventually(t, 15*time.Second, "tail subscribed to FORGE_EVENTS", func() bool {
		if tail.exited() {
			t.Fatalf("tail exited early: %v\n%s", tail.err, tail.stderr)
		}
		return strings.Contains(tail.stderr.String(), "tailing forge.> on FORGE_EVENTS")
	})

	const deliveryID = "27ab6c71-0969-4202-bace-ca66379f9866"
	resp, body := postFixture(t, base+"/hooks/gogs", "push-multi-commit.json")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST push-multi-commit = %d %s, want 202", resp.StatusCode, body)
	}

	var line string
	natstest.Eventually(t, 15*time.Second, "tail prints the event", func() bool {
		for _, l := range strings.Split(tail.stdout.String(), "\n") {
			if strings.Contains(l, deliveryID) {
				line = l
				return true
			}
		}
		return false
	})
	var ev schemas.Envelope
	if err := json.Unmarshal([]byte(line), &ev); err != nil {
		t.Fatalf("tail line is not one JSON event: %q: %v", line, err)
	}
	if ev.ID != deliveryID || ev.Type != "forge.push" {
		t.Errorf("tail event id %q type %q", ev.ID, ev.Type)
	}

	if code := tail.stop(t, 10*time.Second); code != 0 {
		t.Errorf("tail exit code after SIGTERM = %d, want 0", code)
	}
	start := time.Now()
	if code := dev.stop(t, 15*time.Second); code != 0 {
		t.Errorf("dev exit code after SIGTERM = %d, want 0", code)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("dev took %s to stop", d)
	}
	// Everything is down: the ports are free again.
	for _, addr := range []string{httpAddr, natsAddr} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("%s still taken after dev stopped: %v", addr, err)
			continue
		}
		ln.Close()
	}
}

func TestDevGeneratesSecret(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	httpAddr := freeAddr(t)
	dev := start(t, []string{
		"FORGEBUS_DATA_DIR=" + t.TempDir(),
		"FORGEBUS_HTTP_ADDR=" + httpAddr,
		"FORGEBUS_NATS_LISTEN=" + freeAddr(t),
	}, "dev")
	var secret string
	natstest.Eventually(t, 30*time.Second, "dev prints a generated secret", func() bool {
		if dev.exited() {
			t.Fatalf("dev exited early: %v\n%s", dev.err, dev.stderr)
		}
		for _, l := range strings.Split(dev.stdout.String(), "\n") {
			if i := strings.Index(l, "(generated, paste it into Gogs): "); i >= 0 {
				secret = strings.TrimSpace(l[i+len("(generated, paste it into Gogs): "):])
				return true
			}
		}
		return false
	})
	if len(secret) != 64 {
		t.Errorf("generated secret %q: want 64 hex characters", secret)
	}
	if strings.Count(dev.stdout.String(), secret) != 1 || strings.Contains(dev.stderr.String(), secret) {
		t.Error("the generated secret must be printed once, on stdout only")
	}
	natstest.Eventually(t, 15*time.Second, "readyz", func() bool { return httpStatus("http://"+httpAddr+"/readyz") == http.StatusOK })
	// A delivery signed with another secret is refused: the generated one is in use.
	resp, _ := postFixture(t, "http://"+httpAddr+"/hooks/gogs", "push-multi-commit.json")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST signed with fixture-secret-1 = %d, want 401", resp.StatusCode)
	}
	if code := dev.stop(t, 15*time.Second); code != 0 {
		t.Errorf("dev exit code = %d", code)
	}
}

func TestCommandErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	tests := []struct {
		name     string
		env      []string
		args     []string
		wantCode int
		wantErr  string
	}{
		{name: "ingest without a secret", args: []string{"ingest"}, wantCode: 2, wantErr: "FORGEBUS_GOGS_SECRETS"},
		{name: "unknown command", args: []string{"nope"}, wantCode: 2, wantErr: "unknown command"},
		{name: "unknown flag", args: []string{"ingest", "--nope"}, wantCode: 2, wantErr: "unknown flag"},
		{name: "bad env value", env: []string{"FORGEBUS_PUBLISH_TIMEOUT=soon"}, args: []string{"ingest"}, wantCode: 2, wantErr: "FORGEBUS_PUBLISH_TIMEOUT"},
		{name: "secret in config file", env: []string{"FORGEBUS_CONFIG=" + writeTemp(t, "gogs:\n  secrets: [x]\n")}, args: []string{"ingest"}, wantCode: 2, wantErr: "secrets come from the environment"},
		{name: "tail with nothing to tail", env: []string{"FORGEBUS_NATS_LISTEN=" + freeAddr(t)}, args: []string{"events", "tail"}, wantCode: 1, wantErr: "or a worker running against this NATS?"},
		{name: "tail bad subject", args: []string{"events", "tail", "--subject", "forgebus.audit"}, wantCode: 2, wantErr: "forge.>"},
		{
			name: "embedded NATS port taken",
			env:  []string{"FORGEBUS_GOGS_SECRETS=s", "FORGEBUS_NATS_LISTEN=" + takenAddr(t), "FORGEBUS_HTTP_ADDR=" + freeAddr(t), "FORGEBUS_DATA_DIR=" + t.TempDir()},
			args: []string{"ingest"}, wantCode: 1, wantErr: "another forgebus or nats-server is running",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := start(t, tc.env, tc.args...)
			code := p.wait(t, 20*time.Second)
			stderr := strings.TrimSpace(p.stderr.String())
			if code != tc.wantCode || !strings.Contains(stderr, tc.wantErr) {
				t.Errorf("exit %d, stderr %q; want exit %d mentioning %q", code, stderr, tc.wantCode, tc.wantErr)
			}
			// Log lines may come first; the error is one line of its own.
			var errLine string
			for _, l := range strings.Split(stderr, "\n") {
				if strings.HasPrefix(l, "forgebus: ") {
					errLine = l
					break
				}
			}
			if !strings.Contains(errLine, tc.wantErr) {
				t.Errorf("error is not one clear line: %q", stderr)
			}
		})
	}
	p := start(t, nil, "version")
	if code := p.wait(t, 10*time.Second); code != 0 || !strings.HasPrefix(p.stdout.String(), "forgebus e2e go1.") {
		t.Errorf("version: exit %d, %q", code, p.stdout)
	}
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "forgebus.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// takenAddr returns an address held by a listener until the test ends.
func takenAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// TestIngestSpoolsWhileBrokerDown: with an external NATS that goes away,
// ingest still answers 202 (the delivery is on local disk), and the event
// reaches FORGE_EVENTS, once, when the broker is back.
func TestIngestSpoolsWhileBrokerDown(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	srv := natstest.Run(t)
	_, js := srv.Connect(t)
	httpAddr := freeAddr(t)
	base := "http://" + httpAddr
	ing := start(t, []string{
		"FORGEBUS_DATA_DIR=" + t.TempDir(),
		"FORGEBUS_HTTP_ADDR=" + httpAddr,
		"FORGEBUS_NATS_URL=" + srv.URL(),
		"FORGEBUS_GOGS_SECRETS=fixture-secret-1",
		"FORGEBUS_PUBLISH_TIMEOUT=500ms",
		"FORGEBUS_LOG_FORMAT=json",
	}, "ingest")
	natstest.Eventually(t, 30*time.Second, "ingest /readyz 200", func() bool {
		if ing.exited() {
			t.Fatalf("ingest exited early: %v\n%s", ing.err, ing.stderr)
		}
		return httpStatus(base+"/readyz") == http.StatusOK
	})

	srv.Shutdown()
	// With the spool on and room in it, ingest stays ready (it accepts
	// deliveries); /readyz shows NATS down as an advisory check.
	natstest.Eventually(t, 10*time.Second, "readyz 200 showing NATS down (advisory)", func() bool {
		resp, err := (&http.Client{Timeout: time.Second}).Get(base + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var rep struct {
			Checks map[string]struct {
				OK       bool `json:"ok"`
				Advisory bool `json:"advisory"`
			} `json:"checks"`
		}
		return json.NewDecoder(resp.Body).Decode(&rep) == nil && resp.StatusCode == http.StatusOK &&
			!rep.Checks["nats"].OK && rep.Checks["nats"].Advisory
	})
	resp, body := postFixture(t, base+"/hooks/gogs", "push-multi-commit.json")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST with NATS down = %d %s, want 202 (spooled)", resp.StatusCode, body)
	}
	srv.Restart()

	const subject = "forge.gogs.push.fixture-admin.webhook-fixtures"
	natstest.Eventually(t, 20*time.Second, "the spooled event reaches FORGE_EVENTS", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := js.Stream(ctx, schemas.StreamEvents)
		if err != nil {
			return false
		}
		msg, err := st.GetLastMsgForSubject(ctx, subject)
		return err == nil && bytes.Contains(msg.Data, []byte("27ab6c71-0969-4202-bace-ca66379f9866"))
	})
	natstest.Eventually(t, 20*time.Second, "readyz 200 with the spool drained", func() bool {
		c := &http.Client{Timeout: time.Second}
		resp, err := c.Get(base + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var rep struct {
			Ready  bool `json:"ready"`
			Checks map[string]struct {
				Detail map[string]any `json:"detail"`
			} `json:"checks"`
		}
		if json.NewDecoder(resp.Body).Decode(&rep) != nil {
			return false
		}
		return rep.Ready && rep.Checks["spool"].Detail["depth"] == float64(0)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, schemas.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil || info.State.Msgs != 1 {
		t.Errorf("FORGE_EVENTS holds %d messages (%v), want the one delivery once", info.State.Msgs, err)
	}
	if code := ing.stop(t, 15*time.Second); code != 0 {
		t.Errorf("ingest exit code after SIGTERM = %d, want 0", code)
	}
}
