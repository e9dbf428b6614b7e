package api

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/leadpipe/leadpipe/internal/tenant"
	"github.com/leadpipe/leadpipe/ipintel"
	"github.com/leadpipe/leadpipe/store"
)

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
	hits, err := s.db.VisitorHits(r.Context(), site.ID, vid)
	if err != nil {
		s.dbUnavailable(w, "reading visitor data", err)
		return
	}
	// With the identifications the visitor gave (the domain of an address,
	// from which network, when).
	ids := []ipintel.VisitorIdentification{}
	if s.learned != nil {
		if ids, err = s.learned.Identifications(r.Context(), site.ID, strconv.FormatUint(vid, 16)); err != nil {
			s.log.Error("reading identifications", "err", err)
			writeError(w, http.StatusServiceUnavailable, "visitors: identifications unavailable, retry")
			return
		}
	}
	id := s.recordRequest(r.Context(), site.ID, "access", key.ID, requested, uint64(len(hits)+len(ids)))
	setRows(w, len(hits))
	writeJSON(w, http.StatusOK, map[string]any{"request": id, "site": site.ID, "client_id": r.PathValue("cid"), "hits": hits,
		"identifications": ids})
}

// forgetAgainAfter is when an erasure looks for identifications again:
// well past the time a processor takes to see the erasure marker.
const forgetAgainAfter = 10 * time.Second

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
	n, err := s.db.EraseVisitor(r.Context(), site.ID, vid)
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
	// So are the visitor's identifications (and what they taught, at the
	// learner's next rebuild). A processor that recorded one just before
	// it saw the erasure marker is caught by a second pass a little later.
	forgotten := 0
	if s.learned != nil {
		visitor := strconv.FormatUint(vid, 16)
		if forgotten, err = s.learned.Forget(r.Context(), site.ID, visitor); err != nil {
			s.log.Error("erasing identifications", "err", err)
			writeError(w, http.StatusServiceUnavailable, "visitors: stored hits erased, but identifications could not be; retry")
			return
		}
		time.AfterFunc(forgetAgainAfter, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := s.learned.Forget(ctx, site.ID, visitor); err != nil {
				s.log.Error("erasing identifications, second pass", "err", err)
			}
		})
	}
	id := s.recordRequest(r.Context(), site.ID, "erasure", key.ID, requested, n+uint64(forgotten))
	setRows(w, int(n))
	writeJSON(w, http.StatusOK, map[string]any{"request": id, "deleted": n, "identifications": forgotten})
}

// recordRequest writes a completed data subject request; a failure to
// record is logged, the request itself is done.
func (s *Server) recordRequest(ctx context.Context, site, kind, keyID string, requested time.Time, rows uint64) string {
	id := strconv.FormatInt(requested.UnixNano(), 36)
	if err := s.db.RecordRequest(context.WithoutCancel(ctx), store.DataRequest{ID: id, SiteID: site, Kind: kind, KeyID: keyID,
		RequestedAt: requested, CompletedAt: time.Now(), Rows: rows}); err != nil {
		s.log.Error("recording data request", "kind", kind, "err", err)
	}
	return id
}
