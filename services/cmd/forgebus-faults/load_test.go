package main

import (
	"errors"
	"testing"
	"time"

	"github.com/forgebus/forgebus/ingest/gogs"
	"github.com/forgebus/forgebus/schemas"
)

// TestMakeHooks checks that the deliveries the fault test posts are what
// ingest accepts and what the models worker acts on: signed with the
// webhook secret (and with nothing else), normalized into pushes to the
// intended repository and commit, each with its own delivery id.
func TestMakeHooks(t *testing.T) {
	repo := &gitRepo{owner: modelsOwner, name: modelsRepo, commits: []string{
		"1111111111111111111111111111111111111111",
		"2222222222222222222222222222222222222222",
		"3333333333333333333333333333333333333333",
	}}
	hooks, err := makeHooks(40, 10, repo, []byte(webhookSecret))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	models := 0
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
		n, err := gogs.Normalize(gogs.Input{Event: "push", DeliveryID: h.id, Instance: "gogs", Payload: h.body})
		if err != nil {
			t.Fatalf("hook %d: normalize: %v", i, err)
		}
		var p schemas.Push
		if err := n.Envelope.DecodeData(&p); err != nil {
			t.Fatalf("hook %d: decode push: %v", i, err)
		}
		if n.Envelope.ID != h.id {
			t.Errorf("hook %d: envelope id %q, want the delivery id %q", i, n.Envelope.ID, h.id)
		}
		if h.models {
			models++
			if n.Envelope.Repo != modelsOwner+"/"+modelsRepo {
				t.Errorf("hook %d: repo %q, want the models repository", i, n.Envelope.Repo)
			}
			if p.After != repo.commits[1] && p.After != repo.commits[2] {
				t.Errorf("hook %d: after %q is not a commit of the served repository", i, p.After)
			}
		} else if n.Envelope.Repo == modelsOwner+"/"+modelsRepo {
			t.Errorf("hook %d: a non-models hook goes to the models repository", i)
		}
	}
	if models != 4 {
		t.Errorf("models hooks: %d, want 4 (every 10th of 40)", models)
	}
}

func TestReadyTimesOut(t *testing.T) {
	p := &proc{name: "nothing", addr: "127.0.0.1:1", done: make(chan struct{})}
	err := p.ready(t.Context(), 300*time.Millisecond)
	if !errors.Is(err, errTimeout) {
		t.Fatalf("ready on a closed port: %v, want errTimeout", err)
	}
}
