package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"
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
	log     zerolog.Logger
	started time.Time

	// Set by the inner layers: the outcome of a handled delivery (empty:
	// succeeded), the policy rule that denied it, the handler's report and
	// how many times it was called.
	outcome schemas.Outcome
	rule    string
	report  Report
	tries   int
	// republish is the done state an earlier delivery of this same message
	// wrote: its effect is done but its result may not have been published.
	// finish publishes that result again under its first Nats-Msg-Id.
	republish *keyState

	// The event's key: rev is its revision while this job holds it running
	// (0: not held). keyMu orders the heartbeat's refresh against finish;
	// settling is set once finish has begun.
	key      string
	keyMu    sync.Mutex
	rev      uint64
	settling bool

	// The heartbeat: its timer re-arms itself every hbEvery until hbStopped.
	rt        *Runtime
	hbMu      sync.Mutex
	hbStopped bool
	hbTimer   *time.Timer
	hbEvery   time.Duration
}

// state is j's key value in state st, as of now.
func (j *job) state(st string, o schemas.Outcome) keyState {
	return keyState{State: st, Outcome: o, Seq: j.d.seq, Attempt: j.d.attempt, At: time.Now().UTC()}
}

// settle is the outermost middleware: it decodes the envelope, keeps the
// message alive while the job runs, and turns what the inner layers say
// into a published result, a dead letter, an ack or a nak with delay. It
// never returns an error to the router: the delivery is settled here.
func (r *Runtime) settle(h message.HandlerFunc) message.HandlerFunc {
	return func(wm *message.Message) ([]*message.Message, error) {
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
		j := &job{d: d, subject: d.msg.Subject(), started: time.Now()}
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
		return nil, nil
	}
}

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
// long job keeps its message while its replica lives, and rewrites the
// event's running key, so other copies know the job lives. A timer that
// re-arms itself, not a goroutine per job: most jobs end before it fires.
func (r *Runtime) heartbeat(j *job) {
	j.hbEvery = r.w.Settings.AckWait / 3
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
	j.refreshKey()
	j.hbMu.Lock()
	defer j.hbMu.Unlock()
	if !j.hbStopped {
		j.hbTimer.Reset(j.hbEvery)
	}
}

// refreshKey rewrites j's running key (compare-and-set on its revision),
// which restarts its lease.
func (j *job) refreshKey() {
	j.keyMu.Lock()
	defer j.keyMu.Unlock()
	if j.rev == 0 || j.settling {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	rev, err := j.rt.kv.Update(ctx, j.key, j.state(stateRunning, "").encode(), j.rev)
	switch {
	case err == nil:
		j.rev = rev
	case isConflict(err):
		j.rev = 0
		j.log.Warn().Msg("another delivery took this event over: its lease ran out while this one ran")
	default:
		j.log.Warn().Err(err).Msg("refresh the running key")
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

// idempotent claims the event's key for this delivery before the handler
// runs: absent, it becomes running (a compare-and-set, so of two copies one
// wins). A key that says done makes this a duplicate, or, when this same
// message wrote it, has its result published again; one that says running
// makes this copy wait for that delivery's outcome, looking again every
// waitPoll until the key is done, gone, or its lease is over.
func (r *Runtime) idempotent(h message.HandlerFunc) message.HandlerFunc {
	return func(wm *message.Message) ([]*message.Message, error) {
		ctx := wm.Context()
		j := jobFrom(ctx)
		j.key = IdempotencyKey(j.ev.ID)
		for waited := false; ; {
			c, err := claim(ctx, r.kv, j.key, j.state(stateRunning, ""), r.lease())
			switch {
			case err != nil:
				return nil, err
			case c.done != nil && c.done.Seq == j.d.seq:
				j.republish, j.outcome = c.done, c.done.Outcome
				j.log.Info().Str("first_outcome", string(c.done.Outcome)).Int("first_attempt", c.done.Attempt).Msg("redelivery of a done job: its result is published again")
				return nil, nil
			case c.done != nil:
				j.outcome = schemas.OutcomeDuplicate
				j.log.Debug().Str("first_outcome", string(c.done.Outcome)).Uint64("first_seq", c.done.Seq).Msg("duplicate")
				return nil, nil
			case c.running != nil:
				if !waited {
					waited = true
					r.series.waits.Inc()
					j.log.Info().Uint64("running_seq", c.running.Seq).Time("running_since", c.running.At).Msg("another delivery of this event is running; waiting for it")
				}
				if err := sleepCtx(ctx, r.waitPoll()); err != nil {
					return nil, fmt.Errorf("event %s is still running in the delivery of stream sequence %d: %w", j.ev.ID, c.running.Seq, err)
				}
				continue
			}
			j.keyMu.Lock()
			j.rev = c.rev
			j.keyMu.Unlock()
			break
		}
		out, err := h(wm)
		if err == nil && j.outcome == "" {
			j.outcome = schemas.OutcomeSucceeded
		}
		return out, err
	}
}

// lease is how long a running key holds other copies back after its last
// write: the heartbeat rewrites it every AckWait/3, and a replica that is
// gone has its message redelivered after AckWait.
func (r *Runtime) lease() time.Duration { return r.w.Settings.AckWait }

// waitPoll is how often a copy waiting for another delivery looks again.
func (r *Runtime) waitPoll() time.Duration {
	return min(max(r.w.Settings.AckWait/3, 100*time.Millisecond), 5*time.Second)
}

// sleepCtx waits d, or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
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

// finish settles the delivery from herr and the job's outcome: a result
// (and a dead letter) published and acked by their streams, the event's key
// written done or released, then the ack or nak.
func (r *Runtime) finish(j *job, herr error) {
	j.keyMu.Lock()
	j.settling = true
	rev := j.rev
	j.keyMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	d := j.d
	s := r.w.Settings
	if herr != nil && r.hard.Err() != nil {
		// Cut short by a stop: not the event's fault. No result; the key
		// is released and the message handed back at once, so another
		// replica takes it now.
		j.log.Warn().Err(herr).Msg("job cancelled by stop, nak")
		r.release(ctx, j, rev)
		r.nak(j, 0)
		r.observe(j, "cancelled")
		return
	}
	var panicked middleware.RecoveredPanicError
	if errors.As(herr, &panicked) {
		herr = fmt.Errorf("%w: %v\n%s", ErrPanic, panicked.V, panicked.Stacktrace)
	}

	switch {
	case herr == nil:
		outcome := j.outcome
		if outcome == "" {
			outcome = schemas.OutcomeSucceeded
		}
		attempt := d.attempt
		if j.republish != nil {
			attempt = j.republish.Attempt
		}
		// The result and the key's done state go out together; the ack
		// waits for both.
		res, err := r.publishResult(j, attempt, outcome, nil)
		recorded := rev == 0 || r.record(ctx, j, rev, outcome)
		if err == nil {
			err = waitPublish(ctx, res)
		}
		if err != nil {
			if !recorded {
				// Neither is stored: the redelivery runs the handler
				// again, and its result has the same Nats-Msg-Id.
				r.release(ctx, j, rev)
			}
			r.nakAfterPublishError(j, err)
			return
		}
		r.ack(j)
		r.observe(j, string(outcome))
		j.log.Debug().Str("outcome", string(outcome)).Str("rule", j.rule).Msg("job done")
	case IsPermanent(herr) || d.attempt >= s.MaxDeliver || errors.Is(herr, ErrTooManyDeliveries):
		err := r.publishDeadLetter(ctx, j, herr)
		if err == nil {
			var res jetstream.PubAckFuture
			if res, err = r.publishResult(j, d.attempt, schemas.OutcomeDeadLettered, herr); err == nil {
				err = waitPublish(ctx, res)
			}
		}
		// A dead letter is not done: a replay after a fix runs.
		r.release(ctx, j, rev)
		if err != nil {
			r.nakAfterPublishError(j, err)
			return
		}
		r.ack(j)
		r.observe(j, string(schemas.OutcomeDeadLettered))
		j.log.Warn().Err(herr).Bool("permanent", IsPermanent(herr)).Msg("job dead-lettered")
	default:
		delay := s.nakDelay(d.attempt)
		res, err := r.publishResult(j, d.attempt, schemas.OutcomeFailed, herr)
		if err == nil {
			err = waitPublish(ctx, res)
		}
		if err != nil {
			j.log.Warn().Err(err).Msg("publish failed result")
		}
		r.release(ctx, j, rev)
		r.nak(j, delay)
		r.observe(j, string(schemas.OutcomeFailed))
		j.log.Info().Err(herr).Dur("redeliver_in", delay).Msg("job failed, will be redelivered")
	}
}

// record writes the event's key done (compare-and-set on rev). The
// effect is done: the write is tried again through a broker outage
// ([Record], up to 30 s), since a key left "running" is taken over once
// its lease is over and the handler runs again. If it still fails the job
// is acked all the same: a nak would run it again for certain. It reports
// whether the key says done.
func (r *Runtime) record(ctx context.Context, j *job, rev uint64, o schemas.Outcome) bool {
	val := j.state(stateDone, o).encode()
	var conflict bool
	err := Record(ctx, func(ctx context.Context) error {
		_, err := r.kv.Update(ctx, j.key, val, rev)
		switch {
		case isConflict(err):
			conflict = true
			return backoff.Permanent(err)
		case err != nil && r.bucketGone(ctx):
			// Not an outage: nothing will take the write.
			return backoff.Permanent(err)
		}
		return err
	})
	if conflict && r.recordedBy(ctx, j) {
		// A try whose reply was lost did write it.
		return true
	}
	switch {
	case err == nil:
		return true
	case conflict:
		j.log.Warn().Msg("another delivery took this event over before this one recorded it")
	default:
		r.series.recordErrors.Inc()
		j.log.Error().Err(err).Msg("idempotency record not written: a replay of this event would run again")
	}
	return false
}

// bucketGone reports whether the worker's idempotency bucket is known not
// to exist (deleted by hand); an error reading it says nothing.
func (r *Runtime) bucketGone(ctx context.Context) bool {
	_, err := opCall(ctx, func(ctx context.Context) (jetstream.Stream, error) {
		return r.js.Stream(ctx, "KV_"+r.kv.Bucket())
	})
	return errors.Is(err, jetstream.ErrStreamNotFound)
}

// recordedBy reports whether j's key says done by j's own delivery.
func (r *Runtime) recordedBy(ctx context.Context, j *job) bool {
	e, err := opCall(context.WithoutCancel(ctx), func(ctx context.Context) (jetstream.KeyValueEntry, error) { return r.kv.Get(ctx, j.key) })
	if err != nil {
		return false
	}
	k := decodeKeyState(e.Value())
	return k.State == stateDone && k.Seq == j.d.seq && k.Attempt == j.d.attempt
}

// release deletes the event's key if j still holds it at rev, so that the
// next copy runs at once.
func (r *Runtime) release(ctx context.Context, j *job, rev uint64) {
	if rev == 0 {
		return
	}
	// Its own deadline: the record before it may have used the finish's.
	ctx, cancel := OpContext(context.WithoutCancel(ctx))
	defer cancel()
	if err := r.kv.Delete(ctx, j.key, jetstream.LastRevision(rev)); err != nil && !isConflict(err) {
		j.log.Warn().Err(err).Msg("running key left: other copies of this event wait until its lease is over")
	}
}

func (r *Runtime) ack(j *job) {
	if err := j.d.ack(); err != nil {
		j.log.Warn().Err(err).Msg("ack")
	}
}

func (r *Runtime) nak(j *job, delay time.Duration) {
	if err := j.d.nak(delay); err != nil {
		j.log.Warn().Err(err).Msg("nak")
	}
}

// nakAfterPublishError naks a delivery whose outcome could not be
// published: it comes back, and a done key then has its result published
// again (see job.republish).
func (r *Runtime) nakAfterPublishError(j *job, err error) {
	j.log.Error().Err(err).Msg("publish outcome, nak")
	r.nak(j, r.w.Settings.nakDelay(j.d.attempt))
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
