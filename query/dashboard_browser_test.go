package query_test

import (
	"context"
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
				exec(`INSERT INTO hits (site_id, ts, received_at, hit_id, type, url, path, title, referrer, visitor_id, consent, engaged_ms,
					company_id, company_name, company_domain, asn, as_org, network_type, country)
					VALUES (?, ?, ?, ?, 'pageview', ?, ?, ?, 'https://www.google.com/', ?, 'granted', 0, ?, ?, ?, 1, 'x', 'business', ?)`,
					site, ts, ts, fmt.Sprint("d", n), "https://acme.example"+path, path, "Acme – "+strings.TrimPrefix(path, "/"), uint64(v), c.id, c.name, c.domain, c.country)
				exec(`INSERT INTO hits (site_id, ts, received_at, hit_id, type, url, path, visitor_id, consent, engaged_ms,
					company_id, company_name, company_domain, asn, as_org, network_type, country)
					VALUES (?, ?, ?, ?, 'engagement', ?, ?, ?, 'granted', ?, ?, ?, ?, 1, 'x', 'business', ?)`,
					site, ts.Add(time.Minute), ts, fmt.Sprint("e", n), "https://acme.example"+path, path, uint64(v), 20000+p*15000, c.id, c.name, c.domain, c.country)
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
		ctx, cancel := context.WithTimeout(tab, 30*time.Second)
		defer cancel()
		if err := chromedp.Run(ctx, actions...); err != nil {
			t.Fatal(err)
		}
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
	// Filter by country.
	run(chromedp.SetValue(`input[name=country]`, "CH"), chromedp.Submit(`form.filters`),
		chromedp.WaitVisible(`table.feed`), chromedp.Text(`table.feed tbody`, &text))
	if !strings.Contains(text, "Nestlé") || strings.Contains(text, "SAP SE") {
		t.Errorf("filtered by CH: %q", text)
	}
	// Open the company and read its visits.
	run(chromedp.Click(`table.feed tbody a`), chromedp.WaitVisible(`article.visit`), chromedp.Text(`main`, &text))
	if !strings.Contains(text, "Nestlé S.A.") || strings.Count(text, "search") != 3 || !strings.Contains(text, "Acme – pricing") {
		t.Errorf("company page: %q", text)
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
	// Signing out ends the session.
	run(chromedp.Navigate(a.srv.URL+"/app/"), chromedp.Click(`form.logout button`), chromedp.WaitVisible(`input[name=key]`))
	run(chromedp.Navigate(a.srv.URL+"/app/sites/"+site), chromedp.WaitVisible(`input[name=key]`))
}
