package api_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/leadpipe/leadpipe/internal/testenv"
)

// TestDashboard signs in with an API key in headless Chromium, filters the
// company feed, opens a company and its visit timeline, and saves
// screenshots (under the test's temp dir; LEADPIPE_SCREENSHOTS=docs puts
// them where the README shows them).
func TestDashboard(t *testing.T) {
	a, exec := startAPI(t)
	site := a.createSite(t, "acme")
	now := time.Now().UTC().Add(-2 * time.Hour)
	n := 0
	for _, c := range []struct{ id, name, domain, country string }{
		{"c-sap", "SAP SE", "sap.com", "DE"}, {"c-nestle", "Nestlé S.A.", "nestle.com", "CH"}, {"c-volvo", "Volvo Cars", "volvocars.com", "SE"},
	} {
		for v := range 3 {
			for p, path := range []string{"/", "/pricing", "/customers"} {
				n++
				ts := now.Add(time.Duration(v)*47*time.Minute + time.Duration(p)*2*time.Minute)
				// Each visitor's three pages are one visit from a search,
				// stamped as the processor stores them.
				visit, start, opens := uint64(n-p), now.Add(time.Duration(v)*47*time.Minute), p == 0
				exec(`INSERT INTO hits (site_id, ts, received_at, hit_id, type, url, path, title, referrer, source, visitor_id,
					visit_id, visit_start, new_visit, consent, engaged_ms, company_id, company_name, company_domain, asn, as_org, network_type, country, decided_by)
					VALUES (?, ?, ?, ?, 'pageview', ?, ?, ?, 'https://www.google.com/', 'search', ?, ?, ?, ?, 'granted', 0, ?, ?, ?, 1, 'x', 'business', ?, 'learned')`,
					site, ts, ts, fmt.Sprint("d", n), "https://acme.example"+path, path, "Acme – "+strings.TrimPrefix(path, "/"), uint64(v),
					visit, start, opens, c.id, c.name, c.domain, c.country)
				exec(`INSERT INTO hits (site_id, ts, received_at, hit_id, type, url, path, source, visitor_id, visit_id, visit_start,
					consent, engaged_ms, company_id, company_name, company_domain, asn, as_org, network_type, country)
					VALUES (?, ?, ?, ?, 'engagement', ?, ?, 'direct', ?, ?, ?, 'granted', ?, ?, ?, ?, 1, 'x', 'business', ?)`,
					site, ts.Add(time.Minute), ts, fmt.Sprint("e", n), "https://acme.example"+path, path, uint64(v), visit, start,
					20000+p*15000, c.id, c.name, c.domain, c.country)
			}
		}
	}
	exec(`INSERT INTO filtered_daily (site_id, day, reason, hits) VALUES (?, today(), 'residential', 120), (?, today(), 'bot', 31)`, site, site)

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
		run(chromedp.FullScreenshot(&png, 100)) // 100: PNG (below, JPEG)
		if err := os.WriteFile(filepath.Join(shots, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var text string
	// A wrong key is refused; the owner key signs in.
	run(chromedp.Navigate(a.srv.URL+"/"),
		chromedp.SetValue(`input[name=key]`, "lp_wrong_key"), chromedp.Submit(`input[name=key]`),
		chromedp.WaitVisible(`p.error`), chromedp.Text(`p.error`, &text))
	if !strings.Contains(text, "not valid") {
		t.Errorf("wrong key: %q", text)
	}
	run(chromedp.SetValue(`input[name=key]`, a.owner), chromedp.Submit(`input[name=key]`), chromedp.WaitVisible(`table.feed`),
		chromedp.Text(`table.feed tbody`, &text))
	for _, name := range []string{"SAP SE", "Nestlé S.A.", "Volvo Cars"} {
		if !strings.Contains(text, name) {
			t.Errorf("feed lacks %s: %q", name, text)
		}
	}
	shot("dashboard-feed.png")
	// The session is an HttpOnly cookie: no script sees the key.
	var docCookie string
	run(chromedp.Evaluate(`document.cookie`, &docCookie))
	if strings.Contains(docCookie, "lp_") {
		t.Errorf("the key is readable by scripts: %q", docCookie)
	}
	// Filter by country and source.
	run(chromedp.SetValue(`input[name=country]`, "CH"), chromedp.SetValue(`select[name=source]`, "search"), chromedp.Submit(`form.filters`),
		chromedp.WaitVisible(`table.feed`), chromedp.Text(`table.feed tbody`, &text))
	if !strings.Contains(text, "Nestlé") || strings.Contains(text, "SAP SE") {
		t.Errorf("filtered by CH: %q", text)
	}
	// Open the company and read its visits.
	run(chromedp.Click(`table.feed tbody a`), chromedp.WaitVisible(`article.visit`), chromedp.Text(`main`, &text))
	if !strings.Contains(text, "Nestlé S.A.") || !strings.Contains(text, "3 visits") || !strings.Contains(text, "Acme – pricing") {
		t.Errorf("company page: %q", text)
	}
	var visits int
	var breakdowns string
	run(chromedp.Evaluate(`document.querySelectorAll('article.visit').length`, &visits), chromedp.Text(`.breakdowns`, &breakdowns))
	if visits != 3 {
		t.Errorf("%d visits on the timeline, want 3", visits)
	}
	for _, want := range []string{"Top pages", "Acme – customers", "search\t3", "CH\t9", "Why score", "high-intent page views (pricing, plans",
		"Identified by", "a network learned from visitors who identified\t9 hits"} {
		if !strings.Contains(breakdowns, want) {
			t.Errorf("breakdowns lack %q: %q", want, breakdowns)
		}
	}
	var bars int
	run(chromedp.Evaluate(`document.querySelectorAll('figure.chart rect').length`, &bars))
	if bars != 30 {
		t.Errorf("chart has %d bars, want one per day of the 30-day range", bars)
	}
	shot("dashboard-company.png")
	run(chromedp.Navigate(a.srv.URL+"/app/sites/"+site+"/filtered"), chromedp.WaitVisible(`table.feed`), chromedp.Text(`table.feed tbody`, &text))
	if !strings.Contains(text, "residential") || !strings.Contains(text, "120") {
		t.Errorf("filtered traffic page: %q", text)
	}
	// The tracker status: the latest hits, and what this line is.
	run(chromedp.Navigate(a.srv.URL+"/app/sites/"+site+"/status"), chromedp.WaitVisible(`table.feed`), chromedp.Text(`main`, &text))
	if !strings.Contains(text, "This line") || !strings.Contains(text, "unknown") || !strings.Contains(text, "kept") {
		t.Errorf("tracker status page: %q", text)
	}
	// Signing out ends the session.
	run(chromedp.Navigate(a.srv.URL+"/app/"), chromedp.Click(`form.logout button`), chromedp.WaitVisible(`input[name=key]`))
	run(chromedp.Navigate(a.srv.URL+"/app/sites/"+site), chromedp.WaitVisible(`input[name=key]`))
}
