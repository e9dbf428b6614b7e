// Package processor consumes hits from JetStream, enriches each with what the
// visitor IP says (organisation, network, ASN), drops what must not be stored
// (counting it in the filter ledger), and batch-inserts the rest into
// ClickHouse, where materialized views keep the company aggregates.
//
// Delivery is at-least-once from JetStream; inserts are made idempotent so
// the effect is exactly-once:
//
//   - every batch carries an insert_deduplication_token derived from the
//     stream sequences it holds, so retrying the same batch is a no-op;
//   - a batch holding a redelivered message (a crash between insert and ack)
//     first asks ClickHouse which of its hit ids are already stored and
//     leaves those out;
//   - messages are acknowledged only after ClickHouse accepted the batch, and
//     a failing ClickHouse pauses consumption rather than dropping hits.
//
// It depends on internal/bus, internal/chengine's connection and ipintel.
package processor
