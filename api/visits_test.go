package api

import (
	"testing"
	"time"
)

func TestBuildVisits(t *testing.T) {
	t.Parallel()
	at := func(s string) time.Time {
		ts, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	pv := func(v uint64, ts, url, ref string) hitRow {
		return hitRow{VisitKey: v, TS: at(ts), Type: "pageview", URL: url, Title: "T " + url, Referrer: ref}
	}
	eng := func(v uint64, ts, url string, ms uint32) hitRow {
		return hitRow{VisitKey: v, TS: at(ts), Type: "engagement", URL: url, EngagedMS: ms}
	}
	rows := []hitRow{
		// Visitor 1: two pages with engagement, then 45 minutes away: a second visit.
		pv(1, "2026-11-20T10:00:00Z", "https://a.example/", "https://www.google.com/"),
		eng(1, "2026-11-20T10:04:00Z", "https://a.example/", 30000),
		pv(1, "2026-11-20T10:05:00Z", "https://a.example/pricing", "https://a.example/"),
		eng(1, "2026-11-20T10:06:00Z", "https://a.example/pricing", 45500),
		eng(1, "2026-11-20T10:07:00Z", "https://a.example/pricing", 10000),
		pv(1, "2026-11-20T10:52:00Z", "https://a.example/docs", ""),
		// Visitor 2: one visit across midnight, 20 minutes between hits.
		pv(2, "2026-11-20T23:50:00Z", "https://a.example/?utm_source=x", ""),
		pv(2, "2026-11-21T00:10:00Z", "https://a.example/careers", "https://a.example/"),
		// Exactly 30 minutes is still the same visit; 30m01s is not.
		pv(3, "2026-11-22T08:00:00Z", "https://a.example/", ""),
		pv(3, "2026-11-22T08:30:00Z", "https://a.example/b", ""),
		pv(3, "2026-11-22T09:00:01Z", "https://a.example/c", ""),
	}
	visits := buildVisits(rows)
	if len(visits) != 5 {
		t.Fatalf("%d visits, want 5: %+v", len(visits), visits)
	}
	v := visits[0]
	if len(v.Pages) != 2 || v.EngagedSeconds != 85 || v.Source != "search" || !v.Ended.Equal(at("2026-11-20T10:07:00Z")) {
		t.Errorf("first visit: %+v", v)
	}
	if v.Pages[0].EngagedSeconds != 30 || v.Pages[1].EngagedSeconds != 55 {
		t.Errorf("time on pages: %d and %d s, want 30 and 55", v.Pages[0].EngagedSeconds, v.Pages[1].EngagedSeconds)
	}
	if visits[1].Source != "direct" || len(visits[1].Pages) != 1 {
		t.Errorf("second visit after the gap: %+v", visits[1])
	}
	if v := visits[2]; len(v.Pages) != 2 || v.Source != "campaign" || v.Started.Day() != 20 || v.Ended.Day() != 21 {
		t.Errorf("visit across midnight: %+v", v)
	}
	if len(visits[3].Pages) != 2 || len(visits[4].Pages) != 1 {
		t.Errorf("30-minute boundary: %d and %d pages, want 2 and 1", len(visits[3].Pages), len(visits[4].Pages))
	}
}
