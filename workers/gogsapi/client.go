package gogsapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultTimeout bounds each call unless [WithTimeout] says otherwise.
const DefaultTimeout = 15 * time.Second

// DefaultMaxSize is the largest file [Client.RawFile] reads by default (1 MiB).
const DefaultMaxSize int64 = 1 << 20

// Client calls the Gogs REST API v1 with a token. It is safe for concurrent use.
type Client struct {
	base    *url.URL
	token   string
	http    *http.Client
	maxSize int64
	timeout time.Duration
}

// Option configures a [Client].
type Option func(*Client)

// WithHTTPClient makes the client use hc (its CheckRedirect is replaced: the
// client never follows redirects, so the token never goes elsewhere).
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		cp := *hc
		c.http = &cp
	}
}

// WithTimeout bounds each call to d (a longer context deadline does not
// lengthen it); zero or less keeps [DefaultTimeout].
func WithTimeout(d time.Duration) Option {
	return func(c *Client) {
		if d > 0 {
			c.timeout = d
		}
	}
}

// WithMaxSize sets the largest file RawFile reads; larger files give
// [ErrTooLarge].
func WithMaxSize(n int64) Option {
	return func(c *Client) {
		if n > 0 {
			c.maxSize = n
		}
	}
}

// New returns a client for the Gogs instance at baseURL (e.g.
// "https://git.example.com", with or without a sub-path). An empty token is
// allowed here, so a worker can start, but every call then fails with
// [ErrNoToken].
func New(baseURL, token string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil {
		return nil, fmt.Errorf("parse gogs url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: gogs url must be http(s)://host[/path]", ErrBadArgument)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%w: gogs url must not carry credentials, a query or a fragment", ErrBadArgument)
	}
	c := &Client{base: u, token: token, http: &http.Client{}, maxSize: DefaultMaxSize, timeout: DefaultTimeout}
	for _, o := range opts {
		o(c)
	}
	c.http.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c, nil
}

// RawFileURL is the URL RawFile requests; each segment of ref and path is
// escaped.
func (c *Client) RawFileURL(owner, repo, ref, path string) (string, error) {
	for _, s := range []string{owner, repo} {
		if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "/\x00") {
			return "", fmt.Errorf("%w: owner or repository %q", ErrBadArgument, s)
		}
	}
	refSeg, err := segments(ref)
	if err != nil {
		return "", fmt.Errorf("ref: %w", err)
	}
	pathSeg, err := segments(path)
	if err != nil {
		return "", fmt.Errorf("path: %w", err)
	}
	return c.base.String() + "/api/v1/repos/" + url.PathEscape(owner) + "/" + url.PathEscape(repo) +
		"/raw/" + refSeg + "/" + pathSeg, nil
}

func segments(p string) (string, error) {
	if p == "" || strings.HasPrefix(p, "/") || strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("%w: %q", ErrBadArgument, p)
	}
	parts := strings.Split(p, "/")
	for i, s := range parts {
		if s == "" || s == "." || s == ".." {
			return "", fmt.Errorf("%w: %q has an empty, \".\" or \"..\" segment", ErrBadArgument, p)
		}
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/"), nil
}

// RawFile returns the content of path at ref (a branch, tag or full commit
// SHA) in owner/repo. Errors wrap the package's sentinels: [ErrNotFound] for a
// 404, [ErrUnauthorized] / [ErrForbidden] for 401 / 403, [ErrServer] for 5xx
// and 429; a network error or timeout is returned wrapped as is. No error
// carries the token or the file's content.
func (c *Client) RawFile(ctx context.Context, owner, repo, ref, path string) ([]byte, error) {
	if c.token == "" {
		return nil, ErrNoToken
	}
	u, err := c.RawFileURL(owner, repo, ref, path)
	if err != nil {
		return nil, err
	}
	// The job's context allows minutes; one API call gets its own bound.
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadArgument, err)
	}
	req.Header.Set("Authorization", "token "+c.token)
	req.Header.Set("User-Agent", "forgebus")
	resp, err := c.http.Do(req)
	if err != nil {
		// The URL carries no secret; *url.Error names it.
		return nil, fmt.Errorf("get raw %s/%s %s: %w", owner, repo, path, err)
	}
	defer resp.Body.Close()
	what := fmt.Sprintf("get raw %s/%s %s at %s", owner, repo, path, ref)
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, fmt.Errorf("%s: %w", what, ErrUnauthorized)
	case resp.StatusCode == http.StatusForbidden:
		return nil, fmt.Errorf("%s: %w", what, ErrForbidden)
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("%s: %w", what, ErrNotFound)
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return nil, fmt.Errorf("%s: %w (status %d)", what, ErrServer, resp.StatusCode)
	default:
		return nil, fmt.Errorf("%s: %w (status %d)", what, ErrUnexpected, resp.StatusCode)
	}
	if resp.ContentLength > c.maxSize {
		return nil, fmt.Errorf("%s: %w (%d bytes, limit %d)", what, ErrTooLarge, resp.ContentLength, c.maxSize)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: read body: %w", what, err)
	}
	if int64(len(body)) > c.maxSize {
		return nil, fmt.Errorf("%s: %w (limit %d bytes)", what, ErrTooLarge, c.maxSize)
	}
	return body, nil
}

// IsTimeout reports whether err is a context deadline or a network timeout.
func IsTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}
