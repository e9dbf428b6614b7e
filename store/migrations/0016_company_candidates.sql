-- A company only the address-space fall-back names (a network mostly in
-- legacy space, no curated entry, no name rule, no reverse DNS, no operator
-- file) is a candidate: about half of those are companies, so the feed
-- shows them only when asked. Each hit says whether its company was a
-- candidate; company_daily keeps whether any of the day's hits confirmed
-- it (max of 1 - candidate). Rows stored before this migration count as
-- confirmed, as the feed showed them.
ALTER TABLE hits ADD COLUMN IF NOT EXISTS candidate UInt8 AFTER intent;
ALTER TABLE hits COMMENT COLUMN IF EXISTS candidate '1 when only the address-space fall-back named the hit''s company (a candidate)';

ALTER TABLE company_daily ADD COLUMN IF NOT EXISTS confirmed SimpleAggregateFunction(max, UInt8) DEFAULT 1 AFTER intent_pageviews;
ALTER TABLE company_daily COMMENT COLUMN IF EXISTS confirmed '1 when evidence stronger than the address-space fall-back named the company that day';

-- The view now carries it (processors must be stopped while this runs, as
-- for 0010, 0011 and 0015).
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
    max(toUInt8(candidate = 0)) AS confirmed,
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
    max(confirmed) AS confirmed,
    sum(engaged_ms) AS engaged_ms,
    sum(visits) AS visits,
    uniqExactMerge(visitors) AS visitors,
    min(first_seen) AS first_seen,
    max(last_seen) AS last_seen,
    sumMap(sources) AS sources,
    sumMap(countries) AS countries
FROM company_daily
GROUP BY site_id, company_id, day;
