package console

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/services/console/gogstest"
	"github.com/forgebus/forgebus/services/history"
	"github.com/forgebus/forgebus/services/history/historytest"
)

const (
	annPass = "ann-correct-horse"
	vicPass = "vic-battery-staple"
)

type fixture struct {
	t     *testing.T
	bus   *historytest.Bus
	srv   *Server
	web   *httptest.Server
	gogs  *gogstest.Server
	logs  *syncBuffer
	clock *clock
	dlq   uint64
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// setup: ann is an operator (org ops, private membership: token only sees
// it... and a public one for passwords), vic a viewer who can read
// acme/site but not acme/secret, eve has no role. The bus holds a push to
// each repository; models dead-lettered both.
func setup(t *testing.T) *fixture {
	t.Helper()
	_, js := natstest.Run(t).Connect(t)
	bus := historytest.Start(t, js)
	bus.Push("ev-site", "acme/site", "alice")
	bus.Push("ev-secret", "acme/secret", "bob")
	bus.WaitOutcome("ev-site", "docs", schemas.OutcomeSucceeded)
	dlq := bus.DeadLetter("ev-site")
	bus.DeadLetter("ev-secret")
	gogs := gogstest.Start(t,
		[]gogstest.User{
			{Login: "ann", Email: "ann@acme.test", Password: annPass, Tokens: []string{"tok-ann"}},
			{Login: "vic", Password: vicPass, Tokens: []string{"tok-vic"}},
			{Login: "eve", Password: "eve-pw"},
		},
		[]gogstest.Org{{Name: "ops", Members: []string{"ann"}, Public: []string{"ann"}}, {Name: "devs", Members: []string{"vic"}, Public: []string{"vic"}}},
		[]gogstest.Repo{{Owner: "acme", Name: "site", Private: true, Collaborators: []string{"vic"}}, {Owner: "acme", Name: "secret", Private: true}},
	)
	logs := &syncBuffer{}
	clk := &clock{t: time.Now()}
	srv, err := New(js, Config{GogsURL: gogs.URL, Key: []byte("0123456789abcdef0123456789abcdef"), SessionTTL: 10 * time.Minute,
		OperatorOrgs: []string{"ops"}, ViewerOrgs: []string{"devs"}, Now: clk.now}, zerolog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	web := httptest.NewServer(srv.Handler())
	t.Cleanup(web.Close)
	return &fixture{t: t, bus: bus, srv: srv, web: web, gogs: gogs, logs: logs, clock: clk, dlq: dlq}
}

func noRedirect() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// signIn posts the login form and returns the session cookie (nil when
// refused) and the response status.
func (f *fixture) signIn(form url.Values) (*http.Cookie, *http.Response) {
	f.t.Helper()
	resp, err := noRedirect().PostForm(f.web.URL+"/login", form)
	if err != nil {
		f.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == cookieName && c.Value != "" {
			return c, resp
		}
	}
	return nil, resp
}

func (f *fixture) session(user, pass string) (*http.Cookie, string) {
	f.t.Helper()
	c, resp := f.signIn(url.Values{"username": {user}, "password": {pass}})
	if c == nil {
		f.t.Fatalf("sign in %s: %d", user, resp.StatusCode)
	}
	s, err := f.srv.signer.parse(c.Value)
	if err != nil {
		f.t.Fatal(err)
	}
	return c, s.CSRF
}

func (f *fixture) do(method, path string, cookie *http.Cookie, body string, hdr map[string]string) (int, string, http.Header) {
	f.t.Helper()
	req, _ := http.NewRequest(method, f.web.URL+path, strings.NewReader(body))
	if cookie != nil {
		req.AddCookie(cookie)
	}
	if method == http.MethodPost && hdr["Content-Type"] == "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := noRedirect().Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// forged signs claims with key, as an attacker holding another key would.
func forged(t *testing.T, key []byte, role string, exp time.Time, method jwt.SigningMethod) *http.Cookie {
	c := Claims{Role: role, RegisteredClaims: jwt.RegisteredClaims{Issuer: issuer, Subject: "mallory", ID: "x1",
		IssuedAt: jwt.NewNumericDate(time.Now().Add(-time.Hour)), ExpiresAt: jwt.NewNumericDate(exp)}}
	var signed string
	var err error
	if method == jwt.SigningMethodNone {
		signed, err = jwt.NewWithClaims(method, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
	} else {
		signed, err = jwt.NewWithClaims(method, c).SignedString(key)
	}
	if err != nil {
		t.Fatal(err)
	}
	return &http.Cookie{Name: cookieName, Value: signed}
}

func TestEveryRouteByRole(t *testing.T) {
	f := setup(t)
	opCookie, opCSRF := f.session("ann", annPass)
	viewCookie, viewCSRF := f.session("vic", vicPass)
	expiredKeyGood := forged(t, f.srv.cfg.Key, RoleOperator, time.Now().Add(-time.Minute), jwt.SigningMethodHS256)
	otherKey := forged(t, []byte("another-key-another-key-another!"), RoleOperator, time.Now().Add(time.Hour), jwt.SigningMethodHS256)
	algNone := forged(t, nil, RoleOperator, time.Now().Add(time.Hour), jwt.SigningMethodNone)

	routes := []route{
		{"GET", "/", "", false},
		{"GET", "/api/deliveries", "", true},
		{"GET", "/deliveries/ev-site", "", false},
		{"GET", "/api/deliveries/ev-site", "", true},
		{"GET", "/workers", "", false},
		{"GET", "/dlq", "", false},
		{"GET", "/audit", "", false},
		{"POST", "/dlq/replay", "seq=999999", false},
		{"POST", "/api/dlq/replay", `{"seqs":[999999]}`, true},
		{"POST", "/audit/verify", "", false},
		{"POST", "/logout", "", false},
	}
	who := []struct {
		name   string
		cookie *http.Cookie
		csrf   string
		want   func(r route) int
	}{
		{"signed out", nil, "", signedOut},
		{"expired token", expiredKeyGood, "", signedOut},
		{"token signed with another key", otherKey, "", signedOut},
		{"alg none", algNone, "", signedOut},
		{"viewer", viewCookie, viewCSRF, func(r route) int {
			switch {
			case r.path == "/logout":
				return 303
			case r.method == "POST":
				return 403
			}
			return 200
		}},
		{"operator", opCookie, opCSRF, func(r route) int {
			if r.path == "/logout" || r.path == "/audit/verify" {
				return 303
			}
			return 200
		}},
	}
	for _, w := range who {
		for _, r := range routes {
			t.Run(w.name+" "+r.method+" "+r.path, func(t *testing.T) {
				hdr := map[string]string{}
				body := r.body
				if r.method == "POST" && w.csrf != "" {
					if r.json {
						hdr["X-CSRF-Token"] = w.csrf
						hdr["Content-Type"] = "application/json"
					} else {
						body = strings.TrimPrefix(body+"&csrf="+url.QueryEscape(w.csrf), "&")
					}
				}
				code, out, h := f.do(r.method, r.path, w.cookie, body, hdr)
				if want := w.want(r); code != want {
					t.Fatalf("status %d, want %d: %.200s", code, want, out)
				}
				if code == 303 && w.cookie == nil || code == 303 && strings.Contains(w.name, "token") {
					if h.Get("Location") != "/login" {
						t.Errorf("redirect to %q, want /login", h.Get("Location"))
					}
				}
			})
		}
	}
	// The viewer's refusal is also visible in the page: no replay button.
	_, page, _ := f.do("GET", "/dlq", viewCookie, "", nil)
	if strings.Contains(page, "Replay selected") || !strings.Contains(page, "Replaying is for operators") {
		t.Errorf("viewer's dead-letter page offers replay")
	}
	_, page, _ = f.do("GET", "/dlq", opCookie, "", nil)
	if !strings.Contains(page, "Replay selected") {
		t.Errorf("operator's dead-letter page has no replay button")
	}
}

type route struct {
	method, path, body string
	json               bool
}

// signedOut is what every route answers without a valid session.
func signedOut(r route) int {
	if r.method == "POST" || r.json {
		return 401
	}
	return 303
}

func TestCSRFAndOrigin(t *testing.T) {
	f := setup(t)
	c, csrf := f.session("ann", annPass)
	tests := []struct {
		name string
		body string
		hdr  map[string]string
		want int
	}{
		{"csrf missing", "", nil, 403},
		{"csrf wrong", "csrf=forged", nil, 403},
		{"csrf of another session", "csrf=" + url.QueryEscape(f.srv.signer.csrf("other-id")), nil, 403},
		{"cross-site origin", "csrf=" + url.QueryEscape(csrf), map[string]string{"Origin": "http://evil.test"}, 403},
		{"cross-site fetch", "csrf=" + url.QueryEscape(csrf), map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"hidden origin, cross-site", "csrf=" + url.QueryEscape(csrf), map[string]string{"Origin": "null", "Sec-Fetch-Site": "cross-site"}, 403},
		{"hidden origin, same site", "csrf=" + url.QueryEscape(csrf), map[string]string{"Origin": "null", "Sec-Fetch-Site": "same-origin"}, 303},
		{"right token, same origin", "csrf=" + url.QueryEscape(csrf), map[string]string{"Origin": f.web.URL}, 303},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, out, _ := f.do("POST", "/audit/verify", c, tt.body, tt.hdr); code != tt.want {
				t.Errorf("status %d, want %d: %.200s", code, tt.want, out)
			}
		})
	}
	// A JSON replay needs the header too.
	code, _, _ := f.do("POST", "/api/dlq/replay", c, `{"seqs":[1]}`, map[string]string{"Content-Type": "application/json"})
	if code != 403 {
		t.Errorf("api replay without CSRF header: %d, want 403", code)
	}
	if n := len(f.dlqList()); n != 2 {
		t.Errorf("%d dead letters after refused replays, want 2", n)
	}
}

func (f *fixture) dlqList() []string {
	f.t.Helper()
	c, _ := f.session("ann", annPass)
	_, page, _ := f.do("GET", "/dlq", c, "", nil)
	var out []string
	for _, line := range strings.Split(page, "\n") {
		if strings.Contains(line, `name="seq"`) {
			out = append(out, line)
		}
	}
	return out
}

func TestSignIn(t *testing.T) {
	f := setup(t)
	// A token, in the one scheme Gogs reads.
	if c, resp := f.signIn(url.Values{"token": {"tok-ann"}}); c == nil || resp.StatusCode != 303 {
		t.Fatalf("token sign-in: %d", resp.StatusCode)
	} else {
		if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure {
			t.Errorf("cookie HttpOnly=%v SameSite=%v Secure=%v, want HttpOnly, Strict, not Secure on plain HTTP", c.HttpOnly, c.SameSite, c.Secure)
		}
		s, err := f.srv.signer.parse(c.Value)
		if err != nil || s.Login != "ann" || s.Role != RoleOperator || s.Expires.Sub(f.clock.now()) > 10*time.Minute {
			t.Errorf("session = %+v, %v", s, err)
		}
	}
	if c, _ := f.session("vic", vicPass); c != nil {
		s, _ := f.srv.signer.parse(c.Value)
		if s.Role != RoleViewer || len(s.Repos) != 1 || s.Repos[0] != "acme/site" {
			t.Errorf("viewer session = %+v, want only acme/site", s)
		}
	}
	refused := []struct {
		name string
		form url.Values
		want int
	}{
		{"wrong password", url.Values{"username": {"ann"}, "password": {"nope"}}, 401},
		{"unknown user", url.Values{"username": {"zed"}, "password": {"x"}}, 401},
		{"wrong token", url.Values{"token": {"tok-nope"}}, 401},
		{"email as username", url.Values{"username": {"ann@acme.test"}, "password": {annPass}}, 401},
		{"no role", url.Values{"username": {"eve"}, "password": {"eve-pw"}}, 403},
		{"nothing", url.Values{}, 400},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			c, resp := f.signIn(tt.form)
			if c != nil || resp.StatusCode != tt.want {
				t.Errorf("status %d, cookie %v; want %d and no cookie", resp.StatusCode, c != nil, tt.want)
			}
		})
	}
	if strings.Contains(f.logs.String(), annPass) || strings.Contains(f.logs.String(), "tok-ann") {
		t.Errorf("a password or token reached the log")
	}
}

func TestFailedSignInsAreRateLimited(t *testing.T) {
	f := setup(t)
	for i := range 5 {
		if _, resp := f.signIn(url.Values{"username": {"ann"}, "password": {"guess"}}); resp.StatusCode != 401 {
			t.Fatalf("guess %d: %d, want 401", i, resp.StatusCode)
		}
	}
	calls := f.gogs.Calls("/api/v1/users/ann/tokens")
	c, resp := f.signIn(url.Values{"username": {"ann"}, "password": {annPass}})
	if c != nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("sixth try (right password): %d, cookie %v; want 429 with Retry-After", resp.StatusCode, c != nil)
	}
	if f.gogs.Calls("/api/v1/users/ann/tokens") != calls {
		t.Errorf("a rate-limited sign-in still asked Gogs")
	}
	if c, _ := f.signIn(url.Values{"username": {"vic"}, "password": {vicPass}}); c == nil {
		t.Errorf("another user from the same address was refused after ann's five failures")
	}
	f.clock.add(11 * time.Minute)
	if c, _ := f.signIn(url.Values{"username": {"ann"}, "password": {annPass}}); c == nil {
		t.Errorf("no sign-in after the window passed")
	}
	for i := range 20 {
		f.signIn(url.Values{"username": {"user" + itoa(uint64(i))}, "password": {"guess"}})
	}
	if _, resp := f.signIn(url.Values{"username": {"vic"}, "password": {vicPass}}); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("after 20 failures from one address: %d, want 429", resp.StatusCode)
	}
}

func TestExpiryAndSignOut(t *testing.T) {
	f := setup(t)
	c, csrf := f.session("ann", annPass)
	if code, _, _ := f.do("GET", "/", c, "", nil); code != 200 {
		t.Fatalf("fresh session: %d", code)
	}
	code, _, h := f.do("POST", "/logout", c, "csrf="+url.QueryEscape(csrf), nil)
	if code != 303 || !strings.Contains(h.Get("Set-Cookie"), "Max-Age=0") {
		t.Errorf("sign out: %d, Set-Cookie %q; want the cookie cleared", code, h.Get("Set-Cookie"))
	}
	f.clock.add(11 * time.Minute)
	if code, _, h := f.do("GET", "/", c, "", nil); code != 303 || h.Get("Location") != "/login" {
		t.Errorf("expired session: %d to %q, want 303 to /login", code, h.Get("Location"))
	}
}

func TestViewerSeesOnlyReadableRepositories(t *testing.T) {
	f := setup(t)
	c, _ := f.session("vic", vicPass)
	code, out, _ := f.do("GET", "/api/deliveries", c, "", nil)
	var list []history.Delivery
	if code != 200 || json.Unmarshal([]byte(out), &list) != nil {
		t.Fatalf("deliveries: %d %s", code, out)
	}
	if len(list) != 1 || list[0].Repo != "acme/site" {
		t.Errorf("viewer sees %+v, want acme/site only", list)
	}
	for _, p := range []string{"/deliveries/ev-secret", "/api/deliveries/ev-secret"} {
		if code, _, _ := f.do("GET", p, c, "", nil); code != 404 {
			t.Errorf("%s: %d, want 404", p, code)
		}
	}
	for _, p := range []string{"/", "/dlq", "/workers", "/?repo=acme/secret"} {
		if _, page, _ := f.do("GET", p, c, "", nil); strings.Contains(page, "acme/secret") && !strings.Contains(p, "secret") ||
			strings.Contains(page, "ev-secret") {
			t.Errorf("%s shows acme/secret to the viewer", p)
		}
	}
	op, _ := f.session("ann", annPass)
	_, page, _ := f.do("GET", "/", op, "", nil)
	if !strings.Contains(page, "acme/secret") || !strings.Contains(page, "acme/site") {
		t.Errorf("operator does not see every repository")
	}
}

func TestOperatorReplayShowsNewOutcome(t *testing.T) {
	f := setup(t)
	c, csrf := f.session("ann", annPass)
	f.bus.Broken.Store(false)
	body := `{"seqs":[` + itoa(f.dlq) + `]}`
	code, out, _ := f.do("POST", "/api/dlq/replay", c, body, map[string]string{"Content-Type": "application/json", "X-CSRF-Token": csrf})
	if code != 200 || !strings.Contains(out, `"worker":"models"`) || strings.Contains(out, `"error"`) {
		t.Fatalf("replay: %d %s", code, out)
	}
	f.bus.WaitOutcome("ev-site", "models", schemas.OutcomeSucceeded)
	_, out, _ = f.do("GET", "/api/deliveries/ev-site", c, "", nil)
	var st history.Story
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	for _, w := range st.Workers {
		if w.Worker == "models" && w.Outcome != schemas.OutcomeSucceeded {
			t.Errorf("models outcome %s after the replay, want succeeded", w.Outcome)
		}
	}
	_, page, _ := f.do("GET", "/deliveries/ev-site", c, "", nil)
	if !strings.Contains(page, "replayed to models") || !strings.Contains(page, "refresh endpoint answered 401") {
		t.Errorf("timeline page lacks the replay or the dead letter's error")
	}
}

func TestStreamSendsOnlyAllowedDeliveries(t *testing.T) {
	f := setup(t)
	c, _ := f.session("vic", vicPass)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.web.URL+"/events/stream", nil)
	req.AddCookie(c)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Scan() // ": connected"
	f.bus.Push("ev-secret-2", "acme/secret", "bob")
	f.bus.Push("ev-site-2", "acme/site", "alice")
	var kind string
	sawDelivery, sawOutcome := false, false
	for sc.Scan() && !(sawDelivery && sawOutcome) {
		line := sc.Text()
		if k, ok := strings.CutPrefix(line, "event: "); ok {
			kind = k
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		if strings.Contains(data, "secret") {
			t.Fatalf("viewer's stream carried acme/secret: %s", data)
		}
		if kind == "delivery" && strings.Contains(data, `"event_id":"ev-site-2"`) {
			sawDelivery = true
		}
		if kind == "outcome" && strings.Contains(data, `"event_id":"ev-site-2"`) {
			sawOutcome = true
		}
	}
	if !sawDelivery || !sawOutcome {
		t.Errorf("stream ended without ev-site-2's delivery (%v) and outcome (%v): %v", sawDelivery, sawOutcome, sc.Err())
	}
}

func itoa(n uint64) string { b, _ := json.Marshal(n); return string(b) }
