-- The filter ledger: how many hits were dropped per site, day and reason.
-- It holds counts only: no IP, no client id, no URL.
CREATE TABLE IF NOT EXISTS filtered_daily
(
    site_id LowCardinality(String),
    day     Date,
    reason  LowCardinality(String),
    hits    SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site_id, day, reason)
TTL day + INTERVAL 800 DAY DELETE
SETTINGS non_replicated_deduplication_window = 10000;
