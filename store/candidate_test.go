package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/leadpipe/leadpipe/internal/testenv"
	"github.com/leadpipe/leadpipe/store"
)

// TestCandidatesOnlyWhenAsked: a company only the address-space fall-back
// names (its hits stored as candidates) is left out of the feed and the
// export unless the request asks for candidates, and is marked when shown;
// one confirmed hit in the range confirms the company.
func TestCandidatesOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	conn, _ := testenv.Database(t)
	ctx := context.Background()
	db := store.New(conn)
	now := time.Now().UTC().Truncate(time.Millisecond)
	const site = "s"
	hit := func(id, company string, ago time.Duration, candidate uint8) *store.Hit {
		ts := now.Add(-ago)
		return &store.Hit{SiteID: site, TS: ts, ReceivedAt: ts, HitID: id, Type: "pageview", URL: "https://x.example/",
			Path: "/", Source: "direct", VisitorID: 1, VisitID: 1, VisitStart: ts, NewVisit: 1, Consent: "granted",
			CompanyID: company, CompanyName: company, NetworkType: "business", Country: "DE", RetentionDays: 180,
			Candidate: candidate}
	}
	hits := []*store.Hit{
		hit("1", "confirmed", time.Hour, 0),
		hit("2", "candidate", time.Hour, 1),
		hit("3", "candidate", 2*time.Hour, 1),
		// Named by the fall-back one day, by stronger evidence the next
		// (reverse DNS answered): confirmed over the range.
		hit("4", "later-confirmed", 30*time.Hour, 1),
		hit("5", "later-confirmed", time.Hour, 0),
	}
	if err := db.InsertHits(ctx, "candidates", len(hits), slices.Values(hits)); err != nil {
		t.Fatal(err)
	}
	from, to := now.Add(-72*time.Hour).Format(time.DateOnly), now.Format(time.DateOnly)
	feed := func(candidates bool) map[string]bool {
		t.Helper()
		rows, err := db.FeedCompanies(ctx, store.Feed{Site: site, From: from, To: to, Sort: "last_seen", Limit: 10, Candidates: candidates})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, c := range rows {
			out[c.ID] = c.Candidate
		}
		return out
	}
	if got := feed(false); len(got) != 2 || got["confirmed"] || got["later-confirmed"] {
		t.Errorf("default feed %v; want confirmed and later-confirmed, neither marked", got)
	}
	if got := feed(true); len(got) != 3 || !got["candidate"] || got["confirmed"] || got["later-confirmed"] {
		t.Errorf("feed with candidates %v; want all three, only candidate marked", got)
	}
	a, err := db.CompanyActivity(ctx, site, "candidate", from, to, 10)
	if err != nil || !a.Company.Candidate {
		t.Errorf("company page of the candidate: candidate %v, err %v", a.Company.Candidate, err)
	}
	export := func(candidates bool) []string {
		t.Helper()
		next, done, err := db.ExportRows(ctx, site, from, to, candidates)
		if err != nil {
			t.Fatal(err)
		}
		defer done()
		var ids []string
		for {
			var row store.ExportRow
			ok, err := next(&row)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			if !slices.Contains(ids, row.CompanyID) {
				ids = append(ids, row.CompanyID)
			}
		}
		slices.Sort(ids)
		return ids
	}
	if got := export(false); !slices.Equal(got, []string{"confirmed", "later-confirmed"}) {
		t.Errorf("default export companies %v", got)
	}
	if got := export(true); !slices.Equal(got, []string{"candidate", "confirmed", "later-confirmed"}) {
		t.Errorf("export with candidates: companies %v", got)
	}
}
