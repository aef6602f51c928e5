package runtimetest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/workers/runtime"
)

// A worker whose effect is a set of ids: idempotent by nature.
func TestSuiteOnASetWorker(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	ev := func(id string) schemas.Envelope {
		return schemas.Envelope{SpecVersion: "1.0", ID: id, Type: "forge.push", Repo: "o/r", Sender: "s",
			Subject: "refs/heads/main", Time: time.Now().UTC(), Data: []byte(`{}`)}
	}
	subject := schemas.EventSubject("gogs", "push", "o", "r")
	Run(t, Case{
		Worker: func(t *testing.T, js jetstream.JetStream) runtime.Worker {
			return runtime.Worker{Name: "set", Subjects: []string{"forge.>"},
				Handler: runtime.HandlerFunc(func(ctx context.Context, e *schemas.Envelope) (runtime.Report, error) {
					if strings.HasPrefix(e.ID, "poison") {
						return runtime.Report{}, runtime.Permanent(errors.New("poison"))
					}
					mu.Lock()
					seen[e.ID] = 1
					mu.Unlock()
					return runtime.Report{}, nil
				})}
		},
		Event:  func(t *testing.T, id string) (string, schemas.Envelope) { return subject, ev(id) },
		Poison: func(t *testing.T, id string) (string, schemas.Envelope) { return subject, ev(id) },
		Effects: func(t *testing.T, id string) int {
			mu.Lock()
			defer mu.Unlock()
			return seen[id]
		},
	})
}
