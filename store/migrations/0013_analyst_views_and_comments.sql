-- For analysts: what every table and column holds (DESCRIBE and
-- system.columns show it), and plain views that apply the -Merge functions
-- of the aggregate tables, so that a query needs no knowledge of aggregate
-- states: SELECT * FROM company_daily_v WHERE site_id = '…'.

ALTER TABLE hits MODIFY COMMENT 'One row per kept hit (pageview or engagement ping) of a business, education or government visitor; never the visitor IP';
ALTER TABLE hits COMMENT COLUMN IF EXISTS site_id 'The site the hit was posted for';
ALTER TABLE hits COMMENT COLUMN IF EXISTS ts 'When the hit happened (the tracker''s clock, bounded by the collector)';
ALTER TABLE hits COMMENT COLUMN IF EXISTS received_at 'When the collector accepted the hit';
ALTER TABLE hits COMMENT COLUMN IF EXISTS hit_id 'The hit''s id from the tracker; retries of it carry the same id';
ALTER TABLE hits COMMENT COLUMN IF EXISTS type 'pageview or engagement';
ALTER TABLE hits COMMENT COLUMN IF EXISTS url 'The page''s URL';
ALTER TABLE hits COMMENT COLUMN IF EXISTS path 'The path of url';
ALTER TABLE hits COMMENT COLUMN IF EXISTS referrer 'The referring URL, if any';
ALTER TABLE hits COMMENT COLUMN IF EXISTS source 'Traffic source of the visit: direct, search, social, referral or campaign';
ALTER TABLE hits COMMENT COLUMN IF EXISTS title 'The page''s title';
ALTER TABLE hits COMMENT COLUMN IF EXISTS visitor_id 'Keyed hash of the visitor (of the client id, or of site, IP and user agent under a daily salt); never the client id or the IP';
ALTER TABLE hits COMMENT COLUMN IF EXISTS visit_id 'The visit the hit belongs to (30 minutes of inactivity end one)';
ALTER TABLE hits COMMENT COLUMN IF EXISTS visit_start 'When the hit''s visit began';
ALTER TABLE hits COMMENT COLUMN IF EXISTS new_visit '1 for the first hit of a visit';
ALTER TABLE hits COMMENT COLUMN IF EXISTS consent 'The visitor''s consent state: granted, denied or unknown (cookieless)';
ALTER TABLE hits COMMENT COLUMN IF EXISTS engaged_ms 'Engaged time the hit reports, in milliseconds (engagement pings)';
ALTER TABLE hits COMMENT COLUMN IF EXISTS company_id 'The identified organisation (stable id)';
ALTER TABLE hits COMMENT COLUMN IF EXISTS company_name 'The organisation''s name';
ALTER TABLE hits COMMENT COLUMN IF EXISTS company_domain 'The organisation''s domain, when known';
ALTER TABLE hits COMMENT COLUMN IF EXISTS company_industry 'The organisation''s industry, when known';
ALTER TABLE hits COMMENT COLUMN IF EXISTS company_size 'The organisation''s size band, when known';
ALTER TABLE hits COMMENT COLUMN IF EXISTS asn 'The autonomous system the visitor''s network belongs to';
ALTER TABLE hits COMMENT COLUMN IF EXISTS as_org 'The autonomous system''s registered organisation';
ALTER TABLE hits COMMENT COLUMN IF EXISTS network_type 'How the network was classified: business, education, government';
ALTER TABLE hits COMMENT COLUMN IF EXISTS country 'The visitor''s country (ISO 3166 two-letter code)';
ALTER TABLE hits COMMENT COLUMN IF EXISTS city 'The visitor''s city, when a city database is configured';
ALTER TABLE hits COMMENT COLUMN IF EXISTS lang 'The browser''s preferred language';
ALTER TABLE hits COMMENT COLUMN IF EXISTS stream_seq 'Sequence of the JetStream message the hit came in (tells retries apart)';
ALTER TABLE hits COMMENT COLUMN IF EXISTS retention_days 'Days the row is kept (the site''s retention when it was written)';

ALTER TABLE company_daily MODIFY COMMENT 'Per site, company and day: the company-level visit aggregates (materialized from hits); read it through company_daily_v';
ALTER TABLE company_daily COMMENT COLUMN IF EXISTS site_id 'The site';
ALTER TABLE company_daily COMMENT COLUMN IF EXISTS company_id 'The organisation';
ALTER TABLE company_daily COMMENT COLUMN IF EXISTS day 'The day (UTC) of the hits';
ALTER TABLE company_daily COMMENT COLUMN IF EXISTS company_name 'The organisation''s name, as last seen';
ALTER TABLE company_daily COMMENT COLUMN IF EXISTS company_domain 'The organisation''s domain, as last seen';
ALTER TABLE company_daily COMMENT COLUMN IF EXISTS company_industry 'The organisation''s industry, as last seen';
ALTER TABLE company_daily COMMENT COLUMN IF EXISTS company_size 'The organisation''s size band, as last seen';
ALTER TABLE company_daily COMMENT COLUMN IF EXISTS network_type 'The network''s classification, as last seen';
ALTER TABLE company_daily COMMENT COLUMN IF EXISTS country 'The country of the visits, as last seen';
ALTER TABLE company_daily COMMENT COLUMN IF EXISTS hits 'Hits that day';
ALTER TABLE company_daily COMMENT COLUMN IF EXISTS pageviews 'Pageviews that day';
ALTER TABLE company_daily COMMENT COLUMN IF EXISTS engaged_ms 'Engaged time that day, in milliseconds';
ALTER TABLE company_daily COMMENT COLUMN IF EXISTS visits 'Visits begun that day';
ALTER TABLE company_daily COMMENT COLUMN IF EXISTS visitors 'Distinct visitors that day (aggregate state: uniqExactMerge, or company_daily_v)';
ALTER TABLE company_daily COMMENT COLUMN IF EXISTS first_seen 'The first hit that day';
ALTER TABLE company_daily COMMENT COLUMN IF EXISTS last_seen 'The last hit that day';
ALTER TABLE company_daily COMMENT COLUMN IF EXISTS sources 'Visits by traffic source';
ALTER TABLE company_daily COMMENT COLUMN IF EXISTS countries 'Hits by visitor country';

ALTER TABLE company_pages_daily MODIFY COMMENT 'Per site, company, day and page: what the company looked at (materialized from hits)';
ALTER TABLE company_pages_daily COMMENT COLUMN IF EXISTS site_id 'The site';
ALTER TABLE company_pages_daily COMMENT COLUMN IF EXISTS company_id 'The organisation';
ALTER TABLE company_pages_daily COMMENT COLUMN IF EXISTS day 'The day (UTC)';
ALTER TABLE company_pages_daily COMMENT COLUMN IF EXISTS path 'The page''s path';
ALTER TABLE company_pages_daily COMMENT COLUMN IF EXISTS title 'The page''s title';
ALTER TABLE company_pages_daily COMMENT COLUMN IF EXISTS pageviews 'Pageviews of the page that day';
ALTER TABLE company_pages_daily COMMENT COLUMN IF EXISTS engaged_ms 'Engaged time on the page that day, in milliseconds';

ALTER TABLE visits MODIFY COMMENT 'One row per visit of an identified company (materialized from hits); read it through visits_v';
ALTER TABLE visits COMMENT COLUMN IF EXISTS site_id 'The site';
ALTER TABLE visits COMMENT COLUMN IF EXISTS company_id 'The organisation';
ALTER TABLE visits COMMENT COLUMN IF EXISTS visit_start 'When the visit began';
ALTER TABLE visits COMMENT COLUMN IF EXISTS visit_id 'The visit';
ALTER TABLE visits COMMENT COLUMN IF EXISTS visitor_id 'Keyed hash of the visitor (as in hits)';
ALTER TABLE visits COMMENT COLUMN IF EXISTS started 'The visit''s first hit';
ALTER TABLE visits COMMENT COLUMN IF EXISTS ended 'The visit''s last hit';
ALTER TABLE visits COMMENT COLUMN IF EXISTS hits 'Hits of the visit';
ALTER TABLE visits COMMENT COLUMN IF EXISTS pageviews 'Pageviews of the visit';
ALTER TABLE visits COMMENT COLUMN IF EXISTS engaged_ms 'Engaged time of the visit, in milliseconds';
ALTER TABLE visits COMMENT COLUMN IF EXISTS entry_page 'The first page (aggregate state: argMinMerge, or visits_v)';
ALTER TABLE visits COMMENT COLUMN IF EXISTS exit_page 'The last page (aggregate state: argMaxMerge, or visits_v)';
ALTER TABLE visits COMMENT COLUMN IF EXISTS source 'The visit''s traffic source (aggregate state: argMinMerge, or visits_v)';
ALTER TABLE visits COMMENT COLUMN IF EXISTS referrer 'The visit''s referrer (aggregate state: argMinMerge, or visits_v)';
ALTER TABLE visits COMMENT COLUMN IF EXISTS country 'The visitor''s country';
ALTER TABLE visits COMMENT COLUMN IF EXISTS retention_days 'Days the row is kept';

ALTER TABLE dropped_hits MODIFY COMMENT 'Dropped hits (residential, mobile, hosting, bot, unknown, invalid, erased): only a key to recognise a retry, kept 2 days; counted in filtered_daily';
ALTER TABLE dropped_hits COMMENT COLUMN IF EXISTS site_id 'The site';
ALTER TABLE dropped_hits COMMENT COLUMN IF EXISTS ts 'When the hit happened';
ALTER TABLE dropped_hits COMMENT COLUMN IF EXISTS reason 'Why it was dropped';
ALTER TABLE dropped_hits COMMENT COLUMN IF EXISTS hit_key 'Hash of site and hit id: recognises a retried hit, identifies no one';

ALTER TABLE filtered_daily MODIFY COMMENT 'The filter ledger: dropped hits counted per site, day and reason (materialized from dropped_hits); all that is kept of them';
ALTER TABLE filtered_daily COMMENT COLUMN IF EXISTS site_id 'The site';
ALTER TABLE filtered_daily COMMENT COLUMN IF EXISTS day 'The day (UTC)';
ALTER TABLE filtered_daily COMMENT COLUMN IF EXISTS reason 'Why the hits were dropped';
ALTER TABLE filtered_daily COMMENT COLUMN IF EXISTS hits 'How many';

ALTER TABLE data_requests MODIFY COMMENT 'Data subject and erasure requests (access, visitor, site, account): the record of their handling, kept 3 years';
ALTER TABLE data_requests COMMENT COLUMN IF EXISTS id 'The request';
ALTER TABLE data_requests COMMENT COLUMN IF EXISTS site_id 'The site it concerned';
ALTER TABLE data_requests COMMENT COLUMN IF EXISTS kind 'What was asked (access, erasure of a visitor, a site, an account)';
ALTER TABLE data_requests COMMENT COLUMN IF EXISTS key_id 'The API key that asked';
ALTER TABLE data_requests COMMENT COLUMN IF EXISTS requested_at 'When it was asked';
ALTER TABLE data_requests COMMENT COLUMN IF EXISTS completed_at 'When it was done';
ALTER TABLE data_requests COMMENT COLUMN IF EXISTS rows 'Rows it returned or erased';

ALTER TABLE audit_log MODIFY COMMENT 'Who read or changed what through the API, kept 400 days';
ALTER TABLE audit_log COMMENT COLUMN IF EXISTS ts 'When';
ALTER TABLE audit_log COMMENT COLUMN IF EXISTS key_id 'The API key (or dashboard session) used';
ALTER TABLE audit_log COMMENT COLUMN IF EXISTS role 'Its role';
ALTER TABLE audit_log COMMENT COLUMN IF EXISTS method 'HTTP method';
ALTER TABLE audit_log COMMENT COLUMN IF EXISTS route 'The API route';
ALTER TABLE audit_log COMMENT COLUMN IF EXISTS site_id 'The site it concerned, if any';
ALTER TABLE audit_log COMMENT COLUMN IF EXISTS status 'HTTP status of the answer';
ALTER TABLE audit_log COMMENT COLUMN IF EXISTS rows 'Rows returned';
ALTER TABLE audit_log COMMENT COLUMN IF EXISTS remote 'The caller''s address';

ALTER TABLE schema_migrations MODIFY COMMENT 'Migrations applied to this database';
ALTER TABLE schema_migrations COMMENT COLUMN IF EXISTS version 'The migration''s number';
ALTER TABLE schema_migrations COMMENT COLUMN IF EXISTS name 'Its name';
ALTER TABLE schema_migrations COMMENT COLUMN IF EXISTS applied_at 'When it was applied';

CREATE VIEW IF NOT EXISTS company_daily_v
COMMENT 'company_daily with its aggregates merged: one row per site, company and day'
AS SELECT
    site_id, company_id, day,
    anyLast(company_name) AS company_name,
    anyLast(company_domain) AS company_domain,
    anyLast(company_industry) AS company_industry,
    anyLast(company_size) AS company_size,
    anyLast(network_type) AS network_type,
    anyLast(country) AS country,
    sum(hits) AS hits,
    sum(pageviews) AS pageviews,
    sum(engaged_ms) AS engaged_ms,
    sum(visits) AS visits,
    uniqExactMerge(visitors) AS visitors,
    min(first_seen) AS first_seen,
    max(last_seen) AS last_seen,
    sumMap(sources) AS sources,
    sumMap(countries) AS countries
FROM company_daily
GROUP BY site_id, company_id, day;

CREATE VIEW IF NOT EXISTS company_pages_daily_v
COMMENT 'company_pages_daily merged: one row per site, company, day and page'
AS SELECT
    site_id, company_id, day, path,
    max(title) AS title,
    sum(pageviews) AS pageviews,
    sum(engaged_ms) AS engaged_ms
FROM company_pages_daily
GROUP BY site_id, company_id, day, path;

CREATE VIEW IF NOT EXISTS visits_v
COMMENT 'visits with their aggregates merged: one row per visit'
AS SELECT
    site_id, company_id, visit_id, visit_start,
    min(started) AS started,
    max(ended) AS ended,
    sum(hits) AS hits,
    sum(pageviews) AS pageviews,
    sum(engaged_ms) AS engaged_ms,
    argMinMerge(entry_page) AS entry_page,
    argMaxMerge(exit_page) AS exit_page,
    argMinMerge(source) AS source,
    argMinMerge(referrer) AS referrer,
    anyLast(country) AS country
FROM visits
GROUP BY site_id, company_id, visit_id, visit_start;

CREATE VIEW IF NOT EXISTS filtered_daily_v
COMMENT 'The filter ledger merged: dropped hits per site, day and reason'
AS SELECT site_id, day, reason, sum(hits) AS hits
FROM filtered_daily
GROUP BY site_id, day, reason;
