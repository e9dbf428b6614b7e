package app_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/leadpipe/leadpipe/app"
	"github.com/leadpipe/leadpipe/internal/testenv"
	"github.com/leadpipe/leadpipe/ipintel"
)

// TestConsentOnLandingIsOneVisit: a visitor lands on a site that requires
// consent, accepts the banner a second later and reads another page. In a
// real browser, through the collector, the processor and ClickHouse, that
// is one company visit of one visitor with two pageviews, not a cookieless
// visitor and a consented one. The browser reaches the collector through a
// proxy that gives its hits a business network's address, as a company's
// office line would.
func TestConsentOnLandingIsOneVisit(t *testing.T) {
	s, c := startStack(t, testConfig(t, t.TempDir()), testenv.Quiet())
	var site struct{ ID string }
	if code := c.do(t, "POST", "/api/v1/sites", map[string]string{"name": "Consent", "domain": "127.0.0.1"}, &site); code != http.StatusCreated {
		t.Fatalf("creating a site: %d", code)
	}
	ip := ipintel.RandomAddr(testenv.ASN(t).PrefixesOf(212794)[0], rand.New(rand.NewPCG(3, 4)))
	collector, _ := url.Parse("http://" + s.CollectorAddr)
	proxy := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(collector)
		r.Out.Header.Set("X-Forwarded-For", ip.String())
	}})
	t.Cleanup(proxy.Close)
	pages := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, `<!doctype html><html><head><title>`+strings.TrimPrefix(r.URL.Path, "/")+`</title>
<script async src="`+proxy.URL+`/lf.js" data-site="`+site.ID+`" data-consent="required"></script></head><body></body></html>`)
	}))
	t.Cleanup(pages.Close)

	tab := testenv.Browser(t)
	run := func(actions ...chromedp.Action) {
		t.Helper()
		testenv.Run(t, tab, actions...)
	}
	var ignored any
	// A desktop browser's user agent: headless Chromium's own is a bot's.
	run(emulation.SetUserAgentOverride(app.BrowserUserAgent).WithAcceptLanguage("de-DE"),
		chromedp.Navigate(pages.URL+"/pricing"), chromedp.WaitReady("body"))
	time.Sleep(time.Second) // the visitor reads the banner
	run(chromedp.Evaluate(`leadpipe('consent', 'granted'); 1`, &ignored))
	run(chromedp.Navigate(pages.URL+"/customers"), chromedp.WaitReady("body"))

	testenv.Eventually(t, 30*time.Second, func() error {
		var out struct {
			Companies []struct {
				Name                        string
				Visits, Visitors, Pageviews uint64
			}
		}
		if code := c.do(t, "GET", "/api/v1/sites/"+site.ID+"/companies", nil, &out); code != http.StatusOK {
			return fmt.Errorf("feed: %d", code)
		}
		if len(out.Companies) != 1 || out.Companies[0].Pageviews < 2 {
			return fmt.Errorf("feed %+v: waiting for one company with both pageviews", out.Companies)
		}
		if co := out.Companies[0]; co.Visits != 1 || co.Visitors != 1 || co.Pageviews != 2 {
			t.Fatalf("%s: %d visits of %d visitors, %d pageviews; want one visit of one visitor with the landing page and the next", co.Name, co.Visits, co.Visitors, co.Pageviews)
		}
		return nil
	})
}
