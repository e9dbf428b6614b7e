package api

import (
	"context"
	"sync"
	"time"

	"github.com/leadpipe/leadpipe/store"
)

// siteCopies keeps ClickHouse's sites table (site names for analysts'
// queries) a copy of the sites the API knows: a changed site at once,
// every site once a day, so that the table's 30-day TTL only expires the
// copies of sites that are gone.
type siteCopies struct {
	mu      sync.Mutex
	written map[string]store.Site
	full    time.Time // when every site was last written
}

// refreshEvery is how often every site's copy is written again.
const refreshEvery = 24 * time.Hour

// syncSites writes the copies of the sites that changed since they were
// last written, or of every site once a day.
func (s *Server) syncSites(ctx context.Context) error {
	c := &s.siteCopies
	c.mu.Lock()
	defer c.mu.Unlock()
	all := time.Since(c.full) > refreshEvery
	var changed []store.Site
	for _, site := range s.tenants.Sites() {
		cp := store.Site{SiteID: site.ID, Name: site.Name, Domain: site.Domain, Account: site.Account, Created: site.Created}
		if prev, ok := c.written[site.ID]; all || !ok || prev != cp {
			changed = append(changed, cp)
		}
	}
	if err := s.db.WriteSites(ctx, changed); err != nil {
		return err
	}
	if c.written == nil {
		c.written = map[string]store.Site{}
	}
	for _, cp := range changed {
		cp.UpdatedAt = time.Time{}
		c.written[cp.SiteID] = cp
	}
	if all {
		c.full = time.Now()
	}
	return nil
}

// copySites writes a changed site's copy at once; when ClickHouse cannot
// take it, the next minute's sync will.
func (s *Server) copySites(ctx context.Context) {
	if err := s.syncSites(context.WithoutCancel(ctx)); err != nil {
		s.log.Warn("writing the sites table; retried within a minute", "err", err)
	}
}
