package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEffectsRawFile pins the fake Gogs API's answers, as Gogs gives them,
// and that it counts what envsync fetched.
func TestEffectsRawFile(t *testing.T) {
	env := newEnvRepo(2)
	fx, err := startEffects(env, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fx.close)
	raw := "/api/v1/repos/" + envOwner + "/" + envRepoN + "/raw/"
	tests := []struct {
		name, path, auth string
		want             int
		body             string
	}{
		{name: "file at commit 1", path: raw + env.commits[1] + "/" + envFile, auth: "token " + envToken, want: http.StatusOK, body: "VERSION=1\nE_1=" + env.commits[1][:12] + "\n"},
		{name: "unknown commit", path: raw + strings.Repeat("a", 40) + "/" + envFile, auth: "token " + envToken, want: http.StatusNotFound},
		{name: "other file", path: raw + env.commits[0] + "/deploy/other.env", auth: "token " + envToken, want: http.StatusNotFound},
		{name: "other repository", path: "/api/v1/repos/lab/models/raw/" + env.commits[0] + "/" + envFile, auth: "token " + envToken, want: http.StatusNotFound},
		{name: "no token", path: raw + env.commits[0] + "/" + envFile, want: http.StatusUnauthorized},
		{name: "wrong token", path: raw + env.commits[0] + "/" + envFile, auth: "token nope", want: http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, fx.url+tc.path, nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.body != "" && !strings.HasSuffix(string(b), tc.body) {
				t.Errorf("body %q, want it to end with %q", b, tc.body)
			}
		})
	}
	got := fx.snapshot()
	if got.fetches[env.commits[1]] != 1 || len(got.fetches) != 1 || got.badAPI != 5 {
		t.Errorf("fetches %v, refused or missed %d; want one fetch of commit 1 and 5 refused or missed", got.fetches, got.badAPI)
	}
}

// TestDocsBuild runs the build command's code as the docs worker would
// (in a checkout, with FORGEBUS_* set) and checks that the build is
// reported once, under its commit, and leaves the site behind.
func TestDocsBuild(t *testing.T) {
	fx, err := startEffects(newEnvRepo(0), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fx.close)
	t.Chdir(t.TempDir())
	commit := strings.Repeat("c", 40)
	t.Setenv("FORGEBUS_REPO", "lab/handbook")
	t.Setenv("FORGEBUS_BRANCH", "master")
	t.Setenv("FORGEBUS_COMMIT", commit)
	if err := docsBuild(fx.url + "/docs-build"); err != nil {
		t.Fatal(err)
	}
	got := fx.snapshot()
	if got.builds[commit] != 1 || len(got.order) != 1 {
		t.Errorf("builds %v (order %v), want one of %s", got.builds, got.order, commit)
	}
	page, err := os.ReadFile(filepath.Join("site", "index.html"))
	if err != nil || !strings.Contains(string(page), commit) {
		t.Errorf("site/index.html: %q, %v; want a page naming the commit", page, err)
	}
	if err := docsBuild(fx.url + "/nowhere"); err == nil {
		t.Error("a build whose report is refused succeeded; it must fail")
	}
	t.Setenv("FORGEBUS_COMMIT", "")
	if err := docsBuild(fx.url + "/docs-build"); err == nil {
		t.Error("a build without FORGEBUS_COMMIT succeeded")
	}
}
