package command

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func run(t *testing.T, iso Isolation, script string) (string, string, error) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "src")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), Spec{
		Argv: []string{"sh", "-c", script}, Dir: dir, Env: testEnv(), TailLines: 100, Isolation: iso,
	})
	return res.Tail, dir, err
}

// A command started by forgebus holds no capability and cannot gain one, so
// a root forgebus's build cannot read a non-dumpable forgebus's environ.
func TestRunDefaultModeHasNoPrivilege(t *testing.T) {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0) })
	tail, _, err := run(t, Isolation{}, `grep -E '^(CapEff|CapPrm|NoNewPrivs)' /proc/self/status
if cat /proc/$PPID/environ >/dev/null 2>&1; then echo parent-environ=readable; else echo parent-environ=denied; fi`)
	if err != nil {
		t.Fatalf("%v: %s", err, tail)
	}
	for _, want := range []string{"CapPrm:\t0000000000000000", "CapEff:\t0000000000000000", "NoNewPrivs:\t1", "parent-environ=denied"} {
		if !strings.Contains(tail, want) {
			t.Errorf("output lacks %q:\n%s", want, tail)
		}
	}
}

func TestRunRedactsProtectedValues(t *testing.T) {
	Protect([]string{"gogs-token-abc123", "webhook-secret-xyz"}, nil)
	t.Cleanup(func() { Protect(nil, nil) })
	tail, _, err := run(t, Isolation{}, `echo "token=gogs-token-abc123 and webhook-secret-xyz"; echo tail-end`)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(tail, "gogs-token-abc123") || strings.Contains(tail, "webhook-secret-xyz") {
		t.Fatalf("tail carries a protected value: %q", tail)
	}
	if !strings.Contains(tail, "token=[redacted] and [redacted]") || !strings.Contains(tail, "tail-end") {
		t.Errorf("tail = %q, want the values replaced and the rest kept", tail)
	}
}

// The start of a value cut off by the tail bound must not leave its end.
func TestRunRedactsAcrossTheTailBound(t *testing.T) {
	secret := "0123456789-secret-abcdefghij"
	Protect([]string{secret}, nil)
	t.Cleanup(func() { Protect(nil, nil) })
	// The secret ends 10 bytes into the kept window.
	pad := maxTailBytes - 10
	tail, _, err := run(t, Isolation{}, fmt.Sprintf(`printf '%%s' %s; head -c %d /dev/zero | tr '\0' x`, secret, pad))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(tail, "abcdefghij") {
		t.Fatalf("tail keeps the end of a cut protected value")
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("run_as needs root")
	}
}

func TestRunAs(t *testing.T) {
	requireRoot(t)
	secret := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(secret, []byte("root-only"), 0o600); err != nil {
		t.Fatal(err)
	}
	tail, dir, err := run(t, Isolation{RunAs: "65534:65534"}, `id -u; id -g; id -G
echo built > out.txt && echo wrote-checkout
echo home=$HOME; touch "$HOME/x" && echo wrote-home
if cat `+secret+` 2>/dev/null; then echo secret=readable; else echo secret=denied; fi`)
	if err != nil {
		t.Fatalf("%v: %s", err, tail)
	}
	lines := strings.Split(tail, "\n")
	if len(lines) < 3 || lines[0] != "65534" || lines[1] != "65534" || lines[2] != "65534" {
		t.Errorf("uid, gid, groups = %q, want 65534 and no other group", lines[:min(3, len(lines))])
	}
	for _, want := range []string{"wrote-checkout", "wrote-home", "secret=denied"} {
		if !strings.Contains(tail, want) {
			t.Errorf("output lacks %q:\n%s", want, tail)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "out.txt")); err != nil || string(b) != "built\n" {
		t.Errorf("checkout file = %q, %v", b, err)
	}
}

func requireBwrap(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("bwrap"); err != nil {
		t.Skip("bubblewrap is not installed")
	}
}

func TestRunBwrap(t *testing.T) {
	requireBwrap(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.Mkdir(outside, 0o777); err != nil {
		t.Fatal(err)
	}
	// A protected file under a folder the sandbox binds, masked there.
	etcSecret, err := os.CreateTemp("/etc", "forgebus-test-secret-")
	if err != nil {
		t.Skipf("cannot write a protected file under /etc: %v", err)
	}
	t.Cleanup(func() { os.Remove(etcSecret.Name()) })
	if _, err := etcSecret.WriteString("etc-secret-value"); err != nil {
		t.Fatal(err)
	}
	etcSecret.Close()
	Protect(nil, []string{etcSecret.Name()})
	t.Cleanup(func() { Protect(nil, nil) })

	script := `echo ok > in-checkout.txt && echo wrote-checkout
echo x > /tmp/private && echo wrote-tmp
for p in ` + outside + `/leak /etc/leak /usr/leak; do if echo x > $p 2>/dev/null; then echo wrote-outside=$p; fi; done
if cat ` + etcSecret.Name() + ` 2>/dev/null | grep -q etc-secret-value; then echo etc-secret=readable; fi
echo processes=$(ls /proc | grep -c '^[0-9]')
grep -E '^Cap(Eff|Bnd)' /proc/self/status
if bash -c 'exec 3<>/dev/tcp/127.0.0.1/` + fmt.Sprint(port) + `' 2>/dev/null; then echo net=reached; else echo net=unreachable; fi`

	for _, tc := range []struct {
		name    string
		iso     Isolation
		wantNet string
	}{
		{name: "network off", iso: Isolation{Sandbox: SandboxBwrap}, wantNet: "net=unreachable"},
		{name: "network on", iso: Isolation{Sandbox: SandboxBwrap, Network: true}, wantNet: "net=reached"},
		{name: "run_as and network off", iso: Isolation{Sandbox: SandboxBwrap, RunAs: "65534:65534"}, wantNet: "net=unreachable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.iso.RunAs != "" {
				requireRoot(t)
			}
			tail, dir, err := run(t, tc.iso, script)
			if err != nil {
				t.Fatalf("%v: %s", err, tail)
			}
			for _, want := range []string{"wrote-checkout", "wrote-tmp", tc.wantNet} {
				if !strings.Contains(tail, want) {
					t.Errorf("output lacks %q:\n%s", want, tail)
				}
			}
			for _, bad := range []string{"wrote-outside", "etc-secret=readable"} {
				if strings.Contains(tail, bad) {
					t.Errorf("sandbox allowed %q:\n%s", bad, tail)
				}
			}
			var procs int
			if i := strings.Index(tail, "processes="); i < 0 {
				t.Errorf("no process count:\n%s", tail)
			} else if fmt.Sscanf(tail[i:], "processes=%d", &procs); procs > 8 {
				t.Errorf("sandbox sees %d processes, the host's among them:\n%s", procs, tail)
			}
			if !strings.Contains(tail, "CapEff:\t0000000000000000") || !strings.Contains(tail, "CapBnd:\t0000000000000000") {
				t.Errorf("sandboxed command holds capabilities:\n%s", tail)
			}
			if _, err := os.Stat(filepath.Join(dir, "in-checkout.txt")); err != nil {
				t.Errorf("checkout write did not land: %v", err)
			}
			for _, p := range []string{filepath.Join(outside, "leak"), "/etc/leak", "/usr/leak", "/tmp/private"} {
				if _, err := os.Stat(p); err == nil {
					os.Remove(p)
					t.Errorf("sandbox wrote %s on the host", p)
				}
			}
		})
	}
}

func TestIsolationValidate(t *testing.T) {
	tests := []struct {
		name    string
		iso     Isolation
		path    string // PATH for the lookup of bwrap; empty keeps the test's
		wantErr error
	}{
		{name: "default"},
		{name: "run_as not numbers", iso: Isolation{RunAs: "nobody"}, wantErr: ErrIsolation},
		{name: "run_as root", iso: Isolation{RunAs: "0:0"}, wantErr: ErrIsolation},
		{name: "run_as no gid", iso: Isolation{RunAs: "1000"}, wantErr: ErrIsolation},
		{name: "unknown sandbox", iso: Isolation{Sandbox: "docker"}, wantErr: ErrIsolation},
		{name: "network without sandbox", iso: Isolation{Network: true}, wantErr: ErrIsolation},
		{name: "bwrap missing", iso: Isolation{Sandbox: SandboxBwrap}, path: "empty", wantErr: ErrIsolation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.path != "" {
				t.Setenv("PATH", t.TempDir())
			}
			err := tt.iso.Validate()
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.path != "" && !strings.Contains(err.Error(), "bwrap is not installed") {
				t.Errorf("err = %q, want it to say bwrap is not installed", err)
			}
		})
	}
}

// Protected files, and a protected data folder that holds the checkout, are
// out of a root forgebus's command's reach; the checkout still works.
func TestRunMasksProtectedPaths(t *testing.T) {
	requireRoot(t)
	data := t.TempDir()
	secret := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(secret, []byte("token-value-42"), 0o600); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(data, "nats", "store.blk")
	if err := os.MkdirAll(filepath.Dir(store), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(store, []byte("synced-env-value"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(data, "cache", "builds", "b1", "src")
	home := filepath.Join(data, "cache", "home")
	for _, d := range []string{dir, home} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	Protect(nil, []string{secret, data})
	t.Cleanup(func() { Protect(nil, nil) })
	for _, iso := range []Isolation{{}, {RunAs: "65534:65534"}} {
		t.Run("run_as="+iso.RunAs, func(t *testing.T) {
			res, err := Run(context.Background(), Spec{
				Argv: []string{"sh", "-c", `cat ` + secret + ` ` + store + `; echo "listing: $(ls -A ` + data + ` | tr '\n' ' ')"; echo built > site.txt && echo wrote-checkout; touch "$HOME/h" && echo wrote-home`},
				Dir:  dir, Env: []string{"PATH=/usr/bin:/bin", "HOME=" + home}, TailLines: 50, Isolation: iso,
			})
			if err != nil {
				t.Fatalf("%v: %s", err, res.Tail)
			}
			if !strings.Contains(res.Tail, "listing: cache \n") {
				t.Errorf("the data folder shows more than the kept checkout:\n%s", res.Tail)
			}
			for _, leak := range []string{"token-value-42", "synced-env-value"} {
				if strings.Contains(res.Tail, leak) {
					t.Errorf("command read %q:\n%s", leak, res.Tail)
				}
			}
			for _, want := range []string{"wrote-checkout", "wrote-home"} {
				if !strings.Contains(res.Tail, want) {
					t.Errorf("output lacks %q:\n%s", want, res.Tail)
				}
			}
			if b, err := os.ReadFile(filepath.Join(dir, "site.txt")); err != nil || string(b) != "built\n" {
				t.Errorf("checkout write = %q, %v; want it on the host", b, err)
			}
			if b, err := os.ReadFile(secret); err != nil || string(b) != "token-value-42" {
				t.Errorf("the protected file changed on the host: %q, %v", b, err)
			}
		})
	}
}

func TestMaskCheck(t *testing.T) {
	err := MaskCheck()
	if os.Geteuid() != 0 {
		if err == nil {
			t.Fatal("MaskCheck = nil for a non-root process")
		}
		return
	}
	status, _ := os.ReadFile("/proc/self/status")
	var eff uint64
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:\t"); ok {
			fmt.Sscanf(v, "%x", &eff)
		}
	}
	hasSysAdmin := eff&(1<<unix.CAP_SYS_ADMIN) != 0
	switch {
	case hasSysAdmin && err != nil:
		t.Fatalf("MaskCheck = %v for root with CAP_SYS_ADMIN", err)
	case !hasSysAdmin && (err == nil || !strings.Contains(err.Error(), "CAP_SYS_ADMIN")):
		t.Fatalf("MaskCheck = %v for root without CAP_SYS_ADMIN, want it to name the capability", err)
	}
}
