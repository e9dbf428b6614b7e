// Package ipintel turns an IP address into what leadpipe knows about the
// organisation behind it: the autonomous system, the organisation's name and a
// stable company id.
//
// It is the enrichment library of the pipeline: processor uses it to annotate
// hits before they are written to ClickHouse, and query uses it to explain and
// filter by network. It depends on neither of them (nor on NATS or
// ClickHouse); its only inputs are addresses and the IP databases on disk.
//
// Lookups are longest-prefix matches over a [bart] routing table built once at
// load time from the inclusive address ranges of the ASN database
// (@ip-location-db/asn: RouteViews, NRO and DB-IP, CC BY 4.0). A loaded
// [Table] is read-only and safe for concurrent use; to pick up new data, load
// a new Table and swap the pointer.
//
// [bart]: https://github.com/gaissmai/bart
package ipintel
