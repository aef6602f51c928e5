package command

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/forgebus/forgebus/natstest"
)

func testEnv() []string { return []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent"} }

func TestRun(t *testing.T) {
	t.Setenv("FORGEBUS_SECRET_PROBE", "leak")
	tests := []struct {
		name     string
		argv     []string
		wantErr  error
		wantTail string
		noTail   string
	}{
		{name: "success keeps last lines", argv: []string{"sh", "-c", "for i in $(seq 1 100); do echo line$i; done"}, wantTail: "line100", noTail: "line1\n"},
		{name: "non-zero exit", argv: []string{"sh", "-c", "echo boom >&2; exit 3"}, wantErr: ErrExit, wantTail: "boom"},
		{name: "environment not inherited", argv: []string{"sh", "-c", "echo probe=${FORGEBUS_SECRET_PROBE:-unset}"}, wantTail: "probe=unset"},
		{name: "argv is not a shell string", argv: []string{"echo", "$(touch x)", ";", "rm"}, wantTail: "$(touch x) ; rm"},
		{name: "missing program", argv: []string{"no-such-program-xyz"}, wantErr: ErrExit},
		{name: "empty argv", argv: nil, wantErr: ErrNoArgv},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			res, err := Run(context.Background(), Spec{Argv: tt.argv, Dir: dir, Env: testEnv(), TailLines: 5})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(res.Tail, tt.wantTail) {
				t.Errorf("tail = %q, want it to contain %q", res.Tail, tt.wantTail)
			}
			if tt.noTail != "" && strings.Contains(res.Tail, tt.noTail) {
				t.Errorf("tail = %q kept more than 5 lines", res.Tail)
			}
			if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
				t.Error("argument was run through a shell")
			}
		})
	}
}

func TestRunTimeoutKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	start := time.Now()
	_, err := Run(context.Background(), Spec{
		Argv:    []string{"sh", "-c", "sleep 60 & echo $! > " + pidFile + "; wait"},
		Dir:     dir,
		Env:     testEnv(),
		Timeout: 300 * time.Millisecond,
	})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Run took %s after a 300ms timeout", d)
	}
	assertGone(t, pidFile)
}

func TestRunKillsLeftoverChildren(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	_, err := Run(context.Background(), Spec{
		Argv: []string{"sh", "-c", "sleep 60 & echo $! > " + pidFile + "; echo done"},
		Dir:  dir,
		Env:  testEnv(),
	})
	if err != nil {
		t.Fatal(err)
	}
	assertGone(t, pidFile)
}

// assertGone waits until the pid in pidFile is no longer a running process
// (gone, or a zombie waiting for init to reap it).
func assertGone(t *testing.T, pidFile string) {
	t.Helper()
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 5*time.Second, "child sleep killed", func() bool { return !Running(pid) })
}
