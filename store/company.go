package store

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"golang.org/x/sync/errgroup"
)

// Company is a company's figures over a range, as the feed and the
// company page show them.
type Company struct {
	ID             string  `json:"id"`
	Name           string  `json:"name"`
	Domain         string  `json:"domain"`
	NetworkType    string  `json:"network_type"`
	Country        string  `json:"country"`
	Visits         uint64  `json:"visits"`
	Pageviews      uint64  `json:"pageviews"`
	Visitors       uint64  `json:"visitors"`
	EngagedSeconds uint64  `json:"engaged_seconds"`
	FirstSeen      string  `json:"first_seen"`
	LastSeen       string  `json:"last_seen"`
	LeadScore      float64 `json:"lead_score"`
	// Candidate: only the address-space fall-back named the company in the
	// range (no curated entry, name rule, reverse DNS or operator file).
	Candidate bool `json:"candidate,omitempty"`
}

const (
	// companyAggregates are a company's figures over the range, as the feed,
	// the company page and the export read them (a fragment of a SELECT
	// grouped by company): name, domain, network type, country, visits,
	// pageviews, visitors, engaged seconds, first and last seen. No column
	// alias: one named like a column would shadow it inside the others.
	companyAggregates = `anyLast(company_name), anyLast(company_domain), anyLast(network_type), ` + companyCountrySQL + `,
       sum(visits), sum(pageviews), uniqExactMerge(visitors), intDiv(sum(engaged_ms), 1000),
       min(first_seen), max(last_seen)`

	// companyCountrySQL is a company's country: its headquarters when its
	// profile says; else the one most of its pageviews of the range came
	// from (ties go to the first code in alphabetical order), so it does
	// not flip with whoever visited last; the last seen country only for a
	// range without pageviews.
	companyCountrySQL = `if(max(company_country) != '', max(company_country), if(empty(sumMap(countries)), anyLast(country),
       arrayElement(mapKeys(sumMap(countries)), indexOf(mapValues(sumMap(countries)), arrayMax(mapValues(sumMap(countries)))))))`

	// companyCandidateSQL is whether only the address-space fall-back named
	// the company in the range (Company.Candidate).
	companyCandidateSQL = `toBool(max(confirmed) = 0)`

	// The lead score ranks a site's companies by how likely they are
	// buying (README, "Lead score"): points for what the company did in
	// the range, squashed into 0–100 by points / (points + 40) so that no
	// activity reaches 100, times recency, halving every 14 days since the
	// company was last seen. Intent pageviews are pageviews of the site's
	// high-intent pages (stamped by the processor); returning days are the
	// days with visits after the first.
	scorePointsSQL = `(sum(pageviews) + 5 * sum(intent_pageviews) + 2 * sum(visits)
                      + 5 * (uniqExact(day) - 1) + sum(engaged_ms) / 60000)`
	scoreRecencySQL = `exp2(-greatest(0, dateDiff('second', max(last_seen), now64(3))) / 86400 / 14)`
	leadScoreSQL    = `round(100 * ` + scorePointsSQL + ` / (` + scorePointsSQL + ` + 40) * ` + scoreRecencySQL + `, 1)`
)

// ScoreWeights are the lead score's points per unit, as scorePointsSQL
// gives them: its explanation on the company page shows them.
var ScoreWeights = map[string]float64{"pageviews": 1, "intent_pageviews": 5, "visits": 2, "returning_days": 5, "engaged_minutes": 1}

// Score explains a company's lead score: what it did in the range, the
// points that earned, and the recency that scales them.
type Score struct {
	Pageviews         uint64  `json:"pageviews"`
	IntentPageviews   uint64  `json:"intent_pageviews"`
	Visits            uint64  `json:"visits"`
	ReturningDays     uint64  `json:"returning_days"`
	EngagedMinutes    float64 `json:"engaged_minutes"`
	Points            float64 `json:"points"`
	DaysSinceLastSeen float64 `json:"days_since_last_seen"`
	Recency           float64 `json:"recency"`
	Score             float64 `json:"score"`
	// IntentPages are the site's high-intent page words (the API fills
	// them in; hits are stamped with the words of their time).
	IntentPages []string           `json:"intent_pages"`
	Weights     map[string]float64 `json:"weights"`
}

// The company page: a company's aggregate of the range, its visits and
// pageviews per day, its top pages, its visits by source, its pageviews by
// country, and its latest hits, from which the API builds its visits.
const (
	companySQL = `
SELECT company_id, ` + companyAggregates + `, ` + leadScoreSQL + `, ` + companyCandidateSQL + `,
       sumMap(sources), sumMap(countries),
       sum(intent_pageviews), toUInt64(uniqExact(day) - 1), sum(engaged_ms) / 60000, ` + scorePointsSQL + `,
       greatest(0, dateDiff('second', max(last_seen), now64(3))) / 86400, ` + scoreRecencySQL + `
FROM company_daily
WHERE site_id = {site:String} AND company_id = {company:String} AND day BETWEEN {from:Date} AND {to:Date}
GROUP BY company_id`

	// companyDailySQL is the company's visits and pageviews per day, for
	// the company page's chart.
	companyDailySQL = `
SELECT day, sum(visits), sum(pageviews)
FROM company_daily
WHERE site_id = {site:String} AND company_id = {company:String} AND day BETWEEN {from:Date} AND {to:Date}
GROUP BY day
ORDER BY day`

	// companyPagesSQL is the company's most viewed pages of the range.
	companyPagesSQL = `
SELECT path, max(title), sum(pageviews) AS views, intDiv(sum(engaged_ms), 1000)
FROM company_pages_daily
WHERE site_id = {site:String} AND company_id = {company:String} AND day BETWEEN {from:Date} AND {to:Date}
GROUP BY path
ORDER BY views DESC, path
LIMIT 10`

	// The latest hits first (so a busy company's newest visits are the
	// ones shown), then regrouped by visit and time. Hits stored before
	// visits were built (visit_id 0) are grouped by visitor, and the API
	// cuts those at the 30-minute gaps.
	companyHitsSQL = `
SELECT visit_key, ts, type, url, title, referrer, engaged_ms, opening_source FROM (
    SELECT if(visit_id = 0, visitor_id, visit_id) AS visit_key, ts, type, url, title, referrer, engaged_ms,
           if(new_visit = 1, toString(source), '') AS opening_source
    FROM hits
    WHERE site_id = {site:String} AND company_id = {company:String}
      AND ts >= toDateTime64({from:Date}, 3, 'UTC') AND ts < toDateTime64({to:Date} + 1, 3, 'UTC')
    ORDER BY ts DESC
    LIMIT {limit:UInt32})
ORDER BY visit_key, ts`
	// companyDecidedSQL counts the company's hits by the layer that named
	// it (hits stored before the layer was recorded say nothing).
	companyDecidedSQL = `
SELECT decided_by, count()
FROM hits
WHERE site_id = {site:String} AND company_id = {company:String} AND decided_by != ''
  AND ts >= toDateTime64({from:Date}, 3, 'UTC') AND ts < toDateTime64({to:Date} + 1, 3, 'UTC')
GROUP BY decided_by`
)

// Day is one day of a company's activity.
type Day struct {
	Day       string `json:"day"`
	Visits    uint64 `json:"visits"`
	Pageviews uint64 `json:"pageviews"`
}

// TopPage is one of a company's most viewed pages.
type TopPage struct {
	Path           string `json:"path"`
	Title          string `json:"title"`
	Pageviews      uint64 `json:"pageviews"`
	EngagedSeconds uint64 `json:"engaged_seconds"`
}

// CompanyHit is one stored hit of a company, as the company page reads it.
type CompanyHit struct {
	VisitKey  uint64 // visit_id, or the visitor for hits stored before visits were built
	TS        time.Time
	Type      string
	URL       string
	Title     string
	Referrer  string
	EngagedMS uint32
	// OpeningSource is set on the hit that opened a visit: how the
	// processor classified it when it stored it.
	OpeningSource string
}

// CompanyActivity is everything the company page shows of a company.
type CompanyActivity struct {
	Company            Company
	Sources, Countries map[string]uint64
	// DecidedBy counts the company's hits of the range by the IP
	// intelligence layer that named the company (ipintel's decided_by).
	DecidedBy map[string]uint64
	Daily     []Day
	TopPages  []TopPage
	Score     Score
	// Hits are the company's latest hits of the range, at most the limit
	// asked for, ordered by visit then time.
	Hits []CompanyHit
}

// CompanyActivity reads a company's page: sql.ErrNoRows when the company
// has no visits to the site in the range. Its five reads are independent,
// and each mostly waits on per-part work in ClickHouse: they run at once.
func (db *DB) CompanyActivity(ctx context.Context, site, company, from, to string, maxHits int) (CompanyActivity, error) {
	var a CompanyActivity
	g, ctx := errgroup.WithContext(ctx)
	ctx = params(ctx, clickhouse.Parameters{"site": site, "company": company, "from": from, "to": to,
		"limit": strconv.Itoa(maxHits)})
	g.Go(func() error {
		var first, last time.Time
		c, sc := &a.Company, &a.Score
		err := db.conn.QueryRow(ctx, companySQL).Scan(&c.ID, &c.Name, &c.Domain, &c.NetworkType, &c.Country,
			&c.Visits, &c.Pageviews, &c.Visitors, &c.EngagedSeconds, &first, &last, &c.LeadScore, &c.Candidate, &a.Sources, &a.Countries,
			&sc.IntentPageviews, &sc.ReturningDays, &sc.EngagedMinutes, &sc.Points, &sc.DaysSinceLastSeen, &sc.Recency)
		c.FirstSeen, c.LastSeen = first.UTC().Format(time.RFC3339Nano), last.UTC().Format(time.RFC3339Nano)
		sc.Pageviews, sc.Visits, sc.Score = c.Pageviews, c.Visits, c.LeadScore
		sc.Weights = ScoreWeights
		return err
	})
	g.Go(func() (err error) {
		a.Daily, err = readAll(ctx, db.conn, companyDailySQL, func(rows driver.Rows) (Day, error) {
			var d Day
			var day time.Time
			err := rows.Scan(&day, &d.Visits, &d.Pageviews)
			d.Day = day.Format(time.DateOnly)
			return d, err
		})
		return err
	})
	g.Go(func() (err error) {
		a.TopPages, err = readAll(ctx, db.conn, companyPagesSQL, func(rows driver.Rows) (TopPage, error) {
			var tp TopPage
			return tp, rows.Scan(&tp.Path, &tp.Title, &tp.Pageviews, &tp.EngagedSeconds)
		})
		return err
	})
	g.Go(func() error {
		type layer struct {
			name string
			hits uint64
		}
		layers, err := readAll(ctx, db.conn, companyDecidedSQL, func(rows driver.Rows) (layer, error) {
			var l layer
			return l, rows.Scan(&l.name, &l.hits)
		})
		a.DecidedBy = make(map[string]uint64, len(layers))
		for _, l := range layers {
			a.DecidedBy[l.name] = l.hits
		}
		return err
	})
	g.Go(func() (err error) {
		a.Hits, err = readAll(ctx, db.conn, companyHitsSQL, func(rows driver.Rows) (CompanyHit, error) {
			var h CompanyHit
			return h, rows.Scan(&h.VisitKey, &h.TS, &h.Type, &h.URL, &h.Title, &h.Referrer, &h.EngagedMS, &h.OpeningSource)
		})
		return err
	})
	return a, g.Wait()
}

// stringArray is the text of an Array(String) query parameter: each
// string quoted, its quotes and backslashes escaped.
func stringArray(values []string) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, v := range values {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('\'')
		b.WriteString(arrayEscaper.Replace(v))
		b.WriteByte('\'')
	}
	b.WriteByte(']')
	return b.String()
}

var arrayEscaper = strings.NewReplacer(`\`, `\\`, `'`, `\'`)
