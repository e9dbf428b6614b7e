package visitor

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/leadpipe/leadpipe/store"
)

// DeleteStored erases a visitor's stored rows of a site and returns how
// many hits there were. The visits table holds the visitor's id too (a
// visit's hits are the visitor's); company_daily holds only counts and
// the distinct-visitor states, which no query can read an id from.
// Lightweight deletes hide the rows from every query at once; the
// mutations after them (APPLY DELETED MASK) rewrite the parts without the
// hidden rows, in the background, so the data is gone from disk within
// minutes rather than whenever merges get to it.
func DeleteStored(ctx context.Context, conn driver.Conn, site string, vid uint64) (uint64, error) {
	ctx = clickhouse.Context(ctx, clickhouse.WithParameters(clickhouse.Parameters{"site": site, "visitor": strconv.FormatUint(vid, 10)}))
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM hits WHERE site_id = {site:String} AND visitor_id = {visitor:UInt64}").Scan(&n); err != nil {
		return 0, fmt.Errorf("counting the visitor's hits: %w", err)
	}
	if n == 0 {
		return 0, nil
	}
	// Every table that stores rows by site and visitor (hits, visits):
	// derived, so a new one is erased too.
	tables, err := store.TablesWith(ctx, conn, "site_id", "visitor_id")
	if err != nil {
		return 0, err
	}
	for _, table := range tables {
		tctx := clickhouse.Context(ctx, clickhouse.WithParameters(clickhouse.Parameters{"site": site, "visitor": strconv.FormatUint(vid, 10), "table": table}))
		for _, stmt := range []string{
			"DELETE FROM {table:Identifier} WHERE site_id = {site:String} AND visitor_id = {visitor:UInt64}",
			"ALTER TABLE {table:Identifier} APPLY DELETED MASK",
		} {
			if err := conn.Exec(tctx, stmt); err != nil {
				return 0, fmt.Errorf("erasing the visitor's rows from %s: %w", table, err)
			}
		}
	}
	return n, nil
}

// ParseErasedKey reads a marker's key of the erased bucket back into the
// site and the stored visitor id.
func ParseErasedKey(key string) (site string, vid uint64, ok bool) {
	i := strings.LastIndexByte(key, '.')
	if i <= 0 {
		return "", 0, false
	}
	vid, err := strconv.ParseUint(key[i+1:], 16, 64)
	return key[:i], vid, err == nil
}
