package envsync

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/workers/gogsapi"
)

// TestLogNamesWorkerOnce: the program hands the worker a logger that
// already names it, as for docs and models; no line may carry "worker"
// twice (a JSON reader keeps one of the two, or refuses the line).
func TestLogNamesWorkerOnce(t *testing.T) {
	h := newHarness(t)
	api, err := gogsapi.New(h.srv.URL, "good-token")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := New(baseCfg(), Deps{KV: h.js, API: api, Log: zerolog.New(&buf).With().Str("worker", Name).Logger()})
	if err != nil {
		t.Fatal(err)
	}
	h.gogs.set(sha(1), envPath, "A=1\n")
	if _, err := h.handle(w, push("ev-1", t0, sha(1))); err != nil {
		t.Fatal(err)
	}
	lines := 0
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		lines++
		if n := strings.Count(sc.Text(), `"worker":`); n != 1 {
			t.Errorf("log line has \"worker\" %d times: %s", n, sc.Text())
		}
	}
	if lines == 0 {
		t.Fatal("the worker logged nothing for an applied push")
	}
}
