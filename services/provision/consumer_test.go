package provision

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/forgebus/forgebus/natstest"
	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/services/config"
	"github.com/forgebus/forgebus/workers/runtime"
)

func TestWorkerIdempotent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, js := natstest.Run(t).Connect(t)
	if err := Streams(ctx, js, config.Default().Streams); err != nil {
		t.Fatal(err)
	}
	w := runtime.Worker{
		Name:     "docs",
		Subjects: []string{"forge.gogs.push.>", "forge.gogs.delete.>"},
		Handler:  runtime.HandlerFunc(func(context.Context, *schemas.Envelope) (runtime.Report, error) { return runtime.Report{}, nil }),
		Settings: runtime.DefaultSettings(),
	}
	for i := range 2 {
		if err := Worker(ctx, js, w); err != nil {
			t.Fatalf("Worker() run %d = %v", i+1, err)
		}
	}
	c, err := js.Consumer(ctx, schemas.StreamEvents, "docs")
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.CachedInfo().Config
	if cfg.Durable != "docs" || len(cfg.FilterSubjects) != 2 || cfg.AckWait != 30*time.Second || cfg.MaxDeliver != -1 {
		t.Errorf("consumer config = %+v", cfg)
	}
	kv, err := js.KeyValue(ctx, "forgebus_idem_docs")
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil || st.TTL() != 7*24*time.Hour {
		t.Errorf("bucket status = %v, %v", st, err)
	}

	// A changed ack wait is applied.
	w.Settings.AckWait = time.Minute
	if err := Worker(ctx, js, w); err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil || info.Config.AckWait != time.Minute {
		t.Errorf("ack wait after update = %v, %v", info.Config.AckWait, err)
	}

	w.Name = "no.dots"
	if err := Worker(ctx, js, w); !errors.Is(err, runtime.ErrInvalidWorker) {
		t.Errorf("Worker(bad name) = %v, want ErrInvalidWorker", err)
	}
}
