-- Every read of customer data and every admin action of the API: who
-- (which key, its role, from which address), what (method, route, site),
-- when, the answer's status and how many rows it returned. The API only
-- ever inserts here; nothing in leadpipe updates or deletes audit rows.
CREATE TABLE IF NOT EXISTS audit_log
(
    ts      DateTime64(3, 'UTC'),
    key_id  String,
    role    LowCardinality(String),
    method  LowCardinality(String),
    route   LowCardinality(String),
    site_id String,
    status  UInt16,
    rows    UInt64,
    remote  String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (ts, key_id);
