package command

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// SandboxBwrap names the bubblewrap sandbox in [Isolation.Sandbox].
const SandboxBwrap = "bwrap"

// Isolation says how far a command is kept from forgebus. The zero value is
// the default mode: forgebus's own user, with no capabilities and no way to
// gain privileges (setuid programs), in its own process group.
type Isolation struct {
	// RunAs is "uid:gid": the command runs as that user and group, with no
	// supplementary groups. forgebus must run as root to use it.
	RunAs string `yaml:"run_as"`
	// Sandbox is "" or "bwrap": a bubblewrap sandbox with a read-only
	// system, the checkout writable, a private /tmp, /proc and /dev, no
	// other process visible, and the protected files masked.
	Sandbox string `yaml:"sandbox"`
	// Network keeps the host's network inside the bwrap sandbox; without it
	// the sandbox has only its own loopback.
	Network bool `yaml:"network"`
}

// Validate checks the settings against this machine: a run_as needs
// forgebus to run as root, a bwrap sandbox needs bwrap in the PATH.
func (i Isolation) Validate() error {
	if i.RunAs != "" {
		if _, _, err := ParseRunAs(i.RunAs); err != nil {
			return err
		}
		if os.Geteuid() != 0 {
			return fmt.Errorf("%w: run_as %q needs forgebus to run as root", ErrIsolation, i.RunAs)
		}
	}
	switch i.Sandbox {
	case "":
		if i.Network {
			return fmt.Errorf("%w: network applies to sandbox: bwrap only", ErrIsolation)
		}
	case SandboxBwrap:
		if _, err := exec.LookPath("bwrap"); err != nil {
			return fmt.Errorf("%w: sandbox: bwrap, but bwrap is not installed (apt-get install bubblewrap): %w", ErrIsolation, err)
		}
	default:
		return fmt.Errorf("%w: sandbox %q: want bwrap or nothing", ErrIsolation, i.Sandbox)
	}
	return nil
}

// ParseRunAs parses "uid:gid" (numbers, uid not 0).
func ParseRunAs(s string) (uid, gid uint32, err error) {
	u, g, ok := strings.Cut(s, ":")
	if ok {
		var uu, gg uint64
		uu, err = strconv.ParseUint(u, 10, 32)
		if err == nil {
			gg, err = strconv.ParseUint(g, 10, 32)
		}
		if err == nil && uu != 0 && gg != 0 {
			return uint32(uu), uint32(gg), nil
		}
	}
	return 0, 0, fmt.Errorf("%w: run_as %q: want uid:gid, numbers, not root", ErrIsolation, s)
}

// grant gives dir and everything under it to uid:gid and lets that user
// reach it: every parent folder gets search permission for others (never
// read), so the user can walk to it but not list what lies beside it.
func grant(dir string, uid, gid uint32) error {
	err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(uid), int(gid))
	})
	if err != nil {
		return fmt.Errorf("give %s to %d:%d: %w", dir, uid, gid, err)
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("give %s to %d:%d: %w", dir, uid, gid, err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(p, fi.Mode().Perm()|0o001); err != nil {
				return fmt.Errorf("give %s to %d:%d: %w", dir, uid, gid, err)
			}
		}
		if p == "/" || p == "." {
			return nil
		}
	}
}

// systemDirs are bound read-only into the sandbox when they exist.
var systemDirs = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"}

// bwrapArgs is the bwrap command line that runs argv (resolved to path) in
// dir, with home as HOME, hiding the files in hide.
func bwrapArgs(bwrap string, iso Isolation, dir, path string, argv []string, hide []string) []string {
	a := []string{bwrap, "--die-with-parent", "--new-session", "--unshare-all", "--cap-drop", "ALL"}
	if iso.Network {
		a = append(a, "--share-net")
	}
	for _, d := range systemDirs {
		fi, err := os.Lstat(d)
		switch {
		case err != nil:
		case fi.Mode()&os.ModeSymlink != 0:
			if target, err := os.Readlink(d); err == nil {
				a = append(a, "--symlink", target, d)
			}
		case fi.IsDir():
			a = append(a, "--ro-bind", d, d)
		}
	}
	a = append(a, "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
		"--bind", dir, dir)
	for _, h := range hide {
		// Masked only where the sandbox can see them: under a bound folder.
		if fi, err := os.Stat(h); err == nil && visibleIn(h) {
			if fi.IsDir() {
				a = append(a, "--tmpfs", h)
			} else {
				a = append(a, "--ro-bind", "/dev/null", h)
			}
		}
	}
	a = append(a, "--chdir", dir, "--", path)
	return append(a, argv[1:]...)
}

// visibleIn reports whether p lies under one of the sandbox's system folders.
func visibleIn(p string) bool {
	for _, d := range systemDirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// isolate builds the exec.Cmd that runs spec (its program resolved to path)
// under spec.Isolation, and a cleanup to call once it has finished.
func isolate(ctx context.Context, spec Spec, path string) (*exec.Cmd, func(), error) {
	iso := spec.Isolation
	if err := iso.Validate(); err != nil {
		return nil, nil, err
	}
	env := append([]string{}, spec.Env...)
	cleanup := func() {}
	attr := &syscall.SysProcAttr{Setsid: true} // own session and process group: no terminal, killed as a group

	if iso.RunAs != "" {
		uid, gid, _ := ParseRunAs(iso.RunAs)
		if err := grant(spec.Dir, uid, gid); err != nil {
			return nil, nil, err
		}
		attr.Credential = &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}
		if iso.Sandbox == "" {
			// A HOME of its own beside the checkout: the caller's is not the user's.
			home, err := os.MkdirTemp(filepath.Dir(spec.Dir), "home-")
			if err != nil {
				return nil, nil, fmt.Errorf("home: %w", err)
			}
			cleanup = func() { _ = os.RemoveAll(home) }
			if err := os.Chown(home, int(uid), int(gid)); err != nil {
				cleanup()
				return nil, nil, fmt.Errorf("home: %w", err)
			}
			env = setEnv(env, "HOME", home)
		}
	}

	var cmd *exec.Cmd
	if iso.Sandbox == SandboxBwrap {
		bwrap, err := exec.LookPath("bwrap")
		if err != nil {
			cleanup()
			return nil, nil, fmt.Errorf("%w: bwrap: %w", ErrIsolation, err)
		}
		env = setEnv(env, "HOME", "/tmp")
		args := bwrapArgs(bwrap, iso, spec.Dir, path, spec.Argv, protectedFiles())
		cmd = exec.CommandContext(ctx, args[0], args[1:]...)
	} else {
		cmd = exec.CommandContext(ctx, path, spec.Argv[1:]...)
		cmd.Args[0] = spec.Argv[0]
	}
	cmd.Dir = spec.Dir
	cmd.Env = env
	cmd.SysProcAttr = attr
	return cmd, cleanup, nil
}

// setEnv sets key in env, replacing any earlier value.
func setEnv(env []string, key, value string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return append(out, key+"="+value)
}

// hidden are the protected paths to mask outside bwrap, which masks them
// itself.
func hidden(iso Isolation) []string {
	if iso.Sandbox == SandboxBwrap {
		return nil
	}
	return protectedFiles()
}

// envValue is key's value in env.
func envValue(env []string, key string) string {
	v := ""
	for _, kv := range env {
		if rest, ok := strings.CutPrefix(kv, key+"="); ok {
			v = rest
		}
	}
	return v
}
