-- Raw hits of identified companies, one row per accepted hit.
-- No visitor IP is stored: the processor keeps only what it derived from it
-- (company, network, ASN, country). visitor_id is a keyed hash, never the
-- browser's client id. Partitioned by day. Retention is a row TTL on each
-- row's own retention_days (migration 0011): sites keep hits for different
-- times, so a day's part goes when its last row has expired.
-- non_replicated_deduplication_window lets the processor's per-batch
-- insert_deduplication_token make retried inserts idempotent.
CREATE TABLE IF NOT EXISTS hits
(
    site_id        LowCardinality(String),
    ts             DateTime64(3, 'UTC'),
    received_at    DateTime64(3, 'UTC'),
    hit_id         String,
    type           LowCardinality(String),
    url            String,
    path           String,
    referrer       String,
    title          String,
    visitor_id     UInt64,
    consent        LowCardinality(String),
    engaged_ms     UInt32,
    company_id     String,
    company_name   LowCardinality(String),
    company_domain String,
    asn            UInt32,
    as_org         LowCardinality(String),
    network_type   LowCardinality(String),
    country        LowCardinality(String),
    stream_seq     UInt64,
    INDEX hit_id_bf hit_id TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (site_id, company_id, ts)
TTL toDateTime(ts) + INTERVAL 180 DAY DELETE
SETTINGS non_replicated_deduplication_window = 10000;
