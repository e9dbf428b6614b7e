package store

import (
	"context"
	"fmt"
	"strconv"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// SiteHits counts a site's stored hits.
func (db *DB) SiteHits(ctx context.Context, site string) (uint64, error) {
	var n uint64
	err := db.conn.QueryRow(params(ctx, clickhouse.Parameters{"site": site}), "SELECT count() FROM hits WHERE site_id = {site:String}").Scan(&n)
	return n, err
}

// EraseSite deletes a site's rows from every table that stores a site_id
// (TablesWith), the Records apart (audit_log and data_requests keep their
// rows: they are the record of who did what, this erasure included).
// They are mutations (ALTER … DELETE), which rewrite the parts without
// the rows — the data is gone from disk when they finish, not only
// hidden — and they run with mutations_sync, so EraseSite returns when
// they did.
func (db *DB) EraseSite(ctx context.Context, site string) error {
	tables, err := TablesWith(ctx, db.conn, "site_id")
	if err != nil {
		return err
	}
	for _, table := range tables {
		tctx := clickhouse.Context(ctx, clickhouse.WithParameters(clickhouse.Parameters{"site": site, "table": table}),
			clickhouse.WithSettings(clickhouse.Settings{"mutations_sync": 2}))
		if err := db.conn.Exec(tctx, "ALTER TABLE {table:Identifier} DELETE WHERE site_id = {site:String}"); err != nil {
			return fmt.Errorf("erasing the site's rows from %s: %w", table, err)
		}
	}
	return nil
}

// SitesWithRows lists which of sites still have rows in the tables
// written after a site's erasure may have begun — by the pipeline (the
// views' tables follow them) or by the API's copy of the sites: the sites
// whose erasure must run again.
func (db *DB) SitesWithRows(ctx context.Context, sites []string) ([]string, error) {
	rows, err := db.conn.Query(ctx, `SELECT site_id FROM hits WHERE site_id IN ? GROUP BY site_id
		UNION DISTINCT SELECT site_id FROM dropped_hits WHERE site_id IN ? GROUP BY site_id
		UNION DISTINCT SELECT site_id FROM sites WHERE site_id IN ? GROUP BY site_id`, sites, sites, sites)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var left []string
	for rows.Next() {
		var site string
		if err := rows.Scan(&site); err != nil {
			return nil, err
		}
		left = append(left, site)
	}
	return left, rows.Err()
}

// EraseVisitor erases a visitor's stored rows of a site and returns how
// many hits there were, from every table that stores rows by site and
// visitor (hits, visits: derived, so a new one is erased too);
// company_daily holds only counts and the distinct-visitor states, which
// no query can read an id from. Lightweight deletes hide the rows from
// every query at once; the mutations after them (APPLY DELETED MASK)
// rewrite the parts without the hidden rows, in the background, so the
// data is gone from disk within minutes rather than whenever merges get
// to it.
func (db *DB) EraseVisitor(ctx context.Context, site string, visitor uint64) (uint64, error) {
	p := clickhouse.Parameters{"site": site, "visitor": strconv.FormatUint(visitor, 10)}
	var n uint64
	if err := db.conn.QueryRow(params(ctx, p), "SELECT count() FROM hits WHERE site_id = {site:String} AND visitor_id = {visitor:UInt64}").Scan(&n); err != nil {
		return 0, fmt.Errorf("counting the visitor's hits: %w", err)
	}
	if n == 0 {
		return 0, nil
	}
	tables, err := TablesWith(ctx, db.conn, "site_id", "visitor_id")
	if err != nil {
		return 0, err
	}
	for _, table := range tables {
		p["table"] = table
		tctx := params(ctx, p)
		for _, stmt := range []string{
			"DELETE FROM {table:Identifier} WHERE site_id = {site:String} AND visitor_id = {visitor:UInt64}",
			"ALTER TABLE {table:Identifier} APPLY DELETED MASK",
		} {
			if err := db.conn.Exec(tctx, stmt); err != nil {
				return 0, fmt.Errorf("erasing the visitor's rows from %s: %w", table, err)
			}
		}
	}
	return n, nil
}
