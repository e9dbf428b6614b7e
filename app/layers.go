package app

import (
	"context"
	"fmt"

	"github.com/leadpipe/leadpipe/internal/bus"
	"github.com/leadpipe/leadpipe/ipintel"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// openLayers makes the IP intelligence layers that live in NATS: the
// networks learned from identifications (--ipdb.learn, on by default,
// empty until a site identifies visitors) and RDAP (off by default).
func (s *Stack) openLayers(ctx context.Context) error {
	kv := func(name string) (jetstream.KeyValue, error) {
		b, err := s.Bus.JS.KeyValue(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("bucket %s: %w", name, err)
		}
		return b, nil
	}
	// Made even when learning is off: erasures must still find the
	// identifications recorded while it was on. Off, it is not run, so it
	// learns nothing and names nothing.
	ids, err := kv(bus.IdentitiesBucket)
	if err != nil {
		return err
	}
	removals, err := kv(bus.LearnedBucket)
	if err != nil {
		return err
	}
	s.learner = ipintel.NewLearner(ids, removals, s.log.With("component", "learner"))
	if !s.cfg.IPData.RDAP {
		return nil
	}
	answers, err := kv(bus.RDAPBucket)
	if err != nil {
		return err
	}
	s.rdap = ipintel.NewRDAP(s.cfg.IPData.RDAPConfig(), answers, s.IPData.Classifier(), s.log.With("component", "rdap"))
	registerRDAPMetrics(s.Registry, s.rdap)
	return nil
}

// registerRDAPMetrics exports what the RDAP layer did.
func registerRDAPMetrics(reg prometheus.Registerer, r *ipintel.RDAP) {
	counter := func(name, help string, labels prometheus.Labels, v func(ipintel.RDAPStats) uint64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(v(r.Stats())) }))
	}
	counter("leadpipe_rdap_queries_total", "RDAP queries sent to the registries", nil, func(s ipintel.RDAPStats) uint64 { return s.Queries })
	counter("leadpipe_rdap_companies_total", "RDAP answers naming a company's assignment", nil, func(s ipintel.RDAPStats) uint64 { return s.Companies })
	counter("leadpipe_rdap_errors_total", "RDAP queries that failed", nil, func(s ipintel.RDAPStats) uint64 { return s.Errors })
	counter("leadpipe_rdap_lookups_total", "hits whose network had an RDAP answer", prometheus.Labels{"result": "known"}, func(s ipintel.RDAPStats) uint64 { return s.Hits })
	counter("leadpipe_rdap_lookups_total", "hits whose network had an RDAP answer", prometheus.Labels{"result": "unknown"}, func(s ipintel.RDAPStats) uint64 { return s.Misses })
	help := "networks not asked about, by why (asked again at a later hit)"
	counter("leadpipe_rdap_not_asked_total", help, prometheus.Labels{"reason": "queue_full"}, func(s ipintel.RDAPStats) uint64 { return s.Dropped })
	counter("leadpipe_rdap_not_asked_total", help, prometheus.Labels{"reason": "daily_cap"}, func(s ipintel.RDAPStats) uint64 { return s.Capped })
	counter("leadpipe_rdap_not_asked_total", help, prometheus.Labels{"reason": "retry_after"}, func(s ipintel.RDAPStats) uint64 { return s.Paused })
	counter("leadpipe_rdap_not_asked_total", help, prometheus.Labels{"reason": "circuit_open"}, func(s ipintel.RDAPStats) uint64 { return s.Broken })
}
