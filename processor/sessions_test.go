package processor

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leadpipe/leadpipe/internal/bus"
	"github.com/leadpipe/leadpipe/internal/testenv"
)

// TestVisitsBuiltAcrossBatchesAndRestarts sends one company's visitors'
// hits in several batches, with the processor restarted in between (so
// the visit a hit continues must be found in ClickHouse), and checks the
// visits table and the company aggregate against the visits by hand:
// gaps, a visit across midnight, SPA pages, engagement pings, sources.
func TestVisitsBuiltAcrossBatchesAndRestarts(t *testing.T) {
	table := testenv.ASN(t)
	b := testenv.Bus(t)
	conn, _ := testenv.Database(t)
	ip := businessIPs(t, table, 212794, 1)[0]
	day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -3)
	at := func(hhmm string) time.Time {
		d, err := time.ParseDuration(strings.Replace(hhmm, ":", "h", 1) + "m")
		if err != nil {
			t.Fatal(err)
		}
		return day.Add(d)
	}
	type hit struct {
		cid, typ, at, url, ref string
		engagedMS              uint32
	}
	n := 0
	send := func(hits ...hit) {
		t.Helper()
		for _, h := range hits {
			n++
			ts := at(h.at).UnixMilli()
			m := bus.Hit{ID: fmt.Sprintf("h%d", n), Site: "vs", Type: h.typ, URL: "https://acme.example" + h.url, Referrer: h.ref,
				Title: "T" + h.url, ClientID: h.cid, Consent: "granted", TS: ts, ReceivedAt: ts, EngagedMS: h.engagedMS,
				IP: ip.String(), UserAgent: browserUA, Lang: "de"}
			data, _ := m.Encode()
			msg := nats.NewMsg(bus.HitSubject("vs"))
			msg.Data = data
			msg.Header.Set(jetstream.MsgIDHeader, m.MsgID())
			if _, err := b.JS.PublishMsg(context.Background(), msg); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Each life of the processor writes what was sent, then stops: the
	// next one remembers nothing.
	life := func() {
		t.Helper()
		p := New(testConfig(), deps(t, b, conn), prometheus.NewRegistry(), testenv.Quiet())
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		testenv.Eventually(t, 30*time.Second, func() error {
			if got := count(t, conn, "SELECT count() FROM hits WHERE site_id = 'vs'"); got != uint64(n) {
				return fmt.Errorf("%d of %d hits stored", got, n)
			}
			return nil
		})
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	const self = "https://acme.example/"
	send(
		// Visit 1 of v1: from a search, two SPA pages with engagement pings.
		hit{"v1", "pageview", "10:00", "/", "https://www.google.de/", 0},
		hit{"v1", "engagement", "10:04", "/", "https://www.google.de/", 30000},
		hit{"v1", "pageview", "10:05", "/pricing", self, 0},
		hit{"v1", "engagement", "10:06", "/pricing", self, 45000},
		// v2, same company, same time: a visit of its own.
		hit{"v2", "pageview", "10:02", "/careers", "https://www.linkedin.com/", 0},
	)
	life()
	send(
		// 24 minutes after v1's last hit: still visit 1 (found in ClickHouse).
		hit{"v1", "pageview", "10:30", "/docs", self, 0},
	)
	life()
	send(
		// 31 minutes later: visit 2, direct.
		hit{"v1", "pageview", "11:01", "/", "", 0},
		// Visit 3 from a campaign at 23:50, going on past midnight.
		hit{"v1", "pageview", "23:50", "/?utm_source=newsletter", "", 0},
		hit{"v1", "pageview", "24:10", "/pricing", self, 0},
	)
	life()
	send(
		// An engagement ping of visit 3 arriving late, out of order.
		hit{"v1", "engagement", "23:55", "/?utm_source=newsletter", "", 12000},
	)
	life()

	type visitRow struct {
		started, ended             time.Time
		hits, pageviews, engagedMS uint64
		entry, exit, source        string
	}
	rows, err := conn.Query(context.Background(), `
		SELECT min(started), max(ended), sum(hits), sum(pageviews), sum(engaged_ms),
		       argMinMerge(entry_page), argMaxMerge(exit_page), argMinMerge(source)
		FROM visits WHERE site_id = 'vs' GROUP BY visit_id ORDER BY 1, 3`)
	if err != nil {
		t.Fatal(err)
	}
	var got []visitRow
	for rows.Next() {
		var v visitRow
		if err := rows.Scan(&v.started, &v.ended, &v.hits, &v.pageviews, &v.engagedMS, &v.entry, &v.exit, &v.source); err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	rows.Close()
	want := []visitRow{
		{at("10:00"), at("10:30"), 5, 3, 75000, "/", "/docs", "search"},
		{at("10:02"), at("10:02"), 1, 1, 0, "/careers", "/careers", "social"},
		{at("11:01"), at("11:01"), 1, 1, 0, "/", "/", "direct"},
		{at("23:50"), at("24:10"), 3, 2, 12000, "/", "/pricing", "campaign"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d visits, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if !g.started.Equal(w.started) || !g.ended.Equal(w.ended) || g.hits != w.hits || g.pageviews != w.pageviews ||
			g.engagedMS != w.engagedMS || g.entry != w.entry || g.exit != w.exit || g.source != w.source {
			t.Errorf("visit %d:\n got %+v\nwant %+v", i+1, g, w)
		}
	}
	// The aggregate counts a visit on the day it began: four on the first
	// day, none on the next, and each source once.
	perDay := count(t, conn, "SELECT sum(visits) FROM company_daily WHERE site_id = 'vs' AND day = ?", day)
	next := count(t, conn, "SELECT sum(visits) FROM company_daily WHERE site_id = 'vs' AND day = ?", day.AddDate(0, 0, 1))
	if perDay != 4 || next != 0 {
		t.Errorf("visits per day: %d then %d, want 4 then 0", perDay, next)
	}
	var sources map[string]uint64
	if err := conn.QueryRow(context.Background(), "SELECT sumMap(sources) FROM company_daily WHERE site_id = 'vs'").Scan(&sources); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(sources) != "map[campaign:1 direct:1 search:1 social:1]" {
		t.Errorf("sources %v", sources)
	}
	if opened := count(t, conn, "SELECT sum(new_visit) FROM hits WHERE site_id = 'vs'"); opened != 4 {
		t.Errorf("%d hits open a visit, want 4", opened)
	}
	// The aggregates agree with the raw hits they were built from.
	for _, q := range []struct{ agg, raw string }{
		{"SELECT sum(visits) FROM company_daily WHERE site_id = 'vs'", "SELECT uniqExact(visit_id) FROM hits WHERE site_id = 'vs'"},
		{"SELECT count() FROM (SELECT visit_id FROM visits WHERE site_id = 'vs' GROUP BY visit_id)", "SELECT uniqExact(visit_id) FROM hits WHERE site_id = 'vs'"},
		{"SELECT sum(pageviews) FROM company_daily WHERE site_id = 'vs'", "SELECT countIf(type = 'pageview') FROM hits WHERE site_id = 'vs'"},
		{"SELECT sum(engaged_ms) FROM company_daily WHERE site_id = 'vs'", "SELECT sum(engaged_ms) FROM hits WHERE site_id = 'vs'"},
		{"SELECT uniqExactMerge(visitors) FROM company_daily WHERE site_id = 'vs'", "SELECT uniqExact(visitor_id) FROM hits WHERE site_id = 'vs'"},
		{"SELECT sum(pageviews) FROM company_pages_daily WHERE site_id = 'vs'", "SELECT countIf(type = 'pageview') FROM hits WHERE site_id = 'vs'"},
	} {
		if agg, raw := count(t, conn, q.agg), count(t, conn, q.raw); agg != raw {
			t.Errorf("%s = %d, but %s = %d", q.agg, agg, q.raw, raw)
		}
	}
}
