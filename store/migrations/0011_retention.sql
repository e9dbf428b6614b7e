-- Per-site retention of raw hits and visits: each row carries its site's
-- retention in days (stamped by the processor from the site's
-- retention_days setting, 180 unless set), and the TTL reads it, so sites
-- can keep their data for different times in the same table. A changed
-- setting applies to hits stored from then on. The aggregates keep their
-- 800 days: they are company-level.
ALTER TABLE hits ADD COLUMN IF NOT EXISTS retention_days UInt16 DEFAULT 180 AFTER stream_seq;
ALTER TABLE hits MODIFY TTL toDateTime(ts) + toIntervalDay(retention_days) DELETE;

ALTER TABLE visits ADD COLUMN IF NOT EXISTS retention_days SimpleAggregateFunction(max, UInt16) DEFAULT 180;
ALTER TABLE visits MODIFY TTL toDateTime(visit_start) + toIntervalDay(retention_days) DELETE;

-- The view now carries the retention over (processors must be stopped
-- while this runs, as for 0010).
DROP VIEW IF EXISTS visits_mv;
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
    anyLast(h.country) AS country,
    max(h.retention_days) AS retention_days
FROM hits AS h
WHERE company_id != '' AND visit_id != 0
GROUP BY site_id, company_id, visit_start, visit_id;
