-- Migration 0010, when company_daily is not yet sorted by company: the old
-- table and its view make way for one sorted (site_id, company_id, day), so
-- the company page and the feed's second phase read a few granules instead
-- of most of a site's. Run again after an interruption, it starts over.
DROP VIEW IF EXISTS company_daily_mv;
DROP TABLE IF EXISTS company_daily_next;

-- company_daily as migration 0010 leaves it, built beside the old one
-- before the two are exchanged. visits counts visits by the hit that opened
-- them (a visit is counted on the day it began); sources counts them by how
-- they came; countries counts pageviews by the visitor's country.
CREATE TABLE company_daily_next
(
    site_id          LowCardinality(String),
    company_id       String,
    day              Date,
    company_name     SimpleAggregateFunction(anyLast, String),
    company_domain   SimpleAggregateFunction(anyLast, String),
    company_industry SimpleAggregateFunction(anyLast, String),
    company_size     SimpleAggregateFunction(anyLast, String),
    network_type     SimpleAggregateFunction(anyLast, String),
    country          SimpleAggregateFunction(anyLast, String),
    hits             SimpleAggregateFunction(sum, UInt64),
    pageviews        SimpleAggregateFunction(sum, UInt64),
    engaged_ms       SimpleAggregateFunction(sum, UInt64),
    visits           SimpleAggregateFunction(sum, UInt64),
    visitors         AggregateFunction(uniqExact, UInt64),
    first_seen       SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen        SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    sources          SimpleAggregateFunction(sumMap, Map(String, UInt64)),
    countries        SimpleAggregateFunction(sumMap, Map(String, UInt64))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site_id, company_id, day)
TTL day + INTERVAL 800 DAY DELETE
SETTINGS non_replicated_deduplication_window = 10000;

-- Carries the aggregates of the old company_daily over. Their visits were
-- visitor-days, the best count there was before visits were built; they had
-- no sources, and their countries map is the company's country with its
-- pageviews.
INSERT INTO company_daily_next
    (site_id, company_id, day, company_name, company_domain, network_type, country,
     hits, pageviews, engaged_ms, visits, visitors, first_seen, last_seen, countries)
SELECT site_id, company_id, day, anyLast(company_name), anyLast(company_domain), anyLast(network_type), anyLast(country),
       sum(hits), sum(pageviews), sum(engaged_ms), uniqExactMerge(visits), uniqExactMergeState(visitors),
       min(first_seen), max(last_seen), map(anyLast(country), sum(pageviews))
FROM company_daily
GROUP BY site_id, company_id, day;

EXCHANGE TABLES company_daily AND company_daily_next;
