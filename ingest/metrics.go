package ingest

import (
	"errors"
	"slices"
	"strconv"

	"github.com/forgebus/forgebus/schemas"
	"github.com/prometheus/client_golang/prometheus"
)

// Label values of the event label for requests whose event name is not one
// forgebus knows: the label never takes an arbitrary header value, so its
// cardinality stays bounded.
const (
	eventUnverified = "unverified" // rejected before the signature was checked
	eventOther      = "other"      // verified, but not one of schemas.KnownEvents
)

// Metrics are the handler's Prometheus metrics. Create them once with
// [NewMetrics] and pass them with [WithMetrics]; a nil *Metrics records
// nothing.
type Metrics struct {
	requests   *prometheus.CounterVec
	publish    prometheus.Histogram
	bodyBytes  prometheus.Histogram
	spooled    prometheus.Counter
	spoolFails *prometheus.CounterVec
	duplicates *prometheus.CounterVec
	inFlight   prometheus.Gauge
}

// NewMetrics creates the ingest metrics and registers them with reg (nil:
// not registered). Registering twice with the same registry reuses the
// collectors already there. The metrics are:
//
//	forgebus_ingest_requests_total{event,status}   requests by event and HTTP status
//	forgebus_ingest_publish_seconds                time to the JetStream ack (or error)
//	forgebus_ingest_body_bytes                     size of the bodies read
//	forgebus_ingest_spooled_total                  deliveries written to the spool
//	forgebus_ingest_spool_failures_total{reason}   spool appends that failed (full, error)
//	forgebus_ingest_duplicates_total{kind}         deliveries already stored, by kind (delivery, payload, unknown)
//	forgebus_ingest_in_flight                      requests being handled
//
// The event label is a known event name, "other" or "unverified".
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "forgebus_ingest_requests_total",
			Help: "Webhook requests handled, by event and HTTP status.",
		}, []string{"event", "status"}),
		publish: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "forgebus_ingest_publish_seconds",
			Help:    "Time from publish to JetStream ack or error.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		bodyBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "forgebus_ingest_body_bytes",
			Help:    "Size of the webhook bodies read.",
			Buckets: prometheus.ExponentialBuckets(256, 4, 9), // 256 B .. 16 MiB
		}),
		spooled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "forgebus_ingest_spooled_total",
			Help: "Deliveries written to the local spool instead of JetStream.",
		}),
		spoolFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "forgebus_ingest_spool_failures_total",
			Help: "Spool appends that failed, by reason (full, error).",
		}, []string{"reason"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "forgebus_ingest_duplicates_total",
			Help: "Deliveries JetStream acknowledged as duplicates of a stored one, by kind: delivery (same delivery id), payload (same signed payload, another delivery id), unknown (stored event unreadable).",
		}, []string{"kind"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "forgebus_ingest_in_flight",
			Help: "Webhook requests being handled.",
		}),
	}
	if reg != nil {
		m.requests = register(reg, m.requests)
		m.publish = register(reg, m.publish)
		m.bodyBytes = register(reg, m.bodyBytes)
		m.spooled = register(reg, m.spooled)
		m.spoolFails = register(reg, m.spoolFails)
		m.duplicates = register(reg, m.duplicates)
		m.inFlight = register(reg, m.inFlight)
	}
	// Both reasons show (at 0) before the first failure, so an alert on
	// them has a series to watch.
	for _, reason := range []string{"full", "error"} {
		m.spoolFails.WithLabelValues(reason)
	}
	for _, kind := range []string{dupDelivery, dupPayload, dupUnknown} {
		m.duplicates.WithLabelValues(kind)
	}
	return m
}

// register registers c, or returns the equal collector reg already has.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err) // a conflicting metric of the same name: a programming error
	}
	return c
}

// eventLabel bounds the event label to the known events.
func eventLabel(event string, verified bool) string {
	switch {
	case !verified:
		return eventUnverified
	case slices.Contains(schemas.KnownEvents, event):
		return event
	}
	return eventOther
}

func (m *Metrics) request(event string, status int) {
	if m != nil {
		m.requests.WithLabelValues(event, strconv.Itoa(status)).Inc()
	}
}

// published records a publish; dupKind is empty unless the ack said
// duplicate.
func (m *Metrics) published(seconds float64, dupKind string) {
	if m == nil {
		return
	}
	m.publish.Observe(seconds)
	if dupKind != "" {
		m.duplicates.WithLabelValues(dupKind).Inc()
	}
}

func (m *Metrics) body(n int) {
	if m != nil {
		m.bodyBytes.Observe(float64(n))
	}
}

func (m *Metrics) spool(err error) {
	switch {
	case m == nil:
	case err == nil:
		m.spooled.Inc()
	case errors.Is(err, ErrSpoolFull):
		m.spoolFails.WithLabelValues("full").Inc()
	default:
		m.spoolFails.WithLabelValues("error").Inc()
	}
}

func (m *Metrics) inflight(d float64) {
	if m != nil {
		m.inFlight.Add(d)
	}
}
