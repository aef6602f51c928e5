package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/forgebus/forgebus/natstest"
)

// runCLI runs the binary with env (plus PATH and HOME) to completion.
func runCLI(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, forgebusBin(t), args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("forgebus %s: %v", strings.Join(args, " "), err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// TestCredsSubscriberEndToEnd: an operator issues a subscriber's creds
// against a running "forgebus dev", the example subscriber prints the
// organisation's push events with them, and "forgebus creds revoke" cuts it
// off from the running server within seconds.
func TestCredsSubscriberEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	dev := startDev(t, "", "FORGEBUS_GOGS_SECRETS=fixture-secret-1")
	dataDir := filepath.Dir(filepath.Dir(dev.creds))
	env := []string{"FORGEBUS_DATA_DIR=" + dataDir, "FORGEBUS_NATS_LISTEN=" + dev.natsAddr}

	code, creds, stderr := runCLI(t, env, "creds", "issue", "--role", "subscriber", "--name", "billing",
		"--subjects", "forge.gogs.push.fixture-admin.>", "--expires", "90d")
	if code != 0 {
		t.Fatalf("creds issue exit %d: %s", code, stderr)
	}
	if !strings.Contains(creds, "BEGIN NATS USER JWT") || !strings.Contains(creds, "BEGIN USER NKEY SEED") {
		t.Fatalf("creds issue printed no credentials file: %q", creds)
	}
	credsFile := filepath.Join(t.TempDir(), "billing.creds")
	if err := os.WriteFile(credsFile, []byte(creds), 0o600); err != nil {
		t.Fatal(err)
	}

	bin := filepath.Join(t.TempDir(), "subscriber")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = filepath.Join("..", "..", "..", "examples", "subscriber")
	build.Env = append(os.Environ(), "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build examples/subscriber: %v\n%s", err, out)
	}
	sub := exec.Command(bin, "-url", "nats://"+dev.natsAddr, "-creds", credsFile, "-name", "billing")
	var subOut, subErr syncBuffer
	sub.Stdout, sub.Stderr = &subOut, &subErr
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	subDone := make(chan error, 1)
	go func() { subDone <- sub.Wait() }()
	t.Cleanup(func() {
		_ = sub.Process.Kill()
		<-subDone
		if t.Failed() {
			t.Logf("subscriber stdout:\n%s\nstderr:\n%s", &subOut, &subErr)
		}
	})

	resp, body := postFixture(t, dev.base+"/hooks/gogs", "push-multi-commit.json")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST push = %d %s", resp.StatusCode, body)
	}
	natstest.Eventually(t, 15*time.Second, "the subscriber prints the push", func() bool {
		return strings.Contains(subOut.String(), "forge.push fixture-admin/")
	})

	code, list, stderr := runCLI(t, env, "creds", "list")
	if code != 0 || !strings.Contains(list, "billing") || !strings.Contains(list, "subscriber") {
		t.Fatalf("creds list exit %d: %s %s", code, list, stderr)
	}

	start := time.Now()
	if code, _, stderr := runCLI(t, env, "creds", "revoke", "billing"); code != 0 {
		t.Fatalf("creds revoke exit %d: %s", code, stderr)
	}
	select {
	case <-subDone:
		subDone <- nil
		t.Logf("revoked subscriber exited %s after the revoke command returned: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(subErr.String()))
	case <-time.After(10 * time.Second):
		t.Fatal("the revoked subscriber is still running 10s after creds revoke")
	}
	if !strings.Contains(strings.ToLower(subErr.String()), "authorization") {
		t.Errorf("subscriber's error does not say why: %q", subErr.String())
	}
	_, list, _ = runCLI(t, env, "creds", "list")
	if !strings.Contains(list, "revoked") {
		t.Errorf("creds list does not show billing revoked:\n%s", list)
	}
}
