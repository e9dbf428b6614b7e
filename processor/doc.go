// Package processor consumes hits from JetStream, decides what each visitor
// is (organisation, network type, country) with ipintel, drops what must not
// be stored (bots, residential, mobile, hosting, unknown networks — leaving
// only a count in the filter ledger), and batch-inserts the rest into
// ClickHouse, where materialized views keep the company aggregates.
//
// Delivery is at-least-once from JetStream; writes are made idempotent so
// the effect is exactly-once:
//
//   - every batch carries an insert_deduplication_token derived from the
//     stream sequences it holds, so retrying the same batch is a no-op, in
//     the tables and in their materialized views alike;
//   - every batch first asks ClickHouse which of its hits are already
//     written (stored in hits or recorded in dropped_hits) and leaves them
//     out: redeliveries after a crash between insert and ack, and client
//     retries JetStream no longer recognises, are written once;
//   - messages are acknowledged only after ClickHouse accepted the batch; a
//     failing ClickHouse pauses consumption rather than dropping hits, and a
//     message that can never be read goes to the dead-letter stream.
//
// Files: processor.go (the consume loop and a batch's life), build.go
// (decoding and enriching hits into rows), write.go (the already-written
// check and the inserts), deadletter.go (hits that can never be written),
// sessions.go (visits), bots.go, config.go, metrics.go.
//
// It imports ipintel, store and internal/ (bus, tenant, visit, visitorid);
// never another stage.
package processor
