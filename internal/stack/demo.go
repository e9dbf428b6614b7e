package stack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/leadpipe/leadpipe/ipintel"
)

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

// startDemo creates (or finds) the demo site and sends it a steady trickle
// of visits through the collector, as a tracker on a real site would.
func startDemo(ctx context.Context, s *Stack, ipdb *ipintel.Table, g *errgroup.Group) error {
	var siteID string
	for _, site := range s.Tenants.Sites() {
		if site.Name == demoSiteName {
			siteID = site.ID
		}
	}
	if siteID == "" {
		site, err := s.Tenants.CreateSite(ctx, demoSiteName, "demo.leadpipe.test")
		if err != nil {
			return fmt.Errorf("creating the demo site: %w", err)
		}
		siteID = site.ID
	}
	var prefixes [][]netip.Prefix
	for _, asn := range demoNetworks {
		if p := ipdb.PrefixesOf(asn); len(p) > 0 {
			prefixes = append(prefixes, p)
		}
	}
	if len(prefixes) == 0 {
		return fmt.Errorf("demo: none of the demo networks is in the ASN data")
	}
	s.DemoSite = siteID
	s.log.Info("demo traffic started", "site", siteID, "networks", len(prefixes))
	g.Go(func() error {
		runDemo(ctx, s.CollectorAddr, siteID, prefixes)
		return nil
	})
	return nil
}

func runDemo(ctx context.Context, collector, site string, networks [][]netip.Prefix) {
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	client := &http.Client{Timeout: 10 * time.Second}
	url := "http://" + collector + "/v1/hit"
	tick := time.NewTicker(400 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		// One short visit: a visitor of one company reads a few pages.
		prefixes := networks[r.IntN(len(networks))]
		ip := ipintel.RandomAddr(prefixes[r.IntN(len(prefixes))], r)
		cid := fmt.Sprintf("demo.%d", r.Uint32())
		referrer := demoReferrers[r.IntN(len(demoReferrers))]
		for range 1 + r.IntN(4) {
			page := demoPages[r.IntN(len(demoPages))]
			body, _ := json.Marshal(map[string]any{
				"site": site, "type": "pageview", "url": "https://demo.leadpipe.test" + page.path,
				"title": page.title, "referrer": referrer, "cid": cid, "consent": "granted",
			})
			postDemoHit(ctx, client, url, body, ip)
			engaged, _ := json.Marshal(map[string]any{
				"site": site, "type": "engagement", "url": "https://demo.leadpipe.test" + page.path,
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
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) leadpipe-demo")
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
	}
}
