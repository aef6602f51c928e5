package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultTimeout applies when a [Spec] names none.
const DefaultTimeout = 10 * time.Minute

// DefaultTailLines is how many output lines [Result.Tail] keeps by default.
const DefaultTailLines = 40

// maxTailBytes bounds the tail whatever the line count.
const maxTailBytes = 8 << 10

// Spec is one command to run.
type Spec struct {
	// Argv is the program and its arguments; Argv[0] is looked up in the
	// PATH of Env (or must be a path).
	Argv []string
	// Dir is the working directory.
	Dir string
	// Env is the complete environment ("KEY=value"); nothing is inherited.
	Env []string
	// Timeout kills the whole process group when it expires; zero means
	// [DefaultTimeout].
	Timeout time.Duration
	// TailLines is how many trailing output lines to keep; zero means
	// [DefaultTailLines].
	TailLines int
	// Isolation is the user and sandbox the command runs with; the zero
	// value is the default mode.
	Isolation Isolation
}

// Result is what a finished command left behind.
type Result struct {
	// ExitCode is the exit status, or -1 when killed by a signal.
	ExitCode int
	// Tail holds the last lines of stdout and stderr interleaved, bounded,
	// with every value given to [Protect] replaced by "[redacted]".
	Tail string
	// Duration is how long it ran.
	Duration time.Duration
}

// Run runs spec and waits for it. It returns an error wrapping [ErrTimeout]
// when the timeout expired, ctx.Err() when ctx ended first, and [ErrExit]
// when the command exited non-zero; the Result is filled in every case
// where the command started. Any process still left in the command's
// process group once it exits is killed too, so nothing a build started
// outlives it.
func Run(ctx context.Context, spec Spec) (Result, error) {
	if len(spec.Argv) == 0 || spec.Argv[0] == "" {
		return Result{}, ErrNoArgv
	}
	timeout := spec.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	lines := spec.TailLines
	if lines <= 0 {
		lines = DefaultTailLines
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	path, err := lookPath(spec.Argv[0], spec.Env)
	if err != nil {
		return Result{ExitCode: -1}, fmt.Errorf("%w: %s: %w", ErrExit, spec.Argv[0], err)
	}
	cmd, cleanup, err := isolate(rctx, spec, path)
	if err != nil {
		return Result{ExitCode: -1}, fmt.Errorf("%w: start %s: %w", ErrExit, spec.Argv[0], err)
	}
	defer cleanup()

	tail := &tailWriter{max: maxTailBytes}
	pr, pw, err := os.Pipe()
	if err != nil {
		return Result{ExitCode: -1}, fmt.Errorf("output pipe: %w", err)
	}
	defer pr.Close()
	// An *os.File: Wait does not wait for the copy, so a background child
	// holding the pipe cannot keep us waiting past the command's exit.
	cmd.Stdout = pw
	cmd.Stderr = pw
	cmd.Cancel = func() error { return killGroup(cmd) }
	start := time.Now()
	started, err := startUnprivileged(cmd, startOptions{
		keepCaps: spec.Isolation.Sandbox == SandboxBwrap,
		hide:     hidden(spec.Isolation),
		keep:     []string{spec.Dir, envValue(cmd.Env, "HOME")},
	})
	if err != nil {
		pw.Close()
		return Result{ExitCode: -1}, fmt.Errorf("%w: start %s: %w", ErrExit, spec.Argv[0], err)
	}
	pw.Close()
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(tail, pr)
	}()
	werr := cmd.Wait()
	started()
	_ = killGroup(cmd) // leftovers (background children) die with the command
	select {
	case <-copied:
	case <-time.After(2 * time.Second):
		// Something left the group (setsid) and holds the pipe: stop reading.
		pr.Close()
		<-copied
	}
	res := Result{
		ExitCode: cmd.ProcessState.ExitCode(),
		Tail:     tail.lines(lines),
		Duration: time.Since(start),
	}
	switch {
	case ctx.Err() != nil:
		return res, fmt.Errorf("run %s: %w", spec.Argv[0], ctx.Err())
	case errors.Is(rctx.Err(), context.DeadlineExceeded):
		return res, fmt.Errorf("run %s after %s: %w", spec.Argv[0], timeout, ErrTimeout)
	case werr != nil:
		return res, fmt.Errorf("run %s: exit %d: %w", spec.Argv[0], res.ExitCode, ErrExit)
	}
	return res, nil
}

// killGroup sends SIGKILL to the command's whole process group.
func killGroup(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// lookPath resolves name against the PATH in env (not the worker's own).
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	pathVar := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathVar = v
		}
	}
	for _, dir := range strings.Split(pathVar, ":") {
		if dir == "" || !strings.HasPrefix(dir, "/") {
			continue
		}
		p := dir + "/" + name
		if lp, err := exec.LookPath(p); err == nil {
			return lp, nil
		}
	}
	return "", exec.ErrNotFound
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	mu  sync.Mutex
	max int
	buf []byte
	cut bool // bytes were dropped from the front
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	if len(p) >= w.max {
		w.cut = w.cut || len(p) > w.max || len(w.buf) > 0
		p = p[len(p)-w.max:]
		w.buf = append(w.buf[:0], p...)
		return n, nil
	}
	if over := len(w.buf) + len(p) - w.max; over > 0 {
		w.cut = true
		w.buf = append(w.buf[:0], w.buf[over:]...)
	}
	w.buf = append(w.buf, p...)
	return n, nil
}

// lines returns the last n lines kept, protected values redacted. When
// bytes were dropped, the first, partial line goes too: it could hold the
// end of a protected value whose start was cut off.
func (w *tailWriter) lines(n int) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := redact(string(w.buf))
	if w.cut {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		} else {
			s = ""
		}
	}
	return strings.ToValidUTF8(lastLines(s, n), "\uFFFD")
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	idx := len(s)
	for i := 0; i < n; i++ {
		j := strings.LastIndexByte(s[:idx], '\n')
		if j < 0 {
			return s
		}
		idx = j
	}
	return s[idx+1:]
}
