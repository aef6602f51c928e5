package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// kind says which worker acts on a hook's push (the others skip it).
type kind int

const (
	kindOther   kind = iota // a push no rule watches: every worker skips it
	kindModels              // to lab/models: the models worker fetches, diffs, POSTs
	kindDocs                // to lab/handbook: the docs worker builds and publishes
	kindEnvsync             // to lab/config: the envsync worker fetches and applies
)

func (k kind) String() string {
	return [...]string{"other", "models", "docs", "envsync"}[k]
}

// hook is one signed push delivery.
type hook struct {
	id     string
	body   []byte
	sig    string
	kind   kind
	commit string // the pushed commit ("after")
	seq    int    // index among the hooks of its kind (docs, envsync: which commit)
}

// mix says which webhooks go to which worker's repository: every
// modelsEvery-th to lab/models, of the rest the ones at docsEvery-th
// offset 1 to lab/handbook and at envsyncEvery-th offset 2 to lab/config.
// Zero turns a kind off.
type mix struct {
	modelsEvery, docsEvery, envsyncEvery int
}

func (m mix) kindOf(i int) kind {
	switch {
	case m.modelsEvery > 0 && i%m.modelsEvery == 0:
		return kindModels
	case m.docsEvery > 0 && i%m.docsEvery == 1%m.docsEvery:
		return kindDocs
	case m.envsyncEvery > 0 && i%m.envsyncEvery == 2%m.envsyncEvery:
		return kindEnvsync
	}
	return kindOther
}

// count is how many of n hooks are of kind k.
func (m mix) count(n int, k kind) int {
	c := 0
	for i := range n {
		if m.kindOf(i) == k {
			c++
		}
	}
	return c
}

// targets are the repositories the hooks push to.
type targets struct {
	models *gitRepo // commits reused in a cycle
	docs   *gitRepo // one commit per docs hook: commits[j+1] for hook j
	env    *envRepo // one commit per envsync hook
}

type user struct {
	ID       int    `json:"id"`
	Username string `json:"username"`
	Login    string `json:"login"`
	FullName string `json:"full_name"`
	Email    string `json:"email"`
}

// pushBody is a Gogs push payload with the fields and spelling of the real
// deliveries in testdata/gogs (push-multi-commit.json). n goes into the
// commit message: hooks that push the same commits again (models cycles
// through its chain) are distinct pushes, and ingest stores a signed
// payload it already has only once.
func pushBody(owner, name, before, after string, n int) ([]byte, error) {
	u := user{ID: 1, Username: owner, Login: owner, FullName: owner, Email: owner + "@example.com"}
	full := owner + "/" + name
	return json.Marshal(map[string]any{
		"ref":         "refs/heads/master",
		"before":      before,
		"after":       after,
		"compare_url": "http://127.0.0.1:3000/" + full + "/compare/" + before + "..." + after,
		"commits": []map[string]any{{
			"id": after, "message": fmt.Sprintf("update %d\n", n), "url": "http://127.0.0.1:3000/" + full + "/commit/" + after,
			"author":    map[string]string{"name": owner, "email": u.Email, "username": owner},
			"committer": map[string]string{"name": owner, "email": u.Email, "username": owner},
			"added":     nil, "removed": nil, "modified": []string{"models/weights.txt"},
			"timestamp": "2026-11-22T23:51:25Z",
		}},
		"repository": map[string]any{
			"id": 1, "owner": u, "name": name, "full_name": full, "description": "",
			"private": false, "fork": false, "parent": nil, "empty": false, "mirror": false, "size": 1,
			"html_url": "http://127.0.0.1:3000/" + full, "ssh_url": "git@127.0.0.1:" + full + ".git",
			"clone_url": "http://127.0.0.1:3000/" + full + ".git", "website": "",
			"stars_count": 0, "forks_count": 0, "watchers_count": 1, "open_issues_count": 0,
			"default_branch": "master", "created_at": "2026-11-22T23:50:23Z", "updated_at": "2026-11-22T23:51:16Z",
		},
		"pusher": u,
		"sender": u,
	})
}

func sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

func randomCommit() string {
	var b [20]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// makeHooks builds n deliveries, of the kinds m says. A models hook is a
// push of a real commit of lab/models (cycling through its chain). Each
// docs hook pushes the next commit of lab/handbook's chain, each envsync
// hook the next commit of lab/config: one commit per event, so an effect
// counted per commit is counted per event. The rest are pushes to
// acme/app-0..6 (random commit ids), which no worker has a rule for.
func makeHooks(n int, m mix, t targets, secret []byte) ([]hook, error) {
	hooks := make([]hook, n)
	seqs := map[kind]int{}
	for i := range hooks {
		k := m.kindOf(i)
		j := seqs[k]
		seqs[k]++
		var before, after string
		owner, name := "acme", fmt.Sprintf("app-%d", i%7)
		switch k {
		case kindModels:
			c := 1 + j%(len(t.models.commits)-1)
			owner, name, before, after = t.models.owner, t.models.name, t.models.commits[c-1], t.models.commits[c]
		case kindDocs:
			if j+1 >= len(t.docs.commits) {
				return nil, fmt.Errorf("docs hook %d: the docs repository has only %d commits", j, len(t.docs.commits))
			}
			owner, name, before, after = t.docs.owner, t.docs.name, t.docs.commits[j], t.docs.commits[j+1]
		case kindEnvsync:
			if j >= len(t.env.commits) {
				return nil, fmt.Errorf("envsync hook %d: the config repository has only %d commits", j, len(t.env.commits))
			}
			owner, name, after = t.env.owner, t.env.name, t.env.commits[j]
			before = randomCommit()
			if j > 0 {
				before = t.env.commits[j-1]
			}
		default:
			before, after = randomCommit(), randomCommit()
		}
		body, err := pushBody(owner, name, before, after, i)
		if err != nil {
			return nil, err
		}
		hooks[i] = hook{id: uuid.NewString(), body: body, sig: sign(secret, body), kind: k, commit: after, seq: j}
	}
	return hooks, nil
}

// loadResult is what the poster saw.
type loadResult struct {
	posted   int
	accepted map[string]bool // delivery ids answered 2xx at least once
	retried  int             // deliveries that needed more than one attempt
	failed   int             // deliveries never answered 2xx
	codes    map[string]int  // every attempt's answer
	elapsed  time.Duration
}

// poster sends hooks to the ingest processes at a fixed rate, round robin;
// a delivery that fails is sent again, with the same delivery id (as a
// Gogs redelivery would), to the next ingest, up to attempts times.
type poster struct {
	urls     func() []string
	client   *http.Client
	attempts int
	mu       sync.Mutex
	res      loadResult
}

func (p *poster) send(ctx context.Context, h hook, first int) {
	urls := p.urls()
	ok := false
	for a := 0; a < p.attempts && ctx.Err() == nil; a++ {
		if a > 0 {
			time.Sleep(time.Duration(a) * 300 * time.Millisecond)
		}
		url := urls[(first+a)%len(urls)]
		code := p.post(ctx, url, h)
		p.mu.Lock()
		p.res.codes[code]++
		if a == 1 {
			p.res.retried++
		}
		p.mu.Unlock()
		if len(code) == 3 && code[0] == '2' {
			ok = true
			break
		}
	}
	p.mu.Lock()
	if ok {
		p.res.accepted[h.id] = true
	} else {
		p.res.failed++
	}
	p.mu.Unlock()
}

func (p *poster) post(ctx context.Context, url string, h hook) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/hooks/gogs", bytes.NewReader(h.body))
	if err != nil {
		return "request_error"
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GogsServer")
	req.Header.Set("X-Gogs-Event", "push")
	req.Header.Set("X-Gogs-Delivery", h.id)
	req.Header.Set("X-Gogs-Signature", h.sig)
	resp, err := p.client.Do(req)
	if err != nil {
		return "conn_error"
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	return fmt.Sprint(resp.StatusCode)
}

// run posts every hook, spread evenly over d, with at most conc in flight;
// at[i], when set, runs (in its own goroutine) just before hook i is sent.
func (p *poster) run(ctx context.Context, hooks []hook, d time.Duration, conc int, at map[int]func()) loadResult {
	p.res = loadResult{accepted: map[string]bool{}, codes: map[string]int{}}
	start := time.Now()
	interval := d / time.Duration(len(hooks))
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	var sent atomic.Int64
	for i, h := range hooks {
		if ctx.Err() != nil {
			break
		}
		if f, ok := at[i]; ok {
			wg.Add(1)
			go func() { defer wg.Done(); f() }()
		}
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		sem <- struct{}{}
		wg.Add(1)
		sent.Add(1)
		go func(i int, h hook) {
			defer wg.Done()
			defer func() { <-sem }()
			p.send(ctx, h, i)
		}(i, h)
	}
	wg.Wait()
	p.res.posted = int(sent.Load())
	p.res.elapsed = time.Since(start)
	return p.res
}
