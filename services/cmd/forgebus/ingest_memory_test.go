package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/forgebus/forgebus/natstest"
)

// stalledConns is how many connections the attack opens.
const stalledConns = 2000

// TestIngestMemoryBeforeAuth: connections that send headers claiming a
// 5 MB body and then stall, before any signature could be checked, keep
// the real ingest process's resident memory under 300 MiB, and a normal
// delivery still gets 202 meanwhile.
func TestIngestMemoryBeforeAuth(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary, opens 2,000 connections")
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur < 2*stalledConns+512 {
		lim.Cur = min(lim.Max, 2*stalledConns+512)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < 2*stalledConns+512 {
			t.Skipf("open files limit %d is too low for %d connections (ulimit -n)", lim.Cur, stalledConns)
		}
	}
	srv := natstest.Run(t)
	httpAddr := freeAddr(t)
	base := "http://" + httpAddr
	ing := start(t, []string{
		"FORGEBUS_DATA_DIR=" + t.TempDir(),
		"FORGEBUS_HTTP_ADDR=" + httpAddr,
		"FORGEBUS_NATS_URL=" + srv.URL(),
		"FORGEBUS_GOGS_SECRETS=fixture-secret-1",
		"FORGEBUS_LOG_LEVEL=error",
		"FORGEBUS_LOG_FORMAT=json",
	}, "ingest")
	natstest.Eventually(t, 30*time.Second, "ingest /readyz 200", func() bool {
		if ing.exited() {
			t.Fatalf("ingest exited early: %v\n%s", ing.err, ing.stderr)
		}
		return httpStatus(base+"/readyz") == http.StatusOK
	})
	pid := ing.cmd.Process.Pid
	before := vmRSS(t, pid)

	head := "POST /hooks/gogs HTTP/1.1\r\nHost: " + httpAddr + "\r\nContent-Type: application/json\r\n" +
		"X-Gogs-Event: push\r\nX-Gogs-Delivery: stall\r\nContent-Length: 5000000\r\n\r\n"
	conns := make([]net.Conn, 0, stalledConns)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range stalledConns {
		c, err := net.DialTimeout("tcp", httpAddr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial after %d connections: %v", len(conns), err)
		}
		conns = append(conns, c)
		if _, err := c.Write([]byte(head)); err != nil {
			t.Fatalf("write headers: %v", err)
		}
	}
	// Every stalled request has reached the handler (in flight) or been
	// answered (refused past the in-flight bound) before memory is read.
	natstest.Eventually(t, 60*time.Second, "the stalled requests reach the handler", func() bool {
		inFlight := max(0, metric(t, base, "forgebus_ingest_in_flight"))
		refused := max(0, metric(t, base, `forgebus_ingest_requests_total{event="unverified",status="503"}`))
		return inFlight+refused >= stalledConns
	})
	peak := vmRSS(t, pid)
	t.Logf("resident memory: %d MiB before, %d MiB with %d stalled connections", before>>20, peak>>20, stalledConns)
	if peak > 300<<20 {
		t.Errorf("resident memory %d MiB with %d stalled connections, want under 300 MiB", peak>>20, stalledConns)
	}
	resp, body := postFixture(t, base+"/hooks/gogs", "push-multi-commit.json")
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("normal delivery during the stall: %d %s, want 202", resp.StatusCode, body)
	}
}

// vmRSS reads the resident set size of process pid, in bytes.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}
