package gitrepo_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forgebus/forgebus/workers/gitrepo"
)

// FuzzCheckBranch: whatever CheckBranch accepts is safe as a git argument
// and, with "/" escaped, as one path segment.
func FuzzCheckBranch(f *testing.F) {
	for _, s := range []string{"master", "feature/x", "../../etc", "-x", "$(id)", "a/./b", "a//b", "@{-1}", ".x", "x.lock", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if gitrepo.CheckBranch(context.Background(), s) != nil {
			return
		}
		seg := strings.ReplaceAll(strings.ReplaceAll(s, "%", "%25"), "/", "%2F")
		if strings.HasPrefix(s, "-") || !filepath.IsLocal(seg) || strings.Contains(seg, "/") || strings.HasPrefix(seg, ".") {
			t.Errorf("accepted unsafe branch %q", s)
		}
	})
}

func FuzzCheckName(f *testing.F) {
	for _, s := range []string{"acme", "..", "a/b", "-x", ".git"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if gitrepo.CheckName(s) == nil && (!filepath.IsLocal(s) || strings.ContainsAny(s, "/\\") || strings.HasPrefix(s, "-") || strings.HasPrefix(s, ".")) {
			t.Errorf("accepted unsafe name %q", s)
		}
	})
}
