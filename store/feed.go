package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Feed is a company feed request: a site's companies of a date range
// (YYYY-MM-DD, inclusive), filtered, ordered and paged. Empty filters
// filter nothing.
type Feed struct {
	Site, From, To string
	// Page keeps the companies that viewed a page whose path contains
	// Page (case-insensitive), or equals it with PageEquals.
	Page       string
	PageEquals bool
	Industry   string
	Source     string // how visits came: direct, search, social, referral, campaign
	Country    string // two-letter code, upper case
	Network    string // network type
	MinVisits  uint64
	Search     string // in the company's name or domain
	// Candidates includes the companies only the address-space fall-back
	// named (Company.Candidate); the feed leaves them out by default.
	Candidates bool
	Sort       string // one of FeedSorts
	Limit      int
	Offset     int
}

// The company feed's query is made of fixed fragments only: every value
// the request gives is a bound parameter, every choice (which filters,
// which order) picks among constants.
//
// It runs in two phases: feedPick applies the filters and the order to
// every company of the range and keeps the page's ids, computing nothing
// costly; feedRows then computes the full rows (with the distinct-visitor
// merge) for those few companies only, which company_daily's order (site,
// company, day) makes a short read.
const (
	// feedPick computes nothing but what the filters and the order use:
	// the string columns (name, domain…) are read only when a filter asks.
	feedPick = `
SELECT company_id
FROM company_daily
WHERE site_id = {site:String} AND day BETWEEN {from:Date} AND {to:Date}`
	feedRows = `
SELECT company_id, ` + companyAggregates + `, ` + leadScoreSQL + `, ` + companyCandidateSQL + `
FROM company_daily
WHERE site_id = {site:String} AND day BETWEEN {from:Date} AND {to:Date}
  AND company_id IN {ids:Array(String)}`
	// The page filter selects the companies that viewed a matching page in
	// the range.
	feedPagesFilter = `
  AND company_id IN (SELECT company_id FROM company_pages_daily
                     WHERE site_id = {site:String} AND day BETWEEN {from:Date} AND {to:Date}`
	feedPageContains = ` AND positionCaseInsensitive(path, {page:String}) > 0`
	feedPageEquals   = ` AND path = {page:String}`
	feedPagesEnd     = `)`
	feedGroup        = `
GROUP BY company_id
HAVING 1`
	// The filters on aggregates name the aggregate itself: feedPick
	// selects none of them, and feedRows needs none of them.
	feedCountry   = ` AND ` + companyCountrySQL + ` = {country:String}`
	feedNetwork   = ` AND anyLast(network_type) = {network:String}`
	feedIndustry  = ` AND anyLast(company_industry) = {industry:String}`
	feedSource    = ` AND sum(sources[{source:String}]) > 0`
	feedMinVisits = ` AND sum(visits) >= {min_visits:UInt64}`
	feedConfirmed = ` AND ` + confirmedSQL
	feedSearch    = ` AND (positionCaseInsensitive(anyLast(company_name), {q:String}) > 0 OR positionCaseInsensitive(anyLast(company_domain), {q:String}) > 0)`
	feedLimit     = `
LIMIT {limit:UInt32} OFFSET {offset:UInt32}`
)

// feedOrders are the feed's sort orders. Both phases order by the same
// aggregate expressions, so the second keeps the first's order.
var feedOrders = map[string]string{
	"last_seen": "\nORDER BY max(last_seen) DESC, company_id",
	"visits":    "\nORDER BY sum(visits) DESC, max(last_seen) DESC, company_id",
	"engaged":   "\nORDER BY sum(engaged_ms) DESC, max(last_seen) DESC, company_id",
	"pageviews": "\nORDER BY sum(pageviews) DESC, max(last_seen) DESC, company_id",
	"score":     "\nORDER BY " + leadScoreSQL + " DESC, max(last_seen) DESC, company_id",
}

// FeedSorts names the feed's orders.
var FeedSorts = []string{"last_seen", "visits", "engaged", "pageviews", "score"}

// FeedCompanies answers a feed request: the page of companies, in order.
func (db *DB) FeedCompanies(ctx context.Context, f Feed) ([]Company, error) {
	order, ok := feedOrders[f.Sort]
	if !ok {
		return nil, fmt.Errorf("BUG: feed sort %q", f.Sort)
	}
	p := clickhouse.Parameters{"site": f.Site, "from": f.From, "to": f.To,
		"limit": strconv.Itoa(f.Limit), "offset": strconv.Itoa(f.Offset)}
	var where, having strings.Builder
	if f.Page != "" {
		p["page"] = f.Page
		where.WriteString(feedPagesFilter)
		if f.PageEquals {
			where.WriteString(feedPageEquals)
		} else {
			where.WriteString(feedPageContains)
		}
		where.WriteString(feedPagesEnd)
	}
	for _, filter := range []struct{ param, value, sql string }{
		{"industry", f.Industry, feedIndustry},
		{"source", f.Source, feedSource},
		{"country", f.Country, feedCountry},
		{"network", f.Network, feedNetwork},
		{"q", f.Search, feedSearch},
	} {
		if filter.value != "" {
			p[filter.param] = filter.value
			having.WriteString(filter.sql)
		}
	}
	if f.MinVisits > 0 {
		p["min_visits"] = strconv.FormatUint(f.MinVisits, 10)
		having.WriteString(feedMinVisits)
	}
	if !f.Candidates {
		having.WriteString(feedConfirmed)
	}
	ctx = params(ctx, p)
	ids, err := readAll(ctx, db.conn, feedPick+where.String()+feedGroup+having.String()+order+feedLimit,
		func(rows driver.Rows) (id string, err error) { return id, rows.Scan(&id) })
	if err != nil || len(ids) == 0 {
		return []Company{}, err
	}
	p["ids"] = stringArray(ids)
	return readAll(params(ctx, p), db.conn, feedRows+feedGroup+order, func(rows driver.Rows) (Company, error) {
		var c Company
		var first, last time.Time
		err := rows.Scan(&c.ID, &c.Name, &c.Domain, &c.NetworkType, &c.Country, &c.Visits, &c.Pageviews, &c.Visitors,
			&c.EngagedSeconds, &first, &last, &c.LeadScore, &c.Candidate)
		c.FirstSeen, c.LastSeen = first.UTC().Format(time.RFC3339Nano), last.UTC().Format(time.RFC3339Nano)
		return c, err
	})
}

const filteredSQL = `
SELECT reason, sum(hits)
FROM filtered_daily
WHERE site_id = {site:String} AND day BETWEEN {from:Date} AND {to:Date}
GROUP BY reason`

// FilteredByReason reads the filter ledger: a site's hits not stored in a
// date range, by reason.
func (db *DB) FilteredByReason(ctx context.Context, site, from, to string) (map[string]uint64, error) {
	type count struct {
		reason string
		n      uint64
	}
	counts, err := readAll(params(ctx, clickhouse.Parameters{"site": site, "from": from, "to": to}), db.conn, filteredSQL,
		func(rows driver.Rows) (c count, err error) { return c, rows.Scan(&c.reason, &c.n) })
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint64, len(counts))
	for _, c := range counts {
		out[c.reason] = c.n
	}
	return out, nil
}

// ExportRow is one company on one day: the export's grain, so a range's
// rows add up to the feed's figures (but visitors, which are distinct per
// day here).
type ExportRow struct {
	Day            string `json:"day"`
	CompanyID      string `json:"company_id"`
	CompanyName    string `json:"company_name"`
	CompanyDomain  string `json:"company_domain"`
	NetworkType    string `json:"network_type"`
	Country        string `json:"country"`
	Visits         uint64 `json:"visits"`
	Pageviews      uint64 `json:"pageviews"`
	Visitors       uint64 `json:"visitors"`
	EngagedSeconds uint64 `json:"engaged_seconds"`
	FirstSeen      string `json:"first_seen"`
	LastSeen       string `json:"last_seen"`
}

// confirmedSQL holds for a company some source other than the
// address-space fall-back named over the rows aggregated (a candidate
// otherwise): the feed's and the export's one rule.
const confirmedSQL = `max(confirmed) = 1`

const (
	exportSQL = `
SELECT day, company_id, ` + companyAggregates + `
FROM company_daily
WHERE site_id = {site:String} AND day BETWEEN {from:Date} AND {to:Date}`
	// exportConfirmed leaves out the companies only the address-space
	// fall-back named over the range, as the feed does by default.
	exportConfirmed = `
  AND company_id IN (SELECT company_id FROM company_daily
                     WHERE site_id = {site:String} AND day BETWEEN {from:Date} AND {to:Date}
                     GROUP BY company_id HAVING ` + confirmedSQL + `)`
	exportEnd = `
GROUP BY day, company_id
ORDER BY day, company_id`
)

// ExportRows streams a site's company-day rows of a date range, with the
// candidate companies (Company.Candidate) or without: next fills row and
// reports whether there was one (false with the error, if any, at the
// end); close releases the result.
func (db *DB) ExportRows(ctx context.Context, site, from, to string, candidates bool) (next func(row *ExportRow) (bool, error), close func(), err error) {
	query := exportSQL + exportConfirmed + exportEnd
	if candidates {
		query = exportSQL + exportEnd
	}
	rows, err := db.conn.Query(params(ctx, clickhouse.Parameters{"site": site, "from": from, "to": to}), query)
	if err != nil {
		return nil, nil, err
	}
	next = func(row *ExportRow) (bool, error) {
		if !rows.Next() {
			return false, rows.Err()
		}
		var day, first, last time.Time
		err := rows.Scan(&day, &row.CompanyID, &row.CompanyName, &row.CompanyDomain, &row.NetworkType, &row.Country,
			&row.Visits, &row.Pageviews, &row.Visitors, &row.EngagedSeconds, &first, &last)
		row.Day = day.Format(time.DateOnly)
		row.FirstSeen, row.LastSeen = first.UTC().Format(time.RFC3339Nano), last.UTC().Format(time.RFC3339Nano)
		return err == nil, err
	}
	return next, func() { rows.Close() }, nil
}
