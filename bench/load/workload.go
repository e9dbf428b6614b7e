package main

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/leadpipe/leadpipe/ipintel"
)

// The workload: visitors from real networks of the ASN data, in a mix of
// network types, each on a session of several pages with engagement pings,
// with URLs, titles and referrers of realistic sizes. Hits are
// pre-rendered as body templates; each send appends a unique hit id, so
// every accepted hit can be counted at the end.

// mix is the share of visitors per network type, in percent.
type mix map[string]int

func parseMix(s string) (mix, error) {
	m := mix{}
	total := 0
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.Atoi(v)
		if !ok || err != nil || n < 0 {
			return nil, fmt.Errorf("--mix: %q is not type=percent", part)
		}
		if !slices.Contains([]string{"business", "residential", "mobile", "hosting", "education", "government"}, k) {
			return nil, fmt.Errorf("--mix: %q is not a network type leadpipe tells apart", k)
		}
		m[k] = n
		total += n
	}
	if total != 100 {
		return nil, fmt.Errorf("--mix: the shares add up to %d, not 100", total)
	}
	return m, nil
}

// hitTemplate is one hit of a session: its body up to the id, and the
// headers a browser sends.
type hitTemplate struct {
	body []byte // JSON without the closing `"id":"…"}`
	ip   string
	ua   string
	lang string
	kind string // network type of the visitor, or "bot"
}

type workload struct {
	hits []hitTemplate
	// keptShare is the share of hits the pipeline should keep (business
	// networks, human): for the report's sanity line.
	keptShare float64
}

var (
	browserUAs = []string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
	}
	botUAs = []string{
		"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
		"Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
		"python-requests/2.32.3",
	}
	langs     = []string{"en-US,en;q=0.9", "de-DE,de;q=0.9,en;q=0.8", "fr-FR,fr;q=0.9,en;q=0.7", "en-GB,en;q=0.9", "nl-NL,nl;q=0.9,en;q=0.8"}
	referrers = []string{"", "", "https://www.google.com/", "https://www.linkedin.com/", "https://www.bing.com/",
		"https://www.google.de/", "https://news.ycombinator.com/item?id=42187634", "https://mail.google.com/",
		"https://www.linkedin.com/feed/update/urn:li:activity:7265432109876543210/"}
	sections = []string{"solutions", "product", "customers", "blog", "docs", "pricing", "company", "resources"}
	topics   = []string{"predictive-maintenance", "supply-chain-visibility", "industrial-iot", "data-governance",
		"edge-analytics", "quality-inspection", "energy-monitoring", "fleet-telemetry", "digital-twin", "erp-integration"}
)

// pools picks, for each network type in m, prefixes of the ASN data that
// leadpipe classifies as that type.
func pools(db *ipintel.DB, m mix, r *rand.Rand) (map[string][]netip.Prefix, error) {
	out := map[string][]netip.Prefix{}
	seen := map[string]int{}
	for p := range db.ASN().All() {
		if !p.Addr().Is4() && r.IntN(4) != 0 {
			continue // mostly IPv4, some IPv6, as web traffic is
		}
		res := db.Enrich(ipintel.RandomAddr(p, r))
		t := res.Type
		if m[t] == 0 {
			continue
		}
		// Reservoir sampling: 2,000 prefixes per type, spread over the table.
		seen[t]++
		if len(out[t]) < 2000 {
			out[t] = append(out[t], p)
		} else if j := r.IntN(seen[t]); j < 2000 {
			out[t][j] = p
		}
	}
	for t, share := range m {
		if share > 0 && len(out[t]) == 0 {
			return nil, fmt.Errorf("no network of type %s in the IP data", t)
		}
	}
	return out, nil
}

// buildWorkload renders sessions until there are at least n hits.
func buildWorkload(db *ipintel.DB, site string, m mix, botShare float64, n int, seed uint64) (*workload, error) {
	r := rand.New(rand.NewPCG(seed, 1))
	byType, err := pools(db, m, r)
	if err != nil {
		return nil, err
	}
	var types []string
	for t, share := range m {
		for range share {
			types = append(types, t)
		}
	}
	slices.Sort(types)
	w := &workload{}
	kept := 0
	for v := 0; len(w.hits) < n; v++ {
		kind := types[r.IntN(len(types))]
		prefixes := byType[kind]
		ip := ipintel.RandomAddr(prefixes[r.IntN(len(prefixes))], r).String()
		ua := browserUAs[r.IntN(len(browserUAs))]
		if r.Float64() < botShare {
			ua, kind = botUAs[r.IntN(len(botUAs))], "bot"
		}
		cid := fmt.Sprintf("LF1.1.%016x.%d", r.Uint64(), 1764547200+r.IntN(86400*30))
		lang := langs[r.IntN(len(langs))]
		ref := referrers[r.IntN(len(referrers))]
		pages := 2 + r.IntN(5)
		for p := range pages {
			section, topic := sections[r.IntN(len(sections))], topics[r.IntN(len(topics))]
			url := "https://www.northwind-industrial.example/" + section + "/" + topic
			if p == 0 && ref != "" && r.IntN(3) == 0 {
				url += "?utm_source=linkedin&utm_medium=social&utm_campaign=q4-" + topic
			}
			title := strings.ToUpper(topic[:1]) + strings.ReplaceAll(topic[1:], "-", " ") + " – " + section + " – Northwind Industrial Analytics"
			pageview := fmt.Appendf(nil, `{"site":%q,"type":"pageview","url":%q,"referrer":%q,"title":%q,"cid":%q,"consent":"granted",`,
				site, url, ref, title, cid)
			w.hits = append(w.hits, hitTemplate{body: pageview, ip: ip, ua: ua, lang: lang, kind: kind})
			// Most pages get an engagement ping (sent on hide).
			if r.IntN(4) != 0 {
				ping := fmt.Appendf(nil, `{"site":%q,"type":"engagement","url":%q,"cid":%q,"engaged_ms":%d,"consent":"granted",`,
					site, url, cid, 2000+r.IntN(90000))
				w.hits = append(w.hits, hitTemplate{body: ping, ip: ip, ua: ua, lang: lang, kind: kind})
			}
			ref = url
		}
	}
	for _, h := range w.hits {
		if h.kind == "business" || h.kind == "education" || h.kind == "government" {
			kept++
		}
	}
	w.keptShare = float64(kept) / float64(len(w.hits))
	return w, nil
}

// body renders hit i: the template of slot i of the workload, with the
// unique id run-i.
func (w *workload) body(dst []byte, run string, i uint64) ([]byte, *hitTemplate) {
	t := &w.hits[i%uint64(len(w.hits))]
	dst = append(dst[:0], t.body...)
	dst = append(dst, `"id":"`...)
	dst = append(dst, run...)
	dst = append(dst, '-')
	dst = strconv.AppendUint(dst, i, 36)
	dst = append(dst, `"}`...)
	return dst, t
}
