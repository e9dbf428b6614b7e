package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadpipe/leadpipe/internal/bus"
	"github.com/leadpipe/leadpipe/ipintel"
)

// BrowserUserAgent is a current desktop Chrome's user agent, sent by the
// demo traffic (and tests) as a visitor's browser would.
const BrowserUserAgent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"

// demoSiteName marks the site `serve --demo` creates once and reuses.
const demoSiteName = "leadpipe demo"

// demoNetworks are business networks of the ASN data the demo visitors come
// from: real companies' own address space, so the feed looks like a real one.
var demoNetworks = []uint32{
	202200, // Siemens AG
	136767, // BMW AG
	212794, // SAP SE
	29356,  // Nestle Operational Services Worldwide SA
	3573,   // Accenture LLP
	3614,   // Dell, Inc.
	3917,   // Shell Information Technology International B.V.
	7054,   // Merck and Co., Inc.
	25252,  // Volvo Information Technology AB
	8528,   // RENAULT SAS
	15580,  // Allianz Technology SE
	7227,   // KPMG LLP
	8883,   // UBS AG
	158,    // Ericsson Inc.
}

// demoFiltered are networks and browsers whose hits the processor drops,
// one of each reason, so the filtered-traffic view shows what it does.
var demoFiltered = []struct {
	asn       uint32
	userAgent string
}{
	{7922, BrowserUserAgent},  // Comcast Cable: residential
	{22394, BrowserUserAgent}, // Verizon Wireless: mobile
	{16509, BrowserUserAgent}, // Amazon (AWS): hosting
	{202200, "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"}, // a crawler, from a company network
}

// demoLearned is a company the ASN data cannot name: its office network
// is a block of addresses no organisation announces. Its visitors give
// their work address on the contact form, with consent; from three of
// them on, the network is learned as the company's (README, layer 2a).
var demoLearned = struct {
	network  netip.Prefix
	domain   string
	visitors int
}{netip.MustParsePrefix("198.51.100.0/24"), "northwind.example", 5}

var demoPages = []struct{ path, title string }{
	{"/", "Acme Analytics – B2B analytics platform"},
	{"/pricing", "Pricing – Acme Analytics"},
	{"/product/integrations", "Integrations – Acme Analytics"},
	{"/customers", "Customer stories – Acme Analytics"},
	{"/blog/gdpr-first-party-analytics", "GDPR and first-party analytics – Acme blog"},
	{"/docs/getting-started", "Getting started – Acme docs"},
	{"/contact-sales", "Talk to sales – Acme Analytics"},
	{"/careers", "Careers – Acme Analytics"},
}

// demoEntries are how demo visits arrive: direct, from search, social and
// referral sites, and from two campaigns (UTM parameters on the landing
// page's URL).
var demoEntries = []struct{ referrer, query string }{
	{"", ""}, {"", ""},
	{"https://www.google.com/", ""}, {"https://duckduckgo.com/", ""},
	{"https://www.linkedin.com/", ""}, {"https://news.ycombinator.com/", ""},
	{"", "?utm_source=newsletter&utm_medium=email&utm_campaign=q4-launch"},
	{"https://www.linkedin.com/", "?utm_source=linkedin&utm_medium=paid-social&utm_campaign=cfo-webinar"},
}

// demoHistoryDays is how far back the demo site's history goes.
const demoHistoryDays = 21

// demoTraffic is a demo site and the networks its visitors come from.
type demoTraffic struct {
	collector, site string
	networks        [][]netip.Prefix // business networks, most active first
	filtered        [][]netip.Prefix // by demoFiltered
	js              jetstream.JetStream
	// history is set when the site was created now: it gets its past weeks.
	history bool
}

// prepareDemo creates (or finds) the demo site and picks the networks.
func prepareDemo(ctx context.Context, s *Stack) (*demoTraffic, error) {
	d := &demoTraffic{collector: s.CollectorAddr, js: s.Bus.JS}
	for _, site := range s.Tenants.Sites() {
		if site.Name == demoSiteName {
			d.site = site.ID
		}
	}
	if d.site == "" {
		site, err := s.Tenants.CreateSite(ctx, "", demoSiteName, "demo.leadpipe.test")
		if err != nil {
			return nil, fmt.Errorf("creating the demo site: %w", err)
		}
		d.site, d.history = site.ID, true
	}
	table := s.IPData.DB().ASN()
	for _, asn := range demoNetworks {
		if p := table.PrefixesOf(asn); len(p) > 0 {
			d.networks = append(d.networks, p)
		}
	}
	for _, f := range demoFiltered {
		d.filtered = append(d.filtered, table.PrefixesOf(f.asn))
	}
	if len(d.networks) == 0 {
		return nil, fmt.Errorf("demo: none of the demo networks is in the ASN data")
	}
	s.DemoSite = d.site
	history := 0
	if d.history {
		history = demoHistoryDays
	}
	s.log.Info("demo traffic started", "site", d.site, "networks", len(d.networks), "history_days", history)
	return d, nil
}

// demoVisit is one visit of the demo: from where, with which browser, and
// the hits it makes (site, type, page, referrer, client id, consent, time
// and engaged time filled in).
type demoVisit struct {
	ip        netip.Addr
	userAgent string
	hits      []bus.Hit
}

// visit makes a visit starting at start: a visitor of a business network
// (the first networks far more often than the last, so some companies
// come back and others once) reads a few pages; one visit in six is
// traffic the processor drops, one of each reason in turn.
func (d *demoTraffic) visit(r *rand.Rand, start time.Time) demoVisit {
	v := demoVisit{userAgent: BrowserUserAgent}
	cid := fmt.Sprintf("demo.%d", r.Uint32())
	identify := false
	if r.IntN(12) == 0 {
		v.ip = ipintel.RandomAddr(demoLearned.network, r)
		cid, identify = fmt.Sprintf("demo.northwind.%d", r.IntN(demoLearned.visitors)), true
	} else if r.IntN(6) == 0 {
		i := r.IntN(len(demoFiltered))
		if p := d.filtered[i]; len(p) > 0 {
			v.ip, v.userAgent = ipintel.RandomAddr(p[r.IntN(len(p))], r), demoFiltered[i].userAgent
		}
	}
	if !v.ip.IsValid() {
		// Zipf-like: network k is chosen about 1/(k+1) as often as the first.
		k := int(math.Floor(math.Pow(float64(len(d.networks)+1), r.Float64()))) - 1
		prefixes := d.networks[min(k, len(d.networks)-1)]
		v.ip = ipintel.RandomAddr(prefixes[r.IntN(len(prefixes))], r)
	}
	entry := demoEntries[r.IntN(len(demoEntries))]
	referrer, query := entry.referrer, entry.query
	at := start
	for range 1 + r.IntN(4) {
		page := demoPages[r.IntN(len(demoPages))]
		url := "https://demo.leadpipe.test" + page.path + query
		engaged := time.Duration(2000+r.IntN(90000)) * time.Millisecond
		base := bus.Hit{Site: d.site, URL: url, ClientID: cid, Consent: "granted"}
		view, ping := base, base
		view.Type, view.Title, view.Referrer, view.TS = "pageview", page.title, referrer, at.UnixMilli()
		ping.Type, ping.EngagedMS, ping.TS = "engagement", uint32(engaged.Milliseconds()), at.Add(engaged).UnixMilli()
		v.hits = append(v.hits, view, ping)
		if identify {
			// The contact form, sent: the tracker's leadpipe('identify').
			id := base
			id.Type, id.Domain, id.TS = "identify", demoLearned.domain, at.Add(engaged).UnixMilli()
			v.hits, identify = append(v.hits, id), false
		}
		referrer, query = "https://demo.leadpipe.test/", ""
		at = at.Add(engaged + time.Duration(5+r.IntN(30))*time.Second)
	}
	return v
}

// backfill gives a newly created demo site its past weeks: about thirty
// visits a day, published straight to the hits stream (the collector
// takes hits of the last seven days only), which the processor handles as
// any others.
func (d *demoTraffic) backfill(ctx context.Context, r *rand.Rand) error {
	today := time.Now().UTC().Truncate(24 * time.Hour)
	n := 0
	for day := demoHistoryDays; day >= 1; day-- {
		for range 20 + r.IntN(20) {
			start := today.AddDate(0, 0, -day).Add(time.Duration(7*3600+r.IntN(11*3600)) * time.Second)
			v := d.visit(r, start)
			for _, hit := range v.hits {
				n++
				hit.ID, hit.ReceivedAt, hit.IP, hit.UserAgent, hit.Lang = fmt.Sprintf("demo-history-%d", n), hit.TS, v.ip.String(), v.userAgent, "en-GB"
				data, err := hit.Encode()
				if err != nil {
					return err
				}
				msg := nats.NewMsg(bus.HitSubject(d.site))
				msg.Data = data
				msg.Header.Set(jetstream.MsgIDHeader, hit.MsgID())
				if _, err := d.js.PublishMsg(ctx, msg); err != nil {
					return fmt.Errorf("publishing the demo's history: %w", err)
				}
			}
		}
	}
	return nil
}

// run gives a new demo site its history, then sends it a steady trickle of
// visits through the collector, as a tracker on a real site would, until
// ctx ends.
func (d *demoTraffic) run(ctx context.Context, log *slog.Logger) {
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	if d.history {
		if err := d.backfill(ctx, r); err != nil && ctx.Err() == nil {
			log.Warn("the demo site's history is incomplete", "err", err)
		}
	}
	client := &http.Client{Timeout: 10 * time.Second}
	url := "http://" + d.collector + "/v1/hit"
	tick := time.NewTicker(400 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		v := d.visit(r, time.Now())
		for _, h := range v.hits {
			// What the tracker posts; live hits are dated by the collector.
			fields := map[string]any{"site": h.Site, "type": h.Type, "url": h.URL, "title": h.Title,
				"referrer": h.Referrer, "cid": h.ClientID, "consent": h.Consent, "engaged_ms": h.EngagedMS}
			if h.Type == "identify" {
				fields["email"] = "visitor@" + h.Domain
			}
			body, _ := json.Marshal(fields)
			postDemoHit(ctx, client, url, body, v.ip, v.userAgent)
		}
	}
}

func postDemoHit(ctx context.Context, client *http.Client, url string, body []byte, ip netip.Addr, userAgent string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("X-Forwarded-For", ip.String())
	// What a visitor's browser sends: the processor drops hits without it
	// as software, not people.
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Accept-Language", "en-GB,en;q=0.9")
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
	}
}
