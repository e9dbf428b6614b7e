package query

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/leadpipe/leadpipe/internal/tenant"
	"github.com/leadpipe/leadpipe/internal/visitor"
)

// visitorHit is one hit in a visitor's data export.
type visitorHit struct {
	TS             time.Time `json:"ts"`
	Type           string    `json:"type"`
	URL            string    `json:"url"`
	Title          string    `json:"title"`
	Referrer       string    `json:"referrer"`
	EngagedSeconds float64   `json:"engaged_seconds"`
	Consent        string    `json:"consent"`
	Company        string    `json:"company"`
	Country        string    `json:"country"`
	City           string    `json:"city,omitempty"`
	Lang           string    `json:"lang,omitempty"`
}

const visitorHitsSQL = `
SELECT ts, type, url, title, referrer, engaged_ms, consent, company_name, country, city, lang
FROM hits
WHERE site_id = {site:String} AND visitor_id = {visitor:UInt64}
ORDER BY ts`

// visitorID resolves the {cid} path value (the visitor's _lfa client id) to
// the stored visitor id.
func (s *Server) visitorID(w http.ResponseWriter, r *http.Request, site tenant.Site) (uint64, bool) {
	cid := r.PathValue("cid")
	if cid == "" || len(cid) > 64 {
		writeError(w, http.StatusBadRequest, "cid: must be the visitor's _lfa client id")
		return 0, false
	}
	vid, err := s.visitors.ClientID(r.Context(), site.ID, cid)
	if err != nil {
		s.log.Error("deriving visitor id", "err", err)
		writeError(w, http.StatusServiceUnavailable, "visitors: unavailable, retry")
		return 0, false
	}
	return vid, true
}

// exportVisitor answers a data subject's access request: every stored hit
// of the visitor with this client id, as JSON.
func (s *Server) exportVisitor(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	site, ok := s.site(w, r, key)
	if !ok {
		return
	}
	vid, ok := s.visitorID(w, r, site)
	if !ok {
		return
	}
	requested := time.Now()
	ctx := params(r.Context(), clickhouse.Parameters{"site": site.ID, "visitor": strconv.FormatUint(vid, 10)})
	hits, err := readAll(ctx, s.ch, visitorHitsSQL, func(rows driver.Rows) (visitorHit, error) {
		var h visitorHit
		var ms uint32
		err := rows.Scan(&h.TS, &h.Type, &h.URL, &h.Title, &h.Referrer, &ms, &h.Consent, &h.Company, &h.Country, &h.City, &h.Lang)
		h.EngagedSeconds = float64(ms) / 1000
		return h, err
	})
	if err != nil {
		s.dbUnavailable(w, "reading visitor data", err)
		return
	}
	id := s.recordRequest(r.Context(), site.ID, "access", key.ID, requested, uint64(len(hits)))
	setRows(w, len(hits))
	writeJSON(w, http.StatusOK, map[string]any{"request": id, "site": site.ID, "client_id": r.PathValue("cid"), "hits": hits})
}

// eraseVisitor answers an erasure request: the visitor's hits and visits are
// deleted (a lightweight delete: gone from every query at once; then a
// mutation, removing them from disk within minutes).
func (s *Server) eraseVisitor(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	site, ok := s.site(w, r, key)
	if !ok {
		return
	}
	vid, ok := s.visitorID(w, r, site)
	if !ok {
		return
	}
	requested := time.Now()
	n, err := visitor.DeleteStored(r.Context(), s.ch, site.ID, vid)
	if err != nil {
		s.dbUnavailable(w, "erasing visitor data", err)
		return
	}
	// Hits of the visitor still waiting in the stream are dropped when
	// they arrive.
	if err := s.erased.Add(r.Context(), site.ID, vid); err != nil {
		s.log.Error("recording erasure for queued hits", "err", err)
		writeError(w, http.StatusServiceUnavailable, "visitors: stored hits erased, but queued ones could not be marked; retry")
		return
	}
	id := s.recordRequest(r.Context(), site.ID, "erasure", key.ID, requested, n)
	setRows(w, int(n))
	writeJSON(w, http.StatusOK, map[string]any{"request": id, "deleted": n})
}

// recordRequest writes a completed data subject request; a failure to
// record is logged, the request itself is done.
func (s *Server) recordRequest(ctx context.Context, site, kind, keyID string, requested time.Time, rows uint64) string {
	id := strconv.FormatInt(requested.UnixNano(), 36)
	if err := s.ch.Exec(context.WithoutCancel(ctx), `INSERT INTO data_requests (id, site_id, kind, key_id, requested_at, completed_at, rows)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, id, site, kind, keyID, requested, time.Now(), rows); err != nil {
		s.log.Error("recording data request", "kind", kind, "err", err)
	}
	return id
}
