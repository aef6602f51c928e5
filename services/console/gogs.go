package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Errors of a sign-in.
var (
	// ErrBadCredentials: Gogs refused the username and password or token.
	ErrBadCredentials = errors.New("gogs refused the credentials")
	// ErrNoRole: the user is in none of the mapped organisations.
	ErrNoRole = errors.New("no forgebus role for this gogs user")
)

// Credentials are what a person types: a username and password, or an
// access token. They live only for the sign-in request.
type Credentials struct {
	Username, Password, Token string
}

// gogsClient asks the Gogs API who someone is and what they may read.
type gogsClient struct {
	base string
	http *http.Client
}

func newGogsClient(base string) *gogsClient {
	return &gogsClient{base: strings.TrimRight(base, "/"), http: &http.Client{Timeout: 10 * time.Second}}
}

// authorize sets Gogs' accepted form of c on req: "Authorization: token"
// for a token, HTTP Basic for a password.
func (c Credentials) authorize(req *http.Request) {
	if c.Token != "" {
		req.Header.Set("Authorization", "token "+c.Token)
		return
	}
	req.SetBasicAuth(c.Username, c.Password)
}

// get fetches path with cred; 401 is ErrBadCredentials, 404 found=false.
func (g *gogsClient) get(ctx context.Context, path string, cred Credentials, v any) (found bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.base+"/api/v1"+path, nil)
	if err != nil {
		return false, fmt.Errorf("gogs request: %w", err)
	}
	cred.authorize(req)
	req.Header.Set("Accept", "application/json")
	resp, err := g.http.Do(req)
	if err != nil {
		// The URL holds no secret: credentials travel in headers only.
		return false, fmt.Errorf("gogs %s: %w", path, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return false, ErrBadCredentials
	case resp.StatusCode == http.StatusNotFound:
		return false, nil
	case resp.StatusCode != http.StatusOK:
		return false, fmt.Errorf("gogs %s: status %d", path, resp.StatusCode)
	}
	if v != nil {
		if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(v); err != nil {
			return false, fmt.Errorf("gogs %s: decode: %w", path, err)
		}
	}
	return true, nil
}

type gogsUser struct {
	Login    string `json:"login"`
	Username string `json:"username"`
}

type gogsOrg struct {
	Username string `json:"username"`
}

// identity checks cred and returns the canonical login and the user's
// organisations. With a token it reads /user and /user/orgs (Gogs serves
// them to tokens only); with a password it checks the password on
// /users/:name/tokens (Basic only) and reads the public memberships.
func (g *gogsClient) identity(ctx context.Context, cred Credentials) (string, []string, error) {
	var login string
	var orgs []gogsOrg
	if cred.Token != "" {
		var u gogsUser
		if _, err := g.get(ctx, "/user", cred, &u); err != nil {
			return "", nil, err
		}
		login = u.Login
		if login == "" {
			login = u.Username
		}
		if _, err := g.get(ctx, "/user/orgs", cred, &orgs); err != nil {
			return "", nil, err
		}
	} else {
		if cred.Username == "" || cred.Password == "" || strings.Contains(cred.Username, "@") {
			return "", nil, ErrBadCredentials
		}
		name := url.PathEscape(cred.Username)
		if _, err := g.get(ctx, "/users/"+name+"/tokens", cred, nil); err != nil {
			return "", nil, err
		}
		var u gogsUser
		found, err := g.get(ctx, "/users/"+name, Credentials{}, &u)
		if err != nil {
			return "", nil, err
		}
		if !found {
			return "", nil, ErrBadCredentials
		}
		login = u.Login
		if login == "" {
			login = u.Username
		}
		if _, err := g.get(ctx, "/users/"+url.PathEscape(login)+"/orgs", Credentials{}, &orgs); err != nil {
			return "", nil, err
		}
	}
	if login == "" {
		return "", nil, ErrBadCredentials
	}
	names := make([]string, 0, len(orgs))
	for _, o := range orgs {
		names = append(names, o.Username)
	}
	return login, names, nil
}

// readable returns the repos among candidates that cred may read: Gogs
// answers 404 to a reader without access.
func (g *gogsClient) readable(ctx context.Context, cred Credentials, candidates []string) ([]string, error) {
	var out []string
	for _, repo := range candidates {
		owner, name, ok := strings.Cut(repo, "/")
		if !ok {
			continue
		}
		found, err := g.get(ctx, "/repos/"+url.PathEscape(owner)+"/"+url.PathEscape(name), cred, nil)
		if err != nil {
			return nil, err
		}
		if found {
			out = append(out, repo)
		}
	}
	return out, nil
}
