package query

import (
	"database/sql"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"golang.org/x/sync/errgroup"

	"github.com/leadpipe/leadpipe/internal/tenant"
)

// The company page: a company's aggregate of the range, its visits and
// pageviews per day, its top pages, its visits by source, its pageviews by
// country, and its visits with their pages.

const companySQL = `
SELECT company_id, ` + companyAggregates + `, ` + leadScoreSQL + `,
       sumMap(sources), sumMap(countries)
FROM company_daily
WHERE site_id = {site:String} AND company_id = {company:String} AND day BETWEEN {from:Date} AND {to:Date}
GROUP BY company_id`

// companyDailySQL is the company's visits and pageviews per day, for the
// company page's chart.
const companyDailySQL = `
SELECT day, sum(visits), sum(pageviews)
FROM company_daily
WHERE site_id = {site:String} AND company_id = {company:String} AND day BETWEEN {from:Date} AND {to:Date}
GROUP BY day
ORDER BY day`

// companyPagesSQL is the company's most viewed pages of the range.
const companyPagesSQL = `
SELECT path, max(title), sum(pageviews) AS views, intDiv(sum(engaged_ms), 1000)
FROM company_pages_daily
WHERE site_id = {site:String} AND company_id = {company:String} AND day BETWEEN {from:Date} AND {to:Date}
GROUP BY path
ORDER BY views DESC, path
LIMIT 10`

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

// The company page reads a company's raw hits of the range; its visits are
// built from them. maxCompanyHits bounds what one request reads (and holds).
const (
	// The latest hits first (so a busy company's newest visits are the
	// ones shown), then regrouped by visit and time. Hits stored before
	// visits were built (visit_id 0) are grouped by visitor, and
	// buildVisits cuts those at the 30-minute gaps.
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
	maxCompanyHits = 20000
	maxVisits      = 500
)

func (s *Server) company(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	site, ok := s.site(w, r, key)
	if !ok {
		return
	}
	from, to, ok := dateRange(w, r)
	if !ok {
		return
	}
	p := clickhouse.Parameters{"site": site.ID, "company": r.PathValue("id"), "from": from, "to": to, "limit": strconv.Itoa(maxCompanyHits)}
	// The page's four reads are independent, and each mostly waits on
	// per-part work in ClickHouse: they run at once.
	var (
		c                  Company
		sources, countries map[string]uint64
		days               []Day
		pages              []TopPage
		hits               []hitRow
	)
	g, ctx := errgroup.WithContext(r.Context())
	ctx = params(ctx, p)
	g.Go(func() error {
		var first, last time.Time
		err := s.ch.QueryRow(ctx, companySQL).Scan(&c.ID, &c.Name, &c.Domain, &c.NetworkType, &c.Country,
			&c.Visits, &c.Pageviews, &c.Visitors, &c.EngagedSeconds, &first, &last, &c.LeadScore, &sources, &countries)
		c.FirstSeen, c.LastSeen = first.UTC().Format(time.RFC3339Nano), last.UTC().Format(time.RFC3339Nano)
		return err
	})
	g.Go(func() (err error) {
		days, err = readAll(ctx, s.ch, companyDailySQL, func(rows driver.Rows) (Day, error) {
			var d Day
			var day time.Time
			err := rows.Scan(&day, &d.Visits, &d.Pageviews)
			d.Day = day.Format(time.DateOnly)
			return d, err
		})
		return err
	})
	g.Go(func() (err error) {
		pages, err = readAll(ctx, s.ch, companyPagesSQL, func(rows driver.Rows) (TopPage, error) {
			var tp TopPage
			return tp, rows.Scan(&tp.Path, &tp.Title, &tp.Pageviews, &tp.EngagedSeconds)
		})
		return err
	})
	g.Go(func() (err error) {
		hits, err = readAll(ctx, s.ch, companyHitsSQL, func(rows driver.Rows) (hitRow, error) {
			var h hitRow
			return h, rows.Scan(&h.visit, &h.ts, &h.typ, &h.url, &h.title, &h.referrer, &h.engagedMS, &h.source)
		})
		return err
	})
	err := g.Wait()
	if errors.Is(err, sql.ErrNoRows) {
		writeError(w, http.StatusNotFound, "company: no visits of this company to this site in the range")
		return
	}
	if err != nil {
		s.dbUnavailable(w, "querying company page", err)
		return
	}
	truncated := len(hits) == maxCompanyHits
	visits := buildVisits(hits)
	slices.SortFunc(visits, func(a, b Visit) int { return b.Started.Compare(a.Started) })
	if len(visits) > maxVisits {
		visits = visits[:maxVisits]
	}
	if visits == nil {
		visits = []Visit{}
	}
	setRows(w, len(visits))
	// truncated: older visits of the range are not shown (narrow the range).
	writeJSON(w, http.StatusOK, map[string]any{"company": c, "visits": visits, "from": from, "to": to,
		"truncated": truncated || len(visits) == maxVisits,
		"daily":     days, "top_pages": pages, "sources": nonNil(sources), "countries": nonNil(countries)})
}

func nonNil(m map[string]uint64) map[string]uint64 {
	if m == nil {
		return map[string]uint64{}
	}
	return m
}
