package processor

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadpipe/leadpipe/internal/bus"
	"github.com/leadpipe/leadpipe/internal/tenant"
	"github.com/leadpipe/leadpipe/ipintel"
	"github.com/leadpipe/leadpipe/store"
)

// batch is one insert's worth of enriched rows and dropped hits.
type batch struct {
	token   string
	hits    int // in the batch's messages
	rows    []row
	dropped []droppedHit
	// poison are hits that cannot be decoded or break the hit schema.
	poison []deadHit
	// refused are hits ClickHouse refused on their own, with its reason.
	refused []deadHit
	// checked says that the already-written check ran; unwritten and
	// unrecorded are what it left to insert. See write for why a retry
	// starts from them.
	checked    bool
	unwritten  []row
	unrecorded []droppedHit
}

// droppedHit is all that is kept of a dropped hit, for two days.
type droppedHit struct {
	store.Filtered
	id  string
	msg jetstream.Msg
	raw []byte // the encoded hit, to dead-letter it
}

// row is a hit to store, with the message it came in.
type row struct {
	store.Hit
	msg jetstream.Msg // the hit's message
	raw []byte        // the encoded hit, to dead-letter it
}

func (p *Processor) build(ctx context.Context, msgs []jetstream.Msg) (*batch, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	b := &batch{rows: make([]row, 0, len(msgs))}
	db := p.ipdata.DB() // one snapshot for the whole batch
	seqs := make([]uint64, 0, len(msgs))
	for _, m := range msgs {
		meta, err := m.Metadata()
		var seq uint64
		if err == nil {
			seq = meta.Sequence.Stream
			if meta.NumDelivered > 1 {
				p.metrics.redelivered.Inc()
			}
		}
		seqs = append(seqs, seq)
		for _, raw := range bus.SplitHits(m.Data()) {
			b.hits++
			if err := p.buildHit(ctx, b, db, m, seq, raw); err != nil {
				return nil, err
			}
		}
	}
	if err := p.sessions.assign(ctx, b.rows); err != nil {
		return nil, err
	}
	b.token = batchToken(seqs)
	return b, nil
}

// buildHit turns one hit of message m into a row, a dropped hit or a dead
// letter of b.
func (p *Processor) buildHit(ctx context.Context, b *batch, db *ipintel.DB, m jetstream.Msg, seq uint64, raw []byte) error {
	hit, err := bus.DecodeHit(raw)
	if err != nil {
		p.log.Error("setting aside an undecodable hit", "seq", seq, "err", err)
		b.poison = append(b.poison, deadHit{msg: m, raw: raw, reason: err.Error()})
		p.metrics.filtered.WithLabelValues(ReasonInvalid).Inc()
		return nil
	}
	if p.sites.Deleted(hit.Site) {
		// The site was erased while this hit waited: writing it, or
		// even a ledger count of it, would bring the site back. The
		// message is acknowledged with the batch.
		p.metrics.filtered.WithLabelValues(ReasonSiteDeleted).Inc()
		return nil
	}
	ts := time.UnixMilli(hit.TS).UTC()
	ip, err := netip.ParseAddr(hit.IP)
	if err != nil {
		p.log.Error("dropping hit with an unparsable IP", "seq", seq, "err", err)
		p.drop(b, m, raw, &hit, ts, ReasonInvalid)
		return nil
	}
	if hit.Type == "identify" {
		return p.identify(ctx, db, &hit, ip)
	}
	res, reason := p.enrich(ctx, db, &hit, ip)
	if reason != "" {
		p.drop(b, m, raw, &hit, ts, reason)
		return nil
	}
	vid, err := p.keys.ID(ctx, &hit, ip)
	if err != nil {
		return fmt.Errorf("deriving visitor id: %w", err)
	}
	if hit.ClientID != "" && p.erased.Has(hit.Site, vid) {
		p.drop(b, m, raw, &hit, ts, ReasonErased)
		return nil
	}
	site, known := p.sites.LookupSite(ctx, hit.Site)
	retention := uint16(tenant.DefaultRetentionDays)
	if known {
		retention = uint16(site.Retention())
	}
	path := urlPath(hit.URL)
	var intent, candidate uint8
	if hit.Type == "pageview" && site.IntentPath(path) {
		intent = 1
	}
	if res.Candidate() {
		candidate = 1
	}
	b.rows = append(b.rows, row{Hit: store.Hit{
		SiteID: hit.Site, HitID: hit.ID, Type: hit.Type, URL: hit.URL, Path: path, Intent: intent,
		Referrer: hit.Referrer, Title: hit.Title, Consent: hit.Consent,
		TS: ts, ReceivedAt: time.UnixMilli(hit.ReceivedAt).UTC(), VisitorID: vid, EngagedMS: hit.EngagedMS,
		CompanyID: res.CompanyID, CompanyName: res.CompanyName, CompanyDomain: res.CompanyDomain,
		CompanyIndustry: res.Industry, CompanySize: res.Size, CompanyCountry: res.CompanyCountry, ASOrg: res.ASOrg, ASN: res.ASN,
		NetworkType: res.Type, Country: res.Country, City: db.City(ip), Lang: hit.Lang, StreamSeq: seq,
		RetentionDays: retention, Candidate: candidate, DecidedBy: res.Source,
	}, msg: m, raw: raw})
	return nil
}

// enrich decides what is known of a hit's visitor, or why the hit must be
// dropped: software rather than a person first, then the network type.
func (p *Processor) enrich(ctx context.Context, db *ipintel.DB, hit *bus.Hit, ip netip.Addr) (ipintel.Result, string) {
	if why := botReason(hit.UserAgent, hit.Lang); why != "" {
		return ipintel.Result{}, ReasonBot
	}
	res := db.Enrich(ip)
	if p.learned != nil {
		if n, ok := p.learned.Lookup(ip); ok && db.LearnedApplies(ip, n) {
			ipintel.ApplyLearned(&res, n)
			db.AttachProfile(&res)
		}
	}
	var rdap *ipintel.RDAPAnswer
	if p.rdap != nil {
		// Asked with what the IP data says: a registry's answer outranks
		// reverse DNS, so the PTR name must not stop the question.
		rdap, _ = p.rdap.Peek(ip, &res)
	}
	if p.ptr != nil {
		if sig, ok := p.ptr.Peek(ip); ok {
			ipintel.ApplyPTR(&res, sig)
			db.AttachProfile(&res)
		}
	}
	if rdap != nil {
		ipintel.ApplyRDAP(&res, rdap)
	}
	switch res.Type {
	case ipintel.TypeResidential:
		return res, ReasonResidential
	case ipintel.TypeMobile:
		return res, ReasonMobile
	case ipintel.TypeHosting:
		if site, ok := p.sites.LookupSite(ctx, hit.Site); !ok || !site.KeepHosting {
			return res, ReasonHosting
		}
	}
	if res.CompanyID == "" || res.Type == ipintel.TypeUnknown {
		return res, ReasonUnknown
	}
	return res, ""
}

// drop records a hit that is not stored: what remains of it is a count.
func (p *Processor) drop(b *batch, m jetstream.Msg, raw []byte, hit *bus.Hit, ts time.Time, reason string) {
	b.dropped = append(b.dropped, droppedHit{Filtered: store.Filtered{SiteID: hit.Site, TS: ts, Reason: reason, HitKey: store.HitKey(hit.Site, hit.ID)}, id: hit.ID, msg: m, raw: raw})
}

// batchToken derives the insert deduplication token from the stream
// sequences in the batch: the same messages always give the same token, so
// retrying a batch in hand is a no-op in ClickHouse. A redelivered message
// usually arrives in a batch of other messages, hence another token: the
// stored-hit check in write covers that case.
func batchToken(seqs []uint64) string {
	slices.Sort(seqs)
	h := xxhash.New()
	var buf [8]byte
	for _, s := range seqs {
		for i := range buf {
			buf[i] = byte(s >> (8 * i))
		}
		_, _ = h.Write(buf[:])
	}
	first, last := uint64(0), uint64(0)
	if len(seqs) > 0 {
		first, last = seqs[0], seqs[len(seqs)-1]
	}
	return "seq-" + strconv.FormatUint(first, 10) + "-" + strconv.FormatUint(last, 10) + "-" + strconv.FormatUint(h.Sum64(), 16)
}

func urlPath(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Path == "" {
		return "/"
	}
	return u.Path
}
