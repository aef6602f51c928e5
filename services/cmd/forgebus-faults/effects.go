package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync"
)

// effects is the models worker's refresh endpoint: the one real effect of
// the run. It counts POSTs per event id; two for one event id is an effect
// that happened twice.
type effects struct {
	mu    sync.Mutex
	posts map[string]int
	srv   *http.Server
	url   string
}

func startEffects() (*effects, error) {
	e := &effects{posts: map[string]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	e.srv = &http.Server{Handler: http.HandlerFunc(e.serve)}
	go func() { _ = e.srv.Serve(ln) }()
	e.url = "http://" + ln.Addr().String() + "/refresh"
	return e, nil
}

func (e *effects) serve(w http.ResponseWriter, r *http.Request) {
	var body struct {
		EventID string `json:"event_id"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil || body.EventID == "" {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	e.mu.Lock()
	e.posts[body.EventID]++
	e.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// snapshot returns a copy of the counts.
func (e *effects) snapshot() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]int, len(e.posts))
	for k, v := range e.posts {
		out[k] = v
	}
	return out
}

func (e *effects) close() {
	if e != nil && e.srv != nil {
		_ = e.srv.Close()
	}
}
