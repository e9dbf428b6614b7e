package store_test

import (
	"context"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/leadpipe/leadpipe/internal/testenv"
	"github.com/leadpipe/leadpipe/store"
)

// TestHitRoundTrip writes a hit whose every field differs from every
// other of its type, and reads it back by the ch tags: a column appended
// under another's name changes what comes back.
func TestHitRoundTrip(t *testing.T) {
	t.Parallel()
	conn, _ := testenv.Database(t)
	ctx := context.Background()
	db := store.New(conn)
	at := func(s int) time.Time { return time.Date(2026, 11, 30, 10, 0, s, 0, time.UTC) }
	want := store.Hit{SiteID: "site", TS: at(3), ReceivedAt: at(4), HitID: "hit", Type: "pageview", URL: "https://x.example/a",
		Path: "/a", Referrer: "https://ref.example/", Source: "referral", Title: "Title", VisitorID: 11, VisitID: 12,
		VisitStart: at(1), NewVisit: 1, Consent: "granted", EngagedMS: 13, CompanyID: "cid", CompanyName: "Name",
		CompanyDomain: "name.example", CompanyIndustry: "industry", CompanySize: "size", ASN: 14, ASOrg: "AS org",
		NetworkType: "business", Country: "DE", City: "Berlin", Lang: "de", StreamSeq: 15, RetentionDays: 16}
	if err := db.InsertHits(ctx, "round-trip", 1, slices.Values([]*store.Hit{&want})); err != nil {
		t.Fatal(err)
	}
	got, err := db.SiteHitRows(ctx, "site", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("%d rows back, want 1", len(got))
	}
	g, w := reflect.ValueOf(got[0]), reflect.ValueOf(want)
	for i := range g.NumField() {
		gv, wv := g.Field(i).Interface(), w.Field(i).Interface()
		if gt, ok := gv.(time.Time); ok {
			gv, wv = gt.UTC(), wv.(time.Time).UTC()
		}
		if !reflect.DeepEqual(gv, wv) {
			t.Errorf("%s: got %v, want %v", g.Type().Field(i).Name, gv, wv)
		}
	}
}
