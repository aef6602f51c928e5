package console

import (
	"context"
	"crypto/ed25519"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Config configures the console.
type Config struct {
	// GogsURL is Gogs' base URL; sign-ins are checked against its API.
	GogsURL string
	// Key signs the session tokens (HS256).
	Key []byte
	// SessionTTL is a session's lifetime.
	SessionTTL time.Duration
	// OperatorOrgs and ViewerOrgs map Gogs organisations to roles; operator
	// wins when a user is in both.
	OperatorOrgs, ViewerOrgs []string
	// SecureCookie marks the cookie Secure on plain HTTP too (behind a TLS
	// proxy); over TLS it is always Secure.
	SecureCookie bool
	// AuditKeys are the public keys the audit log must be signed with, for
	// the Audit page's verify.
	AuditKeys []ed25519.PublicKey
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Server is the console's HTTP handler and its state.
type Server struct {
	js     jetstream.JetStream
	cfg    Config
	log    zerolog.Logger
	gogs   *gogsClient
	signer *signer
	// Failed sign-ins are counted per username and, more loosely, per
	// client address (people behind one NAT share it).
	byUser, byIP *limiter
	pages        map[string]*template.Template

	mu         sync.Mutex
	lastVerify *verifyResult
}

type verifyResult struct {
	At      time.Time
	By      string
	Records int
	Err     string
}

// New returns a console reading and acting on the bus through js.
func New(js jetstream.JetStream, cfg Config, log zerolog.Logger) (*Server, error) {
	if len(cfg.Key) < 16 {
		return nil, errors.New("console: session key shorter than 16 bytes")
	}
	if cfg.GogsURL == "" {
		return nil, errors.New("console: no gogs url")
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 30 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	return &Server{
		js: js, cfg: cfg, log: log.With().Str("component", "console").Logger(),
		gogs:   newGogsClient(cfg.GogsURL),
		signer: &signer{key: cfg.Key, ttl: cfg.SessionTTL, now: cfg.Now},
		byUser: newLimiter(5, 10*time.Minute, cfg.Now),
		byIP:   newLimiter(20, 10*time.Minute, cfg.Now),
		pages:  pages,
	}, nil
}

// access is what a route demands.
type access int

const (
	public access = iota
	viewer
	operator
)

// Handler returns the console's routes, each behind its role check.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	route := func(pattern string, need access, h func(http.ResponseWriter, *http.Request, *Session)) {
		mux.Handle(pattern, s.guard(need, strings.HasPrefix(pattern, "POST "), h))
	}
	route("GET /login", public, s.loginPage)
	route("POST /login", public, s.login)
	route("POST /logout", viewer, s.logout)
	route("GET /{$}", viewer, s.deliveriesPage)
	route("GET /api/deliveries", viewer, s.deliveriesAPI)
	route("GET /events/stream", viewer, s.stream)
	route("GET /deliveries/{id}", viewer, s.deliveryPage)
	route("GET /api/deliveries/{id}", viewer, s.deliveryAPI)
	route("GET /workers", viewer, s.workersPage)
	route("GET /dlq", viewer, s.dlqPage)
	route("POST /dlq/replay", operator, s.dlqReplay)
	route("POST /api/dlq/replay", operator, s.dlqReplayAPI)
	route("GET /audit", viewer, s.auditPage)
	route("POST /audit/verify", operator, s.auditVerify)
	return secureHeaders(mux)
}

func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// wantsJSON: API and stream routes answer refusals in JSON, pages redirect.
func wantsJSON(r *http.Request) bool {
	return strings.HasPrefix(r.URL.Path, "/api/") || r.URL.Path == "/events/stream"
}

// guard checks the session, the role and, on a POST, the CSRF token and
// origin before calling h.
func (s *Server) guard(need access, post bool, h func(http.ResponseWriter, *http.Request, *Session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if post && !sameOrigin(r) {
			s.log.Warn().Str("origin", r.Header.Get("Origin")).Str("path", r.URL.Path).Msg("console: cross-site request refused")
			s.refuse(w, r, http.StatusForbidden, "cross-site request refused")
			return
		}
		sess := s.session(r)
		if need == public {
			h(w, r, sess)
			return
		}
		if sess == nil {
			if wantsJSON(r) || post {
				s.refuse(w, r, http.StatusUnauthorized, "sign in first")
				return
			}
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		if post {
			got := r.Header.Get("X-CSRF-Token")
			if got == "" {
				got = r.PostFormValue("csrf")
			}
			if subtle.ConstantTimeCompare([]byte(got), []byte(sess.CSRF)) != 1 {
				s.refuse(w, r, http.StatusForbidden, "missing or wrong CSRF token: reload the page")
				return
			}
		}
		if need == operator && !sess.Operator() {
			s.log.Warn().Str("login", sess.Login).Str("path", r.URL.Path).Msg("console operator route refused to a viewer")
			s.refuse(w, r, http.StatusForbidden, "operators only")
			return
		}
		h(w, r, sess)
	})
}

// sameOrigin refuses a request whose Origin (sent by browsers on POST)
// names another site.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return r.Header.Get("Sec-Fetch-Site") != "cross-site"
	}
	if o == "null" {
		// A privacy-sensitive context hides the origin; the browser's own
		// fetch metadata still says where the request came from.
		return r.Header.Get("Sec-Fetch-Site") == "same-origin"
	}
	rest, ok := strings.CutPrefix(o, "http://")
	if !ok {
		rest, ok = strings.CutPrefix(o, "https://")
	}
	return ok && rest == r.Host
}

func (s *Server) session(r *http.Request) *Session {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return nil
	}
	sess, err := s.signer.parse(c.Value)
	if err != nil {
		return nil
	}
	return sess
}

func (s *Server) refuse(w http.ResponseWriter, r *http.Request, code int, msg string) {
	if wantsJSON(r) {
		writeJSON(w, code, map[string]string{"error": msg})
		return
	}
	w.WriteHeader(code)
	s.render(w, r, "error", nil, map[string]any{"Code": code, "Message": msg})
}

// Serve serves the console on ln until ctx is done, then shuts down.
func (s *Server) Serve(ctx context.Context, ln net.Listener, certFile, keyFile string) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	errc := make(chan error, 1)
	go func() {
		if certFile != "" {
			errc <- srv.ServeTLS(ln, certFile, keyFile)
			return
		}
		errc <- srv.Serve(ln)
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("console: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("console: %w", err)
	}
	return nil
}
