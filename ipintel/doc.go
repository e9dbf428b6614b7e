// Package ipintel turns an IP address into what leadpipe knows about the
// organisation behind it: the network's type (business, education,
// government, residential, mobile, hosting, unknown), the company, the
// autonomous system and the country — with the evidence for each answer.
//
// It is the enrichment library of the pipeline: processor uses it to decide
// which hits to keep and to annotate them, and query uses it to explain an
// address. It depends on neither of them (nor on NATS or ClickHouse).
//
// Sources, strongest first:
//
//   - operator overrides (CIDR or ASN → type and/or company), [Overrides];
//   - the operator's company ranges (a commercial or home-grown IP→company
//     database), [Companies];
//   - a curated list of ASNs with their type and the reason (data/asn_types.csv);
//   - reverse DNS of the address, when it is more confident than what
//     follows ([RDNS], asynchronous and cached: it never stalls a lookup),
//     read with the words, domains and suffixes of data/ptr_*.csv;
//   - organisation-name rules with an allow-list (data/name_rules.csv);
//   - the default: an organisation named like none of the above is a business.
//
// The ASN data (@ip-location-db/asn: RouteViews, NRO and DB-IP, CC BY 4.0) is
// held in a [bart] routing table together with the country database, so the
// hot path ([DB.Enrich]) is one longest-prefix match and no allocation. A
// [DB] is an immutable snapshot; a [Store] builds a new one on reload and
// swaps it in atomically, so lookups never pause and never see a mix.
//
// It imports internal/cache alone; no stage and no store.
//
// [bart]: https://github.com/gaissmai/bart
package ipintel
