package audit

import (
	"context"
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
}

// Worker appends the audit chain. Run it with [Worker.Run]; several replicas
// may run at once.
type Worker struct {
	js     jetstream.JetStream
	cfg    Config
	log    zerolog.Logger
	detail map[string]bool

	mu   sync.Mutex // serializes this process's appends; the CAS does the rest
	head *head

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
		js: js, cfg: cfg, log: log.With().Str("worker", Name).Logger(),
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
		Duplicates:  2 * time.Minute,
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
	w.log.Info().Msg("audit worker running")
	var wg sync.WaitGroup
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
	w.mu.Lock()
	defer w.mu.Unlock()
	for try := 0; try < maxAppendTries; try++ {
		if w.head == nil {
			h, err := loadHead(ctx, w.js)
			if err != nil {
				return false, err
			}
			w.head = h
		}
		h := w.head
		if h.covers[rec.Source] >= rec.SourceSeq {
			return false, nil
		}
		r := rec
		r.Seq = h.seq + 1
		r.RecordedAt = w.cfg.Now().UTC()
		r.PrevHash = h.hash
		r.Covers = make(map[string]uint64, len(h.covers)+1)
		for k, v := range h.covers {
			r.Covers[k] = v
		}
		r.Covers[rec.Source] = rec.SourceSeq
		if err := r.Seal(); err != nil {
			return false, err
		}
		data, err := r.Encode()
		if err != nil {
			return false, err
		}
		ack, err := w.js.Publish(ctx, schemas.AuditSubject, data,
			jetstream.WithExpectStream(schemas.StreamAudit),
			jetstream.WithExpectLastSequence(h.seq),
			jetstream.WithMsgID(rec.Source+":"+strconv.FormatUint(rec.SourceSeq, 10)))
		if isWrongLastSeq(err) {
			w.conflicts.Inc()
			w.head = nil
			continue
		}
		if err != nil {
			w.head = nil
			return false, fmt.Errorf("publish %s: %w", schemas.AuditSubject, err)
		}
		if ack.Duplicate {
			// Recorded already, inside the duplicate window.
			w.head = nil
			return false, nil
		}
		w.head = &head{seq: ack.Sequence, hash: r.Hash, covers: r.Covers}
		return true, nil
	}
	return false, fmt.Errorf("append %s:%d: lost the head race %d times", rec.Source, rec.SourceSeq, maxAppendTries)
}

func loadHead(ctx context.Context, js jetstream.JetStream) (*head, error) {
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
