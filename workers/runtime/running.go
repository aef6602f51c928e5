package runtime

import (
	"context"
	"errors"
	"time"

	"github.com/forgebus/forgebus/schemas"
)

// Running markers keep two copies of one event id from running at once on
// two replicas. Within a replica the event id's lock does that; across
// replicas the idempotency lookup alone does not, when the second copy
// starts while the first is still running: a Gogs "Redelivery" of a
// delivery whose docs build takes minutes.
//
// Two stored copies of an event id are at least FORGE_EVENTS's duplicate
// window W apart: the stream drops a copy whose Nats-Msg-Id (the event id)
// it stored less than W before. So the first copy needs its marker only
// once it is W old, never while it is young. A job that starts when its
// message is W/2 old or more (a backlog, a retry, a replay) writes the
// marker before its handler; a job that starts younger writes it from its
// heartbeat, which beats at least every W/4, once the message is W/2 old.
// Either way the marker is there before a second copy can be stored. A
// short job, the usual case, writes nothing.
//
// The marker has a key of its own beside the event's record (markerKey),
// and every lookup returns both (idempotency.resolve). It is written over
// the marker as the lookup saw it (a KV create, or a revision-checked
// update), so of two late copies only one claims it, and it is removed at
// the job's end, after the record. A copy that finds another delivery's
// marker waits and looks again, until a record says duplicate, the marker
// is gone (that delivery failed: this one runs), or its own job timeout
// fails it (a transient failure: it is retried later). A marker older than
// the job timeout plus AckWait is over: its job has ended or its replica
// died, whose redelivery claims the marker again.
//
// A delivery that fails and comes back leaves a retry marker (markRetry),
// and a copy that finds any marker claims before its handler, so the
// return, late by then, meets that claim rather than a copy too young to
// have a marker. A DLQ replay is not deduplicated against the event id, so
// it claims before its handler at any age. Not covered: a replay started
// while a young copy (no marker yet) runs, and, in a backlog, an old copy
// and a young one whose lookups cross within the same moment.

// startsLate reports whether j must claim the marker before its handler.
func (r *Runtime) startsLate(j *job) bool {
	return j.replay || r.halfWindowOld(j)
}

// halfWindowOld reports whether j's message is half the duplicate window
// old (or of unknown age): from then on a second copy of it may be stored
// before a marker written on the next heartbeat.
func (r *Runtime) halfWindowOld(j *job) bool {
	return j.d.stored.IsZero() || time.Since(j.d.stored) >= r.dupWindow()/2
}

// recordNow is the record or marker of j with outcome o, as of now.
func (j *job) recordNow(o schemas.Outcome) idemRecord {
	return idemRecord{Outcome: o, Seq: j.d.seq, Attempt: j.d.attempt, At: time.Now().UTC()}
}

// staleMarker reports whether a running marker's job is certainly over.
func (r *Runtime) staleMarker(rec idemRecord) bool {
	s := r.w.Settings
	return time.Since(rec.At) > s.JobTimeout+s.AckWait+publishTimeout
}

// markerPoll is how often a copy waiting for another delivery looks again.
func (r *Runtime) markerPoll() time.Duration {
	return min(max(r.w.Settings.AckWait/3, 100*time.Millisecond), 5*time.Second)
}

// claimRunning writes j's running marker over the key as j's lookup saw it.
func (r *Runtime) claimRunning(ctx context.Context, j *job) error {
	j.markMu.Lock()
	defer j.markMu.Unlock()
	if j.settling || j.markRev != 0 {
		return nil
	}
	rev, err := r.idem.claim(ctx, j.ev.ID, j.recordNow(outcomeRunning), j.keyFound, j.keyRev)
	if err != nil {
		return err
	}
	j.markRev = rev
	return nil
}

// markIfLong is the heartbeat's part: a job still running when its message
// is half the duplicate window old writes its marker.
func (r *Runtime) markIfLong(j *job) {
	j.markMu.Lock()
	due := j.mayMark && !j.settling && j.markRev == 0 && r.halfWindowOld(j)
	j.markMu.Unlock()
	if !due {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	switch err := r.claimRunning(ctx, j); {
	case errors.Is(err, errClaimed):
		j.log.Warn().Msg("another delivery of this event claimed it while this one runs")
	case err != nil:
		j.log.Warn().Err(err).Msg("write running marker")
	}
}

// settleMarker stops j from writing a marker, and returns the revision of
// the one it wrote (0: none).
func (j *job) settleMarker() uint64 {
	j.markMu.Lock()
	defer j.markMu.Unlock()
	j.settling = true
	return j.markRev
}

// retryMarker is called by finish before it naks j. If j ran its handler
// it leaves a retry marker: over its own marker, or where there was none.
// A younger copy that starts meanwhile finds it and claims the event
// before its handler, so j's return (late by then) finds that claim and
// waits, rather than run beside a copy too young to have a marker of its
// own. Written before the nak, so the return cannot have come and gone
// first and leave the marker behind.
func (r *Runtime) retryMarker(j *job) {
	j.retrying = true
	j.markMu.Lock()
	ran, rev := j.mayMark, j.markRev
	found, at := j.keyFound, j.keyRev
	j.markMu.Unlock()
	if !ran {
		return
	}
	if rev != 0 {
		found, at = true, rev
	}
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	switch _, err := r.idem.claim(ctx, j.ev.ID, j.recordNow(outcomeRetry), found, at); {
	case errors.Is(err, errClaimed): // another delivery's marker now: it holds the event
	case err != nil:
		j.log.Warn().Err(err).Msg("write retry marker")
	}
}

// releaseMarker removes j's marker if it is still the one j wrote at
// revision rev (another delivery may have claimed over it since).
func (r *Runtime) releaseMarker(ctx context.Context, j *job, rev uint64) {
	if rev == 0 {
		return
	}
	if err := r.idem.unclaim(ctx, j.ev.ID, rev); err != nil {
		j.log.Warn().Err(err).Msg("running marker left: other copies of this event wait until it is over")
	}
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
