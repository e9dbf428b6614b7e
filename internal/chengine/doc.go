// Package chengine finds or runs the ClickHouse server that leadpipe writes to
// and reads from, and opens connections to it.
//
// Three ways, in order of preference:
//
//   - an external server or cluster (--clickhouse.addr), as in production;
//   - an official clickhouse binary on PATH, run as `clickhouse server` with a
//     config generated under the data dir;
//   - the modern engine shipped as libchdb.so (ClickHouse's embeddable build),
//     run as a child process of leadpipe that serves the real native and HTTP
//     protocols on loopback.
//
// In every case the rest of leadpipe talks to ClickHouse over the native
// protocol, so the code path that serves a laptop is the one that serves a
// cluster. A managed engine is a child process: it is health-checked at start,
// stopped cleanly, dies with its parent and keeps its data under the data dir.
// It is supervised (managed.go): an exit nobody asked for is logged with the
// end of the engine's own log and restarted on the same ports, with a
// backoff, until too many starts in a row have failed. Clients of a chdb
// engine reach it through a relay (relay.go) that shields it from reset
// connections, which abort chDB 26.7.
//
// Debian's clickhouse-server package (18.16) is refused: it lacks TTLs, query
// parameters, lightweight deletes and insert deduplication tokens.
//
// It imports internal/cache and internal/tlsfiles; no stage, no store.
package chengine
