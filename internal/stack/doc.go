// Package stack composes leadpipe's stages into one running process: the
// bus (embedded or external NATS), ClickHouse (managed or external), the
// schema, the collector, the processor and the query API. `leadpipe serve`
// runs them all; `collect`, `process` and `query` run one stage each against
// external NATS and ClickHouse. End-to-end tests start and stop it in-process.
package stack
