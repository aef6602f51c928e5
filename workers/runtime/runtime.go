package runtime

import (
	"context"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Worker is one worker: its name, the event subjects it takes, its handler
// and its settings. The name names its consumer, its idempotency bucket and
// its result and dead-letter subjects.
type Worker struct {
	// Name is 1 to 64 of [A-Za-z0-9_-].
	Name string
	// Subjects filter FORGE_EVENTS ("forge.gogs.push.>"); at least one.
	Subjects []string
	Handler  Handler
	Settings Settings
	Policy   Policy
}

var workerName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Validate reports what makes w unusable, wrapping [ErrInvalidWorker] or
// [ErrInvalidSettings].
func (w Worker) Validate() error {
	if !workerName.MatchString(w.Name) {
		return fmt.Errorf("%w: name %q: want 1 to 64 of A-Z a-z 0-9 _ -", ErrInvalidWorker, w.Name)
	}
	if len(w.Subjects) == 0 {
		return fmt.Errorf("%w: %s has no subjects", ErrInvalidWorker, w.Name)
	}
	for _, s := range w.Subjects {
		if s == "" || len(s) > 512 {
			return fmt.Errorf("%w: %s: subject %q", ErrInvalidWorker, w.Name, s)
		}
	}
	if w.Handler == nil {
		return fmt.Errorf("%w: %s has no handler", ErrInvalidWorker, w.Name)
	}
	if err := w.Settings.Validate(); err != nil {
		return fmt.Errorf("worker %s: %w", w.Name, err)
	}
	if err := w.Policy.Validate(); err != nil {
		return fmt.Errorf("worker %s: %w", w.Name, err)
	}
	return nil
}

// Runtime runs one replica of a worker. Build it with [New], run it with
// [Runtime.Run].
type Runtime struct {
	js      jetstream.JetStream
	w       Worker
	log     zerolog.Logger
	metrics *metrics
	series  *series
	kv      jetstream.KeyValue // the worker's idempotency bucket

	// hard is the parent of every job's context: cancelled when a stop's
	// grace period is over.
	hard       context.Context
	hardCancel context.CancelFunc

	runOnce sync.Once
}

// Timeouts of the runtime's own broker calls.
const (
	setupTimeout   = 10 * time.Second
	publishTimeout = 10 * time.Second
	lagInterval    = 5 * time.Second
	// forceWait is how long a stop waits, after the grace period, for
	// cancelled jobs to return before it naks their messages regardless.
	forceWait = 2 * time.Second
)

// New checks w and registers its metrics on reg (nil: none). It does no
// I/O: [Runtime.Run] creates the consumer and the bucket.
func New(js jetstream.JetStream, w Worker, log zerolog.Logger, reg prometheus.Registerer) (*Runtime, error) {
	if err := w.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	w.Subjects = append([]string(nil), w.Subjects...)
	return &Runtime{
		js:      js,
		w:       w,
		log:     log.With().Str("worker", w.Name).Logger(),
		metrics: m,
	}, nil
}

// Run runs the worker until ctx is cancelled, then stops gracefully: it
// stops pulling, lets in-flight jobs finish within Settings.GracePeriod,
// cancels and naks (with no delay) those still running, and returns nil.
// It returns an error when the consumer or the idempotency bucket cannot
// be set up, or the router fails. Run may be called once.
func (r *Runtime) Run(ctx context.Context) error {
	err := fmt.Errorf("%w: %s: Run called twice", ErrInvalidWorker, r.w.Name)
	r.runOnce.Do(func() { err = r.run(ctx) })
	return err
}

func (r *Runtime) run(ctx context.Context) error {
	r.series = r.metrics.series(r.w.Name)
	cons, err := r.setup(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it started
		}
		return err
	}
	r.hard, r.hardCancel = context.WithCancel(context.WithoutCancel(ctx))
	defer r.hardCancel()
	force := make(chan struct{})
	sub := newSubscriber(cons, r.w.Settings.MaxInFlight, r.w.Settings.prefetch(), r.hard, force, r.log)

	router, err := message.NewRouter(message.RouterConfig{
		CloseTimeout: r.w.Settings.GracePeriod + forceWait + time.Second,
	}, NewWatermillLogger(r.log))
	if err != nil {
		return fmt.Errorf("worker %s: router: %w", r.w.Name, err)
	}
	// Outermost first: settle turns every outcome into a result and an
	// ack or nak; then panic recovery, correlation id, policy, the claim
	// of the event's key, and the handler with its retry.
	router.AddMiddleware(r.settle, middleware.Recoverer, r.correlate, r.policy, r.idempotent)
	router.AddConsumerHandler(r.w.Name, consumerStream+"/"+r.w.Name, sub, r.handle)

	rctx, rcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer rcancel()
	errc := make(chan error, 1)
	go func() { errc <- router.Run(rctx) }()
	lctx, lcancel := context.WithCancel(ctx)
	defer lcancel()
	lagDone := make(chan struct{})
	go func() { defer close(lagDone); r.pollLag(lctx, cons) }()
	r.log.Info().Strs("subjects", r.w.Subjects).Int("max_in_flight", r.w.Settings.MaxInFlight).Msg("worker running")

	select {
	case <-ctx.Done():
	case err := <-errc:
		close(force)
		sub.stopFetching()
		if err == nil {
			err = fmt.Errorf("router stopped")
		}
		return fmt.Errorf("worker %s: %w", r.w.Name, err)
	}

	// Graceful stop.
	r.log.Info().Dur("grace", r.w.Settings.GracePeriod).Msg("worker stopping: finishing in-flight jobs")
	rcancel()
	sub.stopFetching()
	select {
	case <-sub.done:
	case err := <-errc: // the router ended before it subscribed
		errc <- err
	}
	if !waitTimeout(&sub.inflight, r.w.Settings.GracePeriod) {
		r.log.Warn().Msg("grace period over: cancelling in-flight jobs")
		r.hardCancel()
		waitTimeout(&sub.inflight, forceWait)
	}
	close(force)
	sub.inflight.Wait()
	select {
	case <-errc:
	case <-time.After(forceWait):
	}
	<-lagDone
	r.log.Info().Msg("worker stopped")
	return nil
}

// setup creates or updates the consumer and the idempotency bucket.
func (r *Runtime) setup(ctx context.Context) (jetstream.Consumer, error) {
	sctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	cons, err := r.js.CreateOrUpdateConsumer(sctx, consumerStream, ConsumerConfig(r.w))
	if err != nil {
		return nil, fmt.Errorf("worker %s: consumer on %s: %w", r.w.Name, consumerStream, err)
	}
	bucket := IdempotencyBucket(r.w)
	bucket.Replicas = KeepReplicas(sctx, r.js, "KV_"+bucket.Bucket, bucket.Replicas)
	if r.kv, err = r.js.CreateOrUpdateKeyValue(sctx, bucket); err != nil {
		return nil, fmt.Errorf("worker %s: idempotency bucket: %w", r.w.Name, err)
	}
	return cons, nil
}

// pollLag keeps the consumer_pending gauge current until ctx is done.
func (r *Runtime) pollLag(ctx context.Context, cons jetstream.Consumer) {
	t := time.NewTicker(lagInterval)
	defer t.Stop()
	for {
		ictx, cancel := context.WithTimeout(ctx, setupTimeout)
		info, err := cons.Info(ictx)
		cancel()
		if err == nil {
			r.series.pending.Set(float64(info.NumPending))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// waitTimeout waits for wg at most d; it reports whether wg finished.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}
