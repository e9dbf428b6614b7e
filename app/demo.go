package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"time"

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

var demoReferrers = []string{"", "", "https://www.google.com/", "https://www.linkedin.com/", "https://news.ycombinator.com/", "https://duckduckgo.com/"}

// demoTraffic is a demo site and the networks its visitors come from.
type demoTraffic struct {
	collector, site string
	networks        [][]netip.Prefix
}

// prepareDemo creates (or finds) the demo site and picks the networks.
func prepareDemo(ctx context.Context, s *Stack) (*demoTraffic, error) {
	d := &demoTraffic{collector: s.CollectorAddr}
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
		d.site = site.ID
	}
	table := s.IPData.DB().ASN()
	for _, asn := range demoNetworks {
		if p := table.PrefixesOf(asn); len(p) > 0 {
			d.networks = append(d.networks, p)
		}
	}
	if len(d.networks) == 0 {
		return nil, fmt.Errorf("demo: none of the demo networks is in the ASN data")
	}
	s.DemoSite = d.site
	s.log.Info("demo traffic started", "site", d.site, "networks", len(d.networks))
	return d, nil
}

// run sends the demo site a steady trickle of visits through the
// collector, as a tracker on a real site would, until ctx ends.
func (d *demoTraffic) run(ctx context.Context) {
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
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
		// One short visit: a visitor of one company reads a few pages.
		prefixes := d.networks[r.IntN(len(d.networks))]
		ip := ipintel.RandomAddr(prefixes[r.IntN(len(prefixes))], r)
		cid := fmt.Sprintf("demo.%d", r.Uint32())
		referrer := demoReferrers[r.IntN(len(demoReferrers))]
		for range 1 + r.IntN(4) {
			page := demoPages[r.IntN(len(demoPages))]
			body, _ := json.Marshal(map[string]any{
				"site": d.site, "type": "pageview", "url": "https://demo.leadpipe.test" + page.path,
				"title": page.title, "referrer": referrer, "cid": cid, "consent": "granted",
			})
			postDemoHit(ctx, client, url, body, ip)
			engaged, _ := json.Marshal(map[string]any{
				"site": d.site, "type": "engagement", "url": "https://demo.leadpipe.test" + page.path,
				"cid": cid, "consent": "granted", "engaged_ms": 2000 + r.IntN(60000),
			})
			postDemoHit(ctx, client, url, engaged, ip)
			referrer = "https://demo.leadpipe.test/"
		}
	}
}

func postDemoHit(ctx context.Context, client *http.Client, url string, body []byte, ip netip.Addr) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("X-Forwarded-For", ip.String())
	// What a visitor's browser sends: the processor drops hits without it
	// as software, not people.
	req.Header.Set("User-Agent", BrowserUserAgent)
	req.Header.Set("Accept-Language", "en-GB,en;q=0.9")
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
	}
}
