package runtime

import (
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are one worker's series. The collectors are shared by every
// runtime registered on the same registry; the worker label tells them
// apart.
type metrics struct {
	jobs         *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	inFlight     *prometheus.GaugeVec
	redeliveries *prometheus.CounterVec
	pending      *prometheus.GaugeVec
	recordErrors *prometheus.CounterVec
	waits        *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "forgebus", Subsystem: "worker", Name: "jobs_total",
			Help: "Deliveries handled, by worker and outcome.",
		}, []string{"worker", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "forgebus", Subsystem: "worker", Name: "job_duration_seconds",
			Help:    "Time from a delivery's arrival to its settlement.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 11),
		}, []string{"worker"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "forgebus", Subsystem: "worker", Name: "in_flight",
			Help: "Jobs running now in this process.",
		}, []string{"worker"}),
		redeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "forgebus", Subsystem: "worker", Name: "redeliveries_total",
			Help: "Deliveries that were not an event's first.",
		}, []string{"worker"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "forgebus", Subsystem: "worker", Name: "consumer_pending",
			Help: "Events the worker's consumer has not delivered yet (lag), polled.",
		}, []string{"worker"}),
		recordErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "forgebus", Subsystem: "worker", Name: "idempotency_record_errors_total",
			Help: "Finished jobs whose idempotency record could not be stored (a later copy of the event would run again).",
		}, []string{"worker"}),
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "forgebus", Subsystem: "worker", Name: "running_waits_total",
			Help: "Deliveries that found another copy of their event running on another replica, and waited for it.",
		}, []string{"worker"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.jobs, err = register(reg, m.jobs); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	if m.inFlight, err = register(reg, m.inFlight); err != nil {
		return nil, err
	}
	if m.redeliveries, err = register(reg, m.redeliveries); err != nil {
		return nil, err
	}
	if m.pending, err = register(reg, m.pending); err != nil {
		return nil, err
	}
	if m.recordErrors, err = register(reg, m.recordErrors); err != nil {
		return nil, err
	}
	if m.waits, err = register(reg, m.waits); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the collector registered before it.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("register metrics: %w", err)
}

// series are one worker's children of the collectors, looked up once.
type series struct {
	inFlight     prometheus.Gauge
	redeliveries prometheus.Counter
	duration     prometheus.Observer
	pending      prometheus.Gauge
	recordErrors prometheus.Counter
	waits        prometheus.Counter

	jobsVec *prometheus.CounterVec
	worker  string
	mu      sync.Mutex
	jobs    map[string]prometheus.Counter
}

func (m *metrics) series(worker string) *series {
	return &series{
		inFlight:     m.inFlight.WithLabelValues(worker),
		redeliveries: m.redeliveries.WithLabelValues(worker),
		duration:     m.duration.WithLabelValues(worker),
		pending:      m.pending.WithLabelValues(worker),
		recordErrors: m.recordErrors.WithLabelValues(worker),
		waits:        m.waits.WithLabelValues(worker),
		jobsVec:      m.jobs,
		worker:       worker,
		jobs:         map[string]prometheus.Counter{},
	}
}

// job is the jobs_total counter of outcome.
func (s *series) job(outcome string) prometheus.Counter {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.jobs[outcome]
	if !ok {
		c = s.jobsVec.WithLabelValues(s.worker, outcome)
		s.jobs[outcome] = c
	}
	return c
}
