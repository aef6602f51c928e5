package envsync

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/workers/gogsapi"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// A replica claimed the target for an older event, wrote a key, and died.
// A newer event waits while the claim is fresh, then takes over and also
// removes what the abandoned apply wrote.
func TestAbandonedClaimIsTakenOver(t *testing.T) {
	h := newHarness(t)
	clock := &fakeClock{t: time.Date(2026, 11, 24, 13, 0, 0, 0, time.UTC)}
	api, _ := gogsapi.New(h.srv.URL, "good-token")
	w, err := New(baseCfg(), Deps{KV: h.js, API: api, Log: zerolog.New(h.logs), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	h.gogs.set(sha(1), envPath, "A=1\n")
	if _, err := h.handle(w, push("ev-1", t0, sha(1))); err != nil {
		t.Fatal(err)
	}

	// The dead replica's work: a claim for ev-2 and one key written.
	kv, _ := h.js.KeyValue(context.Background(), DefaultBucket)
	e, _ := kv.Get(context.Background(), metaRoot+"."+prefix)
	var m meta
	_ = json.Unmarshal(e.Value(), &m)
	m.State, m.EventID, m.Time, m.ClaimedAt, m.Pending = stateApplying, "ev-2", t0.Add(time.Second), clock.Now(), []string{"A", "HALF"}
	b, _ := json.Marshal(m)
	if _, err := kv.Update(context.Background(), metaRoot+"."+prefix, b, e.Revision()); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), prefix+".HALF", []byte(secret)); err != nil {
		t.Fatal(err)
	}

	h.gogs.set(sha(3), envPath, "A=3\n")
	ev3 := push("ev-3", t0.Add(2*time.Second), sha(3))
	if _, err := h.handle(w, ev3); !errors.Is(err, ErrBusy) {
		t.Fatalf("while the claim is fresh: err = %v, want ErrBusy", err)
	}
	clock.Add(DefaultClaimTTL + time.Second)
	rep, err := h.handle(w, ev3)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Detail["keys_deleted"] != "HALF" || rep.Detail["keys_put"] != "A" {
		t.Fatalf("takeover: %+v", rep.Detail)
	}
	vals, _ := kvState(t, h.js)
	wantEnv(t, vals, map[string]string{"A": "3"})

	// The event the dead replica was applying comes back: it is older.
	h.gogs.set(sha(2), envPath, "A=2\nHALF="+secret+"\n")
	rep, err = h.handle(w, push("ev-2", t0.Add(time.Second), sha(2)))
	if err != nil || rep.Outcome != schemas.OutcomeSuperseded {
		t.Fatalf("late ev-2: %+v, %v", rep, err)
	}
}

// A retry of the same event is never blocked by its own claim.
func TestOwnClaimIsRetaken(t *testing.T) {
	h := newHarness(t)
	w := h.worker(baseCfg(), "good-token")
	kv, err := w.bucket(context.Background(), DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	m := meta{Time: t0, EventID: "ev-1", Commit: sha(1), State: stateApplying, ClaimedAt: time.Now().UTC()}
	b, _ := json.Marshal(m)
	if _, err := kv.Create(context.Background(), metaRoot+"."+prefix, b); err != nil {
		t.Fatal(err)
	}
	h.gogs.set(sha(1), envPath, "A=1\n")
	if _, err := h.handle(w, push("ev-1", t0, sha(1))); err != nil {
		t.Fatalf("retry of the claiming event: %v", err)
	}
	vals, _ := kvState(t, h.js)
	wantEnv(t, vals, map[string]string{"A": "1"})
}

func TestSubjects(t *testing.T) {
	w := &Worker{}
	got := w.Subjects("git.example.com")
	if len(got) != 1 || got[0] != "forge.git%2Eexample%2Ecom.push.*.*" {
		t.Fatalf("Subjects = %v", got)
	}
}
