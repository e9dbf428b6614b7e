// Package app is leadpipe's composition root: it builds every stage from its
// Config and wires them into one running process — the bus (embedded or
// external NATS), ClickHouse (managed or external), the schema, the
// collector, the processor and the query API. `leadpipe serve` runs them
// all; `collect`, `process` and `query` run one stage each against external
// NATS and ClickHouse. End-to-end tests start and stop it in-process.
//
// It is the only package that knows every stage: it may import ingest,
// processor, query, ipintel, schema and internal/; nothing but cmd/ and
// bench/ imports it (make lint checks both).
//
// It imports the stages (ingest, processor, query), ipintel, store and
// internal/; only cmd/leadpipe and bench/ import it.
package app
