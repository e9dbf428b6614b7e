package processor

import (
	"strings"

	"github.com/mileusna/useragent"
)

// nonBrowserTokens mark user agents of HTTP libraries, headless browsers,
// monitors and link previewers: software, not a person reading a page.
// Matched case-insensitively as substrings of the user agent.
var nonBrowserTokens = []string{
	"bot", "crawl", "spider", "slurp", "scrape", "scan", "monitor", "preview", "fetch",
	"headless", "phantomjs", "puppeteer", "playwright", "selenium", "webdriver", "electron",
	"lighthouse", "pagespeed", "ptst", "gtmetrix", "pingdom", "uptime", "statuscake", "site24x7",
	"curl/", "wget/", "python", "go-http-client", "java/", "okhttp", "axios", "node-fetch", "undici",
	"libwww", "httpie", "httpclient", "aiohttp", "guzzle", "ruby", "perl", "powershell", "postman",
	"facebookexternalhit", "whatsapp", "telegram", "discord", "skype", "embedly", "quora link",
	"http://", "https://", "@",
}

// botReason says why a hit's user agent and headers are not a person's
// browser, or "" if they look like one. Every real browser sends a
// User-Agent and an Accept-Language with every request, sendBeacon
// included; a request without either is software.
func botReason(ua, lang string) string {
	if strings.TrimSpace(ua) == "" {
		return "no User-Agent header"
	}
	if lang == "" {
		return "no Accept-Language header"
	}
	lower := strings.ToLower(ua)
	for _, tok := range nonBrowserTokens {
		if strings.Contains(lower, tok) {
			return "user agent contains " + tok
		}
	}
	parsed := useragent.Parse(ua)
	if parsed.Bot {
		return "user agent is the crawler " + parsed.Name
	}
	if parsed.Name == "" || !strings.HasPrefix(ua, "Mozilla/") && !strings.HasPrefix(ua, "Opera/") {
		return "user agent is no known browser"
	}
	return ""
}
