package gogsapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestRawFile(t *testing.T) {
	var gotPath, gotAuth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath, gotAuth = r.URL.EscapedPath(), r.Header.Get("Authorization")
		switch {
		case gotAuth != "token good":
			http.Error(w, "", http.StatusUnauthorized)
		case strings.Contains(r.URL.Path, "/forbidden/"):
			http.Error(w, "", http.StatusForbidden)
		case strings.Contains(r.URL.Path, "/boom/"):
			http.Error(w, "", http.StatusBadGateway)
		case strings.Contains(r.URL.Path, "/redirect/"):
			http.Redirect(w, r, "http://example.invalid/", http.StatusFound)
		case strings.HasSuffix(r.URL.Path, "/big.env"):
			w.Write([]byte(strings.Repeat("x", 100)))
		case strings.HasSuffix(r.URL.Path, "/a b.env"):
			w.Write([]byte("A=1\n"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	tests := []struct {
		name, token, repo, path string
		want                    string
		wantErr                 error
		transient               bool
	}{
		{name: "ok with space", token: "good", repo: "app", path: "deploy/a b.env", want: "A=1\n"},
		{name: "missing", token: "good", repo: "app", path: "nope.env", wantErr: ErrNotFound},
		{name: "bad token", token: "bad", repo: "app", path: "deploy/a b.env", wantErr: ErrUnauthorized},
		{name: "no token", token: "", repo: "app", path: "x", wantErr: ErrNoToken},
		{name: "forbidden", token: "good", repo: "forbidden", path: "x", wantErr: ErrForbidden},
		{name: "5xx", token: "good", repo: "boom", path: "x", wantErr: ErrServer, transient: true},
		{name: "redirect not followed", token: "good", repo: "redirect", path: "x", wantErr: ErrUnexpected},
		{name: "too large", token: "good", repo: "app", path: "big.env", wantErr: ErrTooLarge},
		{name: "traversal", token: "good", repo: "app", path: "../../etc/passwd", wantErr: ErrBadArgument},
		{name: "absolute", token: "good", repo: "app", path: "/etc/passwd", wantErr: ErrBadArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(srv.URL+"/", tt.token, WithMaxSize(64))
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.RawFile(context.Background(), "acme", tt.repo, "0123456789abcdef0123456789abcdef01234567", tt.path)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if Transient(err) != tt.transient {
				t.Fatalf("Transient(%v) = %v", err, !tt.transient)
			}
			if err != nil && tt.token != "" && strings.Contains(err.Error(), tt.token) {
				t.Fatalf("error reveals the token: %v", err)
			}
			if string(got) != tt.want {
				t.Fatalf("body = %q, want %q", got, tt.want)
			}
		})
	}
	c, _ := New(srv.URL, "good")
	if _, err := c.RawFile(context.Background(), "acme", "app", "feature/x", "deploy/a b.env"); err != nil {
		t.Fatal(err)
	}
	if want := "/api/v1/repos/acme/app/raw/feature/x/deploy/a%20b.env"; gotPath != want {
		t.Fatalf("path = %q, want %q", gotPath, want)
	}
	if gotAuth != "token good" {
		t.Fatalf("Authorization = %q", gotAuth)
	}
}

func TestRawFileTimeoutIsTransient(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(block)
	c, _ := New(srv.URL, "good")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.RawFile(ctx, "acme", "app", "main", "x.env")
	if err == nil || !Transient(err) || !IsTimeout(err) {
		t.Fatalf("err = %v, want a transient timeout", err)
	}
}

func TestNewRejectsBadURL(t *testing.T) {
	for _, u := range []string{"ftp://x", "http://user:pw@host", "://", "http://h?q=1"} {
		if _, err := New(u, "t"); err == nil {
			t.Errorf("New(%q) = nil error", u)
		}
	}
}

// TestTimeoutOfItsOwn: a Gogs that never answers fails the call after the
// client's timeout, even inside a job whose context allows minutes.
func TestTimeoutOfItsOwn(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	c, err := New(srv.URL, "good", WithTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	job, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := c.RawFile(job, "acme", "app", "master", ".env")
		done <- err
	}()
	select {
	case err := <-done:
		if !IsTimeout(err) || !Transient(err) {
			t.Errorf("err = %v, want a transient timeout", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("took %v, want about the 200ms timeout", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("RawFile still waiting after 5s: the client has no timeout of its own")
	}
}
