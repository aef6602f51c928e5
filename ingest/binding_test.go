package ingest

import (
	"net/http"
	"sort"
	"testing"

	"github.com/google/uuid"
)

// TestRelabelledEventRefused: the signature covers the body, not
// X-Gogs-Event. Every captured signed JSON body, posted with its own valid
// signature under the name of each other known event and a fresh delivery
// id, must be refused with 400 and leave the stream as it was.
func TestRelabelledEventRefused(t *testing.T) {
	b := newBroker(t)
	h := newHandler(t, signedConfig(fixtureSecret), b.js)

	byEvent := map[string]*fixture{}
	for _, f := range loadFixtures(t) {
		if f.unsigned() || f.Headers["Content-Type"] != "application/json" {
			continue
		}
		if _, ok := byEvent[f.event()]; !ok {
			byEvent[f.event()] = f
		}
	}
	events := make([]string, 0, len(byEvent))
	for e := range byEvent {
		events = append(events, e)
	}
	sort.Strings(events)
	if len(events) != 8 {
		t.Fatalf("captured events %v, want the 8 known ones", events)
	}
	for _, from := range events {
		for _, to := range events {
			if from == to {
				continue
			}
			t.Run(from+"_as_"+to, func(t *testing.T) {
				f := byEvent[from]
				before := b.count(t)
				r := f.request()
				r.Header.Set(HeaderEvent, to)
				r.Header.Set(HeaderDelivery, uuid.NewString())
				resp := serve(t, h, r)
				if resp.Code != http.StatusBadRequest || !resp.hasErrorKV {
					t.Errorf("%s body labelled %s: %d %s, want 400", from, to, resp.Code, resp.Raw)
				}
				if got := b.count(t); got != before {
					t.Errorf("stream went from %d to %d messages", before, got)
				}
			})
		}
	}
}
