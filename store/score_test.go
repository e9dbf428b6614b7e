package store_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/leadpipe/leadpipe/internal/tenant"
	"github.com/leadpipe/leadpipe/internal/testenv"
	"github.com/leadpipe/leadpipe/store"
)

// scoreVisit is one visit of a test company: when it began (ago), by
// which visitor, and the pages it read.
type scoreVisit struct {
	ago     time.Duration
	visitor uint64
	pages   []string
	engaged time.Duration // per page
}

// monthOfVisits is a realistic month of a B2B site's company traffic: most
// companies come once and read a page or two, a few come back often. The
// number of visitor-days per company follows a Pareto law (α 1.1, capped at
// 120), pages per visit a geometric law (mean 2.5), and one page in seven
// is a high-intent one.
func monthOfVisits(r *rand.Rand, companies int) map[string][]scoreVisit {
	pages := []string{"/", "/blog/a", "/blog/b", "/docs/start", "/product", "/customers", "/careers"}
	intent := []string{"/pricing", "/contact-sales", "/demo"}
	out := map[string][]scoreVisit{}
	for c := range companies {
		n := min(120, int(math.Ceil(1/math.Pow(1-r.Float64(), 1/1.1))))
		visitors := 1 + r.IntN(1+n/4)
		id := fmt.Sprintf("m%03d", c)
		for range n {
			v := scoreVisit{ago: time.Duration(r.Float64() * 30 * 24 * float64(time.Hour)), visitor: uint64(c*1000 + r.IntN(visitors) + 1),
				engaged: time.Duration(r.ExpFloat64() * float64(40*time.Second))}
			for len(v.pages) == 0 || r.Float64() < 0.6 {
				if r.IntN(7) == 0 {
					v.pages = append(v.pages, intent[r.IntN(len(intent))])
				} else {
					v.pages = append(v.pages, pages[r.IntN(len(pages))])
				}
			}
			out[id] = append(out[id], v)
		}
	}
	return out
}

// TestLeadScoreRanks writes a realistic month of 400 companies, and pairs
// of companies that differ in one thing, and reads the feed by score: no
// more than 5% of companies share the top score or score 95 and above;
// the scores spread; and of each pair, the one with the high-intent pages,
// the one that came back on other days, the one seen more recently ranks
// first. The company page's explanation adds up to its score.
func TestLeadScoreRanks(t *testing.T) {
	t.Parallel()
	conn, _ := testenv.Database(t)
	ctx := context.Background()
	db := store.New(conn)
	now := time.Now().UTC().Truncate(time.Millisecond)
	const site = "s"

	companies := monthOfVisits(rand.New(rand.NewPCG(1, 2)), 400)
	day := 24 * time.Hour
	read := []string{"/", "/blog/a", "/product"}
	withIntent := []string{"/", "/blog/a", "/Pricing"}
	pair := func(a, b string, va, vb []scoreVisit) { companies[a], companies[b] = va, vb }
	// Each pair: three visits of three pages, a minute on each page; the
	// second of a pair sorts first when the scores tie, and the stale
	// company read a page more on each visit.
	more := append(slices.Clone(read), "/customers")
	pair("p-intent", "p-0plain",
		[]scoreVisit{{2 * day, 1, withIntent, time.Minute}, {3 * day, 1, read, time.Minute}, {4 * day, 1, read, time.Minute}},
		[]scoreVisit{{2 * day, 2, read, time.Minute}, {3 * day, 2, read, time.Minute}, {4 * day, 2, read, time.Minute}})
	pair("p-returning", "p-oneday",
		[]scoreVisit{{2 * day, 3, read, time.Minute}, {5 * day, 3, read, time.Minute}, {9 * day, 3, read, time.Minute}},
		[]scoreVisit{{2 * day, 4, read, time.Minute}, {2*day + time.Hour, 5, read, time.Minute}, {2*day + 2*time.Hour, 6, read, time.Minute}})
	pair("p-recent", "p-stale",
		[]scoreVisit{{1 * day, 7, read, time.Minute}, {2 * day, 7, read, time.Minute}, {3 * day, 7, read, time.Minute}},
		[]scoreVisit{{11 * day, 8, more, time.Minute}, {12 * day, 8, more, time.Minute}, {13 * day, 8, more, time.Minute}})

	var hits []*store.Hit
	for id, visits := range companies {
		for i, v := range visits {
			start := now.Add(-v.ago)
			for p, path := range v.pages {
				ts := start.Add(time.Duration(p) * time.Minute)
				hits = append(hits, &store.Hit{SiteID: site, TS: ts, ReceivedAt: ts, HitID: fmt.Sprintf("%s-%d-%d", id, i, p),
					Type: "pageview", URL: "https://x.example" + path, Path: path, Source: "direct",
					VisitorID: v.visitor, VisitID: v.visitor<<20 | uint64(i), VisitStart: start, NewVisit: boolByte(p == 0),
					Consent: "granted", EngagedMS: uint32(v.engaged.Milliseconds()), CompanyID: id, CompanyName: id,
					NetworkType: "business", Country: "DE", RetentionDays: 180, Intent: boolByte(tenant.Site{}.IntentPath(path))})
			}
		}
	}
	if err := db.InsertHits(ctx, "month", len(hits), slices.Values(hits)); err != nil {
		t.Fatal(err)
	}

	feed, err := db.FeedCompanies(ctx, store.Feed{Site: site, From: now.Add(-31 * day).Format(time.DateOnly),
		To: now.Format(time.DateOnly), Sort: "score", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(feed) != len(companies) {
		t.Fatalf("feed has %d companies, want %d", len(feed), len(companies))
	}
	rank := map[string]int{}
	scores := map[float64]bool{}
	top, high := 0, 0
	for i, c := range feed {
		rank[c.ID] = i
		scores[c.LeadScore] = true
		if c.LeadScore == feed[0].LeadScore {
			top++
		}
		if c.LeadScore >= 95 {
			high++
		}
		if c.LeadScore < 0 || c.LeadScore > 100 || i > 0 && c.LeadScore > feed[i-1].LeadScore {
			t.Fatalf("score %v of %s at rank %d (previous %v)", c.LeadScore, c.ID, i, feed[max(0, i-1)].LeadScore)
		}
	}
	t.Logf("%d companies: top score %.1f (%d), median %.1f, %d distinct scores, %d at 95 or more",
		len(feed), feed[0].LeadScore, top, feed[len(feed)/2].LeadScore, len(scores), high)
	if limit := len(feed) * 5 / 100; top > limit || high > limit {
		t.Errorf("%d companies share the top score %.1f and %d score 95 or more; want at most %d (5%%)", top, feed[0].LeadScore, high, limit)
	}
	if len(scores) < len(feed)/4 {
		t.Errorf("only %d distinct scores among %d companies: the score does not rank", len(scores), len(feed))
	}
	for _, p := range [][2]string{{"p-intent", "p-0plain"}, {"p-returning", "p-oneday"}, {"p-recent", "p-stale"}} {
		if rank[p[0]] >= rank[p[1]] {
			t.Errorf("%s ranks %d, %s %d: want the first ahead", p[0], rank[p[0]], p[1], rank[p[1]])
		}
	}

	// The company page explains p-intent's score: its parts add up.
	act, err := db.CompanyActivity(ctx, site, "p-intent", now.Add(-31*day).Format(time.DateOnly), now.Format(time.DateOnly), 100)
	if err != nil {
		t.Fatal(err)
	}
	s, w := act.Score, store.ScoreWeights
	if s.Pageviews != 9 || s.IntentPageviews != 1 || s.Visits != 3 || s.ReturningDays != 2 || math.Abs(s.EngagedMinutes-9) > 0.01 {
		t.Errorf("score parts %+v; want 9 pageviews, 1 intent, 3 visits, 2 returning days, 9 minutes", s)
	}
	points := w["pageviews"]*float64(s.Pageviews) + w["intent_pageviews"]*float64(s.IntentPageviews) + w["visits"]*float64(s.Visits) +
		w["returning_days"]*float64(s.ReturningDays) + w["engaged_minutes"]*s.EngagedMinutes
	if math.Abs(points-s.Points) > 0.01 {
		t.Errorf("points %v, but the parts times the weights make %v", s.Points, points)
	}
	if want := math.Round(1000*s.Points/(s.Points+40)*s.Recency) / 10; math.Abs(want-s.Score) > 0.051 || s.Score != act.Company.LeadScore {
		t.Errorf("score %v (company %v); the explanation makes %v", s.Score, act.Company.LeadScore, want)
	}
	if math.Abs(s.DaysSinceLastSeen-(2*day-2*time.Minute).Hours()/24) > 0.01 || math.Abs(s.Recency-math.Exp2(-s.DaysSinceLastSeen/14)) > 0.001 {
		t.Errorf("last seen %.3f days ago, recency %.3f; want 2 days less two minutes, 2^(−days/14)", s.DaysSinceLastSeen, s.Recency)
	}
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
