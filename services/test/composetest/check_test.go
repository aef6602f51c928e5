package main

import (
	"slices"
	"strings"
	"testing"
)

// fullCounts is what the streams hold when every id was stored once and
// handled once by every worker and the audit worker.
func fullCounts(ids ...string) *counts {
	c := &counts{events: map[string]int{}, terminal: map[string]map[string]int{}, dupes: map[string]int{}, audit: map[string]int{}}
	for _, w := range workers {
		c.terminal[w] = map[string]int{}
	}
	for _, id := range ids {
		c.events[id] = 1
		c.audit[id] = 1
		for _, w := range workers {
			c.terminal[w][id] = 1
		}
	}
	return c
}

func TestJudge(t *testing.T) {
	sent := map[string]bool{"a": true, "b": true, "c": false}
	tests := []struct {
		name   string
		mutate func(*counts)
		want   []string // substrings of the problems, in order; none for a pass
	}{
		{"all once", func(*counts) {}, nil},
		{"a 2xx delivery not stored", func(c *counts) { delete(c.events, "b") }, []string{"1 deliveries answered 2xx are not stored"}},
		{"stored twice", func(c *counts) { c.events["a"] = 2 }, []string{"1 deliveries stored more than once"}},
		{"effect twice", func(c *counts) { c.terminal["models"]["a"] = 2 }, []string{"models: 1 events with more than one terminal result"}},
		{"no result", func(c *counts) { delete(c.terminal["docs"], "b") }, []string{"docs: 1 stored events without a terminal result"}},
		{"audit twice", func(c *counts) { c.audit["a"] = 2 }, []string{"audit: 1 events recorded more than once"}},
		{"audit missing", func(c *counts) { delete(c.audit, "a") }, []string{"audit: 1 stored events not recorded"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := fullCounts("a", "b") // "c" got no 2xx and was not stored: no problem
			tc.mutate(c)
			got := judge(c, sent).problems()
			if len(got) != len(tc.want) {
				t.Fatalf("problems = %q, want %d like %q", got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to say %q", i, got[i], w)
				}
			}
		})
	}
	t.Run("stored without a 2xx", func(t *testing.T) {
		v := judge(fullCounts("a", "b", "c"), sent)
		if p := v.problems(); len(p) != 0 || v.storedNon2xx != 1 || v.stored != 3 {
			t.Errorf("stored %d, of them non-2xx %d, problems %q; want 3, 1, none", v.stored, v.storedNon2xx, p)
		}
	})
}

func TestMakeDeliveriesUnique(t *testing.T) {
	caps, err := loadCaptures("../../..")
	if err != nil {
		t.Fatal(err)
	}
	ds, err := makeDeliveries(caps, 50, []byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	var ids, bodies, sigs []string
	for _, d := range ds {
		if d.event != "push" {
			t.Errorf("event %q, want push", d.event)
		}
		ids, bodies, sigs = append(ids, d.id), append(bodies, string(d.body)), append(sigs, d.sig)
	}
	for name, l := range map[string][]string{"delivery ids": ids, "bodies": bodies, "signatures": sigs} {
		slices.Sort(l)
		if len(slices.Compact(l)) != len(ds) {
			t.Errorf("%s repeat: ingest would take a delivery for a duplicate", name)
		}
	}
}
