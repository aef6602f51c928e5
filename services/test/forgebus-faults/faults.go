package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/forgebus/forgebus/services/test/streamcheck"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/forgebus/forgebus/schemas"
)

func (e *env) ingestURLs() []string {
	urls := make([]string, len(e.ingest))
	for i, p := range e.ingest {
		urls[i] = "http://" + p.addr
	}
	return urls
}

// faults is the fault test: post, inject the three faults at fixed points,
// drain, count, verify.
func (e *env) faults(ctx context.Context) error {
	o := e.opts
	hooks, err := makeHooks(o.hooks, o.mix(), targets{models: e.repo, docs: e.docs, env: e.envRepo}, []byte(webhookSecret))
	if err != nil {
		return err
	}
	at := map[int]func(){
		o.hooks * 20 / 100: func() { e.restart(ctx, e.workers["models"][0], 2*time.Second) },
		o.hooks * 40 / 100: func() { e.killNATS(ctx, 5*time.Second) },
		o.hooks * 65 / 100: func() { e.restart(ctx, e.ingest[0], 2*time.Second) },
	}
	p := &poster{
		urls:     e.ingestURLs,
		client:   &http.Client{Timeout: 15 * time.Second}, // Gogs's delivery timeout
		attempts: 6,
	}
	t0 := time.Now()
	fmt.Printf("posting %d signed webhooks over %s to 2 ingest processes\n", o.hooks, o.spread)
	lr := p.run(ctx, hooks, o.spread, o.conc, at)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	fmt.Printf("posted in %s; answers: %s\n", lr.elapsed.Round(time.Millisecond), fmtCodes(lr.codes))

	tDrain := time.Now()
	if err := streamcheck.Drained(ctx, e.js, []string{schemas.StreamEvents, schemas.StreamResults, schemas.StreamDLQ}, o.drain, 500*time.Millisecond); err != nil {
		return err
	}
	fmt.Printf("drained in %s\n", time.Since(tDrain).Round(time.Millisecond))
	// A read can meet a stream that is still electing a leader after the
	// node restart: try again, from scratch, a few times.
	var c *counts
	for try := 1; ; try++ {
		if c, err = countStreams(ctx, e.js, true); err == nil {
			break
		}
		if try == 8 || ctx.Err() != nil {
			return err
		}
		fmt.Printf("count: %v; again in 2s\n", err)
		time.Sleep(2 * time.Second)
	}
	// A broken chain fails every time; a stream still settling after the
	// node restart only once: try up to three times.
	if st, err := e.js.Stream(ctx, "KV_"+envBucket); err == nil {
		c.envReplicas = st.CachedInfo().Config.Replicas
	}
	verifyOut, verifyErr := e.auditVerify(ctx)
	for try := 1; verifyErr != nil && try < 3 && ctx.Err() == nil; try++ {
		fmt.Printf("audit verify: %v: %s; again in 2s\n", verifyErr, verifyOut)
		time.Sleep(2 * time.Second)
		verifyOut, verifyErr = e.auditVerify(ctx)
	}
	return e.report(hooks, lr, c, verifyOut, verifyErr, time.Since(t0))
}

func fmtCodes(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

// checker collects failed invariants.
type checker struct{ problems []string }

func (k *checker) fail(format string, a ...any) {
	k.problems = append(k.problems, fmt.Sprintf(format, a...))
}

// workerStats is one runtime worker's block of the table.
type workerStats struct {
	name                    string
	handled                 int // terminal results, duplicates excluded
	outcomes                string
	missing, multi, onlyDup int
	deadLetters             int
	effects                 string // what ran, in words
	dupEffects              int
	extra                   [][2]string
}

// checkTerminal checks that worker has exactly one terminal result
// (duplicates aside) per stored event.
func checkTerminal(k *checker, c *counts, worker string) workerStats {
	st := workerStats{name: worker, handled: sumCounts(c.terminal[worker]), outcomes: fmtOutcomes(c.outcomes[worker]), deadLetters: c.deadLetters[worker]}
	var sample []string
	for id := range c.events {
		switch n := c.terminal[worker][id]; {
		case n == 0 && c.dupIDs[worker][id]:
			st.onlyDup++
			if len(sample) < 3 {
				sample = append(sample, id)
			}
		case n == 0:
			st.missing++
		case n > 1:
			st.multi++
		}
	}
	if st.missing > 0 {
		k.fail("%s: %d stored events have no terminal result", worker, st.missing)
	}
	if st.onlyDup > 0 {
		k.fail("%s: %d events have only a %q result: their real outcome was never published to %s (e.g. event_id %s)",
			worker, st.onlyDup, schemas.OutcomeDuplicate, schemas.StreamResults, strings.Join(sample, ", "))
	}
	if st.multi > 0 {
		k.fail("%s: %d events have more than one terminal result", worker, st.multi)
	}
	return st
}

// storedOf returns the stored hooks of kind kd.
func storedOf(hooks []hook, c *counts, kd kind) []hook {
	var out []hook
	for _, h := range hooks {
		if h.kind == kd && c.events[h.id] > 0 {
			out = append(out, h)
		}
	}
	return out
}

// tally sums effect counts per key: all of them, the keys with more than
// one (a duplicated effect), and the keys known does not own (an effect
// for an event that should not have one).
func tally(effects map[string]int, known func(string) bool) (total, dup, stray int) {
	for key, n := range effects {
		total += n
		if n > 1 {
			dup++
		}
		if !known(key) {
			stray++
		}
	}
	return total, dup, stray
}

// checkModels: one refresh POST per stored models event, none twice, none
// for another event. The models worker has no superseded outcome: every
// models event's effect must have run.
func checkModels(k *checker, st *workerStats, hooks []hook, c *counts, fx effectCounts) {
	modelsHooks := map[string]bool{}
	for _, h := range hooks {
		if h.kind == kindModels {
			modelsHooks[h.id] = true
		}
	}
	effects, dup, stray := tally(fx.posts, func(id string) bool { return modelsHooks[id] })
	st.dupEffects += dup
	stored := storedOf(hooks, c, kindModels)
	never := 0
	for _, h := range stored {
		if fx.posts[h.id] == 0 {
			never++
		}
	}
	st.effects = fmt.Sprintf("%d refresh POSTs for %d stored models events", effects, len(stored))
	if never > 0 {
		k.fail("models: %d stored models events never had their effect (refresh POST)", never)
	}
	if st.dupEffects > 0 {
		k.fail("models: %d events had their effect (refresh POST) run more than once", st.dupEffects)
	}
	if stray > 0 {
		k.fail("models: %d refresh POSTs for events that should not have one", stray)
	}
}

// checkDocs: every docs event pushes its own commit of lab/handbook, so
// builds per commit are builds per event. Newest wins: an event whose
// commit is older than the live one (by envelope time or ancestry) is
// superseded and not built; that is not a missing effect. A commit built
// twice is an event built twice: a duplicated effect. A succeeded event
// must have been built exactly once (the only success without a build,
// "already live", needs its own commit live, i.e. its own earlier build).
// And what is live at the end must be the newest commit built: an older
// build never replaces a newer one.
func checkDocs(k *checker, st *workerStats, hooks []hook, c *counts, fx effectCounts, root string) {
	byCommit := map[string]hook{}
	for _, h := range hooks {
		if h.kind == kindDocs {
			byCommit[h.commit] = h
		}
	}
	builds, dup, stray := tally(fx.builds, func(commit string) bool { _, ok := byCommit[commit]; return ok })
	st.dupEffects += dup
	stored := storedOf(hooks, c, kindDocs)
	succeeded, superseded, never, builtSuperseded := 0, 0, 0, 0
	for _, h := range stored {
		switch c.final["docs"][h.id] {
		case schemas.OutcomeSucceeded:
			succeeded++
			if fx.builds[h.commit] == 0 {
				never++
			}
		case schemas.OutcomeSuperseded:
			superseded++
			if fx.builds[h.commit] > 0 {
				builtSuperseded++
			}
		}
	}
	// Builds on one branch are serialized (a lock every replica shares),
	// so the order they reported in is the order they ran in.
	outOfOrder, newest := 0, -1
	for _, commit := range fx.order {
		seq := byCommit[commit].seq
		if seq < newest {
			outOfOrder++
		}
		newest = max(newest, seq)
	}
	st.effects = fmt.Sprintf("%d builds for %d stored docs events (%d succeeded, %d superseded)", builds, len(stored), succeeded, superseded)
	live, err := docsLive(root)
	liveDesc := "none"
	switch {
	case err != nil:
		k.fail("docs: read what is live: %v", err)
	case live != "":
		liveDesc = fmt.Sprintf("docs event #%d's commit", byCommit[live].seq)
		if h, ok := byCommit[live]; !ok || newest < 0 || h.seq != newest {
			k.fail("docs: live commit %s (docs event #%d's) is not the newest commit built (docs event #%d's)", live, byCommit[live].seq, newest)
		}
	case builds > 0:
		k.fail("docs: %d builds but nothing live", builds)
	}
	st.extra = append(st.extra,
		[2]string{"built, then superseded (a redelivery met a newer live commit)", fmt.Sprint(builtSuperseded)},
		[2]string{"builds out of commit order", fmt.Sprint(outOfOrder)},
		[2]string{"live at the end / newest built (docs events #0..)", fmt.Sprintf("%s / #%d", liveDesc, newest)})
	if never > 0 {
		k.fail("docs: %d events succeeded but their commit was never built", never)
	}
	if st.dupEffects > 0 {
		k.fail("docs: %d commits (one event each) were built more than once", st.dupEffects)
	}
	if stray > 0 {
		k.fail("docs: %d builds of commits no docs event pushed", stray)
	}
}

// docsLive is the commit lab/handbook's master has live: its state file's,
// which "current" must point at.
func docsLive(root string) (string, error) {
	dir := filepath.Join(root, docsOwner, docsRepoName, "master")
	data, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	var st struct {
		Commit string `json:"commit"`
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return "", fmt.Errorf("state.json: %w", err)
	}
	link, err := os.Readlink(filepath.Join(dir, "current"))
	if err != nil {
		return "", err
	}
	if link != "releases/"+st.Commit {
		return "", fmt.Errorf("current -> %s, but state.json says %s", link, st.Commit)
	}
	return st.Commit, nil
}

// checkEnvsync: every envsync event pushes its own commit of lab/config,
// whose env file alone holds the key E_j. envsync writes only the keys
// whose value changed (CAS on each key's revision) and records the applied
// event in a meta key, so applying event j writes E_j once; a redelivery
// finds it applied, or E_j already holding its value. A put of E_j is
// therefore event j's effect, and a second put of E_j in the bucket's
// history is event j applied twice. (Raw-file fetches are reads: a retry
// while another event holds the target, or a redelivery, fetches again;
// they are counted, not checked.) A succeeded event must have put its key.
// Newest wins by envelope time: at the end the meta key must name the
// newest stored envsync event, VERSION must be its, and E_j must be the
// only E key left.
func checkEnvsync(k *checker, st *workerStats, hooks []hook, c *counts, fx effectCounts) {
	keyPrefix := envPrefix + ".E_"
	bySeq := map[int]hook{}
	for _, h := range hooks {
		if h.kind == kindEnvsync {
			bySeq[h.seq] = h
		}
	}
	ePuts := map[string]int{}
	for key, n := range c.kv.puts {
		if rest, ok := strings.CutPrefix(key, keyPrefix); ok {
			ePuts[rest] = n
		}
	}
	puts, dup, stray := tally(ePuts, func(rest string) bool {
		j, err := strconv.Atoi(rest)
		h, ok := bySeq[j]
		return err == nil && ok && c.events[h.id] > 0
	})
	st.dupEffects += dup
	var live []string
	for key := range c.kv.last {
		if strings.HasPrefix(key, keyPrefix) {
			live = append(live, strings.TrimPrefix(key, envPrefix+"."))
		}
	}
	slices.Sort(live)
	stored := storedOf(hooks, c, kindEnvsync)
	succeeded, superseded, never, putSuperseded := 0, 0, 0, 0
	var newest *hook
	for i, h := range stored {
		key := envPrefix + "." + envKey(h.seq)
		switch c.final["envsync"][h.id] {
		case schemas.OutcomeSucceeded:
			succeeded++
			if c.kv.puts[key] == 0 {
				never++
			}
		case schemas.OutcomeSuperseded:
			superseded++
			if c.kv.puts[key] > 0 {
				putSuperseded++
			}
		}
		t := c.eventTime[h.id]
		if newest == nil || t.After(c.eventTime[newest.id]) || (t.Equal(c.eventTime[newest.id]) && h.id > newest.id) {
			newest = &stored[i]
		}
	}
	fetches, refetched := 0, 0
	for _, n := range fx.fetches {
		fetches += n
		if n > 1 {
			refetched++
		}
	}
	st.effects = fmt.Sprintf("%d puts of E_j keys for %d stored envsync events (%d succeeded, %d superseded)", puts, len(stored), succeeded, superseded)
	st.extra = append(st.extra,
		[2]string{"put, then superseded (the claim was taken over)", fmt.Sprint(putSuperseded)},
		[2]string{"raw-file fetches (reads; commits fetched more than once)", fmt.Sprintf("%d (%d)", fetches, refetched)},
		[2]string{"E keys live at the end", strings.Join(live, ",")})
	if newest != nil {
		var m struct {
			EventID string `json:"event_id"`
			State   string `json:"state"`
		}
		metaVal, ok := c.kv.last["__forgebus_meta."+envPrefix]
		if ok {
			ok = json.Unmarshal([]byte(metaVal), &m) == nil
		}
		version := c.kv.last[envPrefix+".VERSION"]
		st.extra = append(st.extra, [2]string{"newest event by envelope time / VERSION at the end", fmt.Sprintf("envsync event #%d / %s", newest.seq, version)})
		switch {
		case c.final["envsync"][newest.id] == schemas.OutcomeDeadLettered:
			k.fail("envsync: the newest event %s was dead-lettered", newest.id)
		case !ok || m.EventID != newest.id || m.State != "applied":
			k.fail("envsync: the bucket's meta record names event %q (%s), not the newest event %s", m.EventID, m.State, newest.id)
		case version != strconv.Itoa(newest.seq) || !slices.Equal(live, []string{envKey(newest.seq)}):
			k.fail("envsync: the bucket holds VERSION=%s and E keys %v, want the newest event's: %d and %s", version, live, newest.seq, envKey(newest.seq))
		}
	}
	if fx.badAPI > 0 {
		k.fail("envsync: %d Gogs API calls were refused (401) or missed (404)", fx.badAPI)
	}
	if never > 0 {
		k.fail("envsync: %d events succeeded but never put their key", never)
	}
	if st.dupEffects > 0 {
		k.fail("envsync: %d events had their key put more than once", st.dupEffects)
	}
	if stray > 0 {
		k.fail("envsync: %d keys put for events that were not stored", stray)
	}
}

// report prints the table and returns errCheck when an invariant fails.
func (e *env) report(hooks []hook, lr loadResult, c *counts, verifyOut string, verifyErr error, total time.Duration) error {
	k := &checker{}
	lost, dupStored, unknown := 0, 0, 0
	for id := range lr.accepted {
		if c.events[id] == 0 {
			lost++
		}
	}
	posted := map[string]bool{}
	for _, h := range hooks {
		posted[h.id] = true
	}
	for id, n := range c.events {
		if n > 1 {
			dupStored++
		}
		if !posted[id] {
			unknown++
		}
	}
	stored := len(c.events)
	if e.opts.envsyncEvery > 0 && c.envReplicas != 3 {
		k.fail("envsync created its bucket %s with %d replicas, want 3 (FORGEBUS_STREAM_REPLICAS)", envBucket, c.envReplicas)
	}
	if lost > 0 {
		k.fail("%d deliveries answered 2xx are not in %s", lost, schemas.StreamEvents)
	}
	if dupStored > 0 {
		k.fail("%d delivery ids are in %s more than once", dupStored, schemas.StreamEvents)
	}
	if unknown > 0 {
		k.fail("%d events in %s were never posted", unknown, schemas.StreamEvents)
	}

	fx := e.fx.snapshot()
	var stats []workerStats
	for _, w := range e.runtimeWorkers() {
		st := checkTerminal(k, c, w)
		switch w {
		case "models":
			checkModels(k, &st, hooks, c, fx)
		case "docs":
			checkDocs(k, &st, hooks, c, fx, e.docsRoot())
		case "envsync":
			checkEnvsync(k, &st, hooks, c, fx)
		}
		stats = append(stats, st)
	}
	// Audit: one event record per stored event.
	auditMissing, auditDup := 0, 0
	for id := range c.events {
		switch n := c.auditEvents[id]; {
		case n == 0:
			auditMissing++
		case n > 1:
			auditDup++
		}
	}
	if auditMissing > 0 || auditDup > 0 {
		k.fail("audit: %d stored events without an event record, %d with more than one", auditMissing, auditDup)
	}
	if verifyErr != nil {
		k.fail("forgebus audit verify: %v: %s", verifyErr, verifyOut)
	}

	fmt.Println()
	fmt.Println("faults injected:")
	for _, f := range e.notes {
		fmt.Println("  " + f)
	}
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "  %s\t%v\n", k, v) }
	row("posted (distinct deliveries)", lr.posted)
	row("accepted (answered 2xx)", len(lr.accepted))
	row("never accepted (gave up)", lr.failed)
	row("needed a retry", lr.retried)
	row("stored in FORGE_EVENTS", stored)
	row("lost (accepted, not stored)", lost)
	row("duplicated in FORGE_EVENTS", dupStored)
	for _, st := range stats {
		row(fmt.Sprintf("handled by %s (terminal results)", st.name), st.handled)
		row("  outcomes", st.outcomes)
		row("  events with 0 / >1 terminal results", fmt.Sprintf("%d / %d", st.missing, st.multi))
		row("  events whose only result is \"duplicate\"", st.onlyDup)
		row("  dead letters (FORGE_DLQ)", st.deadLetters)
		row("  effects run", st.effects)
		for _, x := range st.extra {
			row("  "+x[0], x[1])
		}
		row("  duplicated effects", st.dupEffects)
	}
	row("handled by audit (event records)", len(c.auditEvents))
	row("  events with 0 / >1 event records", fmt.Sprintf("%d / %d", auditMissing, auditDup))
	row("  audit records / results / dead letters", fmt.Sprintf("%d / %d / %d", c.auditRecords, c.resultsMsgs, c.dlqMsgs))
	row("forgebus audit verify", firstLine(verifyOut))
	e.mu.Lock()
	exits := strings.Join(e.exits, ", ")
	e.mu.Unlock()
	if exits == "" {
		exits = "none"
	}
	row("unplanned process exits (restarted)", exits)
	row("wall time", total.Round(time.Second))
	tw.Flush()
	fmt.Println()
	if len(k.problems) > 0 {
		for _, p := range k.problems {
			fmt.Println("FAIL: " + p)
		}
		return fmt.Errorf("%d problems: %w", len(k.problems), errCheck)
	}
	dups := make([]string, len(stats))
	for i, st := range stats {
		dups[i] = fmt.Sprintf("%s %d", st.name, st.dupEffects)
	}
	fmt.Printf("PASS: lost = 0, duplicated events = 0, duplicated effects = 0 (%s), one terminal result per event per worker (%s), one audit record per event, audit chain verified\n",
		strings.Join(dups, ", "), strings.Join(e.runtimeWorkers(), ", "))
	return nil
}

func sumCounts(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func fmtOutcomes(m map[schemas.Outcome]int) string {
	s := map[string]int{}
	for k, v := range m {
		s[string(k)] = v
	}
	return fmtCodes(s)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
