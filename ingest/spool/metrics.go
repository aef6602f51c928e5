package spool

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// NewMetrics registers the spool's metrics with reg: the gauges
// forgebus_spool_depth, forgebus_spool_bytes and
// forgebus_spool_oldest_age_seconds (read from [Spool.Stats] at scrape
// time) and the counters forgebus_spool_appended_total,
// forgebus_spool_forwarded_total, forgebus_spool_full_rejections_total and
// forgebus_spool_corrupt_total (corrupt tails moved aside at Open plus
// records dropped because they failed their checksum later). Like
// promauto, it panics if a metric is already registered.
func NewMetrics(reg prometheus.Registerer, s *Spool) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "forgebus_spool_depth",
			Help: "Entries in the ingest disk spool not yet forwarded to JetStream.",
		}, func() float64 { return float64(s.Depth()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "forgebus_spool_bytes",
			Help: "Encoded size of the entries in the ingest disk spool not yet forwarded.",
		}, func() float64 { return float64(s.Stats().Bytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "forgebus_spool_oldest_age_seconds",
			Help: "Age of the oldest entry in the ingest disk spool; 0 when it is empty.",
		}, func() float64 {
			st := s.Stats()
			if st.Oldest.IsZero() {
				return 0
			}
			return max(0, time.Since(st.Oldest).Seconds())
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "forgebus_spool_appended_total",
			Help: "Entries written to the ingest disk spool.",
		}, func() float64 { return float64(s.appended.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "forgebus_spool_forwarded_total",
			Help: "Spooled entries published to JetStream and removed from the spool.",
		}, func() float64 { return float64(s.forwarded.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "forgebus_spool_full_rejections_total",
			Help: "Entries refused because the ingest disk spool was full.",
		}, func() float64 { return float64(s.rejected.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "forgebus_spool_corrupt_total",
			Help: "Corrupt spool tails moved aside at start plus corrupt records dropped.",
		}, func() float64 { return float64(s.corrupt.Load()) }),
	)
}
