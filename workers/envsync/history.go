package envsync

import (
	"context"
	"errors"
	"fmt"

	"github.com/forgebus/forgebus/workers/gitrepo"
	"github.com/forgebus/forgebus/workers/runtime"
)

// History answers questions about a repository's commits.
type History interface {
	// IsAncestor reports whether commit a is an ancestor of commit b (a
	// commit is its own ancestor) in owner/repo. It returns an error
	// wrapping [gitrepo.ErrNoCommit] when either is not in the repository.
	IsAncestor(ctx context.Context, owner, repo, a, b string) (bool, error)
}

// GitHistory is a [History] read from a bare cache of each repository,
// fetched from Gogs over git, as the docs worker does.
type GitHistory struct {
	// Options are the Gogs base URL, token, cache folder and PATH; Owner
	// and Name are filled in per call.
	Options gitrepo.Options
}

// IsAncestor fetches both commits into the cache and asks git.
func (g GitHistory) IsAncestor(ctx context.Context, owner, repo, a, b string) (bool, error) {
	opts := g.Options
	opts.Owner, opts.Name = owner, repo
	r, err := gitrepo.Open(opts)
	if err != nil {
		return false, err
	}
	for _, c := range []string{b, a} {
		if err := r.Ensure(ctx, c); err != nil {
			return false, err
		}
	}
	return r.IsAncestor(ctx, a, b)
}

// refusal says why commit, pushed from before, must not replace applied,
// or "" when it may: it descends from applied, or its push started from
// applied (a force push by the branch's owner), or it starts a branch
// (time decides, as when applied is no longer in the repository). An
// ancestor of applied, or any other line of history, is an old push
// replayed.
func (w *Worker) refusal(ctx context.Context, owner, repo, applied, before, commit string) (string, error) {
	if w.history == nil || applied == commit || gitrepo.CheckCommit(applied) != nil {
		return "", nil
	}
	older, err := w.history.IsAncestor(ctx, owner, repo, commit, applied)
	if err != nil {
		return "", historyErr(err)
	}
	if older {
		return "commit is an ancestor of the applied commit", nil
	}
	newer, err := w.history.IsAncestor(ctx, owner, repo, applied, commit)
	switch {
	case err != nil:
		return "", historyErr(err)
	case newer, before == applied, gitrepo.ZeroCommit(before):
		return "", nil
	}
	return "commit is not a descendant of the applied commit, nor pushed from it", nil
}

// historyErr lets time decide when a commit is gone from the repository
// (nil), and marks what retrying cannot fix as permanent.
func historyErr(err error) error {
	switch {
	case errors.Is(err, gitrepo.ErrNoCommit):
		return nil
	case errors.Is(err, gitrepo.ErrBadName), errors.Is(err, gitrepo.ErrTooLarge):
		return runtime.Permanent(fmt.Errorf("commit history: %w", err))
	}
	return fmt.Errorf("commit history: %w", err)
}
