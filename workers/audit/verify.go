package audit

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/forgebus/forgebus/schemas"
)

// MaxRecordSize bounds one line of an exported file.
const MaxRecordSize = 1 << 20

// maxProblems bounds the problems a report lists; the first is what matters.
const maxProblems = 50

// What a [Problem] is about.
const (
	ProblemChain     = "chain"     // a record is malformed, edited, missing or out of order
	ProblemSignature = "signature" // unsigned, badly signed, or signed by a key not trusted
	ProblemAnchor    = "anchor"    // the log does not start at genesis or a signed checkpoint
	ProblemConfig    = "config"    // FORGE_AUDIT is configured so records can go unnoticed
	ProblemCoverage  = "coverage"  // a source message has no record
	ProblemHead      = "head"      // the log no longer holds a head kept elsewhere
)

// Head is a signed chain head, for an operator to keep outside the bus and
// give back to verify later (--since-head). Sig is the record's own
// signature by Key over its hash.
type Head struct {
	Seq  uint64    `json:"seq"`
	Hash string    `json:"hash"`
	Time time.Time `json:"time"`
	Key  string    `json:"key"`
	Sig  string    `json:"sig"`
}

// ReadHead decodes a head as "forgebus audit head" prints it.
func ReadHead(r io.Reader) (Head, error) {
	var h Head
	dec := json.NewDecoder(io.LimitReader(r, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return Head{}, fmt.Errorf("read audit head: %w", err)
	}
	if h.Seq == 0 || h.Hash == "" {
		return Head{}, errors.New("read audit head: no seq or hash")
	}
	return h, nil
}

func headOf(r schemas.AuditRecord) *Head {
	return &Head{Seq: r.Seq, Hash: r.Hash, Time: r.RecordedAt, Key: r.Key, Sig: r.Sig}
}

// Problem is one finding of verify.
type Problem struct {
	// Seq is the audit record concerned, when there is one.
	Seq     uint64 `json:"seq,omitempty"`
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

func (p Problem) String() string {
	if p.Seq != 0 {
		return fmt.Sprintf("%s: seq %d: %s", p.Kind, p.Seq, p.Message)
	}
	return fmt.Sprintf("%s: %s", p.Kind, p.Message)
}

// Report is what verify found. The log verifies when Problems is empty.
type Report struct {
	// Count is how many records verified (hash, link and signature).
	Count int `json:"count"`
	// Read is how many records were read.
	Read int `json:"read"`
	// First is the first record's sequence; Head the last record read.
	First uint64 `json:"first,omitempty"`
	Head  *Head  `json:"head,omitempty"`
	// Anchor says where trust starts: "genesis" or "checkpoint at seq N".
	Anchor string `json:"anchor,omitempty"`
	// Keys are the keys that signed the chain, oldest first.
	Keys []string `json:"keys,omitempty"`
	// Checked names what was checked: signatures, configuration, coverage.
	Checked  []string  `json:"checked"`
	Problems []Problem `json:"problems"`
	// Dropped counts problems past the ones listed.
	Dropped int `json:"dropped,omitempty"`
}

// OK reports whether the log verified.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Err is nil when the log verified, else a *[BrokenError] naming the first
// problem.
func (r *Report) Err() error {
	if r.OK() {
		return nil
	}
	p := r.Problems[0]
	return &BrokenError{Seq: p.Seq, Kind: p.Kind, Reason: p.Message, More: len(r.Problems) - 1 + r.Dropped}
}

func (r *Report) problem(seq uint64, kind, format string, a ...any) {
	if len(r.Problems) >= maxProblems {
		r.Dropped++
		return
	}
	r.Problems = append(r.Problems, Problem{Seq: seq, Kind: kind, Message: fmt.Sprintf(format, a...)})
}

// Options tell verify what to trust.
type Options struct {
	// Keys are the public keys the chain must be signed with (one of them,
	// or a key handed over from one of them by a signed key change).
	Keys []ed25519.PublicKey
	// SinceHead, when set, is a head kept elsewhere: the log must still hold
	// that record, unchanged.
	SinceHead *Head
	// Now is the clock for age checks; nil means time.Now.
	Now func() time.Time
}

// checker checks records one after the other.
type checker struct {
	rep     *Report
	opts    Options
	trusted map[string]bool

	prev      *schemas.AuditRecord
	gap       bool   // the record before was unreadable: no link to check
	expectKey string // the key that must sign the next record
	anchored  bool
	firstRec  *schemas.AuditRecord
	anchorCov map[string]uint64
	// recorded holds, per source stream, the source sequences recorded at
	// or after the anchor, in the order read.
	recorded  map[string][]uint64
	sinceSeen bool
	// lastAnchorAt is when the newest valid genesis or checkpoint was written.
	lastAnchorAt time.Time
	// onClean, when set, gets every record that verified on its own and
	// against the one before it.
	onClean func(schemas.AuditRecord)
}

func newChecker(opts Options) *checker {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &checker{rep: &Report{Checked: []string{"hashes", "links", "signatures"}}, opts: opts,
		trusted: map[string]bool{}, recorded: map[string][]uint64{}}
	for _, k := range opts.Keys {
		c.trusted[EncodePublicKey(k)] = true
	}
	return c
}

// checked is what can be learnt of one record on its own: the costly part
// of verify, which [batch] runs on every core.
type checked struct {
	r         schemas.AuditRecord
	streamSeq uint64
	decodeErr error
	hashOK    bool
	sigErr    error
}

func check(raw []byte, streamSeq uint64) checked {
	r, err := schemas.DecodeAuditRecord(raw)
	if err != nil {
		return checked{streamSeq: streamSeq, decodeErr: err}
	}
	want, err := r.ComputeHash()
	return checked{r: r, streamSeq: streamSeq, hashOK: err == nil && r.Hash == want, sigErr: checkSigned(r)}
}

// addChecked checks one record against the ones before it.
func (c *checker) addChecked(k checked) {
	rep := c.rep
	rep.Read++
	r, streamSeq, err := k.r, k.streamSeq, k.decodeErr
	if err != nil {
		if streamSeq == 0 && c.prev != nil {
			streamSeq = c.prev.Seq + 1 // in a file: where the record should be
		}
		rep.problem(streamSeq, ProblemChain, "not a valid record: %v", err)
		c.prev, c.gap = nil, true
		return
	}
	if rep.First == 0 {
		rep.First = r.Seq
		c.firstRec = &r
	}
	before := len(rep.Problems) + rep.Dropped
	if !k.hashOK {
		rep.problem(r.Seq, ProblemChain, "hash does not match the record's content: the record was edited")
	}
	if streamSeq != 0 && r.Seq != streamSeq {
		rep.problem(r.Seq, ProblemChain, "record says seq %d but is stored at seq %d", r.Seq, streamSeq)
	}
	sigOK := false
	if err := k.sigErr; err != nil {
		rep.problem(r.Seq, ProblemSignature, "%v", err)
	} else if c.expectKey != "" && r.Key != c.expectKey {
		rep.problem(r.Seq, ProblemSignature, "signed by key %q, but the chain's key is %q and no key change hands it over", r.Key, c.expectKey)
	} else {
		sigOK = true
		if len(rep.Keys) == 0 || rep.Keys[len(rep.Keys)-1] != r.Key {
			rep.Keys = append(rep.Keys, r.Key)
		}
		if r.Kind == schemas.AuditKindKeyChange {
			rep.Keys = append(rep.Keys, r.NextKey)
		}
		c.expectKey = keyAfter(r)
	}
	switch {
	case c.prev == nil && c.gap:
		// The unreadable record before is reported already.
	case c.prev == nil && r.Seq == 1:
		if r.Kind != schemas.AuditKindGenesis || r.PrevHash != "" {
			rep.problem(r.Seq, ProblemAnchor, "seq 1 is not a genesis record")
		}
	case c.prev != nil && r.Seq != c.prev.Seq+1:
		rep.problem(r.Seq, ProblemChain, "seq %d follows seq %d: records missing or reordered", r.Seq, c.prev.Seq)
	case c.prev != nil && r.PrevHash != c.prev.Hash:
		rep.problem(r.Seq, ProblemChain, "prev_hash does not match the hash of seq %d: records replaced or reordered", c.prev.Seq)
	}
	switch r.Kind {
	case schemas.AuditKindGenesis:
		if r.Seq != 1 {
			rep.problem(r.Seq, ProblemAnchor, "a genesis record at seq %d", r.Seq)
		}
	case schemas.AuditKindCheckpoint:
		if r.CheckpointSeq+1 != r.Seq || r.CheckpointHash != r.PrevHash {
			rep.problem(r.Seq, ProblemChain, "checkpoint names seq %d, not the record before it", r.CheckpointSeq)
		}
	case schemas.AuditKindEvent, schemas.AuditKindResult, schemas.AuditKindDeadLetter:
		if r.Covers[r.Source] != r.SourceSeq {
			rep.problem(r.Seq, ProblemChain, "covers does not include the record's own source message")
		}
	}
	clean := len(rep.Problems)+rep.Dropped == before
	if !c.anchored && clean && sigOK {
		switch {
		case r.Seq == 1 && r.Kind == schemas.AuditKindGenesis:
			c.anchored, rep.Anchor, c.anchorCov = true, "genesis", map[string]uint64{}
		case r.Kind == schemas.AuditKindCheckpoint:
			c.anchored, rep.Anchor, c.anchorCov = true, fmt.Sprintf("checkpoint at seq %d", r.Seq), r.Covers
		}
	}
	if c.anchored && r.Source != "" {
		c.recorded[r.Source] = append(c.recorded[r.Source], r.SourceSeq)
	}
	if s := c.opts.SinceHead; s != nil && r.Seq == s.Seq {
		c.sinceSeen = true
		if r.Hash != s.Hash {
			rep.problem(r.Seq, ProblemHead, "the record at the kept head's seq has hash %q, not the kept %q: the log was rewritten", r.Hash, s.Hash)
		}
	}
	if clean {
		rep.Count++
		if c.onClean != nil {
			c.onClean(r)
		}
	}
	if clean && (r.Kind == schemas.AuditKindGenesis || r.Kind == schemas.AuditKindCheckpoint) {
		c.lastAnchorAt = r.RecordedAt
	}
	c.prev, c.gap = &r, false
	rep.Head = headOf(r)
}

// batch collects records and checks them on every core, while the next
// batch is read; the results are then added in order.
type batch struct {
	c        *checker
	raws     [][]byte
	seqs     []uint64
	inFlight chan []checked // the batch being checked, if any
}

const batchSize = 2048

func (b *batch) add(raw []byte, seq uint64) {
	b.raws = append(b.raws, raw)
	b.seqs = append(b.seqs, seq)
	if len(b.raws) == batchSize {
		b.flush()
	}
}

// flush starts checking the records collected so far and adds the results
// of the batch before.
func (b *batch) flush() {
	if len(b.raws) == 0 {
		return
	}
	raws, seqs := b.raws, b.seqs
	b.raws, b.seqs = make([][]byte, 0, batchSize), make([]uint64, 0, batchSize)
	done := make(chan []checked, 1)
	go func() { done <- checkAll(raws, seqs) }()
	b.drain()
	b.inFlight = done
}

// drain adds the results of the batch in flight.
func (b *batch) drain() {
	if b.inFlight == nil {
		return
	}
	for _, k := range <-b.inFlight {
		b.c.addChecked(k)
	}
	b.inFlight = nil
}

// end checks and adds everything collected.
func (b *batch) end() {
	b.flush()
	b.drain()
}

func checkAll(raws [][]byte, seqs []uint64) []checked {
	out := make([]checked, len(raws))
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < len(raws); i += workers {
				out[i] = check(raws[i], seqs[i])
			}
		}(w)
	}
	wg.Wait()
	return out
}

// finish checks what needs the whole walk: the anchor, the trusted key and
// the kept head.
func (c *checker) finish() *Report {
	rep := c.rep
	if rep.Read > 0 && !c.anchored && rep.First > 1 {
		rep.problem(rep.First, ProblemAnchor, "the log starts at seq %d with no genesis and no valid signed checkpoint: records 1 to %d are gone", rep.First, rep.First-1)
	} else if rep.Read > 0 && !c.anchored {
		rep.problem(rep.First, ProblemAnchor, "the log does not start at a valid genesis record")
	}
	if len(c.trusted) == 0 {
		rep.problem(0, ProblemSignature, "no public key to check the signatures against")
	} else if rep.Read > 0 {
		trusted := false
		for _, k := range rep.Keys {
			trusted = trusted || c.trusted[k]
		}
		if !trusted {
			rep.problem(0, ProblemSignature, "the records are signed by %q, not by a key given to verify", rep.Keys)
		}
	}
	if s := c.opts.SinceHead; s != nil {
		inChain := false
		for _, k := range rep.Keys {
			inChain = inChain || k == s.Key
		}
		if !(c.trusted[s.Key] || inChain) || checkSig(schemas.AuditRecord{Hash: s.Hash}, s.Key, s.Sig) != nil {
			rep.problem(s.Seq, ProblemHead, "the kept head is not signed by a key given to verify")
		}
		switch {
		case c.sinceSeen:
		case rep.Head == nil || rep.Head.Seq < s.Seq:
			last := uint64(0)
			if rep.Head != nil {
				last = rep.Head.Seq
			}
			rep.problem(s.Seq, ProblemHead, "the log ends at seq %d, before the kept head: records were removed or the chain restarted", last)
		case c.firstRec != nil && c.firstRec.Kind == schemas.AuditKindCheckpoint && c.firstRec.CheckpointSeq == s.Seq:
			if c.firstRec.CheckpointHash != s.Hash {
				rep.problem(s.Seq, ProblemHead, "the checkpoint at seq %d vouches for hash %q, not the kept %q", c.firstRec.Seq, c.firstRec.CheckpointHash, s.Hash)
			}
		default:
			rep.problem(s.Seq, ProblemHead, "the kept head is no longer in the log, which starts at seq %d", rep.First)
		}
	}
	return rep
}

// VerifyFile checks an exported file (JSON lines, as [Export] writes them)
// offline: every record's hash, link and signature, the anchor and the kept
// head. It cannot check the stream's configuration or coverage.
func VerifyFile(r io.Reader, opts Options) *Report {
	c := newChecker(opts)
	b := &batch{c: c}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), MaxRecordSize)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			b.end()
			c.rep.problem(0, ProblemChain, "empty line after record %d", c.rep.Read)
			c.prev, c.gap = nil, true
			continue
		}
		b.add(bytes.Clone(line), 0) // the scanner reuses its buffer
	}
	b.end()
	if err := sc.Err(); err != nil {
		c.rep.problem(0, ProblemChain, "read after record %d: %v", c.rep.Read, err)
	}
	return c.finish()
}

// missing returns the first sequence in [lo, hi] that is neither deleted
// nor in have (sorted ascending), and whether there is one.
func missing(lo, hi uint64, have []uint64, deleted map[uint64]bool) (uint64, bool) {
	i := sort.Search(len(have), func(i int) bool { return have[i] >= lo })
	for s := lo; s <= hi && s != 0; s++ {
		if deleted[s] {
			continue
		}
		for i < len(have) && have[i] < s {
			i++
		}
		if i < len(have) && have[i] == s {
			continue
		}
		return s, true
	}
	return 0, false
}
