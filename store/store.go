package store

import (
	"context"
	"reflect"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// DB is leadpipe's ClickHouse database: every statement a stage sends is
// a method of it, so the tables, their names and the SQL against them
// live in this package alone.
type DB struct {
	conn driver.Conn
}

// New wraps a connection to leadpipe's database.
func New(conn driver.Conn) *DB { return &DB{conn: conn} }

// Ping tells whether ClickHouse answers.
func (db *DB) Ping(ctx context.Context) error { return db.conn.Ping(ctx) }

// params binds server-side query parameters ({name:Type} in the SQL).
func params(ctx context.Context, p clickhouse.Parameters) context.Context {
	return clickhouse.Context(ctx, clickhouse.WithParameters(p))
}

// listQuery allows a query text as long as the lists of a whole batch
// make it: the driver writes a bound slice into the query as literals, and
// 5,000 hit ids or keys pass ClickHouse's default max_query_size (256 KiB),
// which would stop a batch for good.
func listQuery(ctx context.Context) context.Context {
	return clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_query_size": 64 << 20}))
}

// readAll runs a query and reads every row with scan; an empty result is
// an empty, non-nil slice (a JSON array).
func readAll[T any](ctx context.Context, conn driver.Conn, query string, scan func(driver.Rows) (T, error), args ...any) ([]T, error) {
	rows, err := conn.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// columnsOf lists the ch tags of a row struct, in field order: the column
// list of its INSERT, so a struct and its statement cannot drift apart.
func columnsOf(v any) string {
	t := reflect.TypeOf(v)
	cols := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		if c := t.Field(i).Tag.Get("ch"); c != "" {
			cols = append(cols, c)
		}
	}
	return strings.Join(cols, ", ")
}
