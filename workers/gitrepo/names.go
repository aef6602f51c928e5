package gitrepo

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
)

var (
	nameRe   = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$`)
	commitRe = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)
)

// ZeroCommit reports whether c is Gogs's all-zeros commit (no commit).
func ZeroCommit(c string) bool { return c != "" && strings.Trim(c, "0") == "" }

// CheckName accepts a Gogs owner or repository name: letters, digits, "_",
// "-" and ".", not starting with "." or "-", never "." or "..", at most 100
// bytes.
func CheckName(s string) error {
	if !nameRe.MatchString(s) || strings.Contains(s, "..") || strings.HasSuffix(s, ".git") {
		return fmt.Errorf("%w: repository or owner name %q", ErrBadName, s)
	}
	return nil
}

// CheckCommit accepts a full lower-case hex object name (SHA-1 or SHA-256).
func CheckCommit(s string) error {
	if !commitRe.MatchString(s) || ZeroCommit(s) {
		return fmt.Errorf("%w: commit %q", ErrBadName, s)
	}
	return nil
}

// CheckBranch accepts a short branch name that git itself accepts
// (git check-ref-format --branch), that does not start with "-" and holds
// no "@{" or control characters, at most 200 bytes.
func CheckBranch(ctx context.Context, name string) error {
	bad := name == "" || len(name) > 200 || strings.HasPrefix(name, "-") ||
		strings.Contains(name, "@{") || name == "HEAD" || name == "@" ||
		strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f })
	if bad {
		return fmt.Errorf("%w: branch %q", ErrBadName, name)
	}
	cmd := exec.CommandContext(ctx, "git", "check-ref-format", "--branch", name)
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "HOME=/nonexistent"}
	out, err := cmd.Output()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: branch %q", ErrBadName, name)
	}
	if strings.TrimSpace(string(out)) != name {
		return fmt.Errorf("%w: branch %q", ErrBadName, name)
	}
	return nil
}
