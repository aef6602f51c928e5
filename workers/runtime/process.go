package runtime

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/cenkalti/backoff/v4"
	"github.com/goccy/go-json"
	"github.com/rs/zerolog"

	"github.com/forgebus/forgebus/schemas"
)

// ReplayHeader marks an event republished from the DLQ by [Replay]: its
// value is the one worker the replay is for. Every other worker acks such a
// message silently, with no result.
const ReplayHeader = "Forgebus-Replay-For"

// maxErrorLen bounds an error text in a result or dead letter.
const maxErrorLen = 8 << 10

// job is one delivery's state, shared by the middlewares through the
// message context.
type job struct {
	d       *delivery
	ev      *schemas.Envelope
	subject string
	replay  bool // a DLQ replay (ReplayHeader) for this worker
	log     zerolog.Logger
	started time.Time

	// Set by the inner layers: the outcome of a handled delivery (empty:
	// succeeded), the policy rule that denied it, the handler's report and
	// how many times it was called.
	outcome schemas.Outcome
	rule    string
	report  Report
	tries   int
	// unpublished is the idempotency record of an earlier delivery of this
	// same message: its effect was done and recorded, but its result may
	// not have been published (the publish failed and the message was
	// nak'ed). finish publishes that result again under its first
	// Nats-Msg-Id, so it is stored once, whether or not it landed before.
	unpublished *idemRecord
	// record is what finish writes to the idempotency bucket once the
	// handler succeeded, at the same time as the result. locked: the job
	// holds the event id's lock in this replica (keyLocks), released after
	// that.
	record    *idemRecord
	recordBuf idemRecord // what record points to
	locked    bool

	// The event id's "running" marker (claimRunning). markMu orders the
	// heartbeat's write of it against finish. keyFound and keyRev are the
	// key as the idempotency check last saw it, to write the marker over;
	// mayMark is set once that check let the handler run; settling once
	// finish has begun; markRev is the marker's revision once written.
	markMu   sync.Mutex
	keyFound bool
	keyRev   uint64
	mayMark  bool
	settling bool
	markRev  uint64
	// retrying: finish naks the delivery; it comes back.
	retrying bool

	// The heartbeat (Runtime.heartbeat): its timer re-arms itself every
	// hbEvery until hbStopped.
	rt        *Runtime
	hbMu      sync.Mutex
	hbStopped bool
	hbTimer   *time.Timer
	hbEvery   time.Duration
}

// settle is the outermost middleware: it decodes the envelope, keeps the
// message alive while the job runs, and turns what the inner layers say
// into a published result, a dead letter, an ack or a nak with delay. It
// never returns an error to the router: the delivery is settled here.
func (r *Runtime) settle(h message.HandlerFunc) message.HandlerFunc {
	return func(wm *message.Message) ([]*message.Message, error) {
		growStack()
		d := deliveryFrom(wm.Context())
		if d == nil {
			return nil, fmt.Errorf("worker %s: message without a delivery", r.w.Name)
		}
		defer d.done() // after the settlement below, and the heartbeat's stop

		target := d.msg.Headers().Get(ReplayHeader)
		if target != "" && target != r.w.Name {
			// A replay for another worker.
			if err := d.ack(); err != nil {
				r.log.Warn().Err(err).Uint64("event_seq", d.seq).Msg("ack replay for another worker")
			}
			return nil, nil
		}
		j := &job{d: d, subject: d.msg.Subject(), started: time.Now(), replay: target != ""}
		r.series.inFlight.Inc()
		defer r.series.inFlight.Dec()
		if d.attempt > 1 {
			r.series.redeliveries.Inc()
		}

		ev, herr := decodeEnvelope(d.msg.Data())
		if herr != nil {
			ev = &schemas.Envelope{ID: wm.UUID}
		}
		j.ev = ev
		j.log = r.log.With().Str("event_id", ev.ID).Uint64("event_seq", d.seq).Int("attempt", d.attempt).Logger()
		d.job = j
		switch {
		case herr != nil:
		case d.attempt > r.w.Settings.MaxDeliver:
			herr = fmt.Errorf("%w (%d of %d): a replica stopped while handling it", ErrTooManyDeliveries, d.attempt, r.w.Settings.MaxDeliver)
		default:
			// The heartbeat runs until the delivery is settled: storing
			// the outcome can take a while when the broker is struggling.
			r.heartbeat(j)
			defer j.stopHeartbeat()
			jctx, cancel := context.WithTimeout(wm.Context(), r.w.Settings.JobTimeout)
			wm.SetContext(jctx)
			_, herr = h(wm)
			cancel()
		}
		r.finish(j, herr)
		if j.locked {
			r.locks.unlock(j.ev.ID)
		}
		return nil, nil
	}
}

// growStack grows a job's goroutine stack to 8 KiB at once, while it is
// still shallow. The router starts every delivery on a new goroutine, whose
// small stack otherwise grows, and is copied, deep in the result's encoding:
// 4 to 6% of the CPU of a no-op job in the benchmark (`make bench`), where
// the embedded broker's many idle goroutines keep Go's adaptive first stack
// size small. Done here it costs a fraction of that.
//
//go:noinline
func growStack() byte {
	var b [5 << 10]byte
	return lastByte(b[:])
}

//go:noinline
func lastByte(b []byte) byte { return b[len(b)-1] }

func decodeEnvelope(data []byte) (*schemas.Envelope, error) {
	var ev schemas.Envelope
	if err := json.Unmarshal(data, &ev); err != nil {
		return nil, Permanent(fmt.Errorf("%w: %w", ErrBadEnvelope, err))
	}
	if ev.ID == "" || ev.Type == "" {
		return nil, Permanent(fmt.Errorf("%w: no id or type", ErrBadEnvelope))
	}
	return &ev, nil
}

// heartbeat sends in-progress every AckWait/3 until stopHeartbeat, so a
// long job keeps its message while its replica lives, and calls markIfLong
// after each. It beats at least every quarter of the duplicate window, for
// markIfLong. A timer that re-arms itself, not a goroutine per job: most
// jobs end before it first fires.
func (r *Runtime) heartbeat(j *job) {
	j.hbEvery = min(r.w.Settings.AckWait/3, max(r.dupWindow()/4, time.Millisecond))
	j.rt = r
	j.hbMu.Lock() // beat reads hbTimer
	defer j.hbMu.Unlock()
	j.hbTimer = time.AfterFunc(j.hbEvery, j.beat)
}

// beat is one heartbeat of j.
func (j *job) beat() {
	if err := j.d.inProgress(); err != nil {
		j.log.Warn().Err(err).Msg("in-progress heartbeat")
	}
	j.rt.markIfLong(j)
	j.hbMu.Lock()
	defer j.hbMu.Unlock()
	if !j.hbStopped {
		j.hbTimer.Reset(j.hbEvery)
	}
}

// stopHeartbeat stops j's heartbeat; a beat under way finishes.
func (j *job) stopHeartbeat() {
	j.hbMu.Lock()
	j.hbStopped = true
	j.hbMu.Unlock()
	j.hbTimer.Stop()
}

// correlate makes the event id the message's correlation id and puts the
// job's logger (event_id, event_seq, attempt, worker on every line) in the
// context, for handlers to use through zerolog.Ctx.
func (r *Runtime) correlate(h message.HandlerFunc) message.HandlerFunc {
	return func(wm *message.Message) ([]*message.Message, error) {
		j := jobFrom(wm.Context())
		middleware.SetCorrelationID(j.ev.ID, wm)
		wm.SetContext(j.log.WithContext(wm.Context()))
		return h(wm)
	}
}

// policy refuses what the worker's policy does not allow: outcome denied.
func (r *Runtime) policy(h message.HandlerFunc) message.HandlerFunc {
	return func(wm *message.Message) ([]*message.Message, error) {
		j := jobFrom(wm.Context())
		if ok, rule := r.w.Policy.Check(j.ev); !ok {
			j.outcome, j.rule = schemas.OutcomeDenied, rule
			return nil, nil
		}
		return h(wm)
	}
}

// idempotent skips an event the worker finished before (outcome
// duplicate), and marks one it finishes now for recording: finish writes
// the record together with the result, and acks only once the record is
// stored. Succeeded and superseded are recorded:
// both mean the event needs no more work. Denied is not, so a replay after
// a policy change is judged again; neither is a dead letter, so a replay
// after a fix runs.
func (r *Runtime) idempotent(h message.HandlerFunc) message.HandlerFunc {
	return func(wm *message.Message) ([]*message.Message, error) {
		ctx := wm.Context()
		j := jobFrom(ctx)
		// Two deliveries of one event in this replica run one after the
		// other, so the second sees the first's record.
		if err := r.locks.lock(ctx, j.ev.ID); err != nil {
			return nil, err
		}
		j.locked = true // until finish has recorded the outcome
		for waited := false; ; {
			l, err := r.idem.get(ctx, j.ev.ID)
			if err != nil {
				return nil, err
			}
			rec, mark := l.rec, l.mark
			if l.found && l.marked && mark.Seq == j.d.seq {
				// Done, with a marker this message left (a retry
				// marker after its result failed to publish): finish
				// removes it.
				j.markMu.Lock()
				j.markRev = l.markRev
				j.markMu.Unlock()
			}
			switch {
			case l.found && rec.Seq == j.d.seq:
				j.unpublished = &l.rec
				j.outcome = rec.Outcome
				j.log.Info().Str("first_outcome", string(rec.Outcome)).Int("first_attempt", rec.Attempt).Msg("redelivery of a recorded job: its result is published again")
				return nil, nil
			case l.found:
				j.outcome = schemas.OutcomeDuplicate
				j.log.Debug().Str("first_outcome", string(rec.Outcome)).Uint64("first_seq", rec.Seq).Msg("duplicate")
				return nil, nil
			case l.marked && mark.Outcome == outcomeRunning && mark.Seq != j.d.seq && !r.staleMarker(mark):
				// Another copy of this event runs on another replica:
				// wait for its outcome.
				if !waited {
					waited = true
					r.series.waits.Inc()
					j.log.Info().Uint64("running_seq", mark.Seq).Time("running_since", mark.At).Msg("another delivery of this event is running; waiting for it")
				}
				if err := sleepCtx(ctx, r.markerPoll()); err != nil {
					return nil, fmt.Errorf("event %s is still running in the delivery of stream sequence %d (since %s): %w",
						j.ev.ID, mark.Seq, mark.At.Format(time.RFC3339), err)
				}
				continue
			}
			// Not done, and no marker; this message's own from an earlier
			// delivery; one whose job is long over; or a retry marker. A
			// job claims the event first whenever there is a marker, or
			// it starts late.
			j.markMu.Lock()
			j.keyFound, j.keyRev = l.marked, l.markRev
			j.markMu.Unlock()
			if l.marked || r.startsLate(j) {
				err := r.claimRunning(ctx, j)
				if errors.Is(err, errClaimed) {
					continue // someone wrote first: look again
				}
				if err != nil {
					return nil, err
				}
			}
			j.markMu.Lock()
			j.mayMark = true
			j.markMu.Unlock()
			break
		}
		out, err := h(wm)
		if err != nil {
			return out, err
		}
		if j.outcome == "" {
			j.outcome = schemas.OutcomeSucceeded
		}
		j.recordBuf = j.recordNow(j.outcome)
		j.record = &j.recordBuf
		return out, nil
	}
}

// handle is the router's handler: the worker's handler with in-process
// retry (Settings.Retry). A permanent error stops the retry at once.
func (r *Runtime) handle(wm *message.Message) error {
	ctx := wm.Context()
	j := jobFrom(ctx)
	op := func() error {
		j.tries++
		rep, err := r.w.Handler.Handle(ctx, j.ev)
		j.report = rep
		if err != nil {
			if IsPermanent(err) {
				return backoff.Permanent(err)
			}
			if ctx.Err() != nil {
				return backoff.Permanent(err)
			}
			j.log.Debug().Err(err).Int("try", j.tries).Msg("handler failed, retrying in process")
			return err
		}
		return nil
	}
	rs := r.w.Settings.Retry
	err := op()
	var perm *backoff.PermanentError
	if err != nil && rs.MaxElapsed > 0 && !errors.As(err, &perm) {
		// The first try failed: retry on the schedule. Retry starts by
		// calling its operation, so its first call returns that failure
		// again rather than calling the handler at once a second time.
		first := err
		retry := func() error {
			if first != nil {
				e := first
				first = nil
				return e
			}
			return op()
		}
		b := backoff.NewExponentialBackOff(
			backoff.WithInitialInterval(rs.Initial),
			backoff.WithMaxInterval(rs.MaxInterval),
			backoff.WithMultiplier(rs.Multiplier),
			backoff.WithMaxElapsedTime(rs.MaxElapsed),
		)
		err = backoff.Retry(retry, backoff.WithContext(b, ctx))
	}
	if err != nil {
		if errors.As(err, &perm) {
			err = perm.Err
		}
		return err
	}
	switch j.report.Outcome {
	case "", schemas.OutcomeSucceeded:
		j.outcome = schemas.OutcomeSucceeded
	case schemas.OutcomeSuperseded:
		j.outcome = schemas.OutcomeSuperseded
	default:
		j.log.Warn().Str("outcome", string(j.report.Outcome)).Msg("handler reported an outcome it may not; taken as succeeded")
		j.outcome = schemas.OutcomeSucceeded
	}
	return nil
}

// finish settles the delivery from herr and the job's outcome.
func (r *Runtime) finish(j *job, herr error) {
	if rev := j.settleMarker(); rev != 0 {
		// A delivery that ended removes its marker once it is settled
		// (and its record, if any, stored); one that comes back has
		// replaced it with a retry marker before its nak (retryMarker).
		defer func() {
			if !j.retrying {
				ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
				defer cancel()
				r.releaseMarker(ctx, j, rev)
			}
		}()
	}
	d := j.d
	s := r.w.Settings
	if herr != nil && r.hard.Err() != nil {
		// Cut short by a stop: not the event's fault. No result; the next
		// delivery counts as a new attempt.
		j.log.Warn().Err(herr).Msg("job cancelled by stop, nak")
		r.retryMarker(j)
		if err := d.nak(0); err != nil {
			j.log.Warn().Err(err).Msg("nak")
		}
		r.observe(j, "cancelled")
		return
	}
	var panicked middleware.RecoveredPanicError
	if errors.As(herr, &panicked) {
		herr = fmt.Errorf("%w: %v\n%s", ErrPanic, panicked.V, panicked.Stacktrace)
	}
	// Every publish below gives up after publishTimeout (acker.sweep).
	ctx := context.Background()

	switch {
	case herr == nil:
		outcome := j.outcome
		if outcome == "" {
			outcome = schemas.OutcomeSucceeded
		}
		// The record and the result go out together, and the ack waits for
		// both: one round trip, not two. A result stored without its
		// record (a crash in between) is harmless: the redelivery runs the
		// handler again and its result has the same Nats-Msg-Id.
		var put *pubAck
		var putErr error
		if j.record != nil {
			put, putErr = r.idem.recordAsync(j.ev.ID, *j.record)
		}
		publish := func() error { return r.publishResult(ctx, j, outcome, nil) }
		if j.unpublished != nil {
			publish = func() error { return r.publishResultAt(ctx, j, j.unpublished.Attempt, outcome, nil) }
		}
		if err := publish(); err != nil {
			if put != nil {
				// The record's fate first: stored, the redelivery
				// publishes this result again (job.unpublished) rather
				// than run the handler a second time.
				_ = put.wait(ctx)
			}
			r.nakAfterPublishError(j, err)
			return
		}
		if j.record != nil {
			if putErr == nil {
				putErr = put.wait(ctx)
			}
			if putErr != nil {
				r.recordAgain(ctx, j, putErr)
			}
		}
		r.ack(j)
		r.observe(j, string(outcome))
		j.log.Debug().Str("outcome", string(outcome)).Str("rule", j.rule).Msg("job done")
	case IsPermanent(herr) || d.attempt >= s.MaxDeliver || errors.Is(herr, ErrTooManyDeliveries):
		if err := r.publishDeadLetter(ctx, j, herr); err != nil {
			r.nakAfterPublishError(j, err)
			return
		}
		if err := r.publishResult(ctx, j, schemas.OutcomeDeadLettered, herr); err != nil {
			r.nakAfterPublishError(j, err)
			return
		}
		r.ack(j)
		r.observe(j, string(schemas.OutcomeDeadLettered))
		j.log.Warn().Err(herr).Bool("permanent", IsPermanent(herr)).Msg("job dead-lettered")
	default:
		delay := s.nakDelay(d.attempt)
		if err := r.publishResult(ctx, j, schemas.OutcomeFailed, herr); err != nil {
			j.log.Warn().Err(err).Msg("publish failed result")
		}
		r.retryMarker(j)
		if err := d.nak(delay); err != nil {
			j.log.Warn().Err(err).Msg("nak")
		}
		r.observe(j, string(schemas.OutcomeFailed))
		j.log.Info().Err(herr).Dur("redeliver_in", delay).Msg("job failed, will be redelivered")
	}
}

// recordAgain retries a record whose first write failed. If it still
// fails the message is acked all the same: the effect is done and its
// result published, and a nak would run it again for certain; only a
// later copy of the event (a replay) would not be known as a duplicate.
func (r *Runtime) recordAgain(ctx context.Context, j *job, first error) {
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	op := func() error { return r.idem.record(ctx, j.ev.ID, *j.record) }
	b := backoff.WithContext(backoff.WithMaxRetries(backoff.NewConstantBackOff(200*time.Millisecond), 4), ctx)
	if err := backoff.Retry(op, b); err != nil {
		r.series.recordErrors.Inc()
		j.log.Error().Err(err).AnErr("first_error", first).Msg("idempotency record not written: a replay of this event would run again")
	}
}

func (r *Runtime) ack(j *job) {
	if err := j.d.ack(); err != nil {
		j.log.Warn().Err(err).Msg("ack")
	}
}

// nakAfterPublishError naks a delivery whose outcome could not be
// published: it comes back, and its recorded outcome is then published
// again (see job.unpublished).
func (r *Runtime) nakAfterPublishError(j *job, err error) {
	j.log.Error().Err(err).Msg("publish outcome, nak")
	r.retryMarker(j)
	if nerr := j.d.nak(r.w.Settings.nakDelay(j.d.attempt)); nerr != nil {
		j.log.Warn().Err(nerr).Msg("nak")
	}
	r.observe(j, "publish_error")
}

func (r *Runtime) observe(j *job, outcome string) {
	took := time.Since(j.started)
	r.series.job(outcome).Inc()
	r.series.duration.Observe(took.Seconds())
}

// address is the owner and repository of j's event, for the result and
// dead-letter subjects: from the event subject, else from the envelope.
func (j *job) address() (owner, repo string) {
	if a, err := schemas.ParseEventSubject(j.subject); err == nil {
		return a.Owner, a.Repo
	}
	owner, repo, _ = strings.Cut(j.ev.Repo, "/")
	return owner, repo
}

func errorText(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	if len(s) > maxErrorLen {
		s = s[:maxErrorLen] + "…(cut)"
	}
	return s
}
