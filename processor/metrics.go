package processor

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	inserted          prometheus.Counter
	insertErrors      prometheus.Counter
	redelivered       prometheus.Counter
	duplicatesSkipped prometheus.Counter
	filtered          *prometheus.CounterVec
	insertSeconds     prometheus.Histogram
	batchSeconds      prometheus.Histogram
	batchHits         prometheus.Histogram
	pending           prometheus.Gauge
	oldestAge         prometheus.Gauge
	deadLetters       prometheus.Counter
	identifications   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		inserted:          prometheus.NewCounter(prometheus.CounterOpts{Name: "leadpipe_processor_hits_inserted_total", Help: "Hits written to ClickHouse."}),
		insertErrors:      prometheus.NewCounter(prometheus.CounterOpts{Name: "leadpipe_processor_insert_errors_total", Help: "Failed batch writes (each is retried)."}),
		redelivered:       prometheus.NewCounter(prometheus.CounterOpts{Name: "leadpipe_processor_redelivered_total", Help: "Hits JetStream delivered more than once."}),
		duplicatesSkipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "leadpipe_processor_duplicates_skipped_total", Help: "Redelivered hits found already stored and not written again."}),
		filtered:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leadpipe_processor_hits_filtered_total", Help: "Hits dropped before storage, by reason."}, []string{"reason"}),
		insertSeconds:     prometheus.NewHistogram(prometheus.HistogramOpts{Name: "leadpipe_processor_insert_seconds", Help: "ClickHouse insert latency per batch.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)}),
		batchSeconds:      prometheus.NewHistogram(prometheus.HistogramOpts{Name: "leadpipe_processor_batch_seconds", Help: "Time to enrich, write and acknowledge a batch.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)}),
		batchHits:         prometheus.NewHistogram(prometheus.HistogramOpts{Name: "leadpipe_processor_batch_hits", Help: "Hits per batch.", Buckets: prometheus.ExponentialBuckets(1, 4, 9)}),
	}
	m.pending = prometheus.NewGauge(prometheus.GaugeOpts{Name: "leadpipe_processor_pending_hits", Help: "Hits waiting in the HITS stream (not yet acknowledged)."})
	m.oldestAge = prometheus.NewGauge(prometheus.GaugeOpts{Name: "leadpipe_processor_oldest_pending_age_seconds", Help: "Age of the oldest hit not yet acknowledged."})
	for _, r := range Reasons {
		m.filtered.WithLabelValues(r)
	}
	m.deadLetters = prometheus.NewCounter(prometheus.CounterOpts{Name: "leadpipe_processor_dead_letters_total", Help: "Hits that can never be processed, set aside in the dead-letter stream."})
	m.identifications = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leadpipe_processor_identifications_total",
		Help: "Identify hits, by outcome: recorded, or why not (no_consent, mobile, residential, bot, erased, off)."}, []string{"outcome"})
	for _, o := range []string{identifyRecorded, identifyNoConsent, identifyMobile, identifyResidential, identifyBot, identifyErased, identifyOff} {
		m.identifications.WithLabelValues(o)
	}
	reg.MustRegister(m.pending, m.oldestAge, m.deadLetters, m.identifications)
	reg.MustRegister(m.inserted, m.insertErrors, m.redelivered, m.duplicatesSkipped, m.filtered, m.insertSeconds, m.batchSeconds, m.batchHits)
	return m
}
