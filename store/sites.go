package store

import (
	"context"
	"time"
)

// Site is one row of sites: the names an analyst's queries show for a
// site id.
type Site struct {
	SiteID    string    `ch:"site_id"`
	Name      string    `ch:"name"`
	Domain    string    `ch:"domain"`
	Account   string    `ch:"account"`
	Created   time.Time `ch:"created"`
	UpdatedAt time.Time `ch:"updated_at"`
}

var insertSites = "INSERT INTO sites (" + columnsOf(Site{}) + ")"

// WriteSites writes copies of sites, stamped now; the latest copy of a
// site wins.
func (db *DB) WriteSites(ctx context.Context, sites []Site) error {
	if len(sites) == 0 {
		return nil
	}
	b, err := db.conn.PrepareBatch(ctx, insertSites)
	if err != nil {
		return err
	}
	now := time.Now()
	for i := range sites {
		sites[i].UpdatedAt = now
		if err := b.AppendStruct(&sites[i]); err != nil {
			b.Abort()
			return err
		}
	}
	return b.Send()
}
