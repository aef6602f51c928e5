package command

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// startOptions say what the starting thread does before it starts a command.
type startOptions struct {
	// keepCaps is for bwrap, which needs its capabilities to build the
	// sandbox and drops them all (--cap-drop ALL) before the command.
	keepCaps bool
	// hide are files and folders masked in the command's mount namespace
	// (root only): an empty file, an empty read-only folder.
	hide []string
	// keep are folders the command needs that may lie under a hidden one
	// (its checkout, its HOME): bound back in place.
	keep []string
}

// startUnprivileged starts cmd from an OS thread that first gives up every
// capability it could pass on and sets no_new_privs, so that a command
// started by a root forgebus holds no capability (it cannot read another
// process's memory or environment through /proc) and no setuid program
// gives any back; a root forgebus also masks opts.hide in a mount
// namespace of the command's own.
//
// The thread lives until done is called (after Wait): a parent death
// signal, which bwrap sets, fires when the forking thread ends. Then it is
// thrown away, never returned to the Go scheduler.
func startUnprivileged(cmd *exec.Cmd, opts startOptions) (done func(), err error) {
	errc := make(chan error, 1)
	release := make(chan struct{})
	go func() {
		goruntime.LockOSThread() // no Unlock: the thread ends with the goroutine
		errc <- startOnThisThread(cmd, opts)
		<-release
	}()
	if err := <-errc; err != nil {
		close(release)
		return nil, err
	}
	return func() { close(release) }, nil
}

func startOnThisThread(cmd *exec.Cmd, opts startOptions) error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	if os.Geteuid() == 0 && len(opts.hide) > 0 {
		// Without CAP_SYS_ADMIN (a container) no mount namespace can be had:
		// the command runs unmasked, as MaskCheck warned at start.
		if err := mask(opts.hide, opts.keep); err != nil && !errors.Is(err, unix.EPERM) {
			return err
		}
	}
	if os.Geteuid() == 0 && !opts.keepCaps {
		// The empty bounding set keeps a root child from getting the full
		// set back at execve.
		for c := 0; c <= unix.CAP_LAST_CAP; c++ {
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("drop capability %d: %w", c, err)
			}
		}
	}
	return cmd.Start()
}

// mask moves the calling thread into a mount namespace of its own, private
// to it and its children, where each path in hide is covered (a file by
// /dev/null, a folder by an empty read-only tmpfs), and each folder of keep
// that a cover hid is bound back in place.
func mask(hide, keep []string) error {
	if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_FS); err != nil {
		return fmt.Errorf("mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("mount namespace: make / private: %w", err)
	}
	// Hold every kept folder before anything is covered.
	held := map[string]int{}
	defer func() {
		for _, fd := range held {
			unix.Close(fd)
		}
	}()
	for _, k := range keep {
		if k == "" || !under(k, hide) {
			continue
		}
		fd, err := unix.Open(k, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("hold %s: %w", k, err)
		}
		held[k] = fd
	}
	for _, h := range hide {
		fi, err := os.Stat(h)
		if err != nil || h == "/" {
			continue // nothing there to hide
		}
		if fi.IsDir() {
			err = unix.Mount("tmpfs", h, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=64k,mode=0755")
		} else {
			err = unix.Mount("/dev/null", h, "", unix.MS_BIND, "")
		}
		if err != nil {
			return fmt.Errorf("hide %s: %w", h, err)
		}
	}
	for k, fd := range held {
		if err := os.MkdirAll(k, 0o755); err != nil {
			return fmt.Errorf("keep %s: %w", k, err)
		}
		src := "/proc/thread-self/fd/" + strconv.Itoa(fd)
		if err := unix.Mount(src, k, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("keep %s: %w", k, err)
		}
	}
	// The covering tmpfs folders become read-only once the kept ones are in.
	for _, h := range hide {
		if fi, err := os.Stat(h); err == nil && fi.IsDir() && h != "/" {
			_ = unix.Mount("", h, "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
		}
	}
	return nil
}

// under reports whether p is one of dirs or lies below one.
func under(p string, dirs []string) bool {
	p = filepath.Clean(p)
	for _, d := range dirs {
		d = filepath.Clean(d)
		if p == d || strings.HasPrefix(p, d+"/") || d == "/" {
			return true
		}
	}
	return false
}

// MaskCheck reports why protected files and folders cannot be masked from
// commands outside the bwrap sandbox, or nil when they can: it needs a root
// forgebus with CAP_SYS_ADMIN. A program warns at start when it fails.
func MaskCheck() error {
	if os.Geteuid() != 0 {
		return errors.New("forgebus does not run as root: commands outside the bwrap sandbox can read what its user can")
	}
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread() // no Unlock: the thread, in its own namespace now, ends with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("no mount namespace for commands (CAP_SYS_ADMIN needed): %w", err)
			return
		}
		errc <- nil
	}()
	return <-errc
}
