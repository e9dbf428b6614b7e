-- Each hit carries its company's headquarters country (from the company's
-- profile; empty when no profile says) and whether it viewed one of the
-- site's high-intent pages (its intent_pages, stamped by the processor, so
-- a changed list applies to hits stored from then on). company_daily sums
-- the latter for the lead score and keeps the former for the company's
-- country, so the feed reads neither from the raw hits.
ALTER TABLE hits
    ADD COLUMN IF NOT EXISTS company_country LowCardinality(String) AFTER company_size,
    ADD COLUMN IF NOT EXISTS intent UInt8 AFTER engaged_ms;
ALTER TABLE hits COMMENT COLUMN IF EXISTS company_country 'The organisation''s headquarters country, from its profile (ISO 3166 two-letter code), when known';
ALTER TABLE hits COMMENT COLUMN IF EXISTS intent '1 when the hit is a view of one of the site''s high-intent pages (its intent_pages when stored)';

ALTER TABLE company_daily
    ADD COLUMN IF NOT EXISTS company_country SimpleAggregateFunction(max, String) AFTER company_size,
    ADD COLUMN IF NOT EXISTS intent_pageviews SimpleAggregateFunction(sum, UInt64) AFTER pageviews;
ALTER TABLE company_daily COMMENT COLUMN IF EXISTS company_country 'The organisation''s headquarters country, from its profile, when known';
ALTER TABLE company_daily COMMENT COLUMN IF EXISTS intent_pageviews 'Pageviews of the site''s high-intent pages that day';

-- The view now carries both (processors must be stopped while this runs,
-- as for 0010 and 0011).
DROP VIEW IF EXISTS company_daily_mv;
CREATE MATERIALIZED VIEW IF NOT EXISTS company_daily_mv TO company_daily AS
SELECT
    site_id,
    company_id,
    toDate(ts) AS day,
    anyLast(company_name) AS company_name,
    anyLast(company_domain) AS company_domain,
    anyLast(company_industry) AS company_industry,
    anyLast(company_size) AS company_size,
    max(toString(h.company_country)) AS company_country,
    anyLast(network_type) AS network_type,
    anyLast(country) AS country,
    count() AS hits,
    countIf(type = 'pageview') AS pageviews,
    countIf(type = 'pageview' AND intent = 1) AS intent_pageviews,
    sum(engaged_ms) AS engaged_ms,
    sum(new_visit) AS visits,
    uniqExactState(visitor_id) AS visitors,
    min(ts) AS first_seen,
    max(ts) AS last_seen,
    sumMapIf(CAST(map(toString(h.source), toUInt64(1)), 'Map(String, UInt64)'), new_visit = 1) AS sources,
    sumMapIf(CAST(map(toString(h.country), toUInt64(1)), 'Map(String, UInt64)'), type = 'pageview') AS countries
FROM hits AS h
WHERE company_id != ''
GROUP BY site_id, company_id, day;

DROP VIEW IF EXISTS company_daily_v;
CREATE VIEW IF NOT EXISTS company_daily_v
COMMENT 'company_daily with its aggregates merged: one row per site, company and day'
AS SELECT
    site_id, company_id, day,
    anyLast(company_name) AS company_name,
    anyLast(company_domain) AS company_domain,
    anyLast(company_industry) AS company_industry,
    anyLast(company_size) AS company_size,
    max(company_country) AS company_country,
    anyLast(network_type) AS network_type,
    anyLast(country) AS country,
    sum(hits) AS hits,
    sum(pageviews) AS pageviews,
    sum(intent_pageviews) AS intent_pageviews,
    sum(engaged_ms) AS engaged_ms,
    sum(visits) AS visits,
    uniqExactMerge(visitors) AS visitors,
    min(first_seen) AS first_seen,
    max(last_seen) AS last_seen,
    sumMap(sources) AS sources,
    sumMap(countries) AS countries
FROM company_daily
GROUP BY site_id, company_id, day;
