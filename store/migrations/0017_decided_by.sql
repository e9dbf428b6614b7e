-- Which layer of the IP intelligence named each hit's company (the
-- decided_by of GET /api/v1/ip/{ip}): the operator's files, a network
-- learned from identifications, a registry assignment, RDAP, reverse DNS,
-- the ASN's organisation, the address-space fall-back. The company page
-- shows it, so a company found by a learned network or a registry record
-- is shown as such. Rows stored before this migration have ''.
ALTER TABLE hits ADD COLUMN IF NOT EXISTS decided_by LowCardinality(String) AFTER candidate;
ALTER TABLE hits COMMENT COLUMN IF EXISTS decided_by 'the IP intelligence layer that named the company: override, companies, learned, registry, rdap, rdns, asn-list, name-rule, address-space';
