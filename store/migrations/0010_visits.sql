-- Visits. The processor assigns every stored hit to a visit (see package
-- processor, sessions.go): visit_id and visit_start are the same on all hits
-- of one visit, new_visit is 1 on exactly the hit that opened it, and source
-- is how that hit came (direct, search, social, referral, campaign).
-- Hits stored before this migration have visit_id 0; the API groups those by
-- visitor and the 30-minute gap when it reads them.
ALTER TABLE hits
    ADD COLUMN IF NOT EXISTS visit_id UInt64 AFTER visitor_id,
    ADD COLUMN IF NOT EXISTS visit_start DateTime64(3, 'UTC') AFTER visit_id,
    ADD COLUMN IF NOT EXISTS new_visit UInt8 AFTER visit_start,
    ADD COLUMN IF NOT EXISTS source LowCardinality(String) AFTER referrer;

-- One row per visit, kept by a materialized view on hits: a visit's hits
-- may arrive in several inserts, and the aggregate states merge them.
-- Sorted so that a company's visits in a time range are one short read.
CREATE TABLE IF NOT EXISTS visits
(
    site_id     LowCardinality(String),
    company_id  String,
    visit_start DateTime64(3, 'UTC'),
    visit_id    UInt64,
    visitor_id  SimpleAggregateFunction(any, UInt64),
    started     SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    ended       SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    hits        SimpleAggregateFunction(sum, UInt64),
    pageviews   SimpleAggregateFunction(sum, UInt64),
    engaged_ms  SimpleAggregateFunction(sum, UInt64),
    entry_page  AggregateFunction(argMin, String, DateTime64(3, 'UTC')),
    exit_page   AggregateFunction(argMax, String, DateTime64(3, 'UTC')),
    source      AggregateFunction(argMin, String, DateTime64(3, 'UTC')),
    referrer    AggregateFunction(argMin, String, DateTime64(3, 'UTC')),
    country     SimpleAggregateFunction(anyLast, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(visit_start)
ORDER BY (site_id, company_id, visit_start, visit_id)
TTL toDateTime(visit_start) + INTERVAL 180 DAY DELETE
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS visits_mv TO visits AS
SELECT
    site_id, company_id, visit_start, visit_id,
    any(visitor_id) AS visitor_id,
    min(ts) AS started,
    max(ts) AS ended,
    count() AS hits,
    countIf(type = 'pageview') AS pageviews,
    sum(engaged_ms) AS engaged_ms,
    argMinIfState(path, ts, type = 'pageview') AS entry_page,
    argMaxIfState(path, ts, type = 'pageview') AS exit_page,
    argMinIfState(toString(h.source), ts, new_visit = 1) AS source,
    argMinIfState(h.referrer, ts, new_visit = 1) AS referrer,
    anyLast(h.country) AS country
FROM hits AS h
WHERE company_id != '' AND visit_id != 0
GROUP BY site_id, company_id, visit_start, visit_id;

-- A company's pages per day: the company page's top pages and the feed's
-- page filter read this instead of the raw hits. Filled from the stored
-- hits when it is created (see schema/rebuild.go), then by its view. A
-- page's title is the greatest seen (titles of one path rarely differ; max,
-- unlike anyLast, never picks an engagement hit's empty one).
CREATE TABLE IF NOT EXISTS company_pages_daily
(
    site_id    LowCardinality(String),
    company_id String,
    day        Date,
    path       String,
    title      SimpleAggregateFunction(max, String),
    pageviews  SimpleAggregateFunction(sum, UInt64),
    engaged_ms SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site_id, company_id, day, path)
TTL day + INTERVAL 800 DAY DELETE
SETTINGS non_replicated_deduplication_window = 10000;
