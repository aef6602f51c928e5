package natstest

import (
	"bytes"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy is a TCP proxy on 127.0.0.1 in front of a server, for the network
// faults a client must survive: [Proxy.Silence] (a partition: the sockets
// stay open, every byte is dropped both ways, no FIN or RST reaches
// either side) and [Proxy.CutOn] (a node dying with a request on its way:
// that request is dropped and the connection cut). It is closed by
// t.Cleanup.
type Proxy struct {
	ln     net.Listener
	target string
	silent atomic.Bool

	mu      sync.Mutex
	conns   []net.Conn
	trigger []byte
	cut     string // the chunk CutOn dropped
	wg      sync.WaitGroup
}

// NewProxy starts a proxy to url (nats://host:port).
func NewProxy(t testing.TB, url string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("natstest: proxy: %v", err)
	}
	p := &Proxy{ln: ln, target: strings.TrimPrefix(url, "nats://")}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

// URL is the address clients dial instead of the server's.
func (p *Proxy) URL() string { return "nats://" + p.ln.Addr().String() }

// Silence makes the proxy drop every byte from now on, keeping the
// connections open.
func (p *Proxy) Silence() { p.silent.Store(true) }

// CutOn arms a one-time cut: the first chunk a client writes after this
// that holds trigger is dropped, and that client's connection closed at
// both ends. Later connections are forwarded as they are.
func (p *Proxy) CutOn(trigger string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.trigger = []byte(trigger)
}

// Cut returns the chunk CutOn dropped, or "" before the cut.
func (p *Proxy) Cut() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut
}

func (p *Proxy) serve() {
	defer p.wg.Done()
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
		p.wg.Add(2)
		go func() { defer p.wg.Done(); p.pipe(c, u, true) }()
		go func() { defer p.wg.Done(); p.pipe(u, c, false) }()
	}
}

// pipe copies src to dst; fromClient chunks are checked against CutOn's
// trigger.
func (p *Proxy) pipe(src, dst net.Conn, fromClient bool) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && fromClient && p.cutHere(buf[:n]) {
			src.Close()
			dst.Close()
			return
		}
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

// cutHere reports whether chunk is the one CutOn waits for, and disarms it.
func (p *Proxy) cutHere(chunk []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.trigger == nil || !bytes.Contains(chunk, p.trigger) {
		return false
	}
	p.trigger, p.cut = nil, string(chunk)
	return true
}

func (p *Proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
