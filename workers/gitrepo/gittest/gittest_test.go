package gittest_test

import (
	"encoding/base64"
	"net/http"
	"testing"

	"github.com/forgebus/forgebus/workers/gitrepo/gittest"
)

func basic(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

// TestServerAuthenticatesAsGogs checks the refusals Gogs' HTTPContexter
// makes, so that a client passing here passes against Gogs.
func TestServerAuthenticatesAsGogs(t *testing.T) {
	root := t.TempDir()
	for _, name := range []string{"secret", "open"} {
		r := gittest.NewRepo(t, root, "acme", name)
		r.Write("f", "x")
		r.Commit("one")
		r.Push("master")
	}
	srv := gittest.Serve(t, root, "")
	srv.Private("acme/secret", "reader")
	srv.AddUser("reader", "pw")
	srv.AddToken("reader", "tok-reader")
	srv.AddUser("stranger", "pw2")
	srv.AddToken("stranger", "tok-stranger")

	tests := []struct {
		name       string
		repo       string
		method     string
		action     string
		auth       string
		want       int
		wantHeader string
	}{
		{name: "public pull needs nothing", repo: "open", auth: "", want: 200},
		{name: "private without credentials", repo: "secret", auth: "", want: 401, wantHeader: `Basic realm="."`},
		{name: "token scheme refused", repo: "secret", auth: "token tok-reader", want: 401, wantHeader: `Basic realm="."`},
		{name: "bearer scheme refused", repo: "secret", auth: "Bearer tok-reader", want: 401},
		{name: "lower-case basic refused", repo: "secret", auth: "basic " + base64.StdEncoding.EncodeToString([]byte("reader:pw")), want: 401},
		{name: "bad base64", repo: "secret", auth: "Basic !!!", want: 401},
		{name: "login and password", repo: "secret", auth: basic("reader", "pw"), want: 200},
		{name: "wrong password", repo: "secret", auth: basic("reader", "nope"), want: 401},
		{name: "username as token", repo: "secret", auth: basic("tok-reader", "x"), want: 200},
		{name: "password as token", repo: "secret", auth: basic("anyone", "tok-reader"), want: 200},
		{name: "unknown token", repo: "secret", auth: basic("tok-nope", "tok-nope2"), want: 401},
		{name: "user without access", repo: "secret", auth: basic("tok-stranger", ""), want: 403, wantHeader: `Basic realm="."`},
		{name: "reader may not push", repo: "secret", method: "POST", action: "git-receive-pack", auth: basic("reader", "pw"), want: 403},
		{name: "push to public needs credentials", repo: "open", method: "POST", action: "git-receive-pack", auth: "", want: 401},
		{name: "unrecognized action", repo: "secret", action: "settings", auth: basic("reader", "pw"), want: 400},
		{name: "no such repository", repo: "nothere", auth: basic("reader", "pw"), want: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method, action := tt.method, tt.action
			if method == "" {
				method = http.MethodGet
			}
			if action == "" {
				action = "info/refs?service=git-upload-pack"
			}
			req, err := http.NewRequest(method, srv.URL+"/acme/"+tt.repo+".git/"+action, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.want)
			}
			if tt.wantHeader != "" {
				if got := resp.Header.Get("WWW-Authenticate"); got != tt.wantHeader {
					t.Errorf("WWW-Authenticate = %q, want %q", got, tt.wantHeader)
				}
			}
		})
	}
}
