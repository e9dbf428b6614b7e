package collector_test

// Browser tests of the tracker: a real headless Chromium (Debian's, installed
// by `make setup`) loads a real page with the tag from a local server; the
// hits it sends go through a real collector into an embedded JetStream,
// where the test reads them.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/leadpipe/leadpipe/internal/bus"
	"github.com/leadpipe/leadpipe/internal/tenant"
	"github.com/leadpipe/leadpipe/internal/testenv"
)

// browserEnv is a collector, a site whose domain is the page server's, a
// page server and a browser tab.
type browserEnv struct {
	*testCollector
	pages *httptest.Server
	tab   context.Context
}

// startBrowserEnv serves page (with {{COLLECTOR}} and {{SITE}} replaced) at
// every path of a local server and opens a browser tab on nothing yet.
func startBrowserEnv(t *testing.T, page string) *browserEnv {
	t.Helper()
	b := testenv.Bus(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	tenants, err := tenant.Open(ctx, b.JS, testenv.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	// The page is served from 127.0.0.1: that is the site's domain.
	site, err := tenants.CreateSite(ctx, "", "Browser test", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	c := startCollectorOn(t, b, nil)
	c.site = site
	env := &browserEnv{testCollector: c}
	env.pages = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		body := strings.NewReplacer("{{COLLECTOR}}", c.url, "{{SITE}}", site.ID).Replace(page)
		io.WriteString(w, body)
	}))
	t.Cleanup(env.pages.Close)

	env.tab = testenv.Browser(t)
	return env
}

func (e *browserEnv) run(t *testing.T, actions ...chromedp.Action) {
	t.Helper()
	testenv.Run(t, e.tab, actions...)
}

func (e *browserEnv) eval(t *testing.T, js string, out any) {
	t.Helper()
	e.run(t, chromedp.Evaluate(js, out))
}

// hits returns every hit the collector queued so far.
func (e *browserEnv) hits(t *testing.T) []bus.Hit { return testenv.QueuedHits(t, e.bus) }

// waitHit waits for a queued hit that match accepts and returns it.
func (e *browserEnv) waitHit(t *testing.T, what string, match func(bus.Hit) bool) bus.Hit {
	t.Helper()
	var found bus.Hit
	testenv.Eventually(t, 20*time.Second, func() error {
		for _, h := range e.hits(t) {
			if match(h) {
				found = h
				return nil
			}
		}
		return fmt.Errorf("no %s among %d queued hits", what, len(e.hits(t)))
	})
	return found
}

func (e *browserEnv) cookies(t *testing.T) map[string]*network.Cookie {
	t.Helper()
	out := map[string]*network.Cookie{}
	e.run(t, chromedp.ActionFunc(func(ctx context.Context) error {
		cs, err := network.GetCookies().WithURLs([]string{e.pages.URL}).Do(ctx)
		for _, c := range cs {
			out[c.Name] = c
		}
		return err
	}))
	return out
}

func (e *browserEnv) localStorage(t *testing.T) map[string]string {
	t.Helper()
	var out map[string]string
	e.eval(t, `Object.fromEntries(Object.entries(localStorage))`, &out)
	return out
}

const tag = `<script async src="{{COLLECTOR}}/lf.js" data-site="{{SITE}}" data-consent="%s"></script>`

func page(consent, extraHead string) string {
	return `<!doctype html><html><head><title>Pricing – Example</title>` + extraHead +
		fmt.Sprintf(tag, consent) + `</head><body><h1>Pricing</h1></body></html>`
}

// TestTrackerConsentRequired: with data-consent="required" nothing is
// stored before consent, and the landing page's hit waits for the answer;
// after leadpipe('consent','granted') it goes out with the client id (so
// the landing page and the pages after it are one visitor's), dated when
// the page loaded; the tracker's cookies and storage appear with their
// lifetimes, single-page-app navigation is counted, and engaged time
// arrives when the tab is hidden.
func TestTrackerConsentRequired(t *testing.T) {
	e := startBrowserEnv(t, page("required", ""))
	e.run(t, chromedp.Navigate(e.pages.URL+"/pricing?utm_source=newsletter"))
	var loaded bool
	e.eval(t, `!!window.__leadpipe`, &loaded)
	time.Sleep(time.Second) // the visitor reads the banner
	if h := e.hits(t); !loaded || len(h) != 0 {
		t.Errorf("tracker loaded %v; %d hits sent before the visitor answered, want them held: %+v", loaded, len(h), h)
	}
	if c := e.cookies(t); len(c) != 0 {
		t.Errorf("cookies before consent: %v", c)
	}
	if ls := e.localStorage(t); len(ls) != 0 {
		t.Errorf("localStorage before consent: %v", ls)
	}

	var ignored any
	e.eval(t, `leadpipe('consent', 'granted')`, &ignored)
	first := e.waitHit(t, "pageview", func(h bus.Hit) bool { return h.Type == "pageview" })
	if first.ClientID == "" || first.Consent != "granted" || first.Title != "Pricing – Example" ||
		!strings.HasSuffix(first.URL, "/pricing?utm_source=newsletter") || first.Lang == "" || !strings.Contains(first.UserAgent, "Chrome") {
		t.Errorf("the landing pageview, released by the grant: %+v", first)
	}
	if held := time.Duration(first.ReceivedAt-first.TS) * time.Millisecond; held < 900*time.Millisecond || held > 20*time.Second {
		t.Errorf("the landing pageview is dated %v before it was received; want the second it was held", held)
	}
	cookies := e.cookies(t)
	now := time.Now()
	for _, name := range []string{"_lfa", "_lfa_consent"} {
		c := cookies[name]
		if c == nil {
			t.Fatalf("cookie %s missing after consent (have %v)", name, cookies)
		}
		// Chromium caps every cookie at 400 days; the intended 2 years are
		// kept in localStorage _lfa_expiry.
		days := time.Unix(int64(c.Expires), 0).Sub(now).Hours() / 24
		if days < 399 || days > 401 || c.SameSite != network.CookieSameSiteLax {
			t.Errorf("cookie %s: expires in %.1f days, SameSite %q; want 400 (Chromium's cap) and Lax", name, days, c.SameSite)
		}
	}
	if _, ok := cookies["_lfa_test_cookie_stored"]; ok {
		t.Error("the probe cookie _lfa_test_cookie_stored outlived its test")
	}
	ls := e.localStorage(t)
	var expiry int64
	fmt.Sscan(ls["_lfa_expiry"], &expiry)
	if days := time.UnixMilli(expiry).Sub(now).Hours() / 24; days < 729 || days > 731 || ls["_lfa"] != cookies["_lfa"].Value {
		t.Errorf("localStorage %v: _lfa_expiry %.1f days away, want 730 and _lfa = the cookie's id", ls, days)
	}

	// A single-page-app navigation is a pageview, now with the client id.
	// A router changes the title after pushState returns.
	e.eval(t, `history.pushState({}, '', '/customers'); document.title = 'Customers – Example'; 1`, &ignored)
	spa := e.waitHit(t, "SPA pageview", func(h bus.Hit) bool { return h.Type == "pageview" && strings.HasSuffix(h.URL, "/customers") })
	if first.ClientID != cookies["_lfa"].Value || spa.ClientID != cookies["_lfa"].Value || spa.Consent != "granted" || !strings.HasSuffix(spa.Referrer, "/pricing?utm_source=newsletter") ||
		spa.Title != "Customers – Example" {
		t.Errorf("SPA pageview: %+v", spa)
	}

	// Engaged time: the page stays visible and focused for a while, then
	// the tab is hidden; the time arrives by sendBeacon.
	time.Sleep(1500 * time.Millisecond) // the engaged time being measured, not a wait for work
	e.eval(t, `Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'});
		document.dispatchEvent(new Event('visibilitychange')); 1`, &ignored)
	eng := e.waitHit(t, "engagement", func(h bus.Hit) bool { return h.Type == "engagement" })
	if eng.EngagedMS < 1000 || eng.EngagedMS > 60000 || eng.ClientID != spa.ClientID {
		t.Errorf("engagement on hide: %+v, want ≥1s of engaged time from the same client", eng)
	}
}

// TestTrackerConsentUnanswered: the landing page's hits of a site that
// requires consent do not wait for ever: they go out without a client id
// at the end of data-consent-wait, or at once when the tab is hidden (the
// visitor may be leaving); a refusal sends them at once, without one.
func TestTrackerConsentUnanswered(t *testing.T) {
	waitTag := `<script async src="{{COLLECTOR}}/lf.js" data-site="{{SITE}}" data-consent="required" data-consent-wait="%d"></script>`
	for _, c := range []struct {
		name, do string
		wait     int
	}{
		{"wait-ends", "", 1},
		{"tab-hidden", `Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'});
			document.dispatchEvent(new Event('visibilitychange')); 1`, 600},
		{"refused", `leadpipe('consent', 'denied'); 1`, 600},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := startBrowserEnv(t, `<!doctype html><html><head><title>Home</title>`+fmt.Sprintf(waitTag, c.wait)+`</head><body></body></html>`)
			e.run(t, chromedp.Navigate(e.pages.URL+"/"))
			var loaded bool
			e.eval(t, `!!window.__leadpipe`, &loaded)
			if c.do != "" {
				var ignored any
				e.eval(t, c.do, &ignored)
			}
			h := e.waitHit(t, "pageview", func(h bus.Hit) bool { return h.Type == "pageview" })
			want := map[string]string{"wait-ends": "unknown", "tab-hidden": "unknown", "refused": "denied"}[c.name]
			if h.ClientID != "" || h.Consent != want || len(e.cookies(t)) != 0 {
				t.Errorf("landing pageview %+v, cookies %v; want no client id, consent %s, no cookie", h, e.cookies(t), want)
			}
		})
	}
}

// TestTrackerDenied: after leadpipe('consent','denied') nothing personal
// stays in the browser and hits carry no client id.
func TestTrackerDenied(t *testing.T) {
	e := startBrowserEnv(t, page("not-required", ""))
	e.run(t, chromedp.Navigate(e.pages.URL+"/"))
	first := e.waitHit(t, "pageview", func(h bus.Hit) bool { return h.Type == "pageview" })
	if first.ClientID == "" || e.cookies(t)["_lfa"] == nil {
		t.Fatalf("consent not required: the client id should be set and sent: %+v", first)
	}
	var ignored any
	e.eval(t, `leadpipe('consent', 'denied'); history.pushState({}, '', '/after-denied'); 1`, &ignored)
	after := e.waitHit(t, "pageview after denial", func(h bus.Hit) bool { return strings.HasSuffix(h.URL, "/after-denied") })
	if after.ClientID != "" || after.Consent != "denied" {
		t.Errorf("pageview after denial: %+v", after)
	}
	// Only the refusal itself is remembered (consent is not required here,
	// so without it the next page would store an id again).
	checkNothingPersonal := func(when string) {
		t.Helper()
		c := e.cookies(t)
		if len(c) != 1 || c["_lfa_consent"] == nil || c["_lfa_consent"].Value != "denied" {
			t.Errorf("cookies %s: %v, want only _lfa_consent=denied", when, c)
		}
		if ls := e.localStorage(t); len(ls) != 0 {
			t.Errorf("localStorage %s: %v", when, ls)
		}
	}
	checkNothingPersonal("after denial")
	e.run(t, chromedp.Navigate(e.pages.URL+"/next-page"))
	next := e.waitHit(t, "pageview of the next page", func(h bus.Hit) bool { return strings.HasSuffix(h.URL, "/next-page") })
	if next.ClientID != "" || next.Consent != "denied" {
		t.Errorf("the next page after denial: %+v", next)
	}
	checkNothingPersonal("on the next page")
}

// TestTrackerQueuedConsent: calls made before the async script loads are
// queued by the one-line stub and applied when it does.
func TestTrackerQueuedConsent(t *testing.T) {
	stub := `<script>window.leadpipe=window.leadpipe||function(){(leadpipe.q=leadpipe.q||[]).push(arguments)};leadpipe('consent','granted');</script>`
	e := startBrowserEnv(t, page("required", stub))
	e.run(t, chromedp.Navigate(e.pages.URL+"/"))
	h := e.waitHit(t, "pageview", func(h bus.Hit) bool { return h.Type == "pageview" })
	if h.ClientID == "" || h.Consent != "granted" || e.cookies(t)["_lfa_consent"] == nil {
		t.Errorf("queued consent not applied: %+v", h)
	}
}

// TestTrackerRetryCountedOnce: the first delivery of a hit reaches the
// collector but its answer is lost (a proxy answers 503); the tracker
// retries with the same hit id, and the collector queues it once.
func TestTrackerRetryCountedOnce(t *testing.T) {
	var mu sync.Mutex
	var ids []string
	var e *browserEnv
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		first := len(ids) == 0
		if i := strings.Index(string(body), `"id":"`); i >= 0 {
			ids = append(ids, string(body[i+6:i+38]))
		}
		mu.Unlock()
		target, _ := url.Parse(e.url)
		req, _ := http.NewRequest(http.MethodPost, target.String()+"/v1/hit", strings.NewReader(string(body)))
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		if first {
			w.WriteHeader(http.StatusServiceUnavailable) // the 202 is lost on the way back
			return
		}
		w.WriteHeader(resp.StatusCode)
	}))
	defer proxy.Close()
	e = startBrowserEnv(t, `<!doctype html><html><head><title>Retry</title>
		<script async src="{{COLLECTOR}}/lf.js" data-site="{{SITE}}" data-endpoint="`+proxy.URL+`/v1/hit"></script></head><body></body></html>`)
	e.run(t, chromedp.Navigate(e.pages.URL+"/"))
	testenv.Eventually(t, 20*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(ids) < 2 {
			return fmt.Errorf("%d deliveries through the proxy", len(ids))
		}
		return nil
	})
	mu.Lock()
	if ids[0] != ids[1] {
		t.Errorf("the retry carried another hit id: %s then %s", ids[0], ids[1])
	}
	mu.Unlock()
	if hits := e.hits(t); len(hits) != 1 || hits[0].ID != ids[0] {
		t.Errorf("queued %d hits for one pageview delivered twice, want 1", len(hits))
	}
}

// TestTrackerConsentManagers: an IAB TCF v2 CMP's purpose-1 consent and
// Google Consent Mode's analytics_storage decide storage when present.
func TestTrackerConsentManagers(t *testing.T) {
	t.Run("tcf=granted", func(t *testing.T) {
		cmp := `<script>window.__tcfapi=function(cmd,v,cb){if(cmd==='addEventListener')cb({eventStatus:'tcloaded',gdprApplies:true,purpose:{consents:{1:true}}},true)};</script>`
		e := startBrowserEnv(t, page("required", cmp))
		e.run(t, chromedp.Navigate(e.pages.URL+"/"))
		h := e.waitHit(t, "pageview", func(h bus.Hit) bool { return h.Type == "pageview" })
		if h.ClientID == "" || h.Consent != "granted" || e.cookies(t)["_lfa"] == nil {
			t.Errorf("TCF purpose 1 granted: %+v, cookies %v", h, e.cookies(t))
		}
	})
	t.Run("tcf=refused", func(t *testing.T) {
		cmp := `<script>window.__tcfapi=function(cmd,v,cb){if(cmd==='addEventListener')cb({eventStatus:'useractioncomplete',gdprApplies:true,purpose:{consents:{1:false}}},true)};</script>`
		e := startBrowserEnv(t, page("not-required", cmp))
		e.run(t, chromedp.Navigate(e.pages.URL+"/"))
		h := e.waitHit(t, "pageview", func(h bus.Hit) bool { return h.Type == "pageview" })
		if h.ClientID != "" || h.Consent != "denied" || !onlyRefusal(e.cookies(t)) {
			t.Errorf("TCF purpose 1 refused: %+v, cookies %v", h, e.cookies(t))
		}
	})
	t.Run("gcm=update", func(t *testing.T) {
		gcm := `<script>window.dataLayer=window.dataLayer||[];function gtag(){dataLayer.push(arguments)};gtag('consent','default',{analytics_storage:'denied'});</script>`
		e := startBrowserEnv(t, page("not-required", gcm))
		e.run(t, chromedp.Navigate(e.pages.URL+"/"))
		h := e.waitHit(t, "pageview", func(h bus.Hit) bool { return h.Type == "pageview" })
		if h.ClientID != "" || !onlyRefusal(e.cookies(t)) {
			t.Errorf("Consent Mode default denied: %+v, cookies %v", h, e.cookies(t))
		}
		var ignored any
		e.eval(t, `gtag('consent','update',{analytics_storage:'granted'}); 1`, &ignored)
		if e.cookies(t)["_lfa"] == nil {
			t.Error("Consent Mode update to granted did not store the client id")
		}
	})
}

// onlyRefusal reports whether the only leadpipe storage is the remembered
// refusal.
func onlyRefusal(c map[string]*network.Cookie) bool {
	return len(c) == 1 && c["_lfa_consent"] != nil && c["_lfa_consent"].Value == "denied"
}

// TestTrackerGPC: Global Privacy Control is a refusal of storage unless the
// site opts out with data-respect-dnt="false".
func TestTrackerGPC(t *testing.T) {
	gpc := `<script>Object.defineProperty(navigator,'globalPrivacyControl',{get:()=>true});</script>`
	e := startBrowserEnv(t, page("not-required", gpc))
	e.run(t, chromedp.Navigate(e.pages.URL+"/"))
	h := e.waitHit(t, "pageview", func(h bus.Hit) bool { return h.Type == "pageview" })
	if h.ClientID != "" || h.Consent != "denied" || len(e.cookies(t)) != 0 {
		t.Errorf("with GPC: %+v, cookies %v", h, e.cookies(t))
	}
}

// TestTrackerLoadedTwice: two tags on one page count one pageview.
func TestTrackerLoadedTwice(t *testing.T) {
	e := startBrowserEnv(t, page("not-required", fmt.Sprintf(tag, "not-required")))
	e.run(t, chromedp.Navigate(e.pages.URL+"/"))
	e.waitHit(t, "pageview", func(h bus.Hit) bool { return h.Type == "pageview" })
	// Give a second copy every chance to send its own pageview: navigate
	// in-app and wait for that pageview, which comes after any duplicate.
	var ignored any
	e.eval(t, `history.pushState({}, '', '/second'); 1`, &ignored)
	e.waitHit(t, "second pageview", func(h bus.Hit) bool { return strings.HasSuffix(h.URL, "/second") })
	n := 0
	for _, h := range e.hits(t) {
		if h.Type == "pageview" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d pageviews for one load and one navigation with the tag twice, want 2", n)
	}
}

// TestTrackerIdentify: leadpipe('identify', {email}) sends nothing without
// consent; with it granted, the queued hit holds the address's domain and
// nothing else of it; a free-mail address is not queued.
func TestTrackerIdentify(t *testing.T) {
	e := startBrowserEnv(t, page("required", ""))
	e.run(t, chromedp.Navigate(e.pages.URL+"/contact"))
	var ignored any
	e.eval(t, `leadpipe('identify', {email: 'before.consent@paper-mill.example'}); 1`, &ignored)
	e.eval(t, `leadpipe('consent', 'granted'); 1`, &ignored)
	e.waitHit(t, "pageview", func(h bus.Hit) bool { return h.Type == "pageview" })
	e.eval(t, `leadpipe('identify', {email: 'jane@gmail.com'}); leadpipe('identify', {email: 'Jane.Doe@Sales.Paper-Mill.co.uk'}); 1`, &ignored)
	got := e.waitHit(t, "identify", func(h bus.Hit) bool { return h.Type == "identify" })
	if got.Domain != "paper-mill.co.uk" || got.ClientID == "" || got.Consent != "granted" {
		t.Errorf("identify hit: %+v", got)
	}
	time.Sleep(500 * time.Millisecond) // anything else sent would be queued by now
	n := 0
	for _, h := range e.hits(t) {
		raw, _ := h.Encode()
		if strings.Contains(strings.ToLower(string(raw)), "jane") || strings.Contains(string(raw), "before.consent") {
			t.Errorf("a queued hit holds part of an address: %s", raw)
		}
		if h.Type == "identify" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d identify hits queued, want 1 (none before consent, none for free mail)", n)
	}
}
