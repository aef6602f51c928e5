package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/natstest"
)

// e2eSecret is the webhook secret the end-to-end tests configure and sign with.
const e2eSecret = "e2e-webhook-secret-7f3a"

// requireGitHTTPBackend skips t when git or its http-backend is missing
// (CI installs git).
func requireGitHTTPBackend(t *testing.T) {
	t.Helper()
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Skipf("git is not installed (git --exec-path: %v): the git smart-HTTP end-to-end test needs it", err)
	}
	backend := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		t.Skipf("git http-backend is missing (%v): the git smart-HTTP end-to-end test needs it", err)
	}
}

// pushRepo says where a re-signed push points.
type pushRepo struct {
	owner, name string
	// baseURL is the forge base URL that html_url and clone_url are built on.
	baseURL       string
	before, after string
}

// resignedPush takes the real recorded body of fixture (a push), decodes it
// as a generic JSON map, points its repository and commits at r, encodes it
// the way Gogs does (two-space indent) and signs it with e2eSecret. It
// returns the body and the fixture's recorded headers with the new signature.
func resignedPush(t *testing.T, fixtureName string, r pushRepo) ([]byte, http.Header) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(fixtures, fixtureName))
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Headers    map[string]string `json:"headers"`
		BodyBase64 string            `json:"body_base64"`
	}
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatal(err)
	}
	body, err := base64.StdEncoding.DecodeString(rec.BodyBase64)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // keep ids and sizes as Gogs wrote them
	var payload map[string]any
	if err := dec.Decode(&payload); err != nil {
		t.Fatalf("decode %s body: %v", fixtureName, err)
	}
	repo, ok := payload["repository"].(map[string]any)
	if !ok {
		t.Fatalf("%s: no repository object", fixtureName)
	}
	owner, ok := repo["owner"].(map[string]any)
	if !ok {
		t.Fatalf("%s: no repository.owner object", fixtureName)
	}
	full := r.owner + "/" + r.name
	owner["login"], owner["username"] = r.owner, r.owner
	repo["name"], repo["full_name"] = r.name, full
	repo["html_url"] = r.baseURL + "/" + full
	repo["clone_url"] = r.baseURL + "/" + full + ".git"
	payload["before"], payload["after"] = r.before, r.after
	payload["compare_url"] = r.baseURL + "/" + full + "/compare/" + r.before + "..." + r.after

	out, err := json.MarshalIndent(payload, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, []byte(e2eSecret))
	mac.Write(out)
	h := http.Header{}
	for k, v := range rec.Headers {
		switch k {
		case "Host", "Content-Length", "Accept-Encoding":
		default:
			h.Set(k, v)
		}
	}
	h.Set("X-Gogs-Signature", hex.EncodeToString(mac.Sum(nil)))
	return out, h
}

// postHook POSTs body with headers to url and returns the status and the
// response body.
func postHook(t *testing.T, url string, body []byte, h http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h.Clone()
	resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// devInstance is a running "forgebus dev".
type devInstance struct {
	*proc
	base     string // http://127.0.0.1:port
	natsAddr string
	dataDir  string // where dev keeps its store and the audit key it creates
	creds    string // the operator's credentials, created by dev
}

// startDev writes configYAML to a file, starts "forgebus dev" with it and
// env (on 127.0.0.1 ports of its own, a temp data dir, e2eSecret as the
// webhook secret, JSON logs) and waits until /readyz answers 200.
func startDev(t *testing.T, configYAML string, env ...string) *devInstance {
	t.Helper()
	httpAddr, natsAddr := freeAddr(t), freeAddr(t)
	dataDir := t.TempDir()
	for _, kv := range env { // env may name the data folder: the last value wins
		if v, ok := strings.CutPrefix(kv, "FORGEBUS_DATA_DIR="); ok {
			dataDir = v
		}
	}
	d := &devInstance{base: "http://" + httpAddr, natsAddr: natsAddr, dataDir: dataDir, creds: filepath.Join(dataDir, "creds", "operator.creds")}
	d.proc = start(t, append([]string{
		"FORGEBUS_CONFIG=" + writeTemp(t, configYAML),
		"FORGEBUS_DATA_DIR=" + d.dataDir,
		"FORGEBUS_HTTP_ADDR=" + httpAddr,
		"FORGEBUS_NATS_LISTEN=" + natsAddr,
		"FORGEBUS_GOGS_SECRETS=" + e2eSecret,
		"FORGEBUS_LOG_FORMAT=json",
		"FORGEBUS_LOG_LEVEL=info", // env may override it: the last value wins
	}, env...), "dev")
	natstest.Eventually(t, 30*time.Second, "dev /readyz 200", func() bool {
		if d.exited() {
			t.Fatalf("dev exited early: %v\n%s", d.err, d.stderr)
		}
		return httpStatus(d.base+"/readyz") == http.StatusOK
	})
	return d
}

// cli runs a client command of the binary against d's NATS and returns its
// exit code, stdout and stderr. It is killed past 20 s.
func (d *devInstance) cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, forgebusBin(t), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(),
		"FORGEBUS_NATS_LISTEN=" + d.natsAddr, "FORGEBUS_NATS_CREDS=" + d.creds, "FORGEBUS_LOG_FORMAT=json", "FORGEBUS_DATA_DIR=" + d.dataDir}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("forgebus %s: %v", strings.Join(args, " "), err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// connect opens a NATS client connection to d's embedded server.
func (d *devInstance) connect(t *testing.T) jetstream.JetStream {
	t.Helper()
	_, js := natstest.Dial(t, "nats://"+d.natsAddr, nats.Name("e2e-test"), nats.UserCredentials(d.creds))
	return js
}

// streamData returns the data of every message in stream, in order.
func streamData(t *testing.T, js jetstream.JetStream, stream string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, m := range natstest.StreamMsgs(t, js, stream) {
		out = append(out, m.Data)
	}
	return out
}

// auditRow is one row of "forgebus audit query": WHAT and WORKER columns.
type auditRow struct{ what, worker string }

// auditRows parses the table "forgebus audit query" prints.
func auditRows(out string) []auditRow {
	var rows []auditRow
	for i, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if i == 0 {
			continue // header
		}
		// TIME WHO WHAT [OUTCOME] WORKER WHY EVENT-ID, separated by 2+ spaces.
		var cols []string
		for _, c := range strings.Split(l, "  ") {
			if c = strings.TrimSpace(c); c != "" {
				cols = append(cols, c)
			}
		}
		if len(cols) == 6 {
			rows = append(rows, auditRow{what: cols[2], worker: cols[3]})
		}
	}
	return rows
}

// hasRow reports whether rows holds one with what and worker.
func hasRow(rows []auditRow, what, worker string) bool {
	for _, r := range rows {
		if r.what == what && r.worker == worker {
			return true
		}
	}
	return false
}
