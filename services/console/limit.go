package console

import (
	"sync"
	"time"
)

// limiter counts failed sign-ins per key (client address, username) in a
// fixed window and refuses once a key has too many.
type limiter struct {
	mu     sync.Mutex
	max    int
	window time.Duration
	now    func() time.Time
	fails  map[string]*window
}

type window struct {
	start time.Time
	n     int
}

func newLimiter(max int, d time.Duration, now func() time.Time) *limiter {
	return &limiter{max: max, window: d, now: now, fails: map[string]*window{}}
}

// blocked returns how long until keys may try again; 0 when they may now.
func (l *limiter) blocked(keys ...string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	var wait time.Duration
	for _, k := range keys {
		w := l.fails[k]
		if w == nil {
			continue
		}
		if now.Sub(w.start) >= l.window {
			delete(l.fails, k)
			continue
		}
		if w.n >= l.max {
			wait = max(wait, l.window-now.Sub(w.start))
		}
	}
	return wait
}

func (l *limiter) fail(keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if len(l.fails) > 100000 {
		// Bounded memory under a flood of names: forget the oldest windows.
		for k, w := range l.fails {
			if now.Sub(w.start) >= l.window {
				delete(l.fails, k)
			}
		}
	}
	for _, k := range keys {
		w := l.fails[k]
		if w == nil || now.Sub(w.start) >= l.window {
			w = &window{start: now}
			l.fails[k] = w
		}
		w.n++
	}
}

func (l *limiter) reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.fails, key)
}
