package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/services/console/gogstest"
	"github.com/forgebus/forgebus/workers/gitrepo/gittest"
)

// chromiumPath finds Debian's chromium; the browser test skips without it.
func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// screenshotDir is where the test leaves its PNGs: FORGEBUS_SCREENSHOTS, or
// a directory the test prints.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("FORGEBUS_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	d, err := os.MkdirTemp("", "forgebus-console-screenshots-")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestConsoleInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and drives a browser")
	}
	chromium := chromiumPath()
	if chromium == "" {
		t.Skip("chromium is not installed (apt-get install chromium): the console's browser test needs it")
	}
	requireGitHTTPBackend(t)
	const owner, name, modelsSecret = "acme", "handbook", "e2e-models-secret-8d1e"
	forgebusBin(t)

	// Gogs: the git repository and the API under one base URL.
	gitRoot := t.TempDir()
	repo := gittest.NewRepo(t, gitRoot, owner, name)
	repo.Write("README.md", "handbook\n")
	before := repo.Commit("first")
	repo.Write("models/x.json", `{"version": 2}`+"\n")
	after := repo.Commit("add a model")
	repo.Push("master")
	git := gittest.Serve(t, gitRoot, "")
	gitURL, _ := url.Parse(git.URL)
	api := gogstest.Start(t,
		[]gogstest.User{{Login: "ann", Password: "ann-pw-4c1d"}, {Login: "vic", Password: "vic-pw-9b2e"}},
		[]gogstest.Org{{Name: "ops", Members: []string{"ann"}, Public: []string{"ann"}}, {Name: "devs", Members: []string{"vic"}, Public: []string{"vic"}}},
		[]gogstest.Repo{{Owner: owner, Name: name, Private: true, Collaborators: []string{"vic"}}, {Owner: owner, Name: "payroll", Private: true}},
	)
	proxy := httputil.NewSingleHostReverseProxy(gitURL)
	gogs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			api.Handler().ServeHTTP(w, r)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(gogs.Close)

	// The models refresh endpoint refuses (permanently) until fixed.
	var fixed atomic.Bool
	refresh := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !fixed.Load() {
			http.Error(w, "model registry refuses", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(refresh.Close)

	consoleAddr := freeAddr(t)
	dev := startDev(t, fmt.Sprintf(`workers:
  models:
    rules:
      - name: refresh
        repo: acme/handbook
        branch: master
        paths: ["models/**"]
        post: {url: %q, timeout: 5s}
`, refresh.URL+"/refresh"),
		"FORGEBUS_GOGS_URL="+gogs.URL,
		"FORGEBUS_MODELS_SECRET="+modelsSecret,
		"FORGEBUS_CONSOLE_ADDR="+consoleAddr,
		"FORGEBUS_CONSOLE_OPERATOR_ORGS=ops",
		"FORGEBUS_CONSOLE_VIEWER_ORGS=devs",
	)
	base := "http://" + consoleAddr
	natstest.Eventually(t, 10*time.Second, "console URL printed", func() bool {
		return strings.Contains(dev.stdout.String(), "console:           "+base+"/")
	})

	// A delivery the viewer may not read, stored before anyone signs in.
	body, hdr := resignedPush(t, "push-multi-commit.json", pushRepo{owner: owner, name: "payroll", baseURL: gogs.URL, before: before, after: after})
	hdr.Set("X-Gogs-Delivery", "6b1f0c2e-7a51-4d0e-9a43-5c7e2d9f0a11") // another delivery than the handbook push below
	if code, resp := postHook(t, dev.base+"/hooks/gogs", body, hdr); code != http.StatusAccepted {
		t.Fatalf("POST payroll push = %d %s", code, resp)
	}

	shots := screenshotDir(t)
	t.Logf("screenshots in %s", shots)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium),
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1280, 900))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/login")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancelT := context.WithTimeout(ctx, 3*time.Minute)
	defer cancelT()

	shot := func(file string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(shots, file), png, 0o644)
		})
	}
	do := func(step string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v\ndev stderr:\n%s", step, err, dev.stderr)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(sel))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	signIn := func(user, pass string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(
			chromedp.Navigate(base+"/login"),
			chromedp.WaitVisible(`input[name=username]`),
			chromedp.SendKeys(`input[name=username]`, user),
			chromedp.SendKeys(`input[name=password]`, pass),
			chromedp.Submit(`form.login`),
			chromedp.WaitVisible(`#deliveries`),
		)
	}

	// Operator: sign in, see a new delivery arrive without a reload.
	do("login page", chromedp.WaitVisible(`form.login`), shot("login.png"))
	do("operator sign-in", signIn("ann", "ann-pw-4c1d"))
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById("live").textContent === "live"`, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		t.Fatalf("live updates not connected: %v", err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.__noReload = 1`)); err != nil {
		t.Fatal(err)
	}
	body, hdr = resignedPush(t, "push-multi-commit.json", pushRepo{owner: owner, name: name, baseURL: gogs.URL, before: before, after: after})
	id := hdr.Get("X-Gogs-Delivery")
	if code, resp := postHook(t, dev.base+"/hooks/gogs", body, hdr); code != http.StatusAccepted {
		t.Fatalf("POST handbook push = %d %s", code, resp)
	}
	row := `#deliveries tr[data-ev="` + id + `"]`
	do("delivery appears live", chromedp.WaitVisible(row), chromedp.WaitVisible(row+` .badge.bad[data-worker="models"]`), shot("deliveries.png"))
	if still, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.__noReload === 1`)); err != nil || !still {
		t.Fatalf("the page reloaded (%v): the delivery did not arrive live", err)
	}

	// Its timeline, with each worker's outcome.
	do("timeline", chromedp.Click(row+` a`), chromedp.WaitVisible(`ol.timeline`), shot("delivery.png"))
	timeline := text(`main`)
	for _, want := range []string{"accepted push of acme/handbook", "models", "dead_lettered", "status 400", "waiting in FORGE_DLQ", "audit records"} {
		if !strings.Contains(strings.ToLower(timeline), strings.ToLower(want)) {
			t.Errorf("timeline lacks %q:\n%s", want, timeline)
		}
	}
	do("workers", chromedp.Navigate(base+"/workers"), chromedp.WaitVisible(`main table`), shot("workers.png"))

	// Fix the cause, replay the dead letter, see the new outcome arrive.
	fixed.Store(true)
	do("replay", chromedp.Navigate(base+"/dlq"), chromedp.WaitVisible(`input[name=seq]`), shot("dlq-before.png"),
		chromedp.Click(`input[name=seq]`), chromedp.Click(`#replay`),
		chromedp.WaitVisible(`.replayed`),
		chromedp.WaitVisible(`.replayed .badge.ok[data-worker="models"]`), shot("dlq.png"))
	do("audit verify", chromedp.Navigate(base+"/audit"), chromedp.Click(`form[action="/audit/verify"] button`),
		chromedp.WaitVisible(`p.okay`), shot("audit.png"))
	do("list again", chromedp.Navigate(base+"/"), chromedp.WaitVisible(row))
	do("on a phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Click(row+` a`),
		chromedp.WaitVisible(`ol.timeline`), shot("phone-delivery.png"), chromedp.EmulateReset(), chromedp.NavigateBack(), chromedp.WaitVisible(row))
	if outcome := text(row + ` .badge[data-worker="models"]`); outcome != "models: succeeded" {
		t.Errorf("models badge after replay = %q, want models: succeeded", outcome)
	}
	do("sign out", chromedp.Click(`form.who button`), chromedp.WaitVisible(`form.login`))

	// Viewer: only acme/handbook; replay refused in the page and the API.
	do("viewer", signIn("vic", "vic-pw-9b2e"), shot("viewer-deliveries.png"))
	list := text(`#deliveries`)
	do("viewer dlq", chromedp.Navigate(base+"/dlq"), chromedp.WaitVisible(`main`))
	dlqPage := text(`main`)
	apiStatus, err := chromedp.Run(ctx, chromedp.Evaluate[int](`fetch("/api/dlq/replay", {method: "POST", headers: {"Content-Type": "application/json", "X-CSRF-Token": document.body.dataset.csrf}, body: '{"seqs":[1]}'}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(list, "acme/handbook") || strings.Contains(list, "payroll") {
		t.Errorf("viewer's deliveries:\n%s\nwant acme/handbook and not acme/payroll", list)
	}
	if !strings.Contains(dlqPage, "Replaying is for operators") || strings.Contains(dlqPage, "Replay selected") {
		t.Errorf("viewer's dead-letter page offers replay:\n%s", dlqPage)
	}
	if apiStatus != http.StatusForbidden {
		t.Errorf("viewer's replay through the API: %d, want 403", apiStatus)
	}
}
