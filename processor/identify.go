package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadpipe/leadpipe/internal/bus"
	"github.com/leadpipe/leadpipe/ipintel"
)

// Outcomes of an identify hit (leadpipe_processor_identifications_total).
const (
	identifyRecorded  = "recorded"
	identifyNoConsent = "no_consent" // consent not granted: nothing recorded
	identifyMobile    = "mobile"     // a carrier's network: its addresses are shared by thousands
	// a consumer ISP's network with no registry assignment: learning it
	// would store its households' visits under a company
	identifyResidential = "residential"
	identifyBot         = "bot"
	identifyErased      = "erased"
	identifyOff         = "off" // learning from identifications is off (--ipdb.learn=false)
)

// identify records a consented identification: the visitor, keyed, gave an
// address at hit.Domain from ip's network (the registry assignment holding
// it, or its /24 or /48). The address itself never reached the processor
// (the collector keeps only its domain), and nothing of the hit is stored
// in ClickHouse: the identifications teach the learned networks
// (ipintel.Learner). The message is acknowledged with the batch.
func (p *Processor) identify(ctx context.Context, db *ipintel.DB, hit *bus.Hit, ip netip.Addr) error {
	outcome := identifyRecorded
	defer func() { p.metrics.identifications.WithLabelValues(outcome).Inc() }()
	if p.learned == nil {
		outcome = identifyOff
		return nil
	}
	if hit.Consent != "granted" || hit.Domain == "" || hit.ClientID == "" {
		outcome = identifyNoConsent
		return nil
	}
	if botReason(hit.UserAgent, hit.Lang) != "" {
		outcome = identifyBot
		return nil
	}
	switch res := db.Enrich(ip); {
	case res.Type == ipintel.TypeMobile:
		outcome = identifyMobile
		return nil
	case res.Type == ipintel.TypeResidential && res.Source != ipintel.SourceRegistry:
		// A household's /24 is its neighbours' too: learned, their
		// visits would be stored as the company's. Only a registry
		// assignment inside a consumer ISP is a company's own network.
		outcome = identifyResidential
		return nil
	}
	vid, err := p.keys.ID(ctx, hit, ip)
	if err != nil {
		return fmt.Errorf("deriving visitor id: %w", err)
	}
	if p.erased.Has(hit.Site, vid) {
		outcome = identifyErased
		return nil
	}
	kv, err := p.identities(ctx)
	if err != nil {
		return err
	}
	if p.erased.Has(hit.Site, vid) { // erased meanwhile
		outcome = identifyErased
		return nil
	}
	raw, _ := json.Marshal(ipintel.Identification{Domain: hit.Domain, At: time.UnixMilli(hit.TS).UTC()})
	if _, err := kv.Put(ctx, ipintel.IdentificationKey(db.LearnNetwork(ip), hit.Site, strconv.FormatUint(vid, 16)), raw); err != nil {
		return fmt.Errorf("recording an identification: %w", err)
	}
	return nil
}

// identities is the identifications bucket, opened once.
func (p *Processor) identities(ctx context.Context) (jetstream.KeyValue, error) {
	p.idsMu.Lock()
	defer p.idsMu.Unlock()
	if p.ids == nil {
		kv, err := p.js.KeyValue(ctx, bus.IdentitiesBucket)
		if err != nil {
			return nil, fmt.Errorf("opening bucket %s: %w", bus.IdentitiesBucket, err)
		}
		p.ids = kv
	}
	return p.ids, nil
}
