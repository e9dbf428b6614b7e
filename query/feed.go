package query

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/leadpipe/leadpipe/internal/tenant"
	"github.com/leadpipe/leadpipe/ipintel"
)

// dateRange reads from= and to= (YYYY-MM-DD, UTC, inclusive); the default is
// the last 30 days up to today.
func dateRange(w http.ResponseWriter, r *http.Request) (from, to string, ok bool) {
	today := time.Now().UTC().Truncate(24 * time.Hour)
	t := today
	if v := r.URL.Query().Get("to"); v != "" {
		var err error
		if t, err = time.Parse(time.DateOnly, v); err != nil {
			writeError(w, http.StatusBadRequest, "to: must be a date YYYY-MM-DD")
			return "", "", false
		}
	}
	f := t.AddDate(0, 0, -29)
	if v := r.URL.Query().Get("from"); v != "" {
		var err error
		if f, err = time.Parse(time.DateOnly, v); err != nil {
			writeError(w, http.StatusBadRequest, "from: must be a date YYYY-MM-DD")
			return "", "", false
		}
	}
	if f.After(t) {
		writeError(w, http.StatusBadRequest, "from: must not be after to")
		return "", "", false
	}
	if t.Sub(f) > 800*24*time.Hour {
		writeError(w, http.StatusBadRequest, "from: range is longer than 800 days")
		return "", "", false
	}
	return f.Format(time.DateOnly), t.Format(time.DateOnly), true
}

func params(ctx context.Context, p clickhouse.Parameters) context.Context {
	return clickhouse.Context(ctx, clickhouse.WithParameters(p))
}

// readAll runs a query and reads every row with scan; an empty result is
// an empty, non-nil slice (a JSON array).
func readAll[T any](ctx context.Context, ch driver.Conn, query string, scan func(driver.Rows) (T, error)) ([]T, error) {
	rows, err := ch.Query(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Company is one row of the company feed.
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
	// companyAggregates are a company's figures over the range, as the feed,
	// the company page and the export read them (a fragment of a SELECT
	// grouped by company): name, domain, network type, country, visits,
	// pageviews, visitors, engaged seconds, first and last seen. No column
	// alias: one named like a column would shadow it inside the others.
	companyAggregates = `anyLast(company_name), anyLast(company_domain), anyLast(network_type), anyLast(country),
       sum(visits), sum(pageviews), uniqExactMerge(visitors), intDiv(sum(engaged_ms), 1000),
       min(first_seen), max(last_seen)`
	// feedPick computes nothing but what the filters and the order use:
	// the string columns (name, domain…) are read only when a filter asks.
	feedPick = `
SELECT company_id
FROM company_daily
WHERE site_id = {site:String} AND day BETWEEN {from:Date} AND {to:Date}`
	feedRows = `
SELECT company_id, ` + companyAggregates + `, ` + leadScoreSQL + `
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
	feedCountry   = ` AND anyLast(country) = {country:String}`
	feedNetwork   = ` AND anyLast(network_type) = {network:String}`
	feedIndustry  = ` AND anyLast(company_industry) = {industry:String}`
	feedSource    = ` AND sum(sources[{source:String}]) > 0`
	feedMinVisits = ` AND sum(visits) >= {min_visits:UInt64}`
	feedSearch    = ` AND (positionCaseInsensitive(anyLast(company_name), {q:String}) > 0 OR positionCaseInsensitive(anyLast(company_domain), {q:String}) > 0)`
	feedLimit     = `
LIMIT {limit:UInt32} OFFSET {offset:UInt32}`

	// leadScoreSQL is the lead score, 0–100: engagement saturating towards
	// 100 (ten engaged minutes, three visits or ten pageviews each count as
	// one unit; 1 − e^−units), times recency halving about every ten days
	// since the company was last seen (e^(−days/14)).
	leadScoreSQL = `round(100 * (1 - exp(-(sum(engaged_ms) / 600000 + sum(visits) / 3 + sum(pageviews) / 10)))
                     * exp(-dateDiff('second', max(last_seen), now64(3)) / 86400 / 14), 1)`
)

// feedOrders are the feed's sort orders; the request names one.
// Both phases order by the same aggregate expressions, so the second keeps
// the first's order.
var feedOrders = map[string]string{
	"last_seen": "\nORDER BY max(last_seen) DESC, company_id",
	"visits":    "\nORDER BY sum(visits) DESC, max(last_seen) DESC, company_id",
	"engaged":   "\nORDER BY sum(engaged_ms) DESC, max(last_seen) DESC, company_id",
	"pageviews": "\nORDER BY sum(pageviews) DESC, max(last_seen) DESC, company_id",
	"score":     "\nORDER BY " + leadScoreSQL + " DESC, max(last_seen) DESC, company_id",
}

// feedPlan is how a feed request is answered: pick chooses the page's
// company ids, rows computes their full rows.
type feedPlan struct {
	pick, rows    string
	p             clickhouse.Parameters
	limit, offset int
}

// Sources are how visits came, as package visit classifies them.
var sources = []string{"direct", "search", "social", "referral", "campaign"}

// feedQuery reads the feed's filters from the request and plans its
// queries, or returns the error naming the bad parameter.
func feedQuery(r *http.Request, site, from, to string) (feedPlan, error) {
	q := r.URL.Query()
	p := clickhouse.Parameters{"site": site, "from": from, "to": to}
	var where, having strings.Builder
	if page := q.Get("page"); page != "" {
		p["page"] = page
		where.WriteString(feedPagesFilter)
		switch q.Get("page_match") {
		case "", "contains":
			where.WriteString(feedPageContains)
		case "equals":
			where.WriteString(feedPageEquals)
		default:
			return feedPlan{}, errors.New("page_match: must be contains or equals")
		}
		where.WriteString(feedPagesEnd)
	} else if q.Get("page_match") != "" {
		return feedPlan{}, errors.New("page_match: needs page")
	}
	if v := q.Get("industry"); v != "" {
		p["industry"] = v
		having.WriteString(feedIndustry)
	}
	if v := q.Get("source"); v != "" {
		if !slices.Contains(sources, v) {
			return feedPlan{}, errors.New("source: must be one of " + strings.Join(sources, ", "))
		}
		p["source"] = v
		having.WriteString(feedSource)
	}
	if v := q.Get("country"); v != "" {
		if len(v) != 2 {
			return feedPlan{}, errors.New("country: must be a two-letter code")
		}
		p["country"] = strings.ToUpper(v)
		having.WriteString(feedCountry)
	}
	if v := q.Get("network_type"); v != "" {
		if !ipintel.KnownType(v) {
			return feedPlan{}, errors.New("network_type: must be one of " + strings.Join(ipintel.Types, ", "))
		}
		p["network"] = v
		having.WriteString(feedNetwork)
	}
	if v := q.Get("min_visits"); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return feedPlan{}, errors.New("min_visits: must be a whole number")
		}
		p["min_visits"] = strconv.FormatUint(n, 10)
		having.WriteString(feedMinVisits)
	}
	if v := q.Get("q"); v != "" {
		if len(v) > 200 {
			return feedPlan{}, errors.New("q: longer than 200 characters")
		}
		p["q"] = v
		having.WriteString(feedSearch)
	}
	sort := q.Get("sort")
	if sort == "" {
		sort = "last_seen"
	}
	order, ok := feedOrders[sort]
	if !ok {
		return feedPlan{}, errors.New("sort: must be last_seen, visits, engaged, pageviews or score")
	}
	plan := feedPlan{p: p, limit: 100}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			return feedPlan{}, errors.New("limit: must be between 1 and 10000")
		}
		plan.limit = n
	}
	if v := q.Get("cursor"); v != "" {
		n, err := decodeCursor(v)
		if err != nil {
			return feedPlan{}, errors.New("cursor: not a cursor this API gave")
		}
		plan.offset = n
	}
	// One row more than asked tells whether there is a next page.
	p["limit"], p["offset"] = strconv.Itoa(plan.limit+1), strconv.Itoa(plan.offset)
	plan.pick = feedPick + where.String() + feedGroup + having.String() + order + feedLimit
	plan.rows = feedRows + feedGroup + order
	return plan, nil
}

// pickCompanies runs a two-phase plan's first query.
func (s *Server) pickCompanies(ctx context.Context, plan feedPlan) ([]string, error) {
	return readAll(params(ctx, plan.p), s.ch, plan.pick, func(rows driver.Rows) (id string, err error) {
		return id, rows.Scan(&id)
	})
}

func safeID(id string) bool {
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return id != ""
}

// Cursors are opaque to clients: the offset of the next page.
func encodeCursor(offset int) string {
	return base64.RawURLEncoding.EncodeToString([]byte("o:" + strconv.Itoa(offset)))
}

func decodeCursor(c string) (int, error) {
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, err
	}
	s, ok := strings.CutPrefix(string(raw), "o:")
	if !ok {
		return 0, errors.New("bad cursor")
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 1_000_000 {
		return 0, errors.New("bad cursor")
	}
	return n, nil
}

func (s *Server) companies(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	site, ok := s.site(w, r, key)
	if !ok {
		return
	}
	from, to, ok := dateRange(w, r)
	if !ok {
		return
	}
	r, ok = s.withSavedFeed(w, r, site.ID)
	if !ok {
		return
	}
	plan, err := feedQuery(r, site.ID, from, to)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	limit, offset := plan.limit, plan.offset
	ids, err := s.pickCompanies(r.Context(), plan)
	if err != nil {
		s.dbUnavailable(w, "querying company feed", err)
		return
	}
	// Company ids are made by leadpipe ("c"/"d" + hex), so the array
	// literal needs no escaping; anything else is refused.
	for _, id := range ids {
		if !safeID(id) {
			s.log.Error("BUG: unexpected company id in the feed", "id", id)
			writeError(w, http.StatusInternalServerError, "database: unexpected company id")
			return
		}
	}
	resp := map[string]any{"from": from, "to": to}
	if len(ids) == 0 {
		resp["companies"] = []Company{}
		setRows(w, 0)
		writeJSON(w, http.StatusOK, resp)
		return
	}
	plan.p["ids"] = "['" + strings.Join(ids, "','") + "']"
	rows, err := s.ch.Query(params(r.Context(), plan.p), plan.rows)
	if err != nil {
		s.dbUnavailable(w, "querying company feed", err)
		return
	}
	defer rows.Close()
	out := []Company{}
	for rows.Next() {
		var c Company
		var first, last time.Time
		if err := rows.Scan(&c.ID, &c.Name, &c.Domain, &c.NetworkType, &c.Country, &c.Visits, &c.Pageviews, &c.Visitors,
			&c.EngagedSeconds, &first, &last, &c.LeadScore); err != nil {
			s.log.Error("reading company feed", "err", err)
			writeError(w, http.StatusInternalServerError, "database: cannot read result")
			return
		}
		c.FirstSeen, c.LastSeen = first.UTC().Format(time.RFC3339Nano), last.UTC().Format(time.RFC3339Nano)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		s.dbUnavailable(w, "reading company feed", err)
		return
	}
	if len(out) > limit {
		out = out[:limit]
		resp["next_cursor"] = encodeCursor(offset + limit)
	}
	resp["companies"] = out
	setRows(w, len(out))
	writeJSON(w, http.StatusOK, resp)
}

const filteredSQL = `
SELECT reason, sum(hits)
FROM filtered_daily
WHERE site_id = {site:String} AND day BETWEEN {from:Date} AND {to:Date}
GROUP BY reason`

func (s *Server) filtered(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	site, ok := s.site(w, r, key)
	if !ok {
		return
	}
	from, to, ok := dateRange(w, r)
	if !ok {
		return
	}
	rows, err := s.ch.Query(params(r.Context(), clickhouse.Parameters{"site": site.ID, "from": from, "to": to}), filteredSQL)
	if err != nil {
		s.dbUnavailable(w, "querying filter ledger", err)
		return
	}
	defer rows.Close()
	reasons := map[string]uint64{}
	for rows.Next() {
		var reason string
		var n uint64
		if err := rows.Scan(&reason, &n); err != nil {
			writeError(w, http.StatusInternalServerError, "database: cannot read result")
			return
		}
		reasons[reason] = n
	}
	if err := rows.Err(); err != nil {
		s.dbUnavailable(w, "reading filter ledger", err)
		return
	}
	setRows(w, len(reasons))
	writeJSON(w, http.StatusOK, map[string]any{"reasons": reasons, "from": from, "to": to})
}

func (s *Server) ip(w http.ResponseWriter, r *http.Request, _ tenant.Key) {
	ip, err := netip.ParseAddr(r.PathValue("ip"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "ip: not an IPv4 or IPv6 address")
		return
	}
	var sig *ipintel.PTRSignal
	if s.ptr != nil {
		if v, ok := s.ptr.Peek(ip); ok {
			sig = &v
		}
	}
	writeJSON(w, http.StatusOK, s.ipdata.DB().Explain(ip, sig))
}
