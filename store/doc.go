// Package schema holds leadpipe's ClickHouse tables as numbered SQL
// migrations embedded in the binary, and the runner that applies them.
//
// Migrations are applied in order, each once, and recorded in the
// schema_migrations table; every statement is written to be safe to run again
// (IF NOT EXISTS), so a migration interrupted half-way is simply re-run. What
// plain SQL cannot do idempotently (rebuilding a table with a new sorting
// key, filling a new table once) is a Go hook of its migration (rebuild.go)
// that inspects what is there and finishes what an interrupted run left.
// `leadpipe migrate` and the start of `leadpipe serve` call Migrate.
//
// What the tables hold, for analysts: see the README's "Tables" section.
package store
