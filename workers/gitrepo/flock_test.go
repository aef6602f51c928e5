package gitrepo_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/forgebus/forgebus/workers/gitrepo"
)

// openCount is how many of this process's descriptors are open on path.
func openCount(path string) int {
	fds, _ := filepath.Glob("/proc/self/fd/*")
	n := 0
	for _, fd := range fds {
		if dst, err := os.Readlink(fd); err == nil && (dst == path || dst == path+" (deleted)") {
			n++
		}
	}
	return n
}

// TestFlockSurvivesRemoval: a lock file removed by its holder (a deleted
// branch's lock) must not let a waiter on the removed file and a newcomer
// on a new file hold the lock at once.
func TestFlockSurvivesRemoval(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	path := filepath.Join(t.TempDir(), "b.lock")
	unlockA, err := gitrepo.Flock(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan func(), 2)
	go func() {
		if u, err := gitrepo.Flock(ctx, path); err == nil {
			got <- u
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for openCount(path) < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if openCount(path) < 2 {
		t.Fatal("the waiter never opened the lock file")
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	unlockA()
	go func() {
		if u, err := gitrepo.Flock(ctx, path); err == nil {
			got <- u
		}
	}()
	var first func()
	select {
	case first = <-got:
	case <-ctx.Done():
		t.Fatal("nobody got the lock")
	}
	select {
	case <-got:
		t.Fatal("two holders at once: one on the removed file, one on the new")
	case <-time.After(300 * time.Millisecond):
	}
	first()
	select {
	case second := <-got:
		second()
	case <-ctx.Done():
		t.Fatal("the second never got the lock")
	}
}
