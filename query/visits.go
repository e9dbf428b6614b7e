package query

import (
	"github.com/leadpipe/leadpipe/internal/visit"
	"time"
)

// visitGap ends a visit; see package visit.
const visitGap = visit.Gap

// hitRow is one stored hit of a company, as the company page reads it.
type hitRow struct {
	visit     uint64 // visit_id, or the visitor for hits stored before visits were built
	ts        time.Time
	typ       string
	url       string
	title     string
	referrer  string
	engagedMS uint32
	// source is set on the hit that opened a visit: how the processor
	// classified it when it stored it.
	source string
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

// buildVisits groups hits, ordered by visit then time, into visits: a new
// visit starts with a visit key's first hit and after every gap of more than
// 30 minutes. Engagement hits add their time to the visit and to the page
// view they follow (the latest one with the same URL).
func buildVisits(rows []hitRow) []Visit {
	var visits []Visit
	var cur *Visit
	var curKey uint64
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
		if cur == nil || r.visit != curKey || r.ts.Sub(last) > visitGap {
			flush()
			cur = &Visit{Started: r.ts, Pages: make([]Page, 0, 4)}
			curKey = r.visit
		}
		last = r.ts
		cur.Ended = r.ts
		if r.source != "" {
			cur.Source = r.source
		}
		switch r.typ {
		case "pageview":
			if len(cur.Pages) == 0 {
				cur.Referrer = r.referrer
				if cur.Source == "" {
					cur.Source = visit.Source(r.url, r.referrer)
				}
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
