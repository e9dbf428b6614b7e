-- The sites by id, so that queries can show site names: a copy of the
-- sites the API knows (accounts, sites and keys live in NATS key-value
-- buckets), written by the API process when a site changes and refreshed
-- daily. A site's erasure deletes its row with its data; a copy not
-- refreshed for 30 days (its site deleted) expires.
CREATE TABLE IF NOT EXISTS sites
(
    site_id    LowCardinality(String) COMMENT 'The site',
    name       String COMMENT 'The site''s name, as its admins gave it',
    domain     String COMMENT 'The site''s domain',
    account    String COMMENT 'The account that owns the site (empty: the installation''s own)',
    created    DateTime64(3, 'UTC') COMMENT 'When the site was made',
    updated_at DateTime64(3, 'UTC') COMMENT 'When this copy was written; the latest copy of a site wins'
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY site_id
TTL toDateTime(updated_at) + INTERVAL 30 DAY DELETE
COMMENT 'The sites by id (name, domain, account), to show site names in queries: join with FINAL, or argMax by updated_at';
