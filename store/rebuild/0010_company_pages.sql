-- Migration 0010, when company_pages_daily has no view yet: filled once
-- from the stored hits, then kept by its view. Hits written in between would
-- be missed, so processors are stopped meanwhile (`leadpipe serve` migrates
-- before it starts them; a split deployment runs `leadpipe migrate` with its
-- processors stopped).
TRUNCATE TABLE company_pages_daily;

-- Fills company_pages_daily once from the stored hits: a company's pages
-- per day.
INSERT INTO company_pages_daily
SELECT site_id, company_id, toDate(ts) AS day, path,
       maxIf(title, type = 'pageview') AS title,
       countIf(type = 'pageview') AS pageviews,
       sum(engaged_ms) AS engaged_ms
FROM hits
WHERE company_id != ''
GROUP BY site_id, company_id, day, path;

-- Keeps company_pages_daily from every hit of an identified company.
CREATE MATERIALIZED VIEW IF NOT EXISTS company_pages_daily_mv TO company_pages_daily AS
SELECT site_id, company_id, toDate(ts) AS day, path,
       maxIf(title, type = 'pageview') AS title,
       countIf(type = 'pageview') AS pageviews,
       sum(engaged_ms) AS engaged_ms
FROM hits
WHERE company_id != ''
GROUP BY site_id, company_id, day, path;
