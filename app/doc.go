// Package app is leadpipe's composition root: it builds every stage from its
// Config and wires them into one running process — the bus (embedded or
// external NATS), ClickHouse (managed or external), the schema, the
// collector, the processor and the API. `leadpipe serve` runs them
// all; `collect`, `process` and `query` run one stage each against external
// NATS and ClickHouse. End-to-end tests start and stop it in-process.
//
// It is the only package that knows every stage: it imports the stages
// (collector, processor, api), ipintel, store and internal/; nothing but
// cmd/ and bench/ imports it (make lint checks both).
package app
