package store

import (
	"context"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Records keep their rows when a site, an account or a visitor is erased:
// they are the record of who did what, the erasure included.
var Records = []string{"audit_log", "data_requests"}

// TablesWith lists the tables of conn's database that store rows with
// every one of columns (views, materialized or not, store none of their
// own), leaving out the Records. Erasure derives its tables from it, so a
// new table with a site_id is erased with its site without anyone
// remembering to add it to a list.
func TablesWith(ctx context.Context, conn driver.Conn, columns ...string) ([]string, error) {
	// The caller's context may carry server-side parameters (an erasure's
	// site), which turn off the driver's binding of ?: clear them here.
	ctx = clickhouse.Context(ctx, clickhouse.WithParameters(clickhouse.Parameters{}))
	rows, err := conn.Query(ctx, `SELECT c.table FROM system.columns AS c
		INNER JOIN system.tables AS t ON t.database = c.database AND t.name = c.table
		WHERE c.database = currentDatabase() AND c.name IN ? AND t.engine NOT IN ('MaterializedView', 'View')
			AND c.table NOT IN ?
		GROUP BY c.table HAVING count() = ? ORDER BY c.table`, columns, Records, len(columns))
	if err != nil {
		return nil, fmt.Errorf("listing the tables with %v: %w", columns, err)
	}
	defer rows.Close()
	var tables []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, err
		}
		tables = append(tables, t)
	}
	return tables, rows.Err()
}
