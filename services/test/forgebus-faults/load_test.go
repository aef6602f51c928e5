package main

import (
	"errors"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/forgebus/forgebus/ingest/gogs"
	"github.com/forgebus/forgebus/schemas"
)

// TestMakeHooks checks that the deliveries the fault test posts are what
// ingest accepts and what each worker acts on: signed with the webhook
// secret (and with nothing else), normalized into pushes to the intended
// repository and commit, each with its own delivery id; docs and envsync
// hooks each push their own commit, in order.
func TestMakeHooks(t *testing.T) {
	models := &gitRepo{owner: modelsOwner, name: modelsRepo, commits: []string{
		"1111111111111111111111111111111111111111",
		"2222222222222222222222222222222222222222",
		"3333333333333333333333333333333333333333",
	}}
	m := mix{modelsEvery: 10, docsEvery: 5, envsyncEvery: 5}
	const n = 40
	docs := &gitRepo{owner: docsOwner, name: docsRepoName}
	for j := range m.count(n, kindDocs) + 1 {
		docs.commits = append(docs.commits, fmt.Sprintf("%040x", j+100))
	}
	env := newEnvRepo(m.count(n, kindEnvsync))
	hooks, err := makeHooks(n, m, targets{models: models, docs: docs, env: env}, []byte(webhookSecret))
	if err != nil {
		t.Fatal(err)
	}
	repoOf := map[kind]string{
		kindModels: modelsOwner + "/" + modelsRepo, kindDocs: docsOwner + "/" + docsRepoName, kindEnvsync: envOwner + "/" + envRepoN,
	}
	seen := map[string]bool{}
	perKind := map[kind]int{}
	for i, h := range hooks {
		if seen[h.id] {
			t.Fatalf("hook %d: delivery id %s used twice", i, h.id)
		}
		seen[h.id] = true
		if err := gogs.Verify(h.body, h.sig, [][]byte{[]byte(webhookSecret)}); err != nil {
			t.Fatalf("hook %d: signature rejected: %v", i, err)
		}
		if err := gogs.Verify(h.body, h.sig, [][]byte{[]byte("another-secret")}); err == nil {
			t.Fatalf("hook %d: signature accepted under another secret", i)
		}
		nz, err := gogs.Normalize(gogs.Input{Event: "push", DeliveryID: h.id, Instance: "gogs", Payload: h.body})
		if err != nil {
			t.Fatalf("hook %d: normalize: %v", i, err)
		}
		var p schemas.Push
		if err := nz.Envelope.DecodeData(&p); err != nil {
			t.Fatalf("hook %d: decode push: %v", i, err)
		}
		if nz.Envelope.ID != h.id {
			t.Errorf("hook %d: envelope id %q, want the delivery id %q", i, nz.Envelope.ID, h.id)
		}
		if p.After != h.commit {
			t.Errorf("hook %d: after %q, want the hook's commit %q", i, p.After, h.commit)
		}
		if h.seq != perKind[h.kind] {
			t.Errorf("hook %d (%s): seq %d, want %d", i, h.kind, h.seq, perKind[h.kind])
		}
		perKind[h.kind]++
		want, ok := repoOf[h.kind]
		switch {
		case ok && nz.Envelope.Repo != want:
			t.Errorf("hook %d (%s): repo %q, want %q", i, h.kind, nz.Envelope.Repo, want)
		case !ok && (nz.Envelope.Repo == repoOf[kindModels] || nz.Envelope.Repo == repoOf[kindDocs] || nz.Envelope.Repo == repoOf[kindEnvsync]):
			t.Errorf("hook %d: a hook of no worker goes to %s", i, nz.Envelope.Repo)
		}
		switch h.kind {
		case kindModels:
			if p.After != models.commits[1] && p.After != models.commits[2] {
				t.Errorf("hook %d: after %q is not a commit of the served repository", i, p.After)
			}
		case kindDocs:
			if p.Before != docs.commits[h.seq] || p.After != docs.commits[h.seq+1] {
				t.Errorf("hook %d: docs push %s..%s, want commit %d of the chain", i, p.Before, p.After, h.seq+1)
			}
		case kindEnvsync:
			if p.After != env.commits[h.seq] {
				t.Errorf("hook %d: envsync push of %s, want commit %d", i, p.After, h.seq)
			}
		}
	}
	want := map[kind]int{kindModels: 4, kindDocs: 8, kindEnvsync: 8, kindOther: 20}
	if !maps.Equal(perKind, want) {
		t.Errorf("hooks per kind: %v, want %v", perKind, want)
	}
}

func TestReadyTimesOut(t *testing.T) {
	p := &proc{name: "nothing", addr: "127.0.0.1:1", done: make(chan struct{})}
	err := p.ready(t.Context(), 300*time.Millisecond)
	if !errors.Is(err, errTimeout) {
		t.Fatalf("ready on a closed port: %v, want errTimeout", err)
	}
}
