package audit

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/schemas"
)

// Name is the worker's name.
const Name = "audit"

// Sources are the streams the worker records, with their durable consumer.
var Sources = []struct{ Stream, Durable string }{
	{schemas.StreamEvents, "audit-events"},
	{schemas.StreamResults, "audit-results"},
	{schemas.StreamDLQ, "audit-dlq"},
}

// Config tunes the audit worker. The zero value is usable.
type Config struct {
	// AckWait is how long a message may be in flight before JetStream gives it
	// to another replica; default 30s.
	AckWait time.Duration
	// FetchWait bounds one pull; it is also how long a stop may take; default 1s.
	FetchWait time.Duration
	// DetailKeys are the result Detail entries copied into records; nil
	// means [DefaultDetailKeys].
	DetailKeys []string
	// Now is the clock for RecordedAt; nil means time.Now.
	Now func() time.Time
	// Key signs every record; required. Its public key is what verify
	// checks the records against.
	Key ed25519.PrivateKey
	// CheckpointEvery is how often a checkpoint record is written. Zero
	// means a quarter of FORGE_AUDIT's max_age, and none when the stream
	// keeps records forever; a negative value means never.
	CheckpointEvery time.Duration
}

// Worker appends the audit chain. Run it with [Worker.Run]; several replicas
// may run at once.
type Worker struct {
	js     jetstream.JetStream
	cfg    Config
	log    zerolog.Logger
	detail map[string]bool
	pub    string             // the public key of cfg.Key, as records carry it
	next   ed25519.PrivateKey // the key a key change hands over to

	mu   sync.Mutex // serializes this process's appends; the CAS does the rest
	head *head
	// lastCheckpoint is when this process last wrote a checkpoint.
	lastCheckpoint time.Time

	records   *prometheus.CounterVec
	conflicts prometheus.Counter
	failures  prometheus.Counter
}

type head struct {
	seq    uint64
	hash   string
	covers map[string]uint64
}

// New returns an audit worker. reg may be nil; otherwise the worker's
// metrics are registered there.
func New(js jetstream.JetStream, cfg Config, log zerolog.Logger, reg prometheus.Registerer) (*Worker, error) {
	if js == nil {
		return nil, errors.New("audit: nil JetStream")
	}
	if len(cfg.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("audit: no signing key (FORGEBUS_AUDIT_KEY_FILE)")
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = 30 * time.Second
	}
	if cfg.FetchWait <= 0 {
		cfg.FetchWait = time.Second
	}
	if cfg.DetailKeys == nil {
		cfg.DetailKeys = DefaultDetailKeys
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	w := &Worker{
		js: js, cfg: cfg, pub: EncodePublicKey(cfg.Key.Public().(ed25519.PublicKey)), log: log.With().Str("worker", Name).Logger(),
		detail: map[string]bool{},
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "forgebus_audit_records_total",
			Help: "Source messages handled by the audit worker, by source stream and result (appended, skipped).",
		}, []string{"source", "result"}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "forgebus_audit_append_conflicts_total",
			Help: "Appends that lost a race for the chain head and were retried.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "forgebus_audit_append_failures_total",
			Help: "Source messages that could not be recorded and were given back for redelivery.",
		}),
	}
	for _, k := range cfg.DetailKeys {
		w.detail[k] = true
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{w.records, w.conflicts, w.failures} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register audit metrics: %w", err)
			}
		}
	}
	return w, nil
}

// ConsumerConfig is the durable consumer the worker binds to on a source
// stream: every message from the start, one in flight, redelivered forever.
func ConsumerConfig(durable string, ackWait time.Duration) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       durable,
		Description:   "forgebus audit worker",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxDeliver:    -1,
		MaxAckPending: 1,
	}
}

// StreamConfig is FORGE_AUDIT: one subject, deny delete and purge, kept for
// maxAge (0: forever, the default). The services module provisions it.
func StreamConfig(maxAge time.Duration, replicas int) jetstream.StreamConfig {
	if replicas < 1 {
		replicas = 1
	}
	dup := 2 * time.Minute
	if maxAge > 0 && maxAge < dup {
		dup = maxAge // the server refuses a window longer than max_age
	}
	return jetstream.StreamConfig{
		Name:        schemas.StreamAudit,
		Description: "forgebus audit log: a hash chain of every event, result and dead letter",
		Subjects:    schemas.AuditSubjects,
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      maxAge,
		Replicas:    replicas,
		DenyDelete:  true,
		DenyPurge:   true,
		Duplicates:  dup,
	}
}

// Run records until ctx is done, then finishes the messages in hand and
// returns nil. The source streams and FORGE_AUDIT must exist.
func (w *Worker) Run(ctx context.Context) error {
	var cons []jetstream.Consumer
	for _, s := range Sources {
		c, err := w.js.CreateOrUpdateConsumer(ctx, s.Stream, ConsumerConfig(s.Durable, w.cfg.AckWait))
		if err != nil {
			return fmt.Errorf("consumer %s on %s: %w", s.Durable, s.Stream, err)
		}
		cons = append(cons, c)
	}
	every, err := w.checkpointEvery(ctx)
	if err != nil {
		return err
	}
	w.log.Info().Str("key", w.pub).Dur("checkpoint_every", every).Msg("audit worker running")
	var wg sync.WaitGroup
	if every > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.checkpoints(ctx, every)
		}()
	}
	for i, c := range cons {
		wg.Add(1)
		go func(stream string, c jetstream.Consumer) {
			defer wg.Done()
			w.loop(ctx, stream, c)
		}(Sources[i].Stream, c)
	}
	wg.Wait()
	w.log.Info().Msg("audit worker stopped")
	return nil
}

func (w *Worker) loop(ctx context.Context, stream string, c jetstream.Consumer) {
	for ctx.Err() == nil {
		batch, err := c.Fetch(1, jetstream.FetchMaxWait(w.cfg.FetchWait))
		if err != nil {
			w.log.Warn().Err(err).Str("stream", stream).Msg("fetch")
			sleep(ctx, w.cfg.FetchWait)
			continue
		}
		for msg := range batch.Messages() {
			w.handle(stream, msg)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			w.log.Debug().Err(err).Str("stream", stream).Msg("fetch batch")
		}
	}
}

// handle records one message. It deliberately ignores the run context: a
// message in hand is finished on shutdown, within its own timeout.
func (w *Worker) handle(stream string, msg jetstream.Msg) {
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.AckWait)
	defer cancel()
	md, err := msg.Metadata()
	if err != nil {
		w.log.Error().Err(err).Str("stream", stream).Msg("message without metadata")
		_ = msg.Term()
		return
	}
	seq := md.Sequence.Stream
	rec := newRecord(stream, seq, msg.Data(), w.detail)
	appended, err := w.append(ctx, rec)
	if err != nil {
		w.failures.Inc()
		w.log.Error().Err(err).Str("stream", stream).Uint64("stream_seq", seq).Msg("append audit record")
		_ = msg.NakWithDelay(time.Second)
		return
	}
	result := "skipped"
	if appended {
		result = "appended"
	}
	w.records.WithLabelValues(stream, result).Inc()
	if err := msg.DoubleAck(ctx); err != nil {
		// Recorded but not acked: the redelivery is skipped by "covers".
		w.log.Warn().Err(err).Str("stream", stream).Uint64("stream_seq", seq).Msg("ack")
	}
}

const maxAppendTries = 100

// append chains rec after the head. It returns false when the head already
// covers rec's source message.
func (w *Worker) append(ctx context.Context, rec schemas.AuditRecord) (bool, error) {
	msgID := rec.Source + ":" + strconv.FormatUint(rec.SourceSeq, 10)
	return w.appendWith(ctx, msgID, func(h *head) (schemas.AuditRecord, bool) {
		if h.covers[rec.Source] >= rec.SourceSeq {
			return schemas.AuditRecord{}, false
		}
		r := rec
		r.Covers = make(map[string]uint64, len(h.covers)+1)
		for k, v := range h.covers {
			r.Covers[k] = v
		}
		r.Covers[rec.Source] = rec.SourceSeq
		return r, true
	})
}

// appendWith appends the record build makes from the current head, after a
// genesis record when the chain is empty. build returns false when there is
// nothing to append. msgID ("" for none) deduplicates a retried publish.
func (w *Worker) appendWith(ctx context.Context, msgID string, build func(h *head) (schemas.AuditRecord, bool)) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for try := 0; try < maxAppendTries; try++ {
		if w.head == nil {
			h, err := loadHead(ctx, w.js, w.pub)
			if err != nil {
				return false, err
			}
			w.head = h
		}
		h := w.head
		if h.seq == 0 {
			g := schemas.AuditRecord{Kind: schemas.AuditKindGenesis, Covers: map[string]uint64{}}
			if err := w.publish(ctx, h, g, ""); err != nil {
				if isWrongLastSeq(err) {
					w.conflicts.Inc()
					w.head = nil
					continue
				}
				return false, err
			}
			h = w.head
		}
		r, ok := build(h)
		if !ok {
			return false, nil
		}
		err := w.publish(ctx, h, r, msgID)
		if isWrongLastSeq(err) {
			w.conflicts.Inc()
			w.head = nil
			continue
		}
		if errors.Is(err, errDuplicate) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		return true, nil
	}
	return false, fmt.Errorf("append %s: lost the head race %d times", msgID, maxAppendTries)
}

// errDuplicate: JetStream dropped the publish as a duplicate of one inside
// its window; the record is there already.
var errDuplicate = errors.New("duplicate audit publish")

// publish signs r as the record after h and appends it, expecting h to be
// the last record. On success w.head is r; on any failure it is unset.
func (w *Worker) publish(ctx context.Context, h *head, r schemas.AuditRecord, msgID string) error {
	r.V = schemas.AuditRecordVersion
	r.Seq = h.seq + 1
	r.RecordedAt = w.cfg.Now().UTC()
	r.PrevHash = h.hash
	r.Key = w.pub
	if r.Covers == nil {
		r.Covers = h.covers
	}
	if err := r.Seal(); err != nil {
		w.head = nil
		return err
	}
	sign(&r, w.cfg.Key)
	if r.Kind == schemas.AuditKindKeyChange && w.next != nil {
		r.NextKeySig = base64.StdEncoding.EncodeToString(ed25519.Sign(w.next, r.SignedBytes()))
	}
	data, err := r.Encode()
	if err != nil {
		w.head = nil
		return err
	}
	opts := []jetstream.PublishOpt{jetstream.WithExpectStream(schemas.StreamAudit), jetstream.WithExpectLastSequence(h.seq)}
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	ack, err := w.js.Publish(ctx, schemas.AuditSubject, data, opts...)
	if err != nil {
		w.head = nil
		if isWrongLastSeq(err) {
			return err
		}
		return fmt.Errorf("publish %s: %w", schemas.AuditSubject, err)
	}
	if ack.Duplicate {
		w.head = nil
		return errDuplicate
	}
	if ack.Sequence != r.Seq {
		w.head = nil
		return fmt.Errorf("publish %s: stored at seq %d, not %d", schemas.AuditSubject, ack.Sequence, r.Seq)
	}
	w.head = &head{seq: ack.Sequence, hash: r.Hash, covers: r.Covers}
	return nil
}

// checkpointEvery is cfg.CheckpointEvery, or derived from FORGE_AUDIT's
// max_age when zero.
func (w *Worker) checkpointEvery(ctx context.Context) (time.Duration, error) {
	switch {
	case w.cfg.CheckpointEvery < 0:
		return 0, nil
	case w.cfg.CheckpointEvery > 0:
		return w.cfg.CheckpointEvery, nil
	}
	s, err := w.js.Stream(ctx, schemas.StreamAudit)
	if err != nil {
		return 0, fmt.Errorf("open stream %s: %w", schemas.StreamAudit, err)
	}
	return CheckpointInterval(s.CachedInfo().Config.MaxAge), nil
}

// CheckpointInterval is how often the worker writes a checkpoint for a
// FORGE_AUDIT that keeps records for maxAge: a quarter of it, so that a
// checkpoint always survives retention; 0 (none) when maxAge is 0.
func CheckpointInterval(maxAge time.Duration) time.Duration {
	return maxAge / 4
}

// checkpoints writes a checkpoint whenever the head is older than every,
// until ctx is done.
func (w *Worker) checkpoints(ctx context.Context, every time.Duration) {
	tick := every / 4
	if tick > time.Minute {
		tick = time.Minute
	}
	if tick < 10*time.Millisecond {
		tick = 10 * time.Millisecond
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(context.Background(), w.cfg.AckWait)
		if _, err := w.Checkpoint(cctx, every); err != nil {
			w.log.Error().Err(err).Msg("audit checkpoint")
		}
		cancel()
	}
}

// Checkpoint appends a checkpoint record vouching for the chain up to the
// head, unless the newest checkpoint (or genesis) is younger than
// olderThan. It reports whether it wrote one.
func (w *Worker) Checkpoint(ctx context.Context, olderThan time.Duration) (bool, error) {
	wrote, err := w.appendWith(ctx, "", func(h *head) (schemas.AuditRecord, bool) {
		if olderThan > 0 && w.cfg.Now().Sub(w.lastCheckpoint) < olderThan {
			return schemas.AuditRecord{}, false
		}
		return schemas.AuditRecord{
			Kind: schemas.AuditKindCheckpoint, CheckpointSeq: h.seq, CheckpointHash: h.hash,
			Covers: h.covers,
		}, true
	})
	if wrote {
		w.mu.Lock()
		w.lastCheckpoint = w.cfg.Now()
		w.mu.Unlock()
	}
	return wrote, err
}

// loadHead reads the last record and checks that pub may chain on it: it
// must be a well-formed signed record at its own sequence, signed by the
// key it names, and hand the chain to pub. The worker never chains on top
// of an unsigned or badly signed record, or one of another key.
func loadHead(ctx context.Context, js jetstream.JetStream, pub string) (*head, error) {
	s, err := js.Stream(ctx, schemas.StreamAudit)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", schemas.StreamAudit, err)
	}
	m, err := s.GetLastMsgForSubject(ctx, schemas.AuditSubject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return &head{covers: map[string]uint64{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get audit head: %w", err)
	}
	r, err := schemas.DecodeAuditRecord(m.Data)
	if err != nil {
		return nil, fmt.Errorf("%w: seq %d: %v", ErrHead, m.Sequence, err)
	}
	if r.Seq != m.Sequence {
		return nil, fmt.Errorf("%w: seq %d claims seq %d", ErrHead, m.Sequence, r.Seq)
	}
	if h, err := r.ComputeHash(); err != nil || h != r.Hash {
		return nil, fmt.Errorf("%w: seq %d: hash does not match the record's content", ErrHead, m.Sequence)
	}
	if err := checkSigned(r); err != nil {
		return nil, fmt.Errorf("%w: seq %d: %v", ErrHead, m.Sequence, err)
	}
	if next := keyAfter(r); next != pub {
		return nil, fmt.Errorf("%w: seq %d hands the chain to key %s, not to this worker's key %s", ErrHead, m.Sequence, next, pub)
	}
	covers := r.Covers
	if covers == nil {
		covers = map[string]uint64{}
	}
	return &head{seq: m.Sequence, hash: r.Hash, covers: covers}, nil
}

func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
