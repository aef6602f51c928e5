package broker

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/natstest"
)

// blackhole is a TCP proxy on 127.0.0.1 to a server that can go silent:
// it then drops every byte both ways and keeps the sockets open, as a
// network partition does (no FIN, no RST reaches either side).
type blackhole struct {
	ln     net.Listener
	target string
	silent atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

func newBlackhole(t *testing.T, target string) *blackhole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &blackhole{ln: ln, target: target}
	t.Cleanup(p.close)
	go p.serve()
	return p
}

func (p *blackhole) url() string { return "nats://" + p.ln.Addr().String() }

func (p *blackhole) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		go p.pipe(c, u)
		go p.pipe(u, c)
	}
}

// pipe copies from src to dst until silent, then reads and drops.
func (p *blackhole) pipe(src, dst net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.silent.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *blackhole) close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

// TestConnectNoticesSilentServer: a server that goes silent (a partition:
// the TCP connection stays open, nothing comes back) is given up within
// seconds, so the client moves to another node of the cluster instead of
// waiting minutes with its requests timing out.
func TestConnectNoticesSilentServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv := natstest.Run(t)
	p := newBlackhole(t, srv.URL()[len("nats://"):])
	b, err := Connect(ctx, externalConfig(t, p.url()), zerolog.Nop())
	if err != nil {
		t.Fatalf("Connect() = %v", err)
	}
	defer b.Close()
	if _, err := b.JS.AccountInfo(ctx); err != nil {
		t.Fatalf("account info through the proxy: %v", err)
	}
	p.silent.Store(true)
	start := time.Now()
	natstest.Eventually(t, 40*time.Second, "the client to give up the silent server",
		func() bool { return b.Conn.Status() != nats.CONNECTED })
	t.Logf("gave up the silent server after %s", time.Since(start).Round(time.Second))
}
