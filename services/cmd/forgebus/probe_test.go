package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestProbe: the healthcheck command exits 0 only on a 2xx answer.
func TestProbe(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			w.Write([]byte(`{"ready":true}`))
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"ready":false}`))
		}
	}))
	defer srv.Close()
	tests := []struct {
		name    string
		args    []string
		want    int
		wantOut string
	}{
		{"ready", []string{"probe", srv.URL + "/readyz"}, exitOK, "200 OK"},
		{"not ready", []string{"probe", srv.URL + "/down"}, exitRuntime, "503"},
		{"nothing listening", []string{"probe", "http://127.0.0.1:1/readyz"}, exitRuntime, "connect"},
		{"not a URL", []string{"probe", "readyz"}, exitUsage, "want an http"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ranCommand = false
			var out, errOut bytes.Buffer
			if got := run(tc.args, &out, &errOut); got != tc.want {
				t.Errorf("run(%v) = %d, want %d; stderr %q", tc.args, got, tc.want, errOut.String())
			}
			if !strings.Contains(out.String()+errOut.String(), tc.wantOut) {
				t.Errorf("output %q %q, want %q", out.String(), errOut.String(), tc.wantOut)
			}
		})
	}
}
