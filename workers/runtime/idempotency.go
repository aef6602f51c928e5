package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/schemas"
)

// IdempotencyBucketPrefix starts the name of every worker's idempotency
// bucket: forgebus_idem_<worker>.
const IdempotencyBucketPrefix = "forgebus_idem_"

// IdempotencyBucket is the configuration of w's idempotency bucket: a
// JetStream KV bucket whose keys are the ids of the events w finished,
// forgotten after Settings.IdempotencyTTL.
func IdempotencyBucket(w Worker) jetstream.KeyValueConfig {
	replicas := w.Settings.Replicas
	if replicas < 1 {
		replicas = 1
	}
	return jetstream.KeyValueConfig{
		Bucket:      IdempotencyBucketPrefix + w.Name,
		Description: "forgebus: events the " + w.Name + " worker finished",
		TTL:         w.Settings.IdempotencyTTL,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}
}

// KeepReplicas returns want, or the replica count stream has now when that
// is higher: a process started with a smaller count (FORGEBUS_STREAM_REPLICAS
// unset on a cluster) must never shrink a stream or bucket to fewer copies.
// A stream that does not exist, or cannot be read, leaves want as it is.
func KeepReplicas(ctx context.Context, js jetstream.JetStream, stream string, want int) int {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return want
	}
	return max(want, st.CachedInfo().Config.Replicas)
}

// maxKeyLen bounds an idempotency key; longer ids are hashed.
const maxKeyLen = 200

// IdempotencyKey is the KV key of an event id. KV keys allow
// [-/_=.a-zA-Z0-9]; every other byte, and '.', '/' and '=', is written as
// "=XX" (upper-case hex), so the mapping is reversible and one token long.
// An empty id, or one whose key would be longer than 200 bytes, becomes
// "sha256/<hex>", which no escaped id can be (a '/' is always escaped).
func IdempotencyKey(id string) string {
	var b strings.Builder
	b.Grow(len(id) + 8)
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
			b.WriteByte(c)
		default:
			b.WriteByte('=')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0x0f])
		}
	}
	if b.Len() == 0 || b.Len() > maxKeyLen {
		sum := sha256.Sum256([]byte(id))
		return "sha256/" + hex.EncodeToString(sum[:])
	}
	return b.String()
}

const hexDigits = "0123456789ABCDEF"

// idemRecord is the value stored under an event id.
type idemRecord struct {
	Outcome schemas.Outcome `json:"outcome"`
	Seq     uint64          `json:"seq"`
	Attempt int             `json:"attempt"`
	At      time.Time       `json:"at"`
}

// idempotency remembers the events a worker finished.
//
// Lookups of jobs that start at the same time go to the broker together:
// one multi-subject direct get (the server's "multi_last", nats-server
// 2.11 and later) answers for all of them, where a get each would cost the
// broker about as much as each job's own result publish. One batch is in
// flight at a time; the lookups that arrive meanwhile form the next, so a
// lone job waits one round trip, as with a plain get, and under load a
// round trip serves many jobs. A server that refuses the request is asked
// key by key instead.
type idempotency struct {
	kv     jetstream.KeyValue
	js     jetstream.JetStream
	getAPI string // $JS.API.DIRECT.GET.KV_<bucket>
	stName string // KV_<bucket>, the bucket's stream
	prefix string // $KV.<bucket>.
	// Lookups go out on own, the lookups' connection (lookupConn), or on
	// main, the replica's, while own is down.
	own, main route
	log       zerolog.Logger
	acks      *acker // the records' publishes

	mu       sync.Mutex
	queue    []*lookup
	batching bool
	token    uint64
	answers  map[string]*answers // by token
	perKey   bool                // the server refused a multi get

	batches atomic.Int64 // multi gets sent, for tests
	named   atomic.Int64 // batches that named their markers, for tests

	// namedUntil (unix nanoseconds): until then batches name their keys'
	// markers rather than ask for all through the wildcard, which has just
	// matched too many (a backlog, where every job is old enough to claim).
	namedUntil atomic.Int64

	streamMu sync.Mutex
	stream   jetstream.Stream // the bucket's stream, for purges; nil until needed
}

// route is a connection the lookups can take, and where their answers
// arrive on it: inbox+<token>.
type route struct {
	nc    *nats.Conn
	inbox string // _INBOX.<unique>.
	sub   *nats.Subscription
}

// lookup is one job's question: has the worker finished this key?
type lookup struct {
	key   string
	rec   idemRecord
	found bool
	// mark is the event id's running marker (markerKey), with its
	// revision (KV stream sequence), when marked.
	mark    idemRecord
	markRev uint64
	marked  bool
	err     error
	ready   chan struct{}
}

// maxLookupBatch bounds the keys of one multi get (the server answers at
// most 1024 messages per request).
const maxLookupBatch = 256

// lookupTimeout bounds one batch's round trip.
const lookupTimeout = 5 * time.Second

// newIdempotency opens the lookups' own connection (lookupConn) and
// subscribes to their answers there and on js's connection; close ends
// both subscriptions and closes the lookups' connection.
func newIdempotency(js jetstream.JetStream, kv jetstream.KeyValue, acks *acker, log zerolog.Logger) (*idempotency, error) {
	bucket := kv.Bucket()
	stName := "KV_" + bucket
	api := js.Options().APIPrefix
	if api == "" {
		api = jetstream.DefaultAPIPrefix
	}
	if !strings.HasSuffix(api, ".") {
		api += "."
	}
	s := &idempotency{
		kv:      kv,
		js:      js,
		getAPI:  api + "DIRECT.GET." + stName,
		stName:  stName,
		prefix:  "$KV." + bucket + ".",
		log:     log,
		acks:    acks,
		answers: map[string]*answers{},
	}
	nc, err := lookupConn(js.Conn(), log)
	if err != nil {
		return nil, err
	}
	s.own.nc, s.main.nc = nc, js.Conn()
	for _, r := range []*route{&s.own, &s.main} {
		r.inbox = r.nc.NewInbox() + "."
		if r.sub, err = r.nc.Subscribe(r.inbox+"*", s.deliver); err != nil {
			s.close()
			return nil, fmt.Errorf("idempotency: subscribe: %w", err)
		}
	}
	return s, nil
}

// lookupConn opens a second connection to nc's server, with nc's options
// (servers, credentials, TLS, reconnects) but callbacks of its own, for
// the lookups alone. The broker answers a client's direct get inline, in
// the read loop of the connection that sent it (nats-server's
// processDirectGetRequest): on nc, a batch of lookups waited for every
// publish, ack and pull the replica had sent before it, and held up all
// that came after while it read the bucket. On a connection of its own
// it is read beside them. In the worker benchmark that took the
// runtime/ceiling ratio from 0.52 to 0.54 (README, "Benchmarks"). While it
// is down, lookups take nc again (idempotency.pick).
func lookupConn(nc *nats.Conn, log zerolog.Logger) (*nats.Conn, error) {
	o := nc.Opts
	o.Name = strings.TrimSpace(o.Name + " idempotency-lookups")
	// nc's callbacks belong to nc: its owner's closed handler, say, may
	// close a channel, and must not run again for this connection.
	o.ClosedCB, o.ConnectedCB, o.DisconnectedCB, o.DiscoveredServersCB, o.LameDuckModeHandler = nil, nil, nil, nil, nil
	o.ReconnectErrCB = nil
	// Its own close, when the runtime stops, is no disconnection to warn of.
	o.NoCallbacksAfterClientClose = true
	o.DisconnectedErrCB = func(_ *nats.Conn, err error) {
		ev := log.Warn()
		if err != nil {
			ev = ev.Err(err)
		}
		ev.Msg("idempotency lookups: nats disconnected")
	}
	o.ReconnectedCB = func(*nats.Conn) { log.Info().Msg("idempotency lookups: nats reconnected") }
	o.AsyncErrorCB = func(_ *nats.Conn, _ *nats.Subscription, err error) {
		log.Error().Err(err).Msg("idempotency lookups: nats async error")
	}
	c, err := o.Connect()
	if err != nil {
		return nil, fmt.Errorf("idempotency lookups: connect: %w", err)
	}
	return c, nil
}

// close ends the answer subscriptions and closes the lookups' connection.
func (s *idempotency) close() {
	if s == nil || s.own.nc == nil {
		return
	}
	for _, r := range []*route{&s.own, &s.main} {
		if r.sub != nil {
			_ = r.sub.Unsubscribe()
		}
	}
	s.own.nc.Close()
}

// pick is the route a lookup takes now: the lookups' own, or while
// that is down (reconnecting, or refused by a connection limit that let
// the main one back) the replica's main connection, which then carries
// them as it did before lookupConn, rather than fail the jobs.
func (s *idempotency) pick() *route {
	if s.own.nc.IsConnected() {
		return &s.own
	}
	return &s.main
}

// answers collects one multi get's messages. More than it has room for
// closes over: the batch then fails with errTooManyAnswers.
type answers struct {
	ch       chan *nats.Msg
	over     chan struct{}
	overOnce sync.Once
}

// deliver routes an answer to the batch waiting for it; answers of a
// batch that gave up are dropped.
func (s *idempotency) deliver(m *nats.Msg) {
	// Both inboxes end in the token; tokens are unique across them.
	token := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	s.mu.Lock()
	a := s.answers[token]
	s.mu.Unlock()
	if a == nil {
		return
	}
	select {
	case a.ch <- m:
	default:
		a.overOnce.Do(func() { close(a.over) })
	}
}

// get looks id up: its record (found false when the worker has not
// finished it) and its marker, with the marker's revision.
func (s *idempotency) get(ctx context.Context, id string) (*lookup, error) {
	l := &lookup{key: IdempotencyKey(id), ready: make(chan struct{})}
	s.mu.Lock()
	s.queue = append(s.queue, l)
	start := !s.batching
	s.batching = true
	s.mu.Unlock()
	if start {
		go s.drain()
	}
	select {
	case <-l.ready:
		return l, l.err
	case <-ctx.Done():
		return &lookup{key: l.key}, fmt.Errorf("idempotency get: %w", ctx.Err())
	}
}

// drain resolves queued lookups, a batch at a time, until none is left.
func (s *idempotency) drain() {
	for {
		s.mu.Lock()
		if len(s.queue) == 0 {
			s.batching = false
			s.mu.Unlock()
			return
		}
		n := min(len(s.queue), maxLookupBatch)
		batch := slices.Clone(s.queue[:n])
		s.queue = slices.Delete(s.queue, 0, n)
		perKey := s.perKey
		s.mu.Unlock()
		if perKey {
			s.resolveEach(batch)
		} else {
			s.resolve(batch)
		}
	}
}

// resolveEach answers every lookup with gets of its own: the record,
// then the marker.
func (s *idempotency) resolveEach(batch []*lookup) {
	get := func(l *lookup, key string) (jetstream.KeyValueEntry, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
		defer cancel()
		e, err := s.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			return nil, false
		case err != nil:
			l.err = fmt.Errorf("idempotency get: %w", err)
			return nil, false
		}
		return e, true
	}
	for _, l := range batch {
		if e, ok := get(l, l.key); ok {
			l.rec, l.found = decodeRecord(e.Value()), true
		}
		if e, ok := get(l, markerKey(l.key)); ok && l.err == nil {
			l.mark, l.markRev, l.marked = decodeRecord(e.Value()), e.Revision(), true
		}
		close(l.ready)
	}
}

// resolve answers a batch with one multi get: the records of its keys,
// and every running marker of the bucket (one wildcard: markers live only
// while their jobs run, so there are few). When the wildcard matches more
// than maxMarkersAnswered, the batches of the next namedFor ask for their
// own keys' markers by name instead, and so does this one if its answer
// did not fit.
func (s *idempotency) resolve(batch []*lookup) {
	s.batches.Add(1)
	byKey := make(map[string][]*lookup, len(batch))
	subjects := make([]string, 0, len(batch)+1)
	for _, l := range batch {
		if _, ok := byKey[l.key]; !ok {
			subjects = append(subjects, s.prefix+l.key)
		}
		byKey[l.key] = append(byKey[l.key], l)
	}
	var found map[string]answer
	var err error
	named := time.Now().UnixNano() < s.namedUntil.Load()
	if !named {
		found, err = s.multiGet(append(subjects, s.prefix+markerKey(">")), maxMarkersAnswered)
		tooMany := errors.Is(err, errTooManyAnswers)
		if tooMany || (err == nil && markers(found) > maxMarkersAnswered) {
			s.namedUntil.Store(time.Now().Add(namedFor).UnixNano())
		}
		named = tooMany
	}
	if named {
		s.named.Add(1)
		for key := range byKey {
			subjects = append(subjects, s.prefix+markerKey(key))
		}
		found, err = s.multiGet(subjects, 0)
	}
	if errors.Is(err, errMultiGetRefused) {
		s.mu.Lock()
		s.perKey = true
		s.mu.Unlock()
		s.log.Warn().Err(err).Msg("the server refused a multi-key get; idempotency lookups go key by key")
		s.resolveEach(batch)
		return
	}
	for key, ls := range byKey {
		a, ok := found[key]
		m, marked := found[markerKey(key)]
		for _, l := range ls {
			if err != nil {
				l.err = err
			} else {
				if ok {
					l.rec, l.found = decodeRecord(a.value), true
				}
				if marked {
					l.mark, l.markRev, l.marked = decodeRecord(m.value), m.rev, true
				}
			}
			close(l.ready)
		}
	}
}

// markers counts the running and retry markers among found.
func markers(found map[string]answer) int {
	n := 0
	for key := range found {
		if strings.HasPrefix(key, markerKey("")) {
			n++
		}
	}
	return n
}

// errMultiGetRefused: the server does not take multi_last requests.
var errMultiGetRefused = errors.New("multi get refused")

// errTooManyAnswers: a multi get with a wildcard matched more than it can
// take (maxMarkersAnswered, or the server's 1024).
var errTooManyAnswers = errors.New("idempotency get: too many answers")

// maxMarkersAnswered is how many running markers one lookup batch takes
// through the wildcard before it names its keys' markers instead, for
// namedFor.
const (
	maxMarkersAnswered = 8
	namedFor           = 5 * time.Second
)

// answer is one key's record in a multi get: its value and revision.
type answer struct {
	value []byte
	rev   uint64
}

// multiGet asks for the last message of every subject at once and
// returns the values found, by key. It succeeds only on a complete
// answer: the server's end-of-batch marker with nothing left pending, or
// its "no results"; anything else (a timeout, a lost connection, an error
// status, a marker saying more is pending) is an error, never "not
// found".
//
// extra is how many answers beyond one per subject it takes, for subjects
// with wildcards; more is errTooManyAnswers.
func (s *idempotency) multiGet(subjects []string, extra int) (map[string]answer, error) {
	req, err := json.Marshal(struct {
		MultiLast []string `json:"multi_last"`
	}{subjects})
	if err != nil {
		return nil, fmt.Errorf("idempotency get: %w", err)
	}
	a := &answers{ch: make(chan *nats.Msg, len(subjects)+extra+2), over: make(chan struct{})}
	s.mu.Lock()
	s.token++
	token := strconv.FormatUint(s.token, 36)
	s.answers[token] = a
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.answers, token)
		s.mu.Unlock()
	}()
	r := s.pick()
	if err := r.nc.PublishRequest(s.getAPI, r.inbox+token, req); err != nil {
		return nil, fmt.Errorf("idempotency get: %w", err)
	}
	timer := time.NewTimer(lookupTimeout)
	defer timer.Stop()
	found := make(map[string]answer, len(subjects))
	for {
		var m *nats.Msg
		select {
		case m = <-a.ch:
		case <-a.over:
			return nil, errTooManyAnswers
		case <-timer.C:
			return nil, fmt.Errorf("idempotency get: %w after %s", nats.ErrTimeout, lookupTimeout)
		}
		switch status := m.Header.Get("Status"); status {
		case "":
			subj := m.Header.Get(jetstream.SubjectHeader)
			key, ok := strings.CutPrefix(subj, s.prefix)
			if !ok {
				return nil, fmt.Errorf("idempotency get: answer for subject %q", subj)
			}
			switch m.Header.Get("KV-Operation") {
			case "DEL", "PURGE":
				delete(found, key)
			default:
				rev, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
				if err != nil {
					return nil, fmt.Errorf("idempotency get: answer for %q without a sequence", subj)
				}
				found[key] = answer{m.Data, rev}
			}
			if len(found) > len(subjects)+extra {
				return nil, errTooManyAnswers
			}
		case "204": // end of batch
			if p := m.Header.Get("Nats-Num-Pending"); p != "" && p != "0" {
				return nil, fmt.Errorf("idempotency get: answer cut short, %s pending", p)
			}
			return found, nil
		case "404":
			if d := m.Header.Get("Description"); d == "No Results" && len(found) == 0 {
				return found, nil
			}
			return nil, fmt.Errorf("idempotency get: %s %s", status, m.Header.Get("Description"))
		case "413": // Too Many Results: a wildcard matched over the server's limit
			return nil, errTooManyAnswers
		case "400", "408":
			return nil, fmt.Errorf("%w: %s %s", errMultiGetRefused, status, m.Header.Get("Description"))
		case "503":
			return nil, fmt.Errorf("idempotency get: %w", jetstream.ErrNoStreamResponse)
		default:
			return nil, fmt.Errorf("idempotency get: %s %s", status, m.Header.Get("Description"))
		}
	}
}

// decodeRecord reads a stored record; one it cannot read still says the
// event was handled.
func decodeRecord(v []byte) idemRecord {
	var r idemRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return idemRecord{Outcome: schemas.OutcomeSucceeded}
	}
	return r
}

// recordAsync starts storing id as finished with r; the future says when
// the bucket has it.
func (s *idempotency) recordAsync(id string, r idemRecord) (*pubAck, error) {
	f, err := s.acks.publish(&nats.Msg{Subject: s.prefix + IdempotencyKey(id), Data: r.appendJSON(make([]byte, 0, 128))}, s.stName)
	if err != nil {
		return nil, fmt.Errorf("idempotency put: %w", err)
	}
	return f, nil
}

// record stores id as finished with r and waits for the bucket's ack.
func (s *idempotency) record(ctx context.Context, id string, r idemRecord) error {
	f, err := s.recordAsync(id, r)
	if err != nil {
		return err
	}
	if err := f.wait(ctx); err != nil {
		return fmt.Errorf("idempotency put: %w", err)
	}
	return nil
}

// appendJSON appends r as JSON, the same bytes encoding/json writes, without
// its reflection on every job's hot path.
func (r idemRecord) appendJSON(b []byte) []byte {
	b = append(b, `{"outcome":`...)
	b = strconv.AppendQuote(b, string(r.Outcome))
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(r.Attempt), 10)
	b = append(b, `,"at":"`...)
	b = r.At.AppendFormat(b, time.RFC3339Nano)
	return append(b, `"}`...)
}

// outcomeRunning is the outcome in a running marker: an event id whose
// handler runs now, in the delivery of stream sequence Seq (running.go).
// It is never a result's outcome.
const outcomeRunning schemas.Outcome = "running"

// outcomeRetry is the outcome in a retry marker: the delivery of Seq ran,
// failed and comes back. It holds no copy back; a copy that finds it
// claims the event before its handler (running.go).
const outcomeRetry schemas.Outcome = "retry"

// markerKey is the key of the running marker of the event whose record key
// is key: "run.<key>". A record key is one token (IdempotencyKey escapes
// '.'), so the two never meet, and a runtime from before markers, which
// looks up record keys only, never mistakes a marker for a record.
func markerKey(key string) string { return "run." + key }

// errClaimed: the key changed between its lookup and a conditional write.
var errClaimed = errors.New("idempotency: the key changed since it was read")

// claim writes the running marker r of id only if the marker is still as a
// lookup saw it: absent (found false), or at revision rev. It returns the
// new revision, or errClaimed when another write came first.
func (s *idempotency) claim(ctx context.Context, id string, r idemRecord, found bool, rev uint64) (uint64, error) {
	key := markerKey(IdempotencyKey(id))
	var err error
	var n uint64
	if found {
		n, err = s.kv.Update(ctx, key, r.appendJSON(nil), rev)
	} else {
		n, err = s.kv.Create(ctx, key, r.appendJSON(nil))
	}
	switch {
	case err == nil:
		return n, nil
	case isConflict(err):
		return 0, errClaimed
	default:
		return 0, fmt.Errorf("idempotency claim: %w", err)
	}
}

// unclaim removes id's running marker if it is still the one at revision
// rev, by purging its subject: a KV delete would leave a delete marker,
// which the lookups' wildcard would then return for as long as the bucket
// keeps it.
func (s *idempotency) unclaim(ctx context.Context, id string, rev uint64) error {
	mk := markerKey(IdempotencyKey(id))
	e, err := s.kv.Get(ctx, mk)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("idempotency: read running marker: %w", err)
	case e.Revision() != rev:
		return nil // another delivery's marker by now
	}
	st, err := s.bucketStream(ctx)
	if err == nil {
		err = st.Purge(ctx, jetstream.WithPurgeSubject(s.prefix+mk))
	}
	if err != nil {
		return fmt.Errorf("idempotency: remove running marker: %w", err)
	}
	return nil
}

// isConflict reports a conditional write refused because the key moved on
// (JetStream's wrong last sequence; 10164 on replicated streams).
func isConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) {
		return true
	}
	var api *jetstream.APIError
	return errors.As(err, &api) && (api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// bucketStream is the bucket's stream, looked up once.
func (s *idempotency) bucketStream(ctx context.Context) (jetstream.Stream, error) {
	s.streamMu.Lock()
	defer s.streamMu.Unlock()
	if s.stream == nil {
		st, err := s.js.Stream(ctx, s.stName)
		if err != nil {
			return nil, err
		}
		s.stream = st
	}
	return s.stream, nil
}
