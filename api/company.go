package api

import (
	"database/sql"
	"errors"
	"net/http"
	"slices"

	"github.com/leadpipe/leadpipe/internal/tenant"
	"github.com/leadpipe/leadpipe/store"
)

// Day and TopPage are rows of the company page.
type (
	Day       = store.Day
	TopPage   = store.TopPage
	Score     = store.Score
	RecentHit = store.RecentHit
)

// The company page reads a company's raw hits of the range; its visits are
// built from them. maxCompanyHits bounds what one request reads (and holds).
const (
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
	act, err := s.db.CompanyActivity(r.Context(), site.ID, r.PathValue("id"), from, to, maxCompanyHits)
	if errors.Is(err, sql.ErrNoRows) {
		writeError(w, http.StatusNotFound, "company: no visits of this company to this site in the range")
		return
	}
	if err != nil {
		s.dbUnavailable(w, "querying company page", err)
		return
	}
	act.Score.IntentPages = site.Intent()
	truncated := len(act.Hits) == maxCompanyHits
	visits := buildVisits(act.Hits)
	slices.SortFunc(visits, func(a, b Visit) int { return b.Started.Compare(a.Started) })
	if len(visits) > maxVisits {
		visits = visits[:maxVisits]
	}
	if visits == nil {
		visits = []Visit{}
	}
	setRows(w, len(visits))
	// truncated: older visits of the range are not shown (narrow the range).
	writeJSON(w, http.StatusOK, map[string]any{"company": s.withProfiles([]store.Company{act.Company})[0], "visits": visits, "from": from, "to": to,
		"truncated": truncated || len(visits) == maxVisits,
		"score":     act.Score, "daily": act.Daily, "top_pages": act.TopPages, "sources": nonNil(act.Sources), "countries": nonNil(act.Countries),
		"decided_by": nonNil(act.DecidedBy)})
}

func nonNil(m map[string]uint64) map[string]uint64 {
	if m == nil {
		return map[string]uint64{}
	}
	return m
}
