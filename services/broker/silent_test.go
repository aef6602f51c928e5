package broker

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/natstest"
)

// TestConnectNoticesSilentServer: a server that goes silent (a partition:
// the TCP connection stays open, nothing comes back) is given up within
// seconds, so the client moves to another node of the cluster instead of
// waiting minutes with its requests timing out.
func TestConnectNoticesSilentServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv := natstest.Run(t)
	p := natstest.NewProxy(t, srv.URL())
	b, err := Connect(ctx, externalConfig(t, p.URL()), zerolog.Nop())
	if err != nil {
		t.Fatalf("Connect() = %v", err)
	}
	defer b.Close()
	if _, err := b.JS.AccountInfo(ctx); err != nil {
		t.Fatalf("account info through the proxy: %v", err)
	}
	p.Silence()
	start := time.Now()
	natstest.Eventually(t, 40*time.Second, "the client to give up the silent server",
		func() bool { return b.Conn.Status() != nats.CONNECTED })
	t.Logf("gave up the silent server after %s", time.Since(start).Round(time.Second))
}
