package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/services/history"
	"github.com/forgebus/forgebus/workers/runtime"
)

// outcomeUpdate is the "outcome" server-sent event: a worker's new result.
type outcomeUpdate struct {
	EventID string          `json:"event_id"`
	Worker  string          `json:"worker"`
	Outcome schemas.Outcome `json:"outcome"`
	Repo    string          `json:"repo"`
}

// stream sends server-sent events while the session lasts: "delivery" for
// each new event and "outcome" for each new result, of the repositories
// the session may see.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, sess *Session) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		s.refuse(w, r, http.StatusInternalServerError, "streaming unsupported")
		return
	}
	ctx := r.Context()
	type item struct {
		kind string
		data any
	}
	out := make(chan item, 64)
	// A page passes the time it was rendered, so what happened between the
	// render and this connection is not lost; at most ten minutes back.
	cc := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy}
	if t, err := time.Parse(time.RFC3339Nano, r.URL.Query().Get("since")); err == nil {
		if now := s.cfg.Now(); t.After(now.Add(-10*time.Minute)) && !t.After(now) {
			cc.DeliverPolicy, cc.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
		}
	}
	// consume feeds out from stream until the returned stop, which also
	// removes the feed's consumer.
	consume := func(stream string, fn func(jetstream.Msg) (item, bool)) (stop func(), err error) {
		c, done, err := runtime.OrderedReader(ctx, s.js, stream, cc)
		if err != nil {
			return nil, err
		}
		feed, err := c.Consume(func(m jetstream.Msg) {
			if it, ok := fn(m); ok {
				select {
				case out <- it:
				case <-ctx.Done():
				}
			}
		})
		if err != nil {
			done()
			return nil, err
		}
		return func() { feed.Stop(); done() }, nil
	}
	events, err := consume(schemas.StreamEvents, func(m jetstream.Msg) (item, bool) {
		if m.Headers().Get(runtime.ReplayHeader) != "" {
			return item{}, false
		}
		var ev schemas.Envelope
		if json.Unmarshal(m.Data(), &ev) != nil || !sess.Allows(ev.Repo) {
			return item{}, false
		}
		md, _ := m.Metadata()
		var seq uint64
		if md != nil {
			seq = md.Sequence.Stream
		}
		return item{"delivery", history.Summary(&ev, seq, m.Subject())}, true
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer events()
	results, err := consume(schemas.StreamResults, func(m jetstream.Msg) (item, bool) {
		var res schemas.Result
		if json.Unmarshal(m.Data(), &res) != nil || !sess.Allows(res.Repo) {
			return item{}, false
		}
		return item{"outcome", outcomeUpdate{EventID: res.EventID, Worker: res.Worker, Outcome: res.Outcome, Repo: res.Repo}}, true
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer results()

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": connected\n\n")
	flusher.Flush()
	expire := time.NewTimer(time.Until(sess.Expires))
	defer expire.Stop()
	keep := time.NewTicker(15 * time.Second)
	defer keep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-expire.C:
			fmt.Fprint(w, "event: expired\ndata: {}\n\n")
			flusher.Flush()
			return
		case <-keep.C:
			fmt.Fprint(w, ": keep-alive\n\n")
			flusher.Flush()
		case it := <-out:
			b, err := json.Marshal(it.data)
			if err != nil {
				continue
			}
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", it.kind, b)
			flusher.Flush()
		}
	}
}
