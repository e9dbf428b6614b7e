-- Keeps company_daily from every hit of an identified company.
CREATE MATERIALIZED VIEW IF NOT EXISTS company_daily_mv TO company_daily AS
SELECT
    site_id,
    company_id,
    toDate(ts) AS day,
    anyLast(company_name) AS company_name,
    anyLast(company_domain) AS company_domain,
    anyLast(company_industry) AS company_industry,
    anyLast(company_size) AS company_size,
    anyLast(network_type) AS network_type,
    anyLast(country) AS country,
    count() AS hits,
    countIf(type = 'pageview') AS pageviews,
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

-- The old table, after the exchange.
DROP TABLE IF EXISTS company_daily_next;
