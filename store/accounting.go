package store

import (
	"context"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Accounting reads: what the load benchmark and the chaos driver check a
// run against (every acknowledged hit stored once, counted once).

// SiteProcessed counts a site's hits ClickHouse holds: kept in hits, and
// filtered and counted in the filter ledger.
func (db *DB) SiteProcessed(ctx context.Context, site string) (kept, filtered uint64, err error) {
	if err := db.conn.QueryRow(ctx, "SELECT count() FROM hits WHERE site_id = ?", site).Scan(&kept); err != nil {
		return 0, 0, err
	}
	if err := db.conn.QueryRow(ctx, "SELECT toUInt64(sum(hits)) FROM filtered_daily WHERE site_id = ?", site).Scan(&filtered); err != nil {
		return 0, 0, err
	}
	return kept, filtered, nil
}

// StoredCopies counts, for each hit id of a site, the rows hits holds.
func (db *DB) StoredCopies(ctx context.Context, site string) (map[string]uint64, error) {
	type copies struct {
		id string
		n  uint64
	}
	all, err := readAll(ctx, db.conn, "SELECT hit_id, count() FROM hits WHERE site_id = ? GROUP BY hit_id",
		func(rows driver.Rows) (c copies, err error) { return c, rows.Scan(&c.id, &c.n) }, site)
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint64, len(all))
	for _, c := range all {
		out[c.id] = c.n
	}
	return out, nil
}

// SitePageviews is the pageviews the company aggregates hold for a site.
func (db *DB) SitePageviews(ctx context.Context, site string) (uint64, error) {
	var n uint64
	err := db.conn.QueryRow(ctx, "SELECT sum(pageviews) FROM company_daily WHERE site_id = ?", site).Scan(&n)
	return n, err
}

// SiteHitRows reads back up to n stored hits of a site.
func (db *DB) SiteHitRows(ctx context.Context, site string, n int) ([]Hit, error) {
	rows, err := db.conn.Query(ctx, "SELECT "+columnsOf(Hit{})+" FROM hits WHERE site_id = ? LIMIT ?", site, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Hit
	for rows.Next() {
		var h Hit
		if err := rows.ScanStruct(&h); err != nil {
			return nil, fmt.Errorf("reading hits: %w", err)
		}
		out = append(out, h)
	}
	return out, rows.Err()
}
