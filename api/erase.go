package api

import (
	"context"
	"net/http"
	"time"

	"github.com/leadpipe/leadpipe/internal/tenant"
)

// eraseSiteData removes a site from the tenant store (the collector then
// refuses its hits, its queued ones are dropped) and its rows from
// ClickHouse, and returns how many hits it had. The rest — a second pass
// for hits a processor had in hand — is the sweeper's (maintain).
func (s *Server) eraseSiteData(ctx context.Context, site string) (uint64, error) {
	n, err := s.db.SiteHits(ctx, site)
	if err != nil {
		return 0, err
	}
	if err := s.tenants.DeleteSite(ctx, site); err != nil {
		return 0, err
	}
	if err := s.db.EraseSite(ctx, site); err != nil {
		return 0, err
	}
	if s.learned != nil {
		if _, err := s.learned.Forget(ctx, site, "*"); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// sweepEvery is how often the API looks for rows of deleted sites: a
// processor drops the hits of a deleted site once it knows of the
// deletion, but one may have built a batch holding some of them just
// before, and a restart must not forget that. The deleted sites are
// durable (the sites bucket keeps their deletion), so the sweep is a job
// that outlives the process, not a goroutine waiting inside a request.
const sweepEvery = time.Minute

// maintain keeps the API's copies in ClickHouse right until ctx ends:
// every minute it erases what rows deleted sites still have, and writes
// the sites that changed to the sites table (at once too, on start).
func (s *Server) maintain(ctx context.Context) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		if err := s.syncSites(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("writing the sites table", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.sweepOnce(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("erasing rows of deleted sites", "err", err)
		}
	}
}

func (s *Server) sweepOnce(ctx context.Context) error {
	deleted := s.tenants.DeletedSites()
	if len(deleted) == 0 {
		return nil
	}
	left, err := s.db.SitesWithRows(ctx, deleted)
	if err != nil {
		return err
	}
	for _, site := range left {
		if err := s.db.EraseSite(ctx, site); err != nil {
			return err
		}
		s.log.Info("erased late rows of a deleted site", "site", site)
	}
	return nil
}

// deleteSite erases a site and all its data (admin of the site).
func (s *Server) deleteSite(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	site, ok := s.site(w, r, key)
	if !ok {
		return
	}
	requested := time.Now()
	n, err := s.eraseSiteData(r.Context(), site.ID)
	if err != nil {
		s.dbUnavailable(w, "erasing site", err)
		return
	}
	id := s.recordRequest(r.Context(), site.ID, "site_erasure", key.ID, requested, n)
	setRows(w, int(n))
	writeJSON(w, http.StatusOK, map[string]any{"request": id, "site": site.ID, "deleted_hits": n})
}

// deleteAccount erases an account: every site of it with its data, then its
// keys and the account itself (operator keys only).
func (s *Server) deleteAccount(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	if !key.Operator() {
		writeError(w, http.StatusForbidden, "role: only an operator key can delete accounts")
		return
	}
	account := r.PathValue("account")
	if _, ok := s.tenants.Account(account); !ok {
		writeError(w, http.StatusNotFound, "account: not found")
		return
	}
	requested := time.Now()
	var total uint64
	sites := []string{}
	for _, site := range s.tenants.Sites() {
		if site.Account != account {
			continue
		}
		n, err := s.eraseSiteData(r.Context(), site.ID)
		if err != nil {
			s.dbUnavailable(w, "erasing an account's site", err)
			return
		}
		s.recordRequest(r.Context(), site.ID, "site_erasure", key.ID, requested, n)
		total += n
		sites = append(sites, site.ID)
	}
	if err := s.tenants.DeleteAccount(r.Context(), account); err != nil {
		s.log.Error("deleting account", "account", account, "err", err)
		writeError(w, http.StatusServiceUnavailable, "accounts: cannot be deleted now, retry")
		return
	}
	setRows(w, int(total))
	writeJSON(w, http.StatusOK, map[string]any{"account": account, "sites": sites, "deleted_hits": total})
}
