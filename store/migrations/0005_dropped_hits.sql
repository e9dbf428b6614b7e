-- Hits dropped before storage (residential, mobile, hosting, bots, unknown
-- networks), one row each, kept two days: only the site, the time, the
-- reason and a hash of the hit's random id — no IP, no client id, no URL.
-- The hash lets a retried hit (same id) be recognised and not counted twice;
-- the filter ledger (filtered_daily) is kept from it by a materialized view,
-- so a row and its count are written in one insert.
CREATE TABLE IF NOT EXISTS dropped_hits
(
    site_id LowCardinality(String),
    ts      DateTime64(3, 'UTC'),
    reason  LowCardinality(String),
    hit_key UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (site_id, hit_key)
TTL toDateTime(ts) + INTERVAL 2 DAY DELETE
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS filtered_daily_mv TO filtered_daily AS
SELECT site_id, toDate(ts) AS day, reason, count() AS hits
FROM dropped_hits
GROUP BY site_id, day, reason;
