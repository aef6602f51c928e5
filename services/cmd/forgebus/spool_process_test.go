package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
)

// The tests in this file run the real forgebus binary as "forgebus ingest"
// against a real JetStream (natstest) that they stop and start, and prove
// issue 7: ingest keeps every verified webhook while NATS is unreachable.

const spoolSecret = "fixture-secret-1"

// webhook is one signed push delivery, made from a recorded Gogs push with
// its repository renamed and its "after" sha carrying a sequence number.
type webhook struct {
	id   string // X-Gogs-Delivery, hence the event id
	repo string // owner/name
	seq  int    // posting order, over all repos
	body []byte
	sig  string
}

// afterSHA is the "after" sha that carries seq.
func afterSHA(seq int) string { return fmt.Sprintf("%040x", seq) }

// makePushes returns n push deliveries spread round-robin over repos
// repositories, each re-signed with spoolSecret.
func makePushes(t *testing.T, n, repos int) []webhook {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(fixtures, "push-multi-commit.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f fixture
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	orig, err := base64.StdEncoding.DecodeString(f.BodyBase64)
	if err != nil {
		t.Fatal(err)
	}
	hooks := make([]webhook, n)
	for i := range hooks {
		var p map[string]any
		if err := json.Unmarshal(orig, &p); err != nil {
			t.Fatal(err)
		}
		owner, name := fmt.Sprintf("owner-%d", i%repos), fmt.Sprintf("repo-%d", i%repos)
		repo := p["repository"].(map[string]any)
		repo["name"], repo["full_name"] = name, owner+"/"+name
		o := repo["owner"].(map[string]any)
		o["username"], o["login"] = owner, owner
		p["after"] = afterSHA(i)
		body, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		mac := hmac.New(sha256.New, []byte(spoolSecret))
		mac.Write(body)
		hooks[i] = webhook{
			id:   fmt.Sprintf("5f0e%04x-0000-4000-8000-%012x", n, i),
			repo: owner + "/" + name,
			seq:  i,
			body: body,
			sig:  hex.EncodeToString(mac.Sum(nil)),
		}
	}
	return hooks
}

// answer is what ingest said to one delivery.
type answer struct {
	status     int
	retryAfter string
	spooled    bool
	body       string
}

// deliver posts w to base's hook endpoint the way Gogs does.
func deliver(t *testing.T, base string, w webhook) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+hooksPath, bytes.NewReader(w.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Gogs-Event", "push")
	req.Header.Set("X-Gogs-Delivery", w.id)
	req.Header.Set("X-Gogs-Signature", w.sig)
	resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("POST delivery %d: %v", w.seq, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var v struct {
		Spooled bool `json:"spooled"`
	}
	_ = json.Unmarshal(b, &v)
	return answer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), spooled: v.Spooled, body: string(b)}
}

// deliverSpooled posts every webhook and fails t unless each is answered
// 202 spooled.
func deliverSpooled(t *testing.T, base string, hooks []webhook) {
	t.Helper()
	for _, w := range hooks {
		if a := deliver(t, base, w); a.status != http.StatusAccepted || !a.spooled {
			t.Fatalf("delivery %d: got %d %s, want 202 spooled", w.seq, a.status, a.body)
		}
	}
}

// ingestEnv is the environment of an ingest process on natsURL with its own
// data directory and HTTP address, plus extra settings.
func ingestEnv(natsURL, httpAddr, dataDir string, extra ...string) []string {
	return append([]string{
		"FORGEBUS_NATS_URL=" + natsURL,
		"FORGEBUS_HTTP_ADDR=" + httpAddr,
		"FORGEBUS_DATA_DIR=" + dataDir,
		"FORGEBUS_GOGS_SECRETS=" + spoolSecret,
		"FORGEBUS_LOG_FORMAT=json",
		"FORGEBUS_LOG_LEVEL=warn",
	}, extra...)
}

// startIngest starts "forgebus ingest" with env and waits until it serves
// HTTP on httpAddr; it returns the process and the base URL.
func startIngest(t *testing.T, httpAddr string, env []string) (*proc, string) {
	t.Helper()
	p := start(t, env, "ingest")
	base := "http://" + httpAddr
	natstest.Eventually(t, 15*time.Second, "ingest serves /healthz", func() bool {
		if p.exited() {
			t.Fatalf("ingest exited at start: %v\n%s", p.err, p.stderr)
		}
		return httpStatus(base+"/healthz") == http.StatusOK
	})
	return p, base
}

// kill SIGKILLs p (a process this test started) and waits for it.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil && !p.exited() {
		t.Fatalf("SIGKILL: %v", err)
	}
	p.wait(t, 10*time.Second)
}

// readiness is the part of /readyz the tests look at.
type readiness struct {
	status int
	Ready  bool `json:"ready"`
	Checks map[string]struct {
		OK       bool           `json:"ok"`
		Advisory bool           `json:"advisory"`
		Detail   map[string]any `json:"detail"`
	} `json:"checks"`
}

func readyz(t *testing.T, base string) readiness {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(base + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	defer resp.Body.Close()
	r := readiness{status: resp.StatusCode}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("decode /readyz: %v", err)
	}
	return r
}

// spoolDepth is the spool depth /readyz reports, or -1.
func spoolDepth(t *testing.T, base string) int {
	t.Helper()
	d, ok := readyz(t, base).Checks["spool"].Detail["depth"].(float64)
	if !ok {
		return -1
	}
	return int(d)
}

// metric returns the value of the unlabelled metric name on base's
// /metrics, or -1 when it is not there.
func metric(t *testing.T, base, name string) float64 {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(base + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s: %q", name, l)
			}
			return f
		}
	}
	return -1
}

// streamMsgs is the message count of FORGE_EVENTS, or -1 while it cannot be
// read (no connection yet, no stream yet).
func streamMsgs(js jetstream.JetStream) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, schemas.StreamEvents)
	if err != nil {
		return -1
	}
	return int(st.CachedInfo().State.Msgs)
}

// stored is one message of FORGE_EVENTS.
type stored struct {
	msgID string
	env   schemas.Envelope
	after string
}

// readEvents returns every message of FORGE_EVENTS in stream order.
func readEvents(t *testing.T, js jetstream.JetStream) []stored {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, schemas.StreamEvents)
	if err != nil {
		t.Fatalf("stream %s: %v", schemas.StreamEvents, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []stored
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get message %d: %v", seq, err)
		}
		var s stored
		s.msgID = m.Header.Get(nats.MsgIdHdr)
		if err := json.Unmarshal(m.Data, &s.env); err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		var push struct {
			After string `json:"after"`
		}
		if err := json.Unmarshal(s.env.Data, &push); err != nil {
			t.Fatalf("message %d data: %v", seq, err)
		}
		s.after = push.After
		out = append(out, s)
	}
	return out
}

// checkStream asserts that the stream holds exactly want, each once, and
// per repo in posting order.
func checkStream(t *testing.T, got []stored, want []webhook) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("FORGE_EVENTS holds %d messages, want %d", len(got), len(want))
	}
	wantByID := make(map[string]webhook, len(want))
	for _, w := range want {
		wantByID[w.id] = w
	}
	seen := map[string]int{}
	perRepo := map[string][]int{}
	for i, s := range got {
		seen[s.env.ID]++
		w, ok := wantByID[s.env.ID]
		if !ok {
			t.Errorf("message %d: unexpected delivery id %q", i, s.env.ID)
			continue
		}
		// Nats-Msg-Id is the signed payload's hash, spooled or not.
		if sum := sha256.Sum256(w.body); s.msgID != "sha256:"+hex.EncodeToString(sum[:]) {
			t.Errorf("message %d (%s): Nats-Msg-Id %q, want the hash of its payload", i, s.env.ID, s.msgID)
		}
		if s.env.Repo != w.repo || s.after != afterSHA(w.seq) {
			t.Errorf("message %d (%s): repo %q after %q, want %q %q", i, s.env.ID, s.env.Repo, s.after, w.repo, afterSHA(w.seq))
		}
		perRepo[w.repo] = append(perRepo[w.repo], w.seq)
	}
	for _, w := range want {
		if n := seen[w.id]; n != 1 {
			t.Errorf("delivery %d (%s) stored %d times, want once", w.seq, w.id, n)
		}
	}
	wantRepo := map[string][]int{}
	for _, w := range want {
		wantRepo[w.repo] = append(wantRepo[w.repo], w.seq)
	}
	for repo, seqs := range wantRepo {
		if g := perRepo[repo]; fmt.Sprint(g) != fmt.Sprint(seqs) {
			t.Errorf("repo %s: stream order %v, want posting order %v", repo, g, seqs)
		}
	}
}

// waitDrained waits until FORGE_EVENTS holds n messages and ingest at base
// reports an empty spool; it then checks that no more arrive.
func waitDrained(t *testing.T, js jetstream.JetStream, base string, n int, timeout time.Duration) {
	t.Helper()
	natstest.Eventually(t, timeout, fmt.Sprintf("FORGE_EVENTS holds %d messages and the spool is empty", n), func() bool {
		return streamMsgs(js) >= n && spoolDepth(t, base) == 0
	})
	if got := streamMsgs(js); got != n {
		t.Fatalf("FORGE_EVENTS holds %d messages after the spool drained, want %d", got, n)
	}
}

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
}

// TestSpoolSurvivesOutageAndKill: with JetStream down, 500 signed webhooks
// are all answered 202 spooled although ingest is SIGKILLed and restarted
// halfway; once JetStream is back all 500 are in FORGE_EVENTS exactly once,
// in posting order per repo. ingest itself provisions the streams, after
// the outage.
func TestSpoolSurvivesOutageAndKill(t *testing.T) {
	skipShort(t)
	began := time.Now()
	srv := natstest.Run(t)
	natsURL := srv.URL()
	srv.Shutdown() // down before ingest ever connects; no stream exists yet

	hooks := makePushes(t, 500, 5)
	dataDir := t.TempDir()
	addr := freeAddr(t)
	first, base := startIngest(t, addr, ingestEnv(natsURL, addr, dataDir))

	// Ready while NATS is down: the spool has room (see ingest --help).
	r := readyz(t, base)
	if r.status != http.StatusOK || !r.Ready {
		t.Errorf("/readyz with NATS down and the spool on: %d ready=%v, want 200", r.status, r.Ready)
	}
	if c := r.Checks["nats"]; c.OK || !c.Advisory {
		t.Errorf("/readyz nats check = %+v, want failing and advisory", c)
	}
	if c := r.Checks["spool"]; !c.OK {
		t.Errorf("/readyz spool check = %+v, want ok", c)
	}

	deliverSpooled(t, base, hooks[:250])
	first.kill(t)

	addr = freeAddr(t)
	second, base := startIngest(t, addr, ingestEnv(natsURL, addr, dataDir))
	if d := spoolDepth(t, base); d != 250 {
		t.Errorf("spool depth after SIGKILL and restart = %d, want 250", d)
	}
	deliverSpooled(t, base, hooks[250:])
	posted := time.Since(began)

	srv.Restart()
	_, js := srv.Connect(t)
	back := time.Now()
	waitDrained(t, js, base, len(hooks), 30*time.Second)
	t.Logf("500 posted (1 SIGKILL) in %s; forwarded %s after JetStream came back", posted.Round(time.Millisecond), time.Since(back).Round(time.Millisecond))
	checkStream(t, readEvents(t, js), hooks)

	r = readyz(t, base)
	if r.status != http.StatusOK || !r.Checks["nats"].OK {
		t.Errorf("/readyz after recovery: %d nats=%+v, want 200 and nats ok", r.status, r.Checks["nats"])
	}
	for _, p := range []*proc{first, second} {
		if strings.Contains(p.stdout.String()+p.stderr.String(), spoolSecret) {
			t.Error("ingest logged the webhook secret")
		}
	}
}

// recordEnds returns the offsets just past each whole record of a spool
// segment, per the format documented in ingest/spool (magic, length uint32
// LE, CRC-32C, payload).
func recordEnds(t *testing.T, seg []byte) []int64 {
	t.Helper()
	var ends []int64
	for off := 0; off+12 <= len(seg); {
		if string(seg[off:off+4]) != "FBS1" {
			t.Fatalf("segment: no record magic at %d", off)
		}
		end := off + 12 + int(binary.LittleEndian.Uint32(seg[off+4:off+8]))
		if end > len(seg) {
			break
		}
		ends = append(ends, int64(end))
		off = end
	}
	return ends
}

// TestSpoolCorruptTailAtStart: a spool segment cut at a random byte, as a
// power cut mid-write leaves it. ingest starts anyway, forwards every whole
// entry, and moves the broken tail aside.
func TestSpoolCorruptTailAtStart(t *testing.T) {
	skipShort(t)
	srv := natstest.Run(t)
	natsURL := srv.URL()
	srv.Shutdown()

	hooks := makePushes(t, 20, 3)
	dataDir := t.TempDir()
	addr := freeAddr(t)
	p, base := startIngest(t, addr, ingestEnv(natsURL, addr, dataDir))
	deliverSpooled(t, base, hooks)
	if code := p.stop(t, 15*time.Second); code != 0 {
		t.Fatalf("ingest exit code %d after SIGTERM", code)
	}

	segs, err := filepath.Glob(filepath.Join(dataDir, "spool", "*.seg"))
	if err != nil || len(segs) != 1 {
		t.Fatalf("spool segments = %v (%v), want one", segs, err)
	}
	seg, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	ends := recordEnds(t, seg)
	if len(ends) != len(hooks) {
		t.Fatalf("segment holds %d records, want %d", len(ends), len(hooks))
	}
	// A cut past the first record and not on a record boundary.
	const seed = 7
	rng := rand.New(rand.NewPCG(seed, seed))
	cut := ends[0] + 1 + rng.Int64N(int64(len(seg))-ends[0]-1)
	whole := 0
	for _, e := range ends {
		if e <= cut {
			whole++
		}
		if e == cut {
			cut++ // a boundary leaves no broken tail: move off it
		}
	}
	t.Logf("seed %d: cut %d-byte segment at %d: %d whole entries", seed, len(seg), cut, whole)
	if err := os.Truncate(segs[0], cut); err != nil {
		t.Fatal(err)
	}

	srv.Restart()
	_, js := srv.Connect(t)
	addr = freeAddr(t)
	p, base = startIngest(t, addr, ingestEnv(natsURL, addr, dataDir))
	waitDrained(t, js, base, whole, 20*time.Second)
	checkStream(t, readEvents(t, js), hooks[:whole])

	aside, err := filepath.Glob(filepath.Join(dataDir, "spool", "*.corrupt-*"))
	if err != nil || len(aside) != 1 {
		t.Errorf("broken tail files = %v (%v), want one *.corrupt-*", aside, err)
	}
	if n := metric(t, base, "forgebus_spool_corrupt_total"); n != 1 {
		t.Errorf("forgebus_spool_corrupt_total = %v, want 1", n)
	}
	if !strings.Contains(p.stderr.String(), "corrupt") {
		t.Errorf("ingest did not log the corrupt tail:\n%s", p.stderr)
	}
}

// TestSpoolFull: with JetStream down and room for 5 entries, the 6th and
// later deliveries get 503 with Retry-After, /readyz fails, and once
// JetStream is back exactly the 5 accepted deliveries are in the stream.
func TestSpoolFull(t *testing.T) {
	skipShort(t)
	srv := natstest.Run(t)
	natsURL := srv.URL()
	srv.Shutdown()

	hooks := makePushes(t, 8, 2)
	addr := freeAddr(t)
	p, base := startIngest(t, addr, ingestEnv(natsURL, addr, t.TempDir(), "FORGEBUS_SPOOL_MAX_ENTRIES=5"))
	deliverSpooled(t, base, hooks[:5])
	for _, w := range hooks[5:] {
		a := deliver(t, base, w)
		if a.status != http.StatusServiceUnavailable {
			t.Errorf("delivery %d with the spool full: %d %s, want 503", w.seq, a.status, a.body)
		}
		if n, err := strconv.Atoi(a.retryAfter); err != nil || n < 1 {
			t.Errorf("delivery %d: Retry-After %q, want whole seconds", w.seq, a.retryAfter)
		}
	}
	if r := readyz(t, base); r.status != http.StatusServiceUnavailable || r.Checks["spool"].OK {
		t.Errorf("/readyz with the spool full and NATS down: %d spool=%+v, want 503, spool failing", r.status, r.Checks["spool"])
	}
	if n := metric(t, base, "forgebus_spool_full_rejections_total"); n != 3 {
		t.Errorf("forgebus_spool_full_rejections_total = %v, want 3", n)
	}
	if !strings.Contains(p.stderr.String(), "spool full") {
		t.Errorf("ingest did not log that the spool is full:\n%s", p.stderr)
	}

	srv.Restart()
	_, js := srv.Connect(t)
	waitDrained(t, js, base, 5, 20*time.Second)
	checkStream(t, readEvents(t, js), hooks[:5])
}

// TestSpoolOff: FORGEBUS_SPOOL=off with JetStream down: ingest starts, and
// answers 503 with Retry-After; /readyz fails on NATS.
func TestSpoolOff(t *testing.T) {
	skipShort(t)
	srv := natstest.Run(t)
	natsURL := srv.URL()
	srv.Shutdown()

	addr := freeAddr(t)
	_, base := startIngest(t, addr, ingestEnv(natsURL, addr, t.TempDir(), "FORGEBUS_SPOOL=off"))
	w := makePushes(t, 1, 1)[0]
	a := deliver(t, base, w)
	if a.status != http.StatusServiceUnavailable || a.retryAfter == "" || a.spooled {
		t.Errorf("delivery with NATS down and no spool: %d Retry-After %q %s, want 503 with Retry-After", a.status, a.retryAfter, a.body)
	}
	if r := readyz(t, base); r.status != http.StatusServiceUnavailable || r.Checks["nats"].OK || r.Checks["nats"].Advisory {
		t.Errorf("/readyz with NATS down and no spool: %d nats=%+v, want 503, nats failing and not advisory", r.status, r.Checks["nats"])
	}
	if _, ok := readyz(t, base).Checks["spool"]; ok {
		t.Error("/readyz shows a spool check with the spool off")
	}
}

// TestSpoolDirLocked: a second ingest on the same FORGEBUS_SPOOL_DIR exits
// non-zero and says the directory is locked; the first keeps serving.
func TestSpoolDirLocked(t *testing.T) {
	skipShort(t)
	srv := natstest.Run(t)
	natsURL := srv.URL()
	srv.Shutdown()

	spoolDir := filepath.Join(t.TempDir(), "shared-spool")
	addr1 := freeAddr(t)
	_, base := startIngest(t, addr1, ingestEnv(natsURL, addr1, t.TempDir(), "FORGEBUS_SPOOL_DIR="+spoolDir))

	addr2 := freeAddr(t)
	second := start(t, ingestEnv(natsURL, addr2, t.TempDir(), "FORGEBUS_SPOOL_DIR="+spoolDir), "ingest")
	if code := second.wait(t, 15*time.Second); code == 0 {
		t.Errorf("second ingest on a locked spool exited 0")
	}
	if msg := second.stderr.String(); !strings.Contains(msg, "locked") {
		t.Errorf("second ingest's stderr does not say locked:\n%s", msg)
	}
	if httpStatus(base+"/healthz") != http.StatusOK {
		t.Error("first ingest stopped serving")
	}
	w := makePushes(t, 1, 1)[0]
	if a := deliver(t, base, w); a.status != http.StatusAccepted || !a.spooled {
		t.Errorf("first ingest after the second failed: %d %s, want 202 spooled", a.status, a.body)
	}
}
