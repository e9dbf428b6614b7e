-- Company-level visit aggregates per site and day, kept by a materialized view
-- on hits. The query API's company feed reads only this table.
-- visits: until visits are built from sessions, one visitor's activity on one
-- day counts as one visit.
CREATE TABLE IF NOT EXISTS company_daily
(
    site_id        LowCardinality(String),
    day            Date,
    company_id     String,
    company_name   SimpleAggregateFunction(anyLast, String),
    company_domain SimpleAggregateFunction(anyLast, String),
    network_type   SimpleAggregateFunction(anyLast, String),
    country        SimpleAggregateFunction(anyLast, String),
    hits           SimpleAggregateFunction(sum, UInt64),
    pageviews      SimpleAggregateFunction(sum, UInt64),
    engaged_ms     SimpleAggregateFunction(sum, UInt64),
    visitors       AggregateFunction(uniqExact, UInt64),
    visits         AggregateFunction(uniqExact, UInt64),
    first_seen     SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen      SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site_id, day, company_id)
TTL day + INTERVAL 800 DAY DELETE;

CREATE MATERIALIZED VIEW IF NOT EXISTS company_daily_mv TO company_daily AS
SELECT
    site_id,
    toDate(ts) AS day,
    company_id,
    anyLast(company_name) AS company_name,
    anyLast(company_domain) AS company_domain,
    anyLast(network_type) AS network_type,
    anyLast(country) AS country,
    count() AS hits,
    countIf(type = 'pageview') AS pageviews,
    sum(engaged_ms) AS engaged_ms,
    uniqExactState(visitor_id) AS visitors,
    uniqExactState(cityHash64(visitor_id, toDate(ts))) AS visits,
    min(ts) AS first_seen,
    max(ts) AS last_seen
FROM hits
WHERE company_id != ''
GROUP BY site_id, day, company_id;
