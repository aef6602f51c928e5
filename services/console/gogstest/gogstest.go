// Package gogstest is a fake Gogs API (v1) for tests, built with httptest.
// It authenticates and refuses as Gogs does (internal/context/auth.go and
// internal/route/api/v1/api.go): an access token from the "token" or
// "access_token" query parameter or an "Authorization: token <sha>" header
// (the word "token" exactly; "Bearer" and "Token" are not read), else HTTP
// Basic with a username or email and password; /user, /user/orgs and
// /user/repos need token authentication (reqToken: Basic gets 401);
// /users/:username/tokens needs Basic (reqBasicAuth: a token gets 401);
// /repos/:owner/:repo answers 404 to whoever cannot read the repository.
package gogstest

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// User is a Gogs account.
type User struct {
	Login, Email, Password string
	// Tokens are the user's access tokens.
	Tokens []string
}

// Org is an organisation; Members are logins, Public the members whose
// membership is public.
type Org struct {
	Name    string
	Members []string
	Public  []string
}

// Repo is a repository; Owner is a user or an org. A private repository is
// readable by its owner, the members of its owning org and its
// collaborators.
type Repo struct {
	Owner, Name   string
	Private       bool
	Collaborators []string
}

// Server is the fake Gogs.
type Server struct {
	*httptest.Server
	mu    sync.Mutex
	users []User
	orgs  []Org
	repos []Repo
	// Calls counts requests by path.
	calls map[string]int
}

// Start runs the fake on 127.0.0.1 until the test ends.
func Start(t testing.TB, users []User, orgs []Org, repos []Repo) *Server {
	s := &Server{users: users, orgs: orgs, repos: repos, calls: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// Handler is the fake's API handler, to mount beside other handlers (a
// git server) under one base URL, as Gogs serves both.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serve) }

// Calls returns how many requests reached path.
func (s *Server) Calls(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[path]
}

type auth struct {
	user         *User
	token, basic bool
}

// authenticate follows Gogs' authenticatedUserID and authenticatedUser.
func (s *Server) authenticate(r *http.Request) auth {
	sha := r.URL.Query().Get("token")
	if sha == "" {
		sha = r.URL.Query().Get("access_token")
	}
	if sha == "" {
		if f := strings.Fields(r.Header.Get("Authorization")); len(f) == 2 && f[0] == "token" {
			sha = f[1]
		}
	}
	if sha != "" {
		for i := range s.users {
			for _, tok := range s.users[i].Tokens {
				if tok == sha {
					return auth{user: &s.users[i], token: true}
				}
			}
		}
	}
	f := strings.Fields(r.Header.Get("Authorization"))
	if len(f) == 2 && f[0] == "Basic" {
		raw, err := base64.StdEncoding.DecodeString(f[1])
		if err != nil {
			return auth{}
		}
		login, pass, _ := strings.Cut(string(raw), ":")
		for i := range s.users {
			u := &s.users[i]
			if (strings.EqualFold(u.Login, login) || strings.EqualFold(u.Email, login)) && u.Password == pass && pass != "" {
				return auth{user: u, basic: true}
			}
		}
	}
	return auth{}
}

func (s *Server) user(login string) *User {
	for i := range s.users {
		if strings.EqualFold(s.users[i].Login, login) {
			return &s.users[i]
		}
	}
	return nil
}

func (s *Server) org(name string) *Org {
	for i := range s.orgs {
		if strings.EqualFold(s.orgs[i].Name, name) {
			return &s.orgs[i]
		}
	}
	return nil
}

func has(list []string, login string) bool {
	for _, l := range list {
		if strings.EqualFold(l, login) {
			return true
		}
	}
	return false
}

// canRead follows Gogs' access mode for read: public, owner, member of the
// owning org, collaborator.
func (s *Server) canRead(u *User, r Repo) bool {
	if !r.Private {
		return true
	}
	if u == nil {
		return false
	}
	if strings.EqualFold(r.Owner, u.Login) || has(r.Collaborators, u.Login) {
		return true
	}
	o := s.org(r.Owner)
	return o != nil && has(o.Members, u.Login)
}

func userJSON(login, email string) map[string]any {
	return map[string]any{"id": len(login), "username": login, "login": login, "full_name": login, "email": email, "avatar_url": ""}
}

func write(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[r.URL.Path]++
	if r.Method != http.MethodGet {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/api/v1/")
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	a := s.authenticate(r)
	parts := strings.Split(rest, "/")
	switch {
	case rest == "user" || rest == "user/orgs" || rest == "user/repos":
		if !a.token { // reqToken
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch rest {
		case "user":
			write(w, userJSON(a.user.Login, a.user.Email))
		case "user/orgs":
			out := []map[string]any{}
			for _, o := range s.orgs {
				if has(o.Members, a.user.Login) {
					out = append(out, map[string]any{"id": len(o.Name), "username": o.Name, "full_name": o.Name})
				}
			}
			write(w, out)
		case "user/repos":
			out := []map[string]any{}
			for _, rp := range s.repos {
				if s.canRead(a.user, rp) {
					out = append(out, map[string]any{"full_name": rp.Owner + "/" + rp.Name, "private": rp.Private})
				}
			}
			write(w, out)
		}
	case len(parts) == 2 && parts[0] == "users":
		u := s.user(parts[1])
		if u == nil {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		write(w, userJSON(u.Login, ""))
	case len(parts) == 3 && parts[0] == "users" && parts[2] == "tokens":
		if !a.basic { // reqBasicAuth
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		out := []map[string]string{}
		for i := range a.user.Tokens {
			out = append(out, map[string]string{"name": "token" + string(rune('a'+i))})
		}
		write(w, out)
	case len(parts) == 3 && parts[0] == "users" && parts[2] == "orgs":
		u := s.user(parts[1])
		if u == nil {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		out := []map[string]any{}
		for _, o := range s.orgs {
			if has(o.Public, u.Login) {
				out = append(out, map[string]any{"id": len(o.Name), "username": o.Name, "full_name": o.Name})
			}
		}
		write(w, out)
	case len(parts) == 3 && parts[0] == "repos":
		for _, rp := range s.repos {
			if strings.EqualFold(rp.Owner, parts[1]) && strings.EqualFold(rp.Name, parts[2]) {
				if !s.canRead(a.user, rp) {
					w.WriteHeader(http.StatusNotFound)
					return
				}
				write(w, map[string]any{"full_name": rp.Owner + "/" + rp.Name, "private": rp.Private,
					"permissions": map[string]bool{"pull": true}})
				return
			}
		}
		w.WriteHeader(http.StatusNotFound)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}
