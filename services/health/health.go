package health

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/forgebus/forgebus/schemas"
)

// DefaultTimeout bounds one run of all readiness checks.
const DefaultTimeout = 2 * time.Second

// Check is one readiness check. It returns its name, whether it passes, and
// a detail for the JSON body (anything encoding/json takes; never a
// secret). It must return promptly when ctx is done.
type Check func(ctx context.Context) (name string, ok bool, detail any)

// Health holds the readiness checks and the metrics registry.
type Health struct {
	reg     *prometheus.Registry
	timeout time.Duration

	mu     sync.Mutex
	checks []entry
}

// entry is a check and whether it gates readiness.
type entry struct {
	check    Check
	advisory bool
}

// New returns probes that serve reg's metrics and run checks on /readyz.
func New(reg *prometheus.Registry, checks ...Check) *Health {
	h := &Health{reg: reg, timeout: DefaultTimeout}
	for _, c := range checks {
		h.checks = append(h.checks, entry{check: c})
	}
	return h
}

// NewRegistry returns a registry with the Go and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// Add adds a readiness check, e.g. the spool's depth and oldest age.
func (h *Health) Add(c Check) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks = append(h.checks, entry{check: c})
}

// AddAdvisory adds a check that shows on /readyz, marked advisory, but
// does not make it fail. ingest with its spool on adds the NATS check this
// way: while NATS is down it still accepts deliveries (it spools them), so
// a load balancer should keep sending it traffic.
func (h *Health) AddAdvisory(c Check) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks = append(h.checks, entry{check: c, advisory: true})
}

// Register adds /healthz, /readyz and /metrics to mux.
func (h *Health) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", h.Healthz)
	mux.HandleFunc("GET /readyz", h.Readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(h.reg, promhttp.HandlerOpts{Registry: h.reg}))
}

// Healthz answers 200 while the process serves HTTP.
func (h *Health) Healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
}

// Report is the body of /readyz.
type Report struct {
	Ready  bool              `json:"ready"`
	Checks map[string]Result `json:"checks"`
}

// Result is one check's outcome.
type Result struct {
	OK bool `json:"ok"`
	// Advisory is set for a check added with [Health.AddAdvisory]: its
	// failure does not make the service unready.
	Advisory bool `json:"advisory,omitempty"`
	Detail   any  `json:"detail,omitempty"`
}

// Readyz runs every check concurrently, bounded by a short timeout, and
// answers 200 when all but the advisory ones pass, else 503, with a
// [Report] as JSON.
func (h *Health) Readyz(w http.ResponseWriter, r *http.Request) {
	rep := h.Run(r.Context())
	code := http.StatusOK
	if !rep.Ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, rep)
}

// Run runs the checks once.
func (h *Health) Run(ctx context.Context) Report {
	h.mu.Lock()
	checks := append([]entry(nil), h.checks...)
	h.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	type named struct {
		name string
		res  Result
	}
	out := make(chan named, len(checks))
	for _, c := range checks {
		go func() {
			name, ok, detail := c.check(ctx)
			out <- named{name, Result{OK: ok, Advisory: c.advisory, Detail: detail}}
		}()
	}
	rep := Report{Ready: true, Checks: make(map[string]Result, len(checks))}
	for range checks {
		var n named
		select {
		case n = <-out:
		case <-ctx.Done():
			// A check that ignores ctx must not hang the probe.
			rep.Ready = false
			rep.Checks["timeout"] = Result{Detail: "a check did not answer within " + h.timeout.String()}
			return rep
		}
		rep.Checks[n.name] = n.res
		rep.Ready = rep.Ready && (n.res.OK || n.res.Advisory)
	}
	return rep
}

// NATS checks that nc is connected and that FORGE_EVENTS answers a stream
// info request.
func NATS(nc *nats.Conn, js jetstream.JetStream) Check {
	return func(ctx context.Context) (string, bool, any) {
		const name = "nats"
		if !nc.IsConnected() {
			return name, false, map[string]any{"connected": false, "status": nc.Status().String()}
		}
		st, err := js.Stream(ctx, schemas.StreamEvents)
		if err != nil {
			return name, false, map[string]any{"connected": true, "stream": schemas.StreamEvents, "error": err.Error()}
		}
		info := st.CachedInfo()
		return name, true, map[string]any{
			"connected": true,
			"stream":    schemas.StreamEvents,
			"messages":  info.State.Msgs,
			"last_seq":  info.State.LastSeq,
		}
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
