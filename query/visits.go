package query

import (
	"net/url"
	"strings"
	"time"
)

// visitGap is the inactivity that ends a visit, as in web analytics at large.
const visitGap = 30 * time.Minute

// hitRow is one stored hit of a company, as the company page reads it.
type hitRow struct {
	visitor   uint64
	ts        time.Time
	typ       string
	url       string
	title     string
	referrer  string
	engagedMS uint32
}

// Visit is one visitor's activity without a 30-minute gap.
type Visit struct {
	Started        time.Time `json:"started"`
	Ended          time.Time `json:"ended"`
	EngagedSeconds uint64    `json:"engaged_seconds"`
	Source         string    `json:"source"`
	Referrer       string    `json:"referrer,omitempty"`
	Pages          []Page    `json:"pages"`
}

// Page is one page view of a visit with the engaged time spent on it.
type Page struct {
	URL            string    `json:"url"`
	Title          string    `json:"title"`
	TS             time.Time `json:"ts"`
	EngagedSeconds uint64    `json:"engaged_seconds"`
}

// buildVisits groups hits, ordered by visitor then time, into visits: a new
// visit starts with a visitor's first hit and after every gap of more than
// 30 minutes. Engagement hits add their time to the visit and to the page
// view they follow (the latest one with the same URL).
func buildVisits(rows []hitRow) []Visit {
	var visits []Visit
	var cur *Visit
	var curVisitor uint64
	var last time.Time
	var pageMS []uint64 // engaged ms of each page of cur
	var visitMS uint64
	flush := func() {
		if cur == nil {
			return
		}
		for i := range cur.Pages {
			cur.Pages[i].EngagedSeconds = pageMS[i] / 1000
		}
		cur.EngagedSeconds = visitMS / 1000
		visits = append(visits, *cur)
		cur, visitMS, pageMS = nil, 0, pageMS[:0]
	}
	for _, r := range rows {
		if cur == nil || r.visitor != curVisitor || r.ts.Sub(last) > visitGap {
			flush()
			cur = &Visit{Started: r.ts, Pages: make([]Page, 0, 4)}
			curVisitor = r.visitor
		}
		last = r.ts
		cur.Ended = r.ts
		switch r.typ {
		case "pageview":
			if len(cur.Pages) == 0 {
				cur.Source, cur.Referrer = Source(r.url, r.referrer), r.referrer
			}
			cur.Pages = append(cur.Pages, Page{URL: r.url, Title: r.title, TS: r.ts})
			pageMS = append(pageMS, 0)
		case "engagement":
			visitMS += uint64(r.engagedMS)
			for i := len(cur.Pages) - 1; i >= 0; i-- {
				if cur.Pages[i].URL == r.url {
					pageMS[i] += uint64(r.engagedMS)
					break
				}
			}
		}
	}
	flush()
	// A visit that began with engagement only (its pageview fell before the
	// range) still gets a source.
	for i := range visits {
		if visits[i].Source == "" {
			visits[i].Source = "direct"
		}
	}
	return visits
}

// Search engines and social networks by registrable name: a referrer host
// matches when it is the name or a subdomain of it, under any top-level
// domain for names ending in a dot ("google." matches www.google.co.uk).
var searchEngines = []string{"google.", "bing.com", "duckduckgo.com", "yahoo.", "baidu.com", "yandex.", "ecosia.org", "startpage.com", "qwant.com", "search.brave.com", "naver.com", "seznam.cz"}
var socialNetworks = []string{"linkedin.com", "lnkd.in", "facebook.com", "fb.com", "twitter.com", "x.com", "t.co", "instagram.com", "reddit.com", "youtube.com", "xing.com", "tiktok.com", "pinterest.", "mastodon.social", "threads.net", "news.ycombinator.com"}

// hostIs reports whether host is name or a subdomain of it; a name ending
// in a dot stands for that label under any suffix.
func hostIs(host, name string) bool {
	if strings.HasSuffix(name, ".") {
		label := strings.TrimSuffix(name, ".")
		for _, part := range strings.Split(host, ".") {
			if part == label {
				return true
			}
		}
		return false
	}
	return host == name || strings.HasSuffix(host, "."+name)
}

// Source classifies how a visit came: campaign (UTM parameters or an ad
// click id), search, social, referral (another site) or direct (no referrer,
// or the site itself).
func Source(pageURL, referrer string) string {
	if u, err := url.Parse(pageURL); err == nil {
		q := u.Query()
		if q.Get("utm_source") != "" || q.Get("utm_medium") != "" || q.Get("utm_campaign") != "" || q.Get("gclid") != "" || q.Get("li_fat_id") != "" || q.Get("msclkid") != "" {
			return "campaign"
		}
		if referrer == "" {
			return "direct"
		}
		r, err := url.Parse(referrer)
		if err != nil || r.Host == "" || strings.EqualFold(r.Hostname(), u.Hostname()) {
			return "direct"
		}
		host := strings.ToLower(r.Hostname())
		for _, s := range searchEngines {
			if hostIs(host, s) {
				return "search"
			}
		}
		for _, s := range socialNetworks {
			if hostIs(host, s) {
				return "social"
			}
		}
		return "referral"
	}
	return "direct"
}
