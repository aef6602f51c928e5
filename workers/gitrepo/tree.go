package gitrepo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// Checkout writes the tree of commit into dst (created; it should not
// exist): a clean worktree at exactly that commit, as plain files with no
// .git and nothing left from an earlier build. It uses a private index
// (read-tree, then checkout-index) rather than git archive, so
// export-ignore and export-subst attributes do not change what the build
// sees; git itself refuses tree paths with "..", ".git" or a symlinked
// leading directory, so nothing is written outside dst. Submodules come out
// as empty directories.
func (r *Repo) Checkout(ctx context.Context, commit, dst string) error {
	if err := CheckCommit(commit); err != nil {
		return err
	}
	dst, err := filepath.Abs(dst)
	if err != nil {
		return fmt.Errorf("checkout %s: %w", commit, err)
	}
	if err := os.MkdirAll(dst, 0o750); err != nil {
		return fmt.Errorf("checkout %s: %w", commit, err)
	}
	idx, err := os.CreateTemp(filepath.Dir(dst), ".index-")
	if err != nil {
		return fmt.Errorf("checkout %s: %w", commit, err)
	}
	idx.Close()
	defer os.Remove(idx.Name())
	// read-tree wants to create the index itself.
	_ = os.Remove(idx.Name())
	env := append(r.env[:len(r.env):len(r.env)], "GIT_INDEX_FILE="+idx.Name(), "GIT_DIR="+r.dir, "GIT_WORK_TREE="+dst)
	if _, err := r.gitEnv(ctx, env, dst, "read-tree", "--", commit); err != nil {
		return err
	}
	if _, err := r.gitEnv(ctx, env, dst, "checkout-index", "--all", "--force"); err != nil {
		return err
	}
	return nil
}
