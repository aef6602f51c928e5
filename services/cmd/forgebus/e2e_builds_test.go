package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/workers/gitrepo/gittest"
)

// lootScript is a hostile build.sh: it dumps every environment it can
// read, its own and every process's through /proc, every command line, and
// every file it can reach under the folders an attacker would try (the
// secret files' folder, forgebus's data folder), into the published site,
// and prints what looks like a secret into its output tail.
const lootScript = `#!/bin/sh
mkdir -p site
{
echo "== own env"; env
echo "== proc environ"; for f in /proc/[0-9]*/environ; do tr '\0' '\n' < "$f"; echo; done
echo "== proc cmdline"; for f in /proc/[0-9]*/cmdline; do tr '\0' ' ' < "$f"; echo; done
echo "== files"; for d in %s; do ls -laR "$d"; find "$d" -type f -size -2M -exec cat {} +; done
echo "== end"
} > site/loot.txt 2>&1
grep -a -e FORGEBUS_ -e secret -e token site/loot.txt | tail -n 30
`

// Builds are code from anyone who can push: whatever the mode, a build run
// by the real forgebus, which holds its secrets in its environment or in
// *_FILE files, finds none of them.
func TestE2EBuildCannotReadSecrets(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	requireGitHTTPBackend(t)
	forgebusBin(t)
	modes := []struct {
		name  string
		rule  string
		needs string
	}{
		{name: "default"},
		{name: "run_as", rule: `run_as: "65534:65534"`, needs: "root"},
		{name: "bwrap", rule: "sandbox: bwrap", needs: "bwrap"},
	}
	for _, mode := range modes {
		for _, from := range []string{"env", "files"} {
			t.Run(mode.name+"/"+from, func(t *testing.T) {
				switch {
				case mode.needs == "root" && os.Geteuid() != 0:
					t.Skip("run_as needs root")
				case mode.needs == "bwrap":
					if _, err := exec.LookPath("bwrap"); err != nil {
						t.Skip("bubblewrap is not installed")
					}
				}
				testBuildCannotReadSecrets(t, mode.rule, from == "files")
			})
		}
	}
}

func testBuildCannotReadSecrets(t *testing.T, rule string, asFiles bool) {
	const (
		owner, name  = "acme", "handbook"
		token        = "e2e-gogs-token-3b9f0c"
		modelsSecret = "e2e-models-secret-c81d2e"
	)
	secrets := map[string]string{"FORGEBUS_GOGS_TOKEN": token, "FORGEBUS_GOGS_SECRETS": e2eSecret, "FORGEBUS_MODELS_SECRET": modelsSecret}
	secretDir := t.TempDir()
	dataDir := t.TempDir()
	var env []string
	for k, v := range secrets {
		if !asFiles {
			env = append(env, k+"="+v)
			continue
		}
		p := filepath.Join(secretDir, strings.ToLower(k))
		if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		env = append(env, k+"=", k+"_FILE="+p) // "=": unset startDev's plain secret
	}

	gitRoot := t.TempDir()
	repo := gittest.NewRepo(t, gitRoot, owner, name)
	repo.Write("build.sh", fmt.Sprintf(lootScript, secretDir+" "+dataDir))
	before := repo.Commit("first")
	repo.Write("README.md", "handbook\n")
	after := repo.Commit("second")
	repo.Push("master")
	git := gittest.Serve(t, gitRoot, token)

	docsRoot := t.TempDir()
	config := fmt.Sprintf(`workers:
  docs:
    rules:
      - name: handbook-docs
        repo: "acme/*"
        branch: master
        command: [sh, build.sh]
        output: site
        root: %q
        timeout: 60s
        %s
`, docsRoot, rule)
	dev := startDev(t, config, append(env, "FORGEBUS_GOGS_URL="+git.URL, "FORGEBUS_DATA_DIR="+dataDir)...)

	body, headers := resignedPush(t, "push-multi-commit.json", pushRepo{owner: owner, name: name, baseURL: git.URL, before: before, after: after})
	if code, resp := postHook(t, dev.base+"/hooks/gogs", body, headers); code != http.StatusAccepted {
		t.Fatalf("POST push = %d %s, want 202", code, resp)
	}
	loot := filepath.Join(docsRoot, owner, name, "master", "current", "loot.txt")
	var site []byte
	natstest.Eventually(t, 60*time.Second, "the build published "+loot, func() bool {
		b, err := os.ReadFile(loot)
		if err == nil && strings.Contains(string(b), "== end") {
			site = b
			return true
		}
		return false
	})
	// The probe ran: it saw its own environment and walked the folders.
	if !strings.Contains(string(site), "FORGEBUS_COMMIT="+after) || !strings.Contains(string(site), "== files") {
		t.Fatalf("the build's dump is incomplete:\n%.2000s", site)
	}

	js := dev.connect(t)
	var tails string
	natstest.Eventually(t, 20*time.Second, "a docs result in FORGE_RESULTS", func() bool {
		tails = string(joinData(streamData(t, js, schemas.StreamResults)))
		return strings.Contains(tails, "output_tail")
	})
	for what, where := range map[string]string{"the published site": string(site), "FORGE_RESULTS": tails} {
		for k, v := range secrets {
			if i := strings.Index(where, v); i >= 0 {
				t.Errorf("%s carries %s: …%s…", what, k, where[max(0, i-120):min(len(where), i+len(v)+40)])
			}
		}
	}
	if code := dev.stop(t, 15*time.Second); code != 0 {
		t.Errorf("dev exit code after SIGTERM = %d, want 0", code)
	}
}

// loadConfig leaves no secret in the environment for a child to inherit.
func TestLoadConfigDropsSecretEnv(t *testing.T) {
	for _, k := range []string{"FORGEBUS_GOGS_SECRETS", "FORGEBUS_GOGS_TOKEN", "FORGEBUS_MODELS_SECRET", "FORGEBUS_NATS_PASSWORD"} {
		t.Setenv(k, "value-of-"+k)
	}
	cfg, err := loadConfig(&cobra.Command{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Gogs.Token.Reveal() != "value-of-FORGEBUS_GOGS_TOKEN" {
		t.Fatalf("the config did not read the token first")
	}
	for _, kv := range os.Environ() {
		if strings.Contains(kv, "value-of-") {
			t.Errorf("environment still holds %s", strings.SplitN(kv, "=", 2)[0])
		}
	}
}

// Another process of forgebus's own user (a build in the default mode, when
// forgebus does not run as root) cannot read forgebus's environment.
func TestForgebusEnvironUnreadable(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	if os.Geteuid() != 0 {
		t.Skip("runs forgebus as another user: needs root")
	}
	const uid, token = 65534, "environ-probe-token-9e1f"
	bin := forgebusBin(t)
	if err := os.Chmod(filepath.Dir(bin), 0o711); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	if err := os.Chmod(filepath.Dir(data), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(data, uid, uid); err != nil {
		t.Fatal(err)
	}
	httpAddr := freeAddr(t)
	cmd := exec.Command(bin, "dev")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + data, "FORGEBUS_DATA_DIR=" + data,
		"FORGEBUS_HTTP_ADDR=" + httpAddr, "FORGEBUS_NATS_LISTEN=" + freeAddr(t),
		"FORGEBUS_GOGS_SECRETS=" + e2eSecret, "FORGEBUS_GOGS_TOKEN=" + token}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}}
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	natstest.Eventually(t, 30*time.Second, "dev /readyz 200", func() bool {
		return httpStatus("http://"+httpAddr+"/readyz") == http.StatusOK
	})
	// The same user, no capabilities: what a build of this forgebus is.
	probe := exec.Command("cat", fmt.Sprintf("/proc/%d/environ", cmd.Process.Pid))
	probe.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}}
	got, err := probe.CombinedOutput()
	if err == nil || strings.Contains(string(got), token) {
		t.Fatalf("a process of forgebus's user read its environ (err %v): %.200q", err, got)
	}
}

// What cannot be honoured is refused at start, in one clear line.
func TestStartRefusesUnsafeBuildSettings(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	openFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(openFile, []byte("tok"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(openFile, 0o644); err != nil {
		t.Fatal(err)
	}
	bwrapRule := writeTemp(t, "workers:\n  docs:\n    rules:\n      - {repo: \"a/*\", command: [make], output: o, root: /srv/docs, sandbox: bwrap}\n")
	tests := []struct {
		name    string
		env     []string
		wantErr []string
	}{
		{name: "bwrap asked for, not installed", env: []string{"FORGEBUS_CONFIG=" + bwrapRule, "FORGEBUS_GOGS_URL=http://127.0.0.1:1", "PATH=" + t.TempDir()},
			wantErr: []string{"rule 0", "bwrap is not installed"}},
		{name: "secret file readable by others", env: []string{"FORGEBUS_GOGS_TOKEN_FILE=" + openFile},
			wantErr: []string{"FORGEBUS_GOGS_TOKEN_FILE", openFile, "0644"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := append([]string{"FORGEBUS_GOGS_SECRETS=s", "FORGEBUS_HTTP_ADDR=" + freeAddr(t),
				"FORGEBUS_NATS_LISTEN=" + freeAddr(t), "FORGEBUS_DATA_DIR=" + t.TempDir()}, tc.env...)
			p := start(t, env, "dev")
			code := p.wait(t, 30*time.Second)
			stderr := p.stderr.String()
			if code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr %q does not mention %q", stderr, want)
				}
			}
		})
	}
}
