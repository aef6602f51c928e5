package console

import (
	"encoding/json"
	"errors"
	"github.com/forgebus/forgebus/workers/audit"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/services/history"
	"github.com/forgebus/forgebus/services/operate"
	"github.com/forgebus/forgebus/workers/runtime"
)

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request, sess *Session) {
	if sess != nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	s.render(w, r, "login", nil, map[string]any{})
}

// login checks the credentials against Gogs, maps the user's organisations
// to a role and sets the session cookie. The password lives only in this
// request: it is neither stored nor logged.
func (s *Server) login(w http.ResponseWriter, r *http.Request, _ *Session) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	cred := Credentials{
		Username: strings.TrimSpace(r.PostFormValue("username")),
		Password: r.PostFormValue("password"),
		Token:    strings.TrimSpace(r.PostFormValue("token")),
	}
	ip := "ip:" + clientIP(r)
	userKey := "user:" + strings.ToLower(cred.Username)
	if cred.Token != "" {
		// A token names no user before Gogs answers: count it by address,
		// so wrong tokens from one client cannot lock out everyone's.
		userKey = "token:" + clientIP(r)
	}
	fail := func(code int, msg string) {
		w.WriteHeader(code)
		s.render(w, r, "login", nil, map[string]any{"Error": msg, "Username": cred.Username})
	}
	if wait := max(s.byIP.blocked(ip), s.byUser.blocked(userKey)); wait > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
		s.log.Warn().Str("remote", clientIP(r)).Msg("console sign-in rate limited")
		fail(http.StatusTooManyRequests, "Too many failed sign-ins: try again later.")
		return
	}
	if cred.Token == "" && (cred.Username == "" || cred.Password == "") {
		fail(http.StatusBadRequest, "Give your Gogs username and password, or an access token.")
		return
	}
	login, orgs, err := s.gogs.identity(r.Context(), cred)
	if errors.Is(err, ErrBadCredentials) {
		s.byIP.fail(ip)
		s.byUser.fail(userKey)
		s.log.Info().Str("remote", clientIP(r)).Msg("console sign-in refused by gogs")
		fail(http.StatusUnauthorized, "Gogs refused this username and password or token.")
		return
	}
	if err != nil {
		s.log.Error().Err(err).Msg("console sign-in: gogs unreachable")
		fail(http.StatusBadGateway, "Gogs did not answer; try again.")
		return
	}
	role := s.role(orgs)
	if role == "" {
		s.byIP.fail(ip)
		s.byUser.fail(userKey)
		s.log.Info().Str("login", login).Msg("console sign-in: no role for this user")
		fail(http.StatusForbidden, "Your Gogs account is in none of the organisations mapped to a forgebus role.")
		return
	}
	var repos []string
	if role == RoleViewer {
		all, err := history.Repos(r.Context(), s.js)
		if err != nil {
			s.log.Error().Err(err).Msg("console sign-in: list repositories")
			fail(http.StatusServiceUnavailable, "The bus did not answer; try again.")
			return
		}
		if repos, err = s.gogs.readable(r.Context(), cred, all); err != nil {
			s.log.Error().Err(err).Msg("console sign-in: repository access")
			fail(http.StatusBadGateway, "Gogs did not answer; try again.")
			return
		}
		if len(repos) > maxRepos {
			repos = repos[:maxRepos]
		}
	}
	tok, exp, err := s.signer.issue(login, role, repos)
	if err != nil {
		fail(http.StatusInternalServerError, "Could not start a session.")
		return
	}
	s.byUser.reset(userKey)
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: tok, Path: "/", Expires: exp, MaxAge: int(time.Until(exp).Seconds()),
		HttpOnly: true, Secure: r.TLS != nil || s.cfg.SecureCookie, SameSite: http.SameSiteStrictMode,
	})
	s.log.Info().Str("login", login).Str("role", role).Int("repos", len(repos)).Msg("console sign-in")
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) role(orgs []string) string {
	in := func(list []string) bool {
		return slices.ContainsFunc(orgs, func(o string) bool {
			return slices.ContainsFunc(list, func(m string) bool { return strings.EqualFold(m, o) })
		})
	}
	switch {
	case in(s.cfg.OperatorOrgs):
		return RoleOperator
	case in(s.cfg.ViewerOrgs):
		return RoleViewer
	}
	return ""
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, sess *Session) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: r.TLS != nil || s.cfg.SecureCookie, SameSite: http.SameSiteStrictMode})
	s.log.Info().Str("login", sess.Login).Msg("console sign-out")
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// filter reads the deliveries filter from the query.
func (s *Server) filter(r *http.Request, sess *Session) (history.Filter, map[string]string) {
	q := r.URL.Query()
	f := history.Filter{Allow: sess.Allows, Repo: q.Get("repo"), Event: q.Get("event"), Outcome: schemas.Outcome(q.Get("outcome"))}
	if since := q.Get("since"); since != "" {
		if d, err := time.ParseDuration(since); err == nil && d > 0 {
			f.Since = s.cfg.Now().Add(-d)
		} else if t, err := time.Parse(time.RFC3339, since); err == nil {
			f.Since = t
		}
	}
	return f, map[string]string{"repo": f.Repo, "event": f.Event, "outcome": string(f.Outcome), "since": q.Get("since")}
}

const pageSize = 100

func (s *Server) deliveriesPage(w http.ResponseWriter, r *http.Request, sess *Session) {
	f, form := s.filter(r, sess)
	list, err := history.Recent(r.Context(), s.js, f, pageSize)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, "deliveries", sess, map[string]any{"Deliveries": list, "Workers": workerNames(list), "Filter": form,
		"Outcomes": []schemas.Outcome{schemas.OutcomeSucceeded, schemas.OutcomeFailed, schemas.OutcomeDeadLettered,
			schemas.OutcomeDenied, schemas.OutcomeDuplicate, schemas.OutcomeSuperseded}})
}

func workerNames(list []history.Delivery) []string {
	seen := map[string]bool{}
	for _, d := range list {
		for w := range d.Workers {
			seen[w] = true
		}
	}
	out := make([]string, 0, len(seen))
	for w := range seen {
		out = append(out, w)
	}
	slices.Sort(out)
	return out
}

func (s *Server) deliveriesAPI(w http.ResponseWriter, r *http.Request, sess *Session) {
	f, _ := s.filter(r, sess)
	list, err := history.Recent(r.Context(), s.js, f, pageSize)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if list == nil {
		list = []history.Delivery{}
	}
	writeJSON(w, http.StatusOK, list)
}

// story loads one delivery for sess; a repository sess may not see is
// answered as not found, so its existence does not leak.
func (s *Server) story(w http.ResponseWriter, r *http.Request, sess *Session) (history.Story, bool) {
	st, err := history.Load(r.Context(), s.js, r.PathValue("id"))
	if errors.Is(err, history.ErrNotFound) || err == nil && !sess.Allows(st.Delivery.Repo) {
		s.refuse(w, r, http.StatusNotFound, "no such delivery")
		return st, false
	}
	if err != nil {
		s.fail(w, r, err)
		return st, false
	}
	return st, true
}

func (s *Server) deliveryPage(w http.ResponseWriter, r *http.Request, sess *Session) {
	if st, ok := s.story(w, r, sess); ok {
		s.render(w, r, "delivery", sess, map[string]any{"Story": st})
	}
}

func (s *Server) deliveryAPI(w http.ResponseWriter, r *http.Request, sess *Session) {
	if st, ok := s.story(w, r, sess); ok {
		writeJSON(w, http.StatusOK, st)
	}
}

func (s *Server) workersPage(w http.ResponseWriter, r *http.Request, sess *Session) {
	ws, err := history.Workers(r.Context(), s.js, sess.Allows, s.cfg.Now())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, "workers", sess, map[string]any{"Workers": ws})
}

// deadLetters lists the dead letters sess may see, filtered by the query.
func (s *Server) deadLetters(r *http.Request, sess *Session) ([]runtime.DeadLetterEntry, error) {
	list, err := runtime.ListDeadLetters(r.Context(), s.js, "")
	if err != nil {
		return nil, err
	}
	worker, repo := r.URL.Query().Get("worker"), r.URL.Query().Get("repo")
	out := list[:0]
	for _, e := range list {
		if sess.Allows(e.Letter.Repo) && (worker == "" || e.Letter.Worker == worker) && (repo == "" || e.Letter.Repo == repo) {
			e.Letter.Event = nil
			out = append(out, e)
		}
	}
	return out, nil
}

func (s *Server) dlqPage(w http.ResponseWriter, r *http.Request, sess *Session) {
	s.renderDLQ(w, r, sess, nil)
}

func (s *Server) renderDLQ(w http.ResponseWriter, r *http.Request, sess *Session, replayed []operate.Replayed) {
	list, err := s.deadLetters(r, sess)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	type row struct {
		Seq     uint64
		EventID string
		Worker  string
		Err     string
	}
	var done []row
	for _, x := range replayed {
		rr := row{Seq: x.Seq, EventID: x.Result.EventID, Worker: x.Result.Worker}
		if x.Err != nil {
			rr.Err = x.Err.Error()
		}
		done = append(done, rr)
	}
	s.render(w, r, "dlq", sess, map[string]any{"Letters": list, "Replayed": done,
		"Filter": map[string]string{"worker": r.URL.Query().Get("worker"), "repo": r.URL.Query().Get("repo")}})
}

const maxReplay = 500

func parseSeqs(vals []string) ([]uint64, error) {
	if len(vals) == 0 || len(vals) > maxReplay {
		return nil, errors.New("give 1 to 500 dead-letter sequences")
	}
	out := make([]uint64, 0, len(vals))
	for _, v := range vals {
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil || n == 0 {
			return nil, errors.New("not a sequence number")
		}
		out = append(out, n)
	}
	return out, nil
}

func (s *Server) dlqReplay(w http.ResponseWriter, r *http.Request, sess *Session) {
	_ = r.ParseForm()
	seqs, err := parseSeqs(r.PostForm["seq"])
	if err != nil {
		s.refuse(w, r, http.StatusBadRequest, err.Error())
		return
	}
	res := operate.Replay(r.Context(), s.js, seqs)
	s.logReplay(sess, res)
	s.renderDLQ(w, r, sess, res)
}

func (s *Server) dlqReplayAPI(w http.ResponseWriter, r *http.Request, sess *Session) {
	var body struct {
		Seqs []uint64 `json:"seqs"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&body); err != nil {
		s.refuse(w, r, http.StatusBadRequest, "want {\"seqs\": [1, 2]}")
		return
	}
	vals := make([]string, len(body.Seqs))
	for i, n := range body.Seqs {
		vals[i] = strconv.FormatUint(n, 10)
	}
	seqs, err := parseSeqs(vals)
	if err != nil {
		s.refuse(w, r, http.StatusBadRequest, err.Error())
		return
	}
	res := operate.Replay(r.Context(), s.js, seqs)
	s.logReplay(sess, res)
	type item struct {
		Seq    uint64               `json:"seq"`
		Result runtime.ReplayResult `json:"result"`
		Error  string               `json:"error,omitempty"`
	}
	out := make([]item, 0, len(res))
	for _, x := range res {
		it := item{Seq: x.Seq, Result: x.Result}
		if x.Err != nil {
			it.Error = x.Err.Error()
		}
		out = append(out, it)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) logReplay(sess *Session, res []operate.Replayed) {
	for _, x := range res {
		ev := s.log.Info()
		if x.Err != nil {
			ev = s.log.Warn().Err(x.Err)
		}
		ev.Str("login", sess.Login).Uint64("dlq_seq", x.Seq).Str("event_id", x.Result.EventID).Str("worker", x.Result.Worker).Msg("console replay")
	}
}

func (s *Server) auditPage(w http.ResponseWriter, r *http.Request, sess *Session) {
	head, err := history.Head(r.Context(), s.js)
	headErr := ""
	if err != nil {
		headErr = err.Error()
	}
	s.mu.Lock()
	last := s.lastVerify
	s.mu.Unlock()
	s.render(w, r, "audit", sess, map[string]any{"Head": head, "HeadErr": headErr, "Last": last})
}

func (s *Server) auditVerify(w http.ResponseWriter, r *http.Request, sess *Session) {
	rep, err := operate.VerifyAudit(r.Context(), s.js, audit.Options{Keys: s.cfg.AuditKeys})
	n := 0
	if err == nil {
		n, err = rep.Count, rep.Err()
	}
	res := &verifyResult{At: s.cfg.Now().UTC(), By: sess.Login, Records: n}
	if err != nil {
		res.Err = err.Error()
		s.log.Warn().Err(err).Str("login", sess.Login).Int("records", n).Msg("console audit verify: broken")
	} else {
		s.log.Info().Str("login", sess.Login).Int("records", n).Msg("console audit verify: ok")
	}
	s.mu.Lock()
	s.lastVerify = res
	s.mu.Unlock()
	http.Redirect(w, r, "/audit", http.StatusSeeOther)
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error().Err(err).Str("path", r.URL.Path).Msg("console: read the bus")
	s.refuse(w, r, http.StatusServiceUnavailable, "the bus did not answer; try again")
}
