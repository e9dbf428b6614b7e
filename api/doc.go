// Package api is leadpipe's HTTP API and dashboard: the company feed (with
// filters, sorting, saved feeds and cursors), a company's page with its
// visits, the filter ledger, exports (CSV, NDJSON, Arrow IPC), the IP enrich
// endpoint, data subject requests by client id, the admin endpoints for
// sites and keys, the audit log, and the server-rendered dashboard that
// reads through the same handlers.
//
// Every request carries a Bearer key (the dashboard keeps it in an HttpOnly
// cookie); every read is scoped to the sites the key was granted before a
// query is built; every value reaches ClickHouse as a bound parameter; every
// request is written to the audit log.
//
// It imports ipintel, store and internal/ (tenant, tlsfiles, visit,
// visitorid); never another stage.
package api
