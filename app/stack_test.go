package app_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go"

	"github.com/leadpipe/leadpipe/api"
	"github.com/leadpipe/leadpipe/app"
	"github.com/leadpipe/leadpipe/collector"
	"github.com/leadpipe/leadpipe/internal/bus"
	"github.com/leadpipe/leadpipe/internal/testenv"
	"github.com/leadpipe/leadpipe/ipintel"
	"github.com/leadpipe/leadpipe/processor"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func testConfig(t *testing.T, dataDir string) app.Config {
	testenv.Slow(t, "runs the whole pipeline with the ClickHouse engine")
	cfg := app.Config{
		Stages:      app.All,
		DataDir:     dataDir,
		IPData:      ipDataConfig(),
		NATS:        testenv.BusConfig(),
		ClickHouse:  testenv.ClickHouseConfig(),
		Collector:   collector.Config{Addr: freeAddr(t), TrustedProxies: "127.0.0.1", MaxBodyBytes: 16 << 10, PublishTimeout: 5 * time.Second, SiteRate: 100000, SiteBurst: 100000},
		Processor:   processor.Config{BatchSize: 1000, BatchWait: 100 * time.Millisecond, Consumer: "processor", AckWait: 30 * time.Second},
		API:         api.Config{Addr: freeAddr(t)},
		MetricsAddr: "127.0.0.1:0",
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startStack runs a stack of cfg until the test ends and returns it with a
// client holding its owner key.
func startStack(t *testing.T, cfg app.Config, log *slog.Logger) (*app.Stack, *client) {
	t.Helper()
	s, err := app.Start(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	return s, ownerClient(t, s, s.CollectorAddr)
}

// ownerClient is an API client of s with its owner key; it posts hits to
// collector.
func ownerClient(t *testing.T, s *app.Stack, collector string) *client {
	t.Helper()
	key, err := os.ReadFile(s.OwnerKeyPath)
	if err != nil {
		t.Fatal(err)
	}
	return &client{api: s.APIAddr, collector: collector, key: strings.TrimSpace(string(key)), http: &http.Client{Timeout: 10 * time.Second}}
}

type client struct {
	api, collector, key string
	http                *http.Client
	scheme              string // "https" when the listeners have TLS; empty is "http"
}

func (c *client) url(addr, path string) string {
	if c.scheme == "" {
		return "http://" + addr + path
	}
	return c.scheme + "://" + addr + path
}

func (c *client) do(t *testing.T, method, path string, body any, out any) int {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, c.url(c.api, path), rd)
	req.Header.Set("Authorization", "Bearer "+c.key)
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: decoding: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

// postHit posts until the collector answers 202, as a tracker's retry
// would, with the same hit id; it reports how many attempts failed.
func (c *client) postHit(ctx context.Context, body []byte, ip, userAgent string) (failures int, err error) {
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.url(c.collector, "/v1/hit"), bytes.NewReader(body))
		req.Header.Set("Content-Type", "text/plain")
		req.Header.Set("X-Forwarded-For", ip)
		req.Header.Set("User-Agent", userAgent)
		req.Header.Set("Accept-Language", "de-DE,de;q=0.9")
		resp, err := c.http.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusAccepted {
				return failures, nil
			}
			if resp.StatusCode != http.StatusServiceUnavailable {
				return failures, fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		if ctx.Err() != nil {
			return failures, ctx.Err()
		}
		failures++
		time.Sleep(50 * time.Millisecond)
	}
}

// posting posts hits from several workers, each hit until the collector
// answers 202.
type posting struct {
	acked, failures atomic.Int64
	wg              sync.WaitGroup
	errs            chan error
}

// postAll posts hits 0…n-1 (hit gives each one's body, address and user
// agent) from workers goroutines, pausing after each.
func postAll(ctx context.Context, c *client, workers, n int, pause time.Duration, hit func(i int) (body []byte, ip, userAgent string)) *posting {
	p := &posting{errs: make(chan error, workers)}
	var next atomic.Int64
	for range workers {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				body, ip, ua := hit(i)
				f, err := c.postHit(ctx, body, ip, ua)
				p.failures.Add(int64(f))
				if err != nil {
					p.errs <- fmt.Errorf("hit %d: %w", i, err)
					return
				}
				p.acked.Add(1)
				time.Sleep(pause)
			}
		}()
	}
	return p
}

// waitFor waits until n hits are acknowledged.
func (p *posting) waitFor(t *testing.T, n int64) {
	t.Helper()
	testenv.Eventually(t, time.Minute, func() error {
		if p.acked.Load() < n {
			return fmt.Errorf("%d acked", p.acked.Load())
		}
		return nil
	})
}

// wait waits for every worker and returns the first error.
func (p *posting) wait() error {
	p.wg.Wait()
	close(p.errs)
	return <-p.errs
}

type testHit struct {
	site, company, ip, userAgent string
	body                         []byte
	pageview                     bool
	engagedMS                    int
	dropReason                   string
}

// TestEndToEnd posts thousands of hits from several sites and real business
// networks (IPv4 and IPv6) to a running stack, restarts the stack in the
// middle while posting goes on, and checks that the API's company feed
// counts every hit exactly once.
func TestEndToEnd(t *testing.T) {
	const totalHits = 6000
	dataDir := t.TempDir()
	cfg := testConfig(t, dataDir)
	log := testenv.Logger()
	s, err := app.Start(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Stop() }()
	c := ownerClient(t, s, s.CollectorAddr)

	var sites []string
	for i := range 3 {
		var site struct{ ID string }
		if code := c.do(t, "POST", "/api/v1/sites", map[string]string{"name": fmt.Sprintf("Site %d", i), "domain": fmt.Sprintf("site%d.example", i)}, &site); code != http.StatusCreated {
			t.Fatalf("creating a site: %d", code)
		}
		sites = append(sites, site.ID)
	}

	// Visitors from real business networks, IPv4 and IPv6.
	table := testenv.ASN(t)
	// Mostly company networks; some home broadband, cloud and crawler
	// traffic that must leave nothing but a count in the filter ledger.
	r := rand.New(rand.NewPCG(42, 42))
	business := []uint32{212794, 202200, 136767, 29356, 3573, 8883, 158, 7054}
	dropped := map[uint32]string{7922: "residential", 3320: "residential", 16509: "hosting"}
	var networks []uint32
	for range 4 {
		networks = append(networks, business...)
	}
	for asn := range dropped {
		networks = append(networks, asn)
	}
	prefixes := map[uint32][]netip.Prefix{}
	for _, asn := range networks {
		prefixes[asn] = table.PrefixesOf(asn)
	}
	wantDropped := map[string]map[string]int{} // site → reason → hits
	hits := make([]testHit, totalHits)
	for i := range hits {
		asn := networks[r.IntN(len(networks))]
		ip := ipintel.RandomAddr(prefixes[asn][r.IntN(len(prefixes[asn]))], r)
		nw, ok := table.Lookup(ip)
		if !ok {
			t.Fatalf("%s not in the ASN data", ip)
		}
		site := sites[r.IntN(len(sites))]
		h := testHit{site: site, company: nw.CompanyID, ip: ip.String(), pageview: r.IntN(4) != 0, userAgent: app.BrowserUserAgent}
		if wantDropped[site] == nil {
			wantDropped[site] = map[string]int{}
		}
		switch reason, isDropped := dropped[asn]; {
		case isDropped:
			h.dropReason = reason
		case r.IntN(50) == 0:
			h.userAgent, h.dropReason = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "bot"
		}
		if h.dropReason != "" {
			wantDropped[site][h.dropReason]++
		}
		msg := map[string]any{"site": site, "url": fmt.Sprintf("https://%s/page/%d", "x.example", r.IntN(20)),
			"id": fmt.Sprintf("e2e-%d", i), "cid": fmt.Sprintf("visitor-%d", r.IntN(50)), "consent": "granted"}
		if h.pageview {
			msg["type"] = "pageview"
		} else {
			h.engagedMS = 1000 + r.IntN(30000)
			msg["type"], msg["engaged_ms"] = "engagement", h.engagedMS
		}
		h.body, _ = json.Marshal(msg)
		hits[i] = h
	}

	// Post from 8 workers; restart the whole stack once a third is in.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	posting := postAll(ctx, c, 8, totalHits, 0, func(i int) ([]byte, string, string) { return hits[i].body, hits[i].ip, hits[i].userAgent })
	posting.waitFor(t, totalHits/3)
	if err := s.Stop(); err != nil {
		t.Fatalf("stopping: %v", err)
	}
	if s, err = app.Start(context.Background(), cfg, log); err != nil {
		t.Fatalf("restarting: %v", err)
	}
	if err := posting.wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("posted %d hits; %d attempts failed while the stack restarted and were retried", posting.acked.Load(), posting.failures.Load())
	// Retry a slice of already accepted hits: still counted once.
	for _, h := range hits[:200] {
		if _, err := c.postHit(ctx, h.body, h.ip, h.userAgent); err != nil {
			t.Fatal(err)
		}
	}

	type agg struct{ pageviews, engagedMS int }
	want := map[string]map[string]*agg{}
	stored := 0
	for _, h := range hits {
		if h.dropReason != "" {
			continue
		}
		stored++
		if want[h.site] == nil {
			want[h.site] = map[string]*agg{}
		}
		a := want[h.site][h.company]
		if a == nil {
			a = &agg{}
			want[h.site][h.company] = a
		}
		if h.pageview {
			a.pageviews++
		}
		a.engagedMS += h.engagedMS
	}
	testenv.Eventually(t, 90*time.Second, func() error {
		for _, site := range sites {
			var feed struct{ Companies []api.Company }
			if code := c.do(t, "GET", "/api/v1/sites/"+site+"/companies?limit=1000", nil, &feed); code != http.StatusOK {
				return fmt.Errorf("feed: %d", code)
			}
			if len(feed.Companies) != len(want[site]) {
				return fmt.Errorf("site %s: %d companies in the feed, want %d", site, len(feed.Companies), len(want[site]))
			}
			for _, co := range feed.Companies {
				w := want[site][co.ID]
				if w == nil {
					return fmt.Errorf("site %s: unexpected company %s %q", site, co.ID, co.Name)
				}
				if int(co.Pageviews) != w.pageviews || int(co.EngagedSeconds) != w.engagedMS/1000 {
					return fmt.Errorf("site %s company %q: pageviews %d engaged %ds, want %d and %ds",
						site, co.Name, co.Pageviews, co.EngagedSeconds, w.pageviews, w.engagedMS/1000)
				}
			}
		}
		return nil
	})
	// And the raw table agrees: every id once.
	conn, err := s.ClickHouse.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var rows, ids uint64
	if err := conn.QueryRow(context.Background(), "SELECT count(), uniqExact(site_id, hit_id) FROM hits").Scan(&rows, &ids); err != nil {
		t.Fatal(err)
	}
	if rows != uint64(stored) || ids != uint64(stored) {
		t.Errorf("hits table: %d rows, %d distinct ids; want %d of each", rows, ids, stored)
	}
	// What was dropped is counted per site and reason, and nothing else.
	for _, site := range sites {
		var ledger struct{ Reasons map[string]int }
		c.do(t, "GET", "/api/v1/sites/"+site+"/filtered", nil, &ledger)
		for reason, n := range wantDropped[site] {
			if ledger.Reasons[reason] != n {
				t.Errorf("site %s: ledger %s = %d, want %d (%v)", site, reason, ledger.Reasons[reason], n, ledger.Reasons)
			}
		}
	}
}

// TestDemoFillsTheFeed: `serve --demo` creates a demo site whose feed shows
// companies soon after start.
func TestDemoFillsTheFeed(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Demo = true
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	_, c := startStack(t, cfg, testenv.Logger())
	var list struct{ Sites []struct{ ID, Name string } }
	if code := c.do(t, "GET", "/api/v1/sites", nil, &list); code != http.StatusOK || len(list.Sites) != 1 {
		t.Fatalf("sites: %d %+v, want the demo site", code, list)
	}
	// The demo shows what the product does: companies by their profiles,
	// weeks of history, campaign visits, and filtered traffic of every
	// reason.
	site := list.Sites[0].ID
	testenv.Eventually(t, 2*time.Minute, func() error {
		var feed struct{ Companies []api.Company }
		c.do(t, "GET", "/api/v1/sites/"+site+"/companies", nil, &feed)
		old, profiled := 0, 0
		for _, co := range feed.Companies {
			if first, _ := time.Parse(time.RFC3339Nano, co.FirstSeen); time.Since(first) > 14*24*time.Hour {
				old++
			}
			if co.Profile != nil && co.Profile.Name == co.Name && co.Profile.Industry != "" {
				profiled++
			}
		}
		if len(feed.Companies) < 8 || old < 3 || profiled < 8 {
			return fmt.Errorf("%d companies in the demo feed, %d first seen over two weeks ago, %d shown by their profile", len(feed.Companies), old, profiled)
		}
		var campaign struct{ Companies []api.Company }
		c.do(t, "GET", "/api/v1/sites/"+site+"/companies?source=campaign", nil, &campaign)
		if len(campaign.Companies) == 0 {
			return fmt.Errorf("no company came by a campaign")
		}
		var filtered struct{ Reasons map[string]uint64 }
		c.do(t, "GET", "/api/v1/sites/"+site+"/filtered", nil, &filtered)
		for _, reason := range []string{"residential", "mobile", "hosting", "bot"} {
			if filtered.Reasons[reason] == 0 {
				return fmt.Errorf("no demo traffic filtered as %s: %v", reason, filtered.Reasons)
			}
		}
		// The company no ASN names, learned from its visitors' identifications.
		var learned struct{ Companies []struct{ Domain string } }
		c.do(t, "GET", "/api/v1/sites/"+site+"/companies?q=northwind.example", nil, &learned)
		if len(learned.Companies) != 1 || learned.Companies[0].Domain != "northwind.example" {
			return fmt.Errorf("the learned company is not in the demo feed: %+v", learned)
		}
		return nil
	})
	demoScreenshots(t, "http://"+c.api, c.key, site)
}

// demoScreenshots signs in to the dashboard of a demo stack and takes the
// README's screenshots — the feed by lead score, the top company's page,
// the tracker status — checking what they show. They are written under
// the test's temp dir, or to $LEADPIPE_SCREENSHOTS (docs/ for the README).
func demoScreenshots(t *testing.T, dashboard, key, site string) {
	tab := testenv.Browser(t)
	shots := t.TempDir()
	if dir := os.Getenv("LEADPIPE_SCREENSHOTS"); dir != "" {
		shots = dir
	}
	run := func(actions ...chromedp.Action) {
		t.Helper()
		testenv.Run(t, tab, actions...)
	}
	shot := func(name string) {
		t.Helper()
		var png []byte
		run(chromedp.CaptureScreenshot(&png)) // the window, 1280×900: what a visitor of the page first sees
		if err := os.WriteFile(filepath.Join(shots, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var text string
	run(chromedp.Navigate(dashboard+"/"), chromedp.SetValue(`input[name=key]`, key), chromedp.Submit(`input[name=key]`),
		chromedp.WaitVisible(`table.feed`), chromedp.Navigate(dashboard+"/app/sites/"+site+"?sort=score"),
		chromedp.WaitVisible(`table.feed`), chromedp.Text(`table.feed tbody`, &text))
	if !strings.Contains(text, "employees") {
		t.Errorf("the demo feed shows no company profile: %q", text)
	}
	shot("demo-feed.png")
	run(chromedp.Click(`table.feed tbody a`), chromedp.WaitVisible(`dl.profile`), chromedp.Text(`main`, &text))
	for _, want := range []string{"Headquarters", "Why score", "high-intent page views"} {
		if !strings.Contains(text, want) {
			t.Errorf("the demo's top company page lacks %q: %q", want, text)
		}
	}
	shot("demo-company.png")
	// The status shows the last day: the live visits, which begin once the
	// history is published.
	testenv.Eventually(t, 2*time.Minute, func() error {
		run(chromedp.Navigate(dashboard+"/app/sites/"+site+"/status"), chromedp.WaitVisible(`table.feed`), chromedp.Text(`main`, &text))
		if !strings.Contains(text, "dropped: ") || !strings.Contains(text, "\tkept\t") {
			return fmt.Errorf("the demo's tracker status: %q", text)
		}
		return nil
	})
	shot("demo-status.png")
}

func TestDataDirIsLocked(t *testing.T) {
	dir := t.TempDir()
	s, err := app.Start(context.Background(), testConfig(t, dir), testenv.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	_, err = app.Start(context.Background(), testConfig(t, dir), testenv.Quiet())
	if err == nil || !strings.Contains(err.Error(), "--data-dir") || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second stack on one data dir: %v, want an error naming --data-dir", err)
	}
}

// TestStagesRunSeparately runs the collector, a processor and the API as
// three processes' worth of stacks against one external NATS and one
// external ClickHouse, as on a cluster.
func TestStagesRunSeparately(t *testing.T) {
	b := testenv.Bus(t)
	engine := testenv.Engine(t)
	base := func(stages app.Stages) app.Config {
		cfg := testConfig(t, t.TempDir())
		cfg.Stages = stages
		cfg.NATS.URL = b.ClientURL()
		cfg.ClickHouse.Addr = engine.Addr
		cfg.ClickHouse.Database = "separate_" + testenv.RandomHex(4)
		if stages.Processor && !stages.API && !stages.Collector {
			cfg.MetricsAddr = "127.0.0.1:0"
		}
		return cfg
	}
	apiCfg := base(app.Stages{API: true})
	procCfg := base(app.Stages{Processor: true})
	procCfg.ClickHouse.Database = apiCfg.ClickHouse.Database
	colCfg := base(app.Stages{Collector: true})
	var stacks []*app.Stack
	for _, cfg := range []app.Config{apiCfg, procCfg, colCfg} {
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		s, err := app.Start(context.Background(), cfg, testenv.Logger())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Stop()
		stacks = append(stacks, s)
	}
	apiStack, proc, col := stacks[0], stacks[1], stacks[2]
	c := ownerClient(t, apiStack, col.CollectorAddr)
	var site struct{ ID string }
	if code := c.do(t, "POST", "/api/v1/sites", map[string]string{"name": "Split", "domain": "split.example"}, &site); code != http.StatusCreated {
		t.Fatalf("creating a site: %d", code)
	}
	ip := ipintel.RandomAddr(testenv.ASN(t).PrefixesOf(212794)[0], rand.New(rand.NewPCG(1, 2)))
	testenv.Eventually(t, 10*time.Second, func() error {
		// The collector learns of the site through the KV watch.
		body, _ := json.Marshal(map[string]any{"site": site.ID, "type": "pageview", "url": "https://split.example/", "id": "split-1"})
		req, _ := http.NewRequest(http.MethodPost, "http://"+col.CollectorAddr+"/v1/hit", bytes.NewReader(body))
		req.Header.Set("X-Forwarded-For", ip.String())
		req.Header.Set("User-Agent", app.BrowserUserAgent)
		req.Header.Set("Accept-Language", "en")
		resp, err := c.http.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	testenv.Eventually(t, 30*time.Second, func() error {
		var feed struct{ Companies []api.Company }
		c.do(t, "GET", "/api/v1/sites/"+site.ID+"/companies", nil, &feed)
		if len(feed.Companies) != 1 || feed.Companies[0].Name != "SAP" || feed.Companies[0].Pageviews != 1 {
			return fmt.Errorf("feed %+v, want SAP SE with 1 pageview", feed.Companies)
		}
		return nil
	})
	// The processor counts the insert just after ClickHouse confirmed it,
	// so the feed may show the hit a moment before the metric does.
	testenv.Eventually(t, 10*time.Second, func() error {
		resp, err := http.Get("http://" + proc.MetricsAddr + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		buf.ReadFrom(resp.Body)
		for _, line := range strings.Split(buf.String(), "\n") {
			if strings.HasPrefix(line, "leadpipe_processor_hits_inserted_total ") {
				if line != "leadpipe_processor_hits_inserted_total 1" {
					return fmt.Errorf("processor metrics: %q, want 1 inserted hit", line)
				}
				return nil
			}
		}
		return errors.New("processor metrics lack leadpipe_processor_hits_inserted_total")
	})
}

func ipDataConfig() ipintel.Config {
	src := testenv.IPSources()
	return ipintel.Config{ASNDir: src.ASNDir, CountryMMDB: src.CountryMMDB, RDNSRate: 1, Learn: true}
}

// TestIPDataReloadOverNATS changes an overrides file under a running stack
// and asks it to reload the way `leadpipe ipdb reload` does: the API's
// answer for the address changes, with no restart.
func TestIPDataReloadOverNATS(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.IPData.Overrides = filepath.Join(t.TempDir(), "overrides.csv")
	probe := "198.51.100.10"
	write := func(typ string) {
		t.Helper()
		if err := os.WriteFile(cfg.IPData.Overrides, []byte("match,type,company,domain\n198.51.100.0/24,"+typ+",Acme,acme.example\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("business")
	s, c := startStack(t, cfg, testenv.Quiet())
	typeOf := func() string {
		var a struct {
			NetworkType string `json:"network_type"`
		}
		c.do(t, "GET", "/api/v1/ip/"+probe, nil, &a)
		return a.NetworkType
	}
	if got := typeOf(); got != "business" {
		t.Fatalf("before reload: %s", got)
	}
	write("education")
	ask := func() bus.IPDBReloadReply {
		t.Helper()
		nc, err := nats.Connect(s.Bus.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		// A reload takes about 20 s under the race detector, longer while
		// other packages' tests share the CPU: the wait is generous.
		msg, err := nc.Request(bus.IPDBReloadSubject, nil, 2*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		var r bus.IPDBReloadReply
		if err := json.Unmarshal(msg.Data, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := ask(); !r.OK {
		t.Fatalf("reload failed: %+v", r)
	}
	if got := typeOf(); got != "education" {
		t.Errorf("after reload: %s, want education", got)
	}
	os.WriteFile(cfg.IPData.Overrides, []byte("match,type\nnot-a-cidr,business\n"), 0o600)
	if r := ask(); r.OK || !strings.Contains(r.Error, "overrides.csv line 2") {
		t.Errorf("a broken file: %+v, want a failure naming file and line", r)
	}
	if got := typeOf(); got != "education" {
		t.Errorf("after a failed reload: %s, want the previous data (education)", got)
	}

	// Registry assignments imported into the data dir (leadpipe rir
	// import) answer after a reload.
	os.WriteFile(cfg.IPData.Overrides, []byte("match,type\n"), 0o600)
	registry := func() (decided, company string) {
		var a struct {
			Decided string `json:"decided_by"`
			Company *struct{ Name string }
		}
		c.do(t, "GET", "/api/v1/ip/2001:db8:1234::1", nil, &a)
		if a.Company != nil {
			company = a.Company.Name
		}
		return a.Decided, company
	}
	if d, _ := registry(); d == ipintel.SourceRegistry {
		t.Fatal("a registry answer before anything was imported")
	}
	ri := ipintel.NewRegistryImport(nil)
	if err := ri.ReadFiles("../ipintel/testdata/rpsl/networks.db", "../ipintel/testdata/rpsl/organisations.db"); err != nil {
		t.Fatal(err)
	}
	kept, _ := ri.Result()
	if err := ipintel.WriteRegistry(ipintel.RegistryFile(cfg.DataDir), kept); err != nil {
		t.Fatal(err)
	}
	if r := ask(); !r.OK {
		t.Fatalf("reload after an import failed: %+v", r)
	}
	if d, name := registry(); d != ipintel.SourceRegistry || name != "Example Paper Mill Oy" {
		t.Errorf("after an import and a reload: decided by %q, company %q; want the registry's paper mill", d, name)
	}
}

// TestNoVisitorIPAtRest posts hits from many IPv4 and IPv6 addresses (kept
// and dropped ones), then dumps every table of the database and finds
// none of the addresses in any textual or numeric form.
func TestNoVisitorIPAtRest(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	s, c := startStack(t, cfg, testenv.Quiet())
	var site struct{ ID string }
	c.do(t, "POST", "/api/v1/sites", map[string]string{"name": "Privacy", "domain": "privacy.example"}, &site)
	table := testenv.ASN(t)
	r := rand.New(rand.NewPCG(7, 7))
	var ips []netip.Addr
	for _, asn := range []uint32{212794, 202200, 7922, 3320, 16509, 6939} { // SAP, Siemens, Comcast, DTAG, AWS, HE (v6)
		prefixes := table.PrefixesOf(asn)
		for range 12 {
			ips = append(ips, ipintel.RandomAddr(prefixes[r.IntN(len(prefixes))], r))
		}
	}
	v6 := 0
	for i, ip := range ips {
		if ip.Is6() {
			v6++
		}
		body, _ := json.Marshal(map[string]any{"site": site.ID, "type": "pageview", "url": "https://privacy.example/", "id": fmt.Sprint("p", i), "cid": fmt.Sprint("v", i), "consent": "granted"})
		if _, err := c.postHit(context.Background(), body, ip.String(), app.BrowserUserAgent); err != nil {
			t.Fatal(err)
		}
	}
	if v6 == 0 {
		t.Fatal("no IPv6 address among the test addresses")
	}
	conn, err := s.ClickHouse.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	testenv.Eventually(t, 60*time.Second, func() error {
		var kept, dropped uint64
		conn.QueryRow(context.Background(), "SELECT count() FROM hits").Scan(&kept)
		conn.QueryRow(context.Background(), "SELECT count() FROM dropped_hits").Scan(&dropped)
		if kept+dropped != uint64(len(ips)) || kept == 0 || dropped == 0 {
			return fmt.Errorf("%d kept + %d dropped of %d", kept, dropped, len(ips))
		}
		return nil
	})
	// Every form an address could take in a dump.
	var needles []string
	for _, ip := range ips {
		needles = append(needles, ip.String(), ip.StringExpanded())
		b := ip.AsSlice()
		if ip.Is4() {
			needles = append(needles, fmt.Sprint(uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3])), fmt.Sprintf("%x", b), "::ffff:"+ip.String())
		} else {
			needles = append(needles, fmt.Sprintf("%x", b), strings.ReplaceAll(ip.StringExpanded(), ":", ""))
		}
	}
	rows, err := conn.Query(context.Background(), "SELECT name FROM system.tables WHERE database = currentDatabase()")
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		tables = append(tables, n)
	}
	rows.Close()
	if len(tables) < 8 {
		t.Fatalf("only %d tables: %v", len(tables), tables)
	}
	for _, tbl := range tables {
		u := "http://" + s.ClickHouse.HTTPAddr + "/?" + url.Values{
			"query":     {"SELECT * FROM {db:Identifier}.{tbl:Identifier} FORMAT TSV"},
			"param_db":  {cfg.ClickHouse.Database},
			"param_tbl": {tbl},
		}.Encode()
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		dump, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			// Materialized views have no rows of their own to read.
			if strings.HasSuffix(tbl, "_mv") {
				continue
			}
			t.Fatalf("dumping %s: %d %s", tbl, resp.StatusCode, dump)
		}
		text := strings.ToLower(string(dump))
		for _, n := range needles {
			if strings.Contains(text, strings.ToLower(n)) {
				t.Errorf("table %s holds a visitor address (%s)", tbl, n)
			}
		}
	}
}

// TestErasureDropsQueuedHits: after a visitor is erased by client id, a hit
// of theirs that was still on its way is dropped on arrival (counted as
// "erased"), while other visitors' hits are stored.
func TestErasureDropsQueuedHits(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	s, c := startStack(t, cfg, testenv.Quiet())
	var site struct{ ID string }
	c.do(t, "POST", "/api/v1/sites", map[string]string{"name": "Erase", "domain": "erase.example"}, &site)
	ip := testenv.ASN(t).PrefixesOf(212794)[0].Addr().Next().String()
	post := func(id, cid string) {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"site": site.ID, "type": "pageview", "url": "https://erase.example/", "id": id, "cid": cid, "consent": "granted"})
		if _, err := c.postHit(context.Background(), body, ip, app.BrowserUserAgent); err != nil {
			t.Fatal(err)
		}
	}
	post("before", "LF1.1.gone")
	conn, _ := s.ClickHouse.Open()
	defer conn.Close()
	count := func(q string) uint64 {
		var n uint64
		conn.QueryRow(context.Background(), q).Scan(&n)
		return n
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := count("SELECT count() FROM hits"); n != 1 {
			return fmt.Errorf("%d hits", n)
		}
		return nil
	})
	var out map[string]any
	if code := c.do(t, "DELETE", "/api/v1/sites/"+site.ID+"/visitors/LF1.1.gone", nil, &out); code != 200 || out["deleted"] != float64(1) {
		t.Fatalf("erasure: %d %v", code, out)
	}
	post("after", "LF1.1.gone")  // on its way when the erasure happened
	post("other", "LF1.1.stays") // another visitor
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := count("SELECT sum(hits) FROM filtered_daily WHERE reason = 'erased'"); n != 1 {
			return fmt.Errorf("erased in the ledger: %d", n)
		}
		if n := count("SELECT count() FROM hits"); n != 1 {
			return fmt.Errorf("%d hits stored, want only the other visitor's", n)
		}
		return nil
	})
	if n := count("SELECT count() FROM hits WHERE hit_id = 'other'"); n != 1 {
		t.Errorf("the other visitor's hit: %d rows", n)
	}
}

// TestTLSListeners: with certificate files the collector and the API speak
// HTTPS only; the API sends HSTS and the dashboard's session cookie is
// Secure; a hit posted over HTTPS is stored.
func TestTLSListeners(t *testing.T) {
	certFile, keyFile, pool := testenv.SelfSignedCert(t)
	cfg := testConfig(t, t.TempDir())
	cfg.Collector.TLSCert, cfg.Collector.TLSKey = certFile, keyFile
	cfg.API.TLSCert, cfg.API.TLSKey = certFile, keyFile
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s, c := startStack(t, cfg, testenv.Logger())
	c.scheme = "https"
	c.http = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	var site struct{ ID string }
	if code := c.do(t, "POST", "/api/v1/sites", map[string]string{"name": "TLS", "domain": "tls.example"}, &site); code != http.StatusCreated {
		t.Fatalf("creating a site over HTTPS: %d", code)
	}
	ip := ipintel.RandomAddr(testenv.ASN(t).PrefixesOf(212794)[0], rand.New(rand.NewPCG(1, 2)))
	body, _ := json.Marshal(map[string]any{"site": site.ID, "type": "pageview", "url": "https://tls.example/", "id": "tls-1"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	testenv.Eventually(t, 10*time.Second, func() error {
		// The collector learns of the site through the KV watch (403 until then).
		_, err := c.postHit(ctx, body, ip.String(), app.BrowserUserAgent)
		return err
	})
	resp, err := c.http.Get("https://" + s.APIAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if hsts := resp.Header.Get("Strict-Transport-Security"); !strings.HasPrefix(hsts, "max-age=") {
		t.Errorf("API over HTTPS without HSTS: %q", hsts)
	}
	req, _ := http.NewRequest(http.MethodPost, "https://"+s.APIAddr+"/login", strings.NewReader(url.Values{"key": {c.key}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://"+s.APIAddr)
	resp, err = c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if cookie := resp.Header.Get("Set-Cookie"); resp.StatusCode != http.StatusSeeOther || !strings.Contains(cookie, "Secure") || !strings.Contains(cookie, "HttpOnly") {
		t.Errorf("sign-in over HTTPS: %d, cookie %q", resp.StatusCode, cookie)
	}
	// Plain HTTP gets nothing from either listener.
	plain := &http.Client{Timeout: 5 * time.Second}
	for _, addr := range []string{s.CollectorAddr, s.APIAddr} {
		if resp, err := plain.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode < 400 {
				t.Errorf("plain HTTP to %s answered %d", addr, resp.StatusCode)
			}
		}
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		var feed struct{ Companies []api.Company }
		c.do(t, "GET", "/api/v1/sites/"+site.ID+"/companies", nil, &feed)
		if len(feed.Companies) != 1 || feed.Companies[0].Pageviews != 1 {
			return fmt.Errorf("feed %+v, want the company that visited over HTTPS", feed.Companies)
		}
		return nil
	})
}

// TestEngineKilledUnderLoad kills -9 the managed ClickHouse engine while
// hits flow: /readyz answers 503 with the reason while it is down, the
// engine is restarted on the same ports, the restart is counted, and
// every hit is stored once, raw and in the company aggregates.
func TestEngineKilledUnderLoad(t *testing.T) {
	const totalHits = 3000
	cfg := testConfig(t, t.TempDir())
	s, c := startStack(t, cfg, testenv.Quiet())
	var site struct{ ID string }
	if code := c.do(t, "POST", "/api/v1/sites", map[string]string{"name": "Crash", "domain": "crash.example"}, &site); code != http.StatusCreated {
		t.Fatalf("creating a site: %d", code)
	}
	prefixes := testenv.ASN(t).PrefixesOf(212794)
	r := rand.New(rand.NewPCG(3, 3))
	ips := make([]string, totalHits)
	for i := range ips {
		ips[i] = ipintel.RandomAddr(prefixes[r.IntN(len(prefixes))], r).String()
	}
	nativeAddr, pid := s.ClickHouse.Addr, s.ClickHouse.PID()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// A steady flow (a pause after each hit) that spans the outage.
	posting := postAll(ctx, c, 4, totalHits, 2*time.Millisecond, func(i int) ([]byte, string, string) {
		body, _ := json.Marshal(map[string]any{"site": site.ID, "type": "pageview", "url": "https://crash.example/",
			"id": fmt.Sprint("k", i), "cid": fmt.Sprint("v", i%100), "consent": "granted"})
		return body, ips[i], app.BrowserUserAgent
	})
	posting.waitFor(t, totalHits/3)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	readyz := func() (int, string) {
		resp, err := c.http.Get(c.url(s.APIAddr, "/readyz"))
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if code, body := readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "killed by SIGKILL") {
			return fmt.Errorf("/readyz while the engine is down: %d %s", code, body)
		}
		return nil
	})
	testenv.Eventually(t, time.Minute, func() error {
		if code, body := readyz(); code != http.StatusOK {
			return fmt.Errorf("/readyz after the restart: %d %s", code, body)
		}
		return nil
	})
	if s.ClickHouse.PID() == pid || s.ClickHouse.Addr != nativeAddr || s.ClickHouse.Restarts() != 1 {
		t.Errorf("after the kill: pid %d (was %d), address %s (was %s), %d restarts; want a new engine on the same address, 1 restart",
			s.ClickHouse.PID(), pid, s.ClickHouse.Addr, nativeAddr, s.ClickHouse.Restarts())
	}
	if err := posting.wait(); err != nil {
		t.Fatal(err)
	}
	acc := posting.acked.Load()
	if acc != totalHits {
		t.Fatalf("%d of %d hits acknowledged", acc, totalHits)
	}

	conn, err := s.ClickHouse.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	testenv.Eventually(t, 90*time.Second, func() error {
		var rows, ids, pageviews uint64
		if err := conn.QueryRow(ctx, "SELECT count(), uniqExact(hit_id) FROM hits WHERE site_id = ?", site.ID).Scan(&rows, &ids); err != nil {
			return err
		}
		if err := conn.QueryRow(ctx, "SELECT sum(pageviews) FROM company_daily WHERE site_id = ?", site.ID).Scan(&pageviews); err != nil {
			return err
		}
		if rows != totalHits || ids != totalHits || pageviews != totalHits {
			return fmt.Errorf("%d rows, %d distinct ids, %d pageviews aggregated; want %d of each", rows, ids, pageviews, totalHits)
		}
		return nil
	})
	resp, err := c.http.Get("http://" + s.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), "leadpipe_clickhouse_engine_restarts_total 1\n") {
		t.Error("/metrics does not count the engine restart")
	}
	// The public ports do not serve the metrics.
	for _, addr := range []string{s.CollectorAddr, s.APIAddr} {
		resp, err := c.http.Get(c.url(addr, "/metrics"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s/metrics: %d, want 404: metrics only on --metrics.addr", addr, resp.StatusCode)
		}
	}
}
