package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/forgebus/forgebus/ingest"
	"github.com/forgebus/forgebus/ingest/spool"
)

// spoolAdapter is the same adapter the forgebus command uses.
type spoolAdapter struct{ s *spool.Spool }

func (a spoolAdapter) Append(msgID, subject string, data []byte) error {
	err := a.s.Append(spool.Entry{MsgID: msgID, Subject: subject, Data: data})
	if errors.Is(err, spool.ErrFull) {
		return fmt.Errorf("%w: %w", ingest.ErrSpoolFull, err)
	}
	return err
}

func (a spoolAdapter) Depth() int { return a.s.Depth() }

// benchSpool measures accepted webhooks per second with the broker down
// (every delivery fsync'd into the spool), beside the same handler with the
// broker up and the spool empty.
func benchSpool(ctx context.Context, st *stack, fx fixtureFile, o options) error {
	dir := filepath.Join(st.dir, "spool")
	sp, err := spool.Open(dir, spool.Limits{MaxBytes: 4 << 30, MaxEntries: 1_000_000}, quietLogger())
	if err != nil {
		return err
	}
	defer sp.Close()

	// A broker of its own, to be stopped, so the main one stays up.
	downDir, err := os.MkdirTemp(st.dir, "down-")
	if err != nil {
		return err
	}
	down, err := startServer(downDir, nil)
	if err != nil {
		return err
	}
	nc, js, err := connect(down.ClientURL())
	if err != nil {
		return err
	}
	defer nc.Close()

	cfg := ingest.Config{Secrets: [][]byte{[]byte(benchSecret)}}
	upH, err := ingest.NewHandler(cfg, st.ingestJS, quietLogger(), ingest.WithSpool(spoolAdapter{sp}))
	if err != nil {
		return err
	}
	downH, err := ingest.NewHandler(cfg, js, quietLogger(), ingest.WithSpool(spoolAdapter{sp}))
	if err != nil {
		return err
	}
	upURL, err := st.serve(upH)
	if err != nil {
		return err
	}
	downURL, err := st.serve(downH)
	if err != nil {
		return err
	}
	down.Shutdown()
	down.WaitForShutdown()

	req := request{body: fx.Body, contentType: "application/json", event: fx.Headers["X-Gogs-Event"], secret: []byte(benchSecret)}
	upReq, downReq := req, req
	upReq.url = upURL + "/hooks/gogs"
	downReq.url = downURL + "/hooks/gogs"
	n := o.requests / 2

	upRes, err := post(ctx, upReq, n, o.clients)
	if err != nil {
		return err
	}
	downRes, err := post(ctx, downReq, n, o.clients)
	if err != nil {
		return err
	}
	if downRes.ok != downRes.sent {
		return fmt.Errorf("spool run: only %d of %d answered 2xx: %v", downRes.ok, downRes.sent, downRes.codes)
	}
	fmt.Printf("ingest with the broker down (spooling, fsync per group commit), %d clients, %d requests\n", o.clients, n)
	fmt.Printf("  broker up            %s\n", upRes)
	fmt.Printf("  broker down, spooled %s\n", downRes)
	fmt.Printf("  spool depth after run %d\n\n", sp.Depth())
	return nil
}
