package query

import (
	"context"
	"net/http"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/leadpipe/leadpipe/internal/tenant"
)

// siteErasures delete a site's rows from every table that holds its data.
// They are mutations (ALTER … DELETE), which rewrite the parts without the
// rows — the data is gone from disk when they finish, not only hidden —
// and they run with mutations_sync, so the request answers when they did.
// audit_log and data_requests keep their rows: they are the record of who
// did what, this erasure included.
var siteErasures = []string{
	"ALTER TABLE hits DELETE WHERE site_id = {site:String}",
	"ALTER TABLE visits DELETE WHERE site_id = {site:String}",
	"ALTER TABLE company_daily DELETE WHERE site_id = {site:String}",
	"ALTER TABLE company_pages_daily DELETE WHERE site_id = {site:String}",
	"ALTER TABLE filtered_daily DELETE WHERE site_id = {site:String}",
	"ALTER TABLE dropped_hits DELETE WHERE site_id = {site:String}",
}

// secondPass is when a site's erasure runs again: processors drop the hits
// of a deleted site from then on, but one may have built a batch holding
// some of them just before.
const secondPass = time.Minute

// eraseSiteData removes a site from the tenant store (the collector then
// refuses its hits, its queued ones are dropped) and its rows from
// ClickHouse, and returns how many hits it had.
func (s *Server) eraseSiteData(ctx context.Context, site string) (uint64, error) {
	ctx = clickhouse.Context(ctx, clickhouse.WithParameters(clickhouse.Parameters{"site": site}),
		clickhouse.WithSettings(clickhouse.Settings{"mutations_sync": 2}))
	var n uint64
	if err := s.ch.QueryRow(ctx, "SELECT count() FROM hits WHERE site_id = {site:String}").Scan(&n); err != nil {
		return 0, err
	}
	if err := s.tenants.DeleteSite(ctx, site); err != nil {
		return 0, err
	}
	run := func(ctx context.Context) error {
		for _, stmt := range siteErasures {
			if err := s.ch.Exec(ctx, stmt); err != nil {
				return err
			}
		}
		return nil
	}
	if err := run(ctx); err != nil {
		return 0, err
	}
	go func() {
		time.Sleep(secondPass)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
		defer cancel()
		if err := run(ctx); err != nil {
			s.log.Error("erasing a deleted site's data, second pass", "site", site, "err", err)
		}
	}()
	return n, nil
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
