// Package store is leadpipe's ClickHouse database: the tables, as numbered
// SQL migrations embedded in the binary, and every statement the stages
// send, as typed methods of DB — the processor's inserts and checks, the
// API's reads, erasure of sites and visitors, the audit log and data
// requests, backup and restore, and the accounting reads of the
// benchmarks. Table names and SQL live here and nowhere else, so a
// deployment with local and Distributed tables changes one package.
//
// Migrations are applied in order, each once, and recorded in the
// schema_migrations table; every statement is written to be safe to run
// again (IF NOT EXISTS), so a migration interrupted half-way is simply
// re-run. What plain SQL cannot do idempotently (rebuilding a table with a
// new sorting key, filling a new table once) is a Go hook of its migration
// (rebuild.go) that inspects what is there and runs the files under
// rebuild/ that finish what an interrupted run left. `leadpipe migrate` and
// the start of `leadpipe serve` call Migrate. testdata/schema.sql is every
// table and view as the migrations leave them (TestSchemaSnapshot).
//
// Values reach ClickHouse as bound parameters; statements are assembled
// from constants only (TestNoSQLBuiltByFormatting), but for the backup
// statements, which take no parameters and are built from checked names.
//
// store imports nothing of leadpipe's: the stages, internal/backup and the
// benchmarks import it.
//
// What the tables hold, for analysts: see the README's "Tables" section.
package store
