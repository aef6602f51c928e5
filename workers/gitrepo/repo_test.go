package gitrepo_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/forgebus/forgebus/workers/gitrepo"
	"github.com/forgebus/forgebus/workers/gitrepo/gittest"
)

const token = "tok-secret-123"

// TestSyncPrivateRepo clones a private repository from a server that
// authenticates as Gogs does, and checks each refusal is permanent and
// named, and that the token shows in no process's argv or environment
// while git runs, nor in any file it leaves.
func TestSyncPrivateRepo(t *testing.T) {
	root := t.TempDir()
	src := gittest.NewRepo(t, root, "acme", "site")
	src.Write("README", "hi")
	c1 := src.Commit("one")
	src.Push("master")
	srv := gittest.Serve(t, root, token)
	srv.AddToken("stranger", "tok-stranger-456")
	var leaks atomic.Int64
	var leakWhere atomic.Value
	srv.Observe(func(*http.Request) {
		if where := procLeak(token); where != "" {
			leaks.Add(1)
			leakWhere.Store(where)
		}
	})
	ctx := context.Background()

	tests := []struct {
		name    string
		token   string
		wantErr error
	}{
		{name: "without token", token: "", wantErr: gitrepo.ErrUnauthorized},
		{name: "wrong token", token: "nope", wantErr: gitrepo.ErrUnauthorized},
		{name: "token of a user without access", token: "tok-stranger-456", wantErr: gitrepo.ErrForbidden},
		{name: "with token", token: token},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := srv.Authorized.Load()
			cache := t.TempDir()
			r, err := gitrepo.Open(gitrepo.Options{BaseURL: srv.URL, Token: tt.token, CacheDir: cache, Owner: "acme", Name: "site"})
			if err != nil {
				t.Fatal(err)
			}
			err = r.Ensure(ctx, c1)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Ensure = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if !errors.Is(err, gitrepo.ErrGit) {
					t.Errorf("Ensure = %v, want it to wrap ErrGit too", err)
				}
				if strings.Contains(err.Error(), tt.token) && tt.token != "" {
					t.Errorf("error leaks the token: %v", err)
				}
				return
			}
			if srv.Authorized.Load() == before {
				t.Error("server saw no authorized request")
			}
			dst := filepath.Join(t.TempDir(), "wt")
			if err := r.Checkout(ctx, c1, dst); err != nil {
				t.Fatal(err)
			}
			for _, dir := range []string{cache, dst} {
				if f := fileWith(t, dir, token); f != "" {
					t.Errorf("token written to %s", f)
				}
			}
			if _, err := os.Stat(filepath.Join(dst, ".git")); err == nil {
				t.Error("checkout has a .git")
			}
		})
	}
	if n := leaks.Load(); n > 0 {
		t.Errorf("token visible in %v during %d requests", leakWhere.Load(), n)
	}
}

// procLeak returns the first /proc/<pid>/cmdline or environ that holds s.
func procLeak(s string) string {
	files, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	env, _ := filepath.Glob("/proc/[0-9]*/environ")
	for _, f := range append(files, env...) {
		if b, err := os.ReadFile(f); err == nil && bytes.Contains(b, []byte(s)) {
			return f
		}
	}
	return ""
}

// fileWith returns the first file under dir whose content holds s.
func fileWith(t *testing.T, dir, s string) string {
	t.Helper()
	found := ""
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || found != "" {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(s)) {
			found = p
		}
		return nil
	})
	return found
}

func TestChanged(t *testing.T) {
	root := t.TempDir()
	src := gittest.NewRepo(t, root, "acme", "ml")
	src.Write("models/a.bin", "a")
	src.Write("docs/readme.md", "r")
	base := src.Commit("base")
	src.Push("master")
	// Seven commits in one push (Gogs would list five), a rename, a path
	// with a space.
	src.Git("mv", "models/a.bin", "models/renamed.bin")
	src.Commit("rename")
	src.Write("schemas/my schema.json", "{}")
	src.Commit("space")
	for i := range 5 {
		src.Write("notes/n.txt", strings.Repeat("x", i+1))
		src.Commit("note")
	}
	after := src.Head()
	src.Push("master")
	src.Git("checkout", "--quiet", "-b", "feature")
	src.Write("feature.txt", "f")
	feat := src.Commit("feature")
	src.Push("feature")

	r, err := gitrepo.Open(gitrepo.Options{BaseURL: root, CacheDir: t.TempDir(), Owner: "acme", Name: "ml"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := r.Ensure(ctx, feat); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		before, after string
		want          []string
	}{
		{name: "push of seven commits with rename and space", before: base, after: after,
			want: []string{"models/a.bin", "models/renamed.bin", "notes/n.txt", "schemas/my schema.json"}},
		{name: "new branch against default merge-base", before: strings.Repeat("0", 40), after: feat, want: []string{"feature.txt"}},
		{name: "first push lists every path", before: strings.Repeat("0", 40), after: base, want: []string{"docs/readme.md", "models/a.bin"}},
		{name: "test delivery changes nothing", before: after, after: after, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.Changed(ctx, tt.before, tt.after, "master")
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Changed = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAncestorAndCheckout(t *testing.T) {
	root := t.TempDir()
	src := gittest.NewRepo(t, root, "acme", "site")
	src.Write("a.txt", "1")
	// export-ignore must not hide files from a build's checkout.
	src.Write(".gitattributes", "a.txt export-ignore\n")
	c1 := src.Commit("one")
	src.Write("a.txt", "2")
	src.Write("sub/b.txt", "b")
	c2 := src.Commit("two")
	src.Push("master")
	r, err := gitrepo.Open(gitrepo.Options{BaseURL: root, CacheDir: t.TempDir(), Owner: "acme", Name: "site"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := r.Ensure(ctx, c2); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		a, b string
		want bool
	}{{c1, c2, true}, {c2, c1, false}, {c2, c2, true}} {
		got, err := r.IsAncestor(ctx, tt.a, tt.b)
		if err != nil || got != tt.want {
			t.Errorf("IsAncestor(%.7s, %.7s) = %v, %v; want %v", tt.a, tt.b, got, err, tt.want)
		}
	}
	dst := filepath.Join(t.TempDir(), "wt")
	if err := r.Checkout(ctx, c1, dst); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "a.txt")); string(b) != "1" {
		t.Errorf("a.txt = %q, want the first commit's content", b)
	}
	if _, err := os.Stat(filepath.Join(dst, "sub")); err == nil {
		t.Error("checkout of c1 has a file from c2")
	}
	missing := strings.Repeat("ab", 20)
	if err := r.Ensure(ctx, missing); !errors.Is(err, gitrepo.ErrNoCommit) {
		t.Errorf("Ensure(missing) = %v, want ErrNoCommit", err)
	}
}

func TestCheckNames(t *testing.T) {
	ctx := context.Background()
	branches := []struct {
		name    string
		wantErr error
	}{
		{"master", nil},
		{"feature/x", nil},
		{"release-1.2", nil},
		{"$(touch /tmp/pwned)", gitrepo.ErrBadName},
		{"--upload-pack=touch /tmp/pwned", gitrepo.ErrBadName},
		{"-x", gitrepo.ErrBadName},
		{"../../etc", gitrepo.ErrBadName},
		{"a/../b", gitrepo.ErrBadName},
		{"@{-1}", gitrepo.ErrBadName},
		{"a b", gitrepo.ErrBadName},
		{"x\nfoo", gitrepo.ErrBadName},
		{"", gitrepo.ErrBadName},
		{".hidden", gitrepo.ErrBadName},
	}
	for _, tt := range branches {
		if err := gitrepo.CheckBranch(ctx, tt.name); !errors.Is(err, tt.wantErr) {
			t.Errorf("CheckBranch(%q) = %v, want %v", tt.name, err, tt.wantErr)
		}
	}
	names := []struct {
		name string
		ok   bool
	}{{"acme", true}, {"my.repo_1-x", true}, {"..", false}, {".", false}, {"../etc", false}, {"a/b", false}, {"-rf", false}, {"", false}, {".git", false}}
	for _, tt := range names {
		if err := gitrepo.CheckName(tt.name); (err == nil) != tt.ok {
			t.Errorf("CheckName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
	if _, err := gitrepo.Open(gitrepo.Options{BaseURL: "ext::sh -c touch% /tmp/pwned", CacheDir: t.TempDir(), Owner: "a", Name: "b"}); !errors.Is(err, gitrepo.ErrBadName) {
		t.Errorf("Open(ext:: url) = %v, want ErrBadName", err)
	}
}

// TestRedirectGetsNoCredentials: a Gogs URL that redirects elsewhere must
// not carry the token to the other server.
func TestRedirectGetsNoCredentials(t *testing.T) {
	root := t.TempDir()
	src := gittest.NewRepo(t, root, "acme", "site")
	src.Write("README", "hi")
	c1 := src.Commit("one")
	src.Push("master")
	other := gittest.Serve(t, root, token) // holds the repository, asks for credentials
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.RequestURI(), http.StatusFound)
	}))
	t.Cleanup(redirect.Close)
	r, err := gitrepo.Open(gitrepo.Options{BaseURL: redirect.URL, Token: token, CacheDir: t.TempDir(), Owner: "acme", Name: "site"})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Ensure(context.Background(), c1); !errors.Is(err, gitrepo.ErrGit) {
		t.Errorf("Ensure through a redirect = %v, want a git error", err)
	}
	if n := other.Authorized.Load(); n != 0 {
		t.Errorf("the redirect target received the token on %d requests", n)
	}
}
