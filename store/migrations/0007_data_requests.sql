-- Data subject requests (access and erasure) and when they were completed.
-- The visitor's id is not recorded here: the record must not link to them.
CREATE TABLE IF NOT EXISTS data_requests
(
    id           String,
    site_id      LowCardinality(String),
    kind         LowCardinality(String),
    key_id       String,
    requested_at DateTime64(3, 'UTC'),
    completed_at DateTime64(3, 'UTC'),
    rows         UInt64
)
ENGINE = MergeTree
ORDER BY (site_id, requested_at);
