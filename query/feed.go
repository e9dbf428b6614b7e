package query

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

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

// Company is one row of the company feed.
type Company struct {
	ID             string `json:"id"`
	Name           string `json:"name"`
	Domain         string `json:"domain"`
	NetworkType    string `json:"network_type"`
	Country        string `json:"country"`
	Visits         uint64 `json:"visits"`
	Pageviews      uint64 `json:"pageviews"`
	Visitors       uint64 `json:"visitors"`
	EngagedSeconds uint64 `json:"engaged_seconds"`
	FirstSeen      string `json:"first_seen"`
	LastSeen       string `json:"last_seen"`
}

const companiesSQL = `
SELECT company_id,
       anyLast(company_name), anyLast(company_domain), anyLast(network_type), anyLast(country),
       uniqExactMerge(visits), sum(pageviews), uniqExactMerge(visitors), intDiv(sum(engaged_ms), 1000),
       min(first_seen), max(last_seen)
FROM company_daily
WHERE site_id = {site:String} AND day BETWEEN {from:Date} AND {to:Date}
GROUP BY company_id
ORDER BY max(last_seen) DESC, company_id
LIMIT {limit:UInt32}`

func (s *Server) companies(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	site, ok := s.site(w, r, key)
	if !ok {
		return
	}
	from, to, ok := dateRange(w, r)
	if !ok {
		return
	}
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			writeError(w, http.StatusBadRequest, "limit: must be between 1 and 10000")
			return
		}
		limit = n
	}
	ctx := params(r.Context(), clickhouse.Parameters{"site": site.ID, "from": from, "to": to, "limit": strconv.Itoa(limit)})
	rows, err := s.ch.Query(ctx, companiesSQL)
	if err != nil {
		s.log.Error("querying company feed", "err", err)
		writeError(w, http.StatusServiceUnavailable, "database: unavailable, retry")
		return
	}
	defer rows.Close()
	out := []Company{}
	for rows.Next() {
		var c Company
		var first, last time.Time
		if err := rows.Scan(&c.ID, &c.Name, &c.Domain, &c.NetworkType, &c.Country, &c.Visits, &c.Pageviews, &c.Visitors, &c.EngagedSeconds, &first, &last); err != nil {
			s.log.Error("reading company feed", "err", err)
			writeError(w, http.StatusInternalServerError, "database: cannot read result")
			return
		}
		c.FirstSeen, c.LastSeen = first.UTC().Format(time.RFC3339Nano), last.UTC().Format(time.RFC3339Nano)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		s.log.Error("reading company feed", "err", err)
		writeError(w, http.StatusServiceUnavailable, "database: unavailable, retry")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"companies": out, "from": from, "to": to})
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
		s.log.Error("querying filter ledger", "err", err)
		writeError(w, http.StatusServiceUnavailable, "database: unavailable, retry")
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
		s.log.Error("reading filter ledger", "err", err)
		writeError(w, http.StatusServiceUnavailable, "database: unavailable, retry")
		return
	}
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

const companySQL = `
SELECT company_id,
       anyLast(company_name), anyLast(company_domain), anyLast(network_type), anyLast(country),
       uniqExactMerge(visits), sum(pageviews), uniqExactMerge(visitors), intDiv(sum(engaged_ms), 1000),
       min(first_seen), max(last_seen)
FROM company_daily
WHERE site_id = {site:String} AND company_id = {company:String} AND day BETWEEN {from:Date} AND {to:Date}
GROUP BY company_id`

// The company page reads a company's raw hits of the range; its visits are
// built from them. maxCompanyHits bounds what one request reads.
const (
	companyHitsSQL = `
SELECT visitor_id, ts, type, url, title, referrer, engaged_ms
FROM hits
WHERE site_id = {site:String} AND company_id = {company:String}
  AND ts >= toDateTime64({from:Date}, 3, 'UTC') AND ts < toDateTime64({to:Date} + 1, 3, 'UTC')
ORDER BY visitor_id, ts
LIMIT {limit:UInt32}`
	maxCompanyHits = 200000
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
	id := r.PathValue("id")
	p := clickhouse.Parameters{"site": site.ID, "company": id, "from": from, "to": to, "limit": strconv.Itoa(maxCompanyHits)}
	var c Company
	var first, last time.Time
	err := s.ch.QueryRow(params(r.Context(), p), companySQL).Scan(&c.ID, &c.Name, &c.Domain, &c.NetworkType, &c.Country,
		&c.Visits, &c.Pageviews, &c.Visitors, &c.EngagedSeconds, &first, &last)
	if errors.Is(err, sql.ErrNoRows) {
		writeError(w, http.StatusNotFound, "company: no visits of this company to this site in the range")
		return
	}
	if err != nil {
		s.log.Error("querying company", "err", err)
		writeError(w, http.StatusServiceUnavailable, "database: unavailable, retry")
		return
	}
	c.FirstSeen, c.LastSeen = first.UTC().Format(time.RFC3339Nano), last.UTC().Format(time.RFC3339Nano)

	rows, err := s.ch.Query(params(r.Context(), p), companyHitsSQL)
	if err != nil {
		s.log.Error("querying company hits", "err", err)
		writeError(w, http.StatusServiceUnavailable, "database: unavailable, retry")
		return
	}
	defer rows.Close()
	var hits []hitRow
	for rows.Next() {
		var h hitRow
		if err := rows.Scan(&h.visitor, &h.ts, &h.typ, &h.url, &h.title, &h.referrer, &h.engagedMS); err != nil {
			writeError(w, http.StatusInternalServerError, "database: cannot read result")
			return
		}
		hits = append(hits, h)
	}
	if err := rows.Err(); err != nil {
		s.log.Error("reading company hits", "err", err)
		writeError(w, http.StatusServiceUnavailable, "database: unavailable, retry")
		return
	}
	visits := buildVisits(hits)
	slices.SortFunc(visits, func(a, b Visit) int { return b.Started.Compare(a.Started) })
	if len(visits) > maxVisits {
		visits = visits[:maxVisits]
	}
	if visits == nil {
		visits = []Visit{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"company": c, "visits": visits, "from": from, "to": to})
}
