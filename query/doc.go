// Package query is leadpipe's HTTP API: the company feed and the filter
// ledger read from ClickHouse's aggregates, the IP enrich endpoint, and the
// admin endpoints for sites and keys. Every request carries a Bearer key;
// every read is scoped to the sites the key was granted before a query is
// built, and every value reaches ClickHouse as a bound parameter.
//
// It depends on internal/tenant (keys, sites), ipintel (IP answers) and a
// ClickHouse connection; never on ingest or processor.
package query
