package command

import (
	"fmt"
	"os"
	"os/exec"
	goruntime "runtime"

	"golang.org/x/sys/unix"
)

// startUnprivileged starts cmd from an OS thread that first gives up every
// capability it could pass on and sets no_new_privs, so that a command
// started by a root forgebus holds no capability (it cannot read another
// process's memory or environment through /proc) and no setuid program
// gives any back. keepCaps is for bwrap, which needs its capabilities to
// build the sandbox and drops them all (--cap-drop ALL) before the command.
//
// The thread lives until done is closed (call it after Wait): a parent
// death signal, which bwrap sets, fires when the forking thread ends. Then
// it is thrown away, never returned to the Go scheduler.
func startUnprivileged(cmd *exec.Cmd, keepCaps bool) (done func(), err error) {
	errc := make(chan error, 1)
	release := make(chan struct{})
	go func() {
		goruntime.LockOSThread() // no Unlock: the thread ends with the goroutine
		errc <- startOnThisThread(cmd, keepCaps)
		<-release
	}()
	if err := <-errc; err != nil {
		close(release)
		return nil, err
	}
	return func() { close(release) }, nil
}

func startOnThisThread(cmd *exec.Cmd, keepCaps bool) error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	if os.Geteuid() == 0 && !keepCaps {
		// The empty bounding set keeps a root child from getting the full
		// set back at execve.
		for c := 0; c <= unix.CAP_LAST_CAP; c++ {
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && err != unix.EINVAL {
				return fmt.Errorf("drop capability %d: %w", c, err)
			}
		}
	}
	return cmd.Start()
}
