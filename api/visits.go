package api

import (
	"time"

	"github.com/leadpipe/leadpipe/internal/visit"
	"github.com/leadpipe/leadpipe/store"
)

// visitGap ends a visit; see package visit.
const visitGap = visit.Gap

// hitRow is one stored hit of a company, as the company page reads it.
type hitRow = store.CompanyHit

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
		if cur == nil || r.VisitKey != curKey || r.TS.Sub(last) > visitGap {
			flush()
			cur = &Visit{Started: r.TS, Pages: make([]Page, 0, 4)}
			curKey = r.VisitKey
		}
		last = r.TS
		cur.Ended = r.TS
		if r.OpeningSource != "" {
			cur.Source = r.OpeningSource
		}
		switch r.Type {
		case "pageview":
			if len(cur.Pages) == 0 {
				cur.Referrer = r.Referrer
				if cur.Source == "" {
					cur.Source = visit.Source(r.URL, r.Referrer)
				}
			}
			cur.Pages = append(cur.Pages, Page{URL: r.URL, Title: r.Title, TS: r.TS})
			pageMS = append(pageMS, 0)
		case "engagement":
			visitMS += uint64(r.EngagedMS)
			for i := len(cur.Pages) - 1; i >= 0; i-- {
				if cur.Pages[i].URL == r.URL {
					pageMS[i] += uint64(r.EngagedMS)
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
