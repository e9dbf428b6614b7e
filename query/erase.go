package query

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/leadpipe/leadpipe/internal/tenant"
	"github.com/leadpipe/leadpipe/store"
)

// eraseSiteData removes a site from the tenant store (the collector then
// refuses its hits, its queued ones are dropped) and its rows from
// ClickHouse, and returns how many hits it had. The rest — a second pass
// for hits a processor had in hand — is the sweeper's (sweepDeletedSites).
func (s *Server) eraseSiteData(ctx context.Context, site string) (uint64, error) {
	var n uint64
	if err := s.ch.QueryRow(siteContext(ctx, site), "SELECT count() FROM hits WHERE site_id = {site:String}").Scan(&n); err != nil {
		return 0, err
	}
	if err := s.tenants.DeleteSite(ctx, site); err != nil {
		return 0, err
	}
	if err := eraseSiteRows(ctx, s.ch, site); err != nil {
		return 0, err
	}
	return n, nil
}

func siteContext(ctx context.Context, site string) context.Context {
	return clickhouse.Context(ctx, clickhouse.WithParameters(clickhouse.Parameters{"site": site}),
		clickhouse.WithSettings(clickhouse.Settings{"mutations_sync": 2}))
}

// eraseSiteRows deletes a site's rows from every table that stores a
// site_id (store.TablesWith), the Records apart (audit_log and
// data_requests keep their rows: they are the record of who did what,
// this erasure included). They are mutations (ALTER … DELETE), which
// rewrite the parts without the rows — the data is gone from disk when
// they finish, not only hidden — and they run with mutations_sync, so
// the request answers when they did.
func eraseSiteRows(ctx context.Context, ch driver.Conn, site string) error {
	tables, err := store.TablesWith(ctx, ch, "site_id")
	if err != nil {
		return err
	}
	for _, table := range tables {
		tctx := clickhouse.Context(siteContext(ctx, site), clickhouse.WithParameters(clickhouse.Parameters{"site": site, "table": table}))
		if err := ch.Exec(tctx, "ALTER TABLE {table:Identifier} DELETE WHERE site_id = {site:String}"); err != nil {
			return fmt.Errorf("erasing the site's rows from %s: %w", table, err)
		}
	}
	return nil
}

// sweepEvery is how often the API looks for rows of deleted sites: a
// processor drops the hits of a deleted site once it knows of the
// deletion, but one may have built a batch holding some of them just
// before, and a restart must not forget that. The deleted sites are
// durable (the sites bucket keeps their deletion), so the sweep is a job
// that outlives the process, not a goroutine waiting inside a request.
const sweepEvery = time.Minute

// sweepDeletedSites erases what rows deleted sites still have, until ctx
// ends.
func (s *Server) sweepDeletedSites(ctx context.Context) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
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
	// Only the tables the pipeline writes can gain rows after a deletion;
	// the views' tables follow them, and the erasure covers all.
	rows, err := s.ch.Query(ctx, `SELECT site_id FROM hits WHERE site_id IN ? GROUP BY site_id
		UNION DISTINCT SELECT site_id FROM dropped_hits WHERE site_id IN ? GROUP BY site_id`, deleted, deleted)
	if err != nil {
		return err
	}
	var left []string
	for rows.Next() {
		var site string
		if err := rows.Scan(&site); err != nil {
			rows.Close()
			return err
		}
		left = append(left, site)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, site := range left {
		if err := eraseSiteRows(ctx, s.ch, site); err != nil {
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
