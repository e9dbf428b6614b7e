package visit

import (
	"net/url"
	"strings"
)

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
