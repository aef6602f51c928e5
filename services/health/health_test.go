package health

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

func readyReport(t *testing.T, body string) Report {
	t.Helper()
	var r Report
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("readyz body %q: %v", body, err)
	}
	return r
}

func TestProbes(t *testing.T) {
	srv := natstest.Run(t)
	nc, js := srv.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	h := New(NewRegistry(), NATS(nc, js))
	mux := http.NewServeMux()
	h.Register(mux)

	if code, _ := get(t, mux, "/healthz"); code != http.StatusOK {
		t.Errorf("healthz = %d", code)
	}
	// No FORGE_EVENTS yet: not ready.
	code, body := get(t, mux, "/readyz")
	if r := readyReport(t, body); code != http.StatusServiceUnavailable || r.Ready || r.Checks["nats"].OK {
		t.Errorf("readyz without the stream = %d %s", code, body)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: schemas.StreamEvents, Subjects: schemas.EventsSubjects}); err != nil {
		t.Fatal(err)
	}
	code, body = get(t, mux, "/readyz")
	if r := readyReport(t, body); code != http.StatusOK || !r.Ready || !r.Checks["nats"].OK {
		t.Errorf("readyz with NATS up = %d %s", code, body)
	}

	// An added check counts, and its detail shows.
	h.Add(func(context.Context) (string, bool, any) {
		return "spool", false, map[string]int{"depth": 3}
	})
	code, body = get(t, mux, "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"depth":3`) {
		t.Errorf("readyz with a failing check = %d %s", code, body)
	}

	h2 := New(NewRegistry(), NATS(nc, js))
	mux2 := http.NewServeMux()
	h2.Register(mux2)
	srv.Shutdown()
	natstest.Eventually(t, 5*time.Second, "readyz 503 after the server is down", func() bool {
		code, _ := get(t, mux2, "/readyz")
		return code == http.StatusServiceUnavailable
	})
	if code, _ := get(t, mux2, "/healthz"); code != http.StatusOK {
		t.Errorf("healthz with NATS down = %d, want 200 (alive)", code)
	}
	srv.Restart()
	natstest.Eventually(t, 10*time.Second, "readyz 200 after the server is back", func() bool {
		code, _ := get(t, mux2, "/readyz")
		return code == http.StatusOK
	})

	code, body = get(t, mux2, "/metrics")
	if code != http.StatusOK || !strings.Contains(body, "go_goroutines") || !strings.Contains(body, "process_") {
		t.Errorf("metrics = %d, missing go or process collectors", code)
	}
}

func TestReadyzSlowCheck(t *testing.T) {
	h := New(NewRegistry(), func(context.Context) (string, bool, any) {
		time.Sleep(time.Hour) // ignores ctx on purpose
		return "stuck", true, nil
	})
	h.timeout = 50 * time.Millisecond
	start := time.Now()
	code, _ := get(t, http.HandlerFunc(h.Readyz), "/readyz")
	if code != http.StatusServiceUnavailable || time.Since(start) > 5*time.Second {
		t.Errorf("readyz with a stuck check = %d after %s", code, time.Since(start))
	}
}

func TestReadyzAdvisory(t *testing.T) {
	check := func(name string, ok bool) Check {
		return func(context.Context) (string, bool, any) { return name, ok, nil }
	}
	tests := []struct {
		name      string
		required  []Check
		advisory  []Check
		wantCode  int
		wantReady bool
	}{
		{"advisory failing, required ok", []Check{check("spool", true)}, []Check{check("nats", false)}, http.StatusOK, true},
		{"advisory failing alone", nil, []Check{check("nats", false)}, http.StatusOK, true},
		{"required failing, advisory ok", []Check{check("spool", false)}, []Check{check("nats", true)}, http.StatusServiceUnavailable, false},
		{"both failing", []Check{check("spool", false)}, []Check{check("nats", false)}, http.StatusServiceUnavailable, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := New(NewRegistry(), tt.required...)
			for _, c := range tt.advisory {
				h.AddAdvisory(c)
			}
			code, body := get(t, http.HandlerFunc(h.Readyz), "/readyz")
			r := readyReport(t, body)
			if code != tt.wantCode || r.Ready != tt.wantReady {
				t.Errorf("readyz = %d ready=%v, want %d ready=%v: %s", code, r.Ready, tt.wantCode, tt.wantReady, body)
			}
			// The advisory check still shows, marked, with its own outcome.
			for _, c := range tt.advisory {
				name, ok, _ := c(context.Background())
				if got := r.Checks[name]; got.OK != ok || !got.Advisory {
					t.Errorf("check %s = %+v, want ok=%v advisory", name, got, ok)
				}
			}
			for _, c := range tt.required {
				name, _, _ := c(context.Background())
				if r.Checks[name].Advisory {
					t.Errorf("required check %s marked advisory", name)
				}
			}
		})
	}
}
