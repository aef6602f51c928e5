package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/forgebus/forgebus/natstest"
)

// proc is one child process this program started and may kill.
type proc struct {
	name string
	bin  string
	args []string
	env  []string
	log  string
	addr string // its HTTP address, for /readyz; "" for none

	// onExit, when set, is called (in its own goroutine) when the process
	// exits without this program having stopped or killed it.
	onExit func(p *proc, err error)

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	expected bool // this program stopped or killed it
	closed   bool // no more restarts: the run is over
}

func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("start %s: the run is over", p.name)
	}
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("log %s: %w", p.name, err)
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		unplanned := !p.expected && !p.closed && p.onExit != nil
		p.mu.Unlock()
		close(done)
		if unplanned {
			p.onExit(p, err)
		}
	}()
	p.cmd, p.done, p.expected = cmd, done, false
	return nil
}

// signal sends sig to the process (only the pid this program started).
func (p *proc) signal(sig syscall.Signal) {
	p.mu.Lock()
	p.expected = true
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(sig)
}

// kill SIGKILLs the process and waits for it to be gone.
func (p *proc) kill() {
	p.signal(syscall.SIGKILL)
	p.wait(10 * time.Second)
}

// stop sends SIGTERM, then SIGKILL after grace; it is never restarted.
func (p *proc) stop(grace time.Duration) {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.signal(syscall.SIGTERM)
	if !p.wait(grace) {
		p.kill()
	}
}

func (p *proc) wait(d time.Duration) bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return true
	}
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

func (p *proc) exited() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// ready polls /readyz until it answers 200.
func (p *proc) ready(ctx context.Context, d time.Duration) error {
	deadline := time.Now().Add(d)
	c := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("%s exited; see %s", p.name, p.log)
		}
		resp, err := c.Get("http://" + p.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready after %s: %w; see %s", p.name, d, errTimeout, p.log)
}

// freeAddr returns a 127.0.0.1 address that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// cluster drives scripts/cluster.sh on its own directory and ports.
type cluster struct {
	script string
	dir    string
	env    []string
}

func newCluster(root, bin, dir string) (*cluster, error) {
	base, err := natstest.ClusterPortBase(os.Getpid())
	if err != nil {
		return nil, err
	}
	return &cluster{
		script: filepath.Join(root, "scripts", "cluster.sh"),
		dir:    dir,
		env:    append(os.Environ(), "CLUSTER_PORT_BASE="+strconv.Itoa(base), "CLUSTER_WAIT=40", "FORGEBUS="+bin),
	}, nil
}

func (c *cluster) run(cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	x := exec.CommandContext(ctx, c.script, cmd, c.dir)
	x.Env = c.env
	out, err := x.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("cluster.sh %s: %w: %s", cmd, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// killNode SIGKILLs node n (the pid cluster.sh recorded for this dir).
func (c *cluster) killNode(n int) error {
	data, err := os.ReadFile(filepath.Join(c.dir, fmt.Sprintf("nats-%d.pid", n)))
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return fmt.Errorf("nats-%d pid file: bad pid", n)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), filepath.Join(c.dir, fmt.Sprintf("nats-%d", n))) {
		return fmt.Errorf("nats-%d (pid %d) is not ours", n, pid)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return err
	}
	for range 100 {
		if syscall.Kill(pid, 0) != nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("nats-%d (pid %d) still alive: %w", n, pid, errTimeout)
}
