package schema

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// hooks are steps of a migration that plain idempotent SQL cannot express:
// they run after the migration's statements, inspect what is there and
// finish what an interrupted run left, so they too can be run again.
var hooks = map[uint32]func(context.Context, driver.Conn, *slog.Logger) error{
	10: visitsRebuild,
}

// companyDailyKey is company_daily's sorting key from migration 0010 on: a
// company's days are adjacent, so the company page and the feed's second
// phase read a few granules instead of most of the site's.
const companyDailyKey = "site_id, company_id, day"

// companyDailyDDL is company_daily as migration 0010 leaves it (%s is the
// table name). visits counts visits by the hit that opened them (a visit
// is counted on the day it began); sources counts them by how they came;
// countries counts pageviews by the visitor's country.
const companyDailyDDL = `
CREATE TABLE %s
(
    site_id          LowCardinality(String),
    company_id       String,
    day              Date,
    company_name     SimpleAggregateFunction(anyLast, String),
    company_domain   SimpleAggregateFunction(anyLast, String),
    company_industry SimpleAggregateFunction(anyLast, String),
    company_size     SimpleAggregateFunction(anyLast, String),
    network_type     SimpleAggregateFunction(anyLast, String),
    country          SimpleAggregateFunction(anyLast, String),
    hits             SimpleAggregateFunction(sum, UInt64),
    pageviews        SimpleAggregateFunction(sum, UInt64),
    engaged_ms       SimpleAggregateFunction(sum, UInt64),
    visits           SimpleAggregateFunction(sum, UInt64),
    visitors         AggregateFunction(uniqExact, UInt64),
    first_seen       SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen        SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    sources          SimpleAggregateFunction(sumMap, Map(String, UInt64)),
    countries        SimpleAggregateFunction(sumMap, Map(String, UInt64))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (` + companyDailyKey + `)
TTL day + INTERVAL 800 DAY DELETE
SETTINGS non_replicated_deduplication_window = 10000`

// companyDailyCopy carries the aggregates of the old company_daily over.
// Their visits were visitor-days, the best count there was before visits
// were built; they had no sources, and their countries map is the
// company's country with its pageviews.
const companyDailyCopy = `
INSERT INTO company_daily_next
    (site_id, company_id, day, company_name, company_domain, network_type, country,
     hits, pageviews, engaged_ms, visits, visitors, first_seen, last_seen, countries)
SELECT site_id, company_id, day, anyLast(company_name), anyLast(company_domain), anyLast(network_type), anyLast(country),
       sum(hits), sum(pageviews), sum(engaged_ms), uniqExactMerge(visits), uniqExactMergeState(visitors),
       min(first_seen), max(last_seen), map(anyLast(country), sum(pageviews))
FROM company_daily
GROUP BY site_id, company_id, day`

const companyDailyMV = `
CREATE MATERIALIZED VIEW IF NOT EXISTS company_daily_mv TO company_daily AS
SELECT
    site_id,
    company_id,
    toDate(ts) AS day,
    anyLast(company_name) AS company_name,
    anyLast(company_domain) AS company_domain,
    anyLast(company_industry) AS company_industry,
    anyLast(company_size) AS company_size,
    anyLast(network_type) AS network_type,
    anyLast(country) AS country,
    count() AS hits,
    countIf(type = 'pageview') AS pageviews,
    sum(engaged_ms) AS engaged_ms,
    sum(new_visit) AS visits,
    uniqExactState(visitor_id) AS visitors,
    min(ts) AS first_seen,
    max(ts) AS last_seen,
    sumMapIf(CAST(map(toString(h.source), toUInt64(1)), 'Map(String, UInt64)'), new_visit = 1) AS sources,
    sumMapIf(CAST(map(toString(h.country), toUInt64(1)), 'Map(String, UInt64)'), type = 'pageview') AS countries
FROM hits AS h
WHERE company_id != ''
GROUP BY site_id, company_id, day`

// companyPagesSelect is a company's pages per day from hits: what
// company_pages_daily is filled with once and kept by its view.
const companyPagesSelect = `
SELECT site_id, company_id, toDate(ts) AS day, path,
       maxIf(title, type = 'pageview') AS title,
       countIf(type = 'pageview') AS pageviews,
       sum(engaged_ms) AS engaged_ms
FROM hits
WHERE company_id != ''
GROUP BY site_id, company_id, day, path`

const (
	companyPagesFill = `INSERT INTO company_pages_daily` + companyPagesSelect
	companyPagesMV   = `CREATE MATERIALIZED VIEW IF NOT EXISTS company_pages_daily_mv TO company_pages_daily AS` + companyPagesSelect
)

// visitsRebuild re-sorts company_daily by company with the visit-based
// columns, and fills company_pages_daily from the stored hits. Hits
// written while it runs would miss the new views, so processors must be
// stopped for it: `leadpipe serve` migrates before it starts them, a
// split deployment runs `leadpipe migrate` with its processors stopped.
func visitsRebuild(ctx context.Context, conn driver.Conn, log *slog.Logger) error {
	exec := func(what, stmt string) error {
		if err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
	var key string
	if err := conn.QueryRow(ctx, `SELECT sorting_key FROM system.tables
		WHERE database = currentDatabase() AND name = 'company_daily'`).Scan(&key); err != nil {
		return fmt.Errorf("reading company_daily's sorting key: %w", err)
	}
	if key != companyDailyKey {
		log.Info("rebuilding company_daily sorted by company; processors must be stopped meanwhile")
		for _, s := range []struct{ what, stmt string }{
			{"dropping the old company_daily view", "DROP VIEW IF EXISTS company_daily_mv"},
			{"dropping a half-built company_daily", "DROP TABLE IF EXISTS company_daily_next"},
			{"creating the new company_daily", fmt.Sprintf(companyDailyDDL, "company_daily_next")},
			{"copying company_daily", companyDailyCopy},
			{"swapping in the new company_daily", "EXCHANGE TABLES company_daily AND company_daily_next"},
		} {
			if err := exec(s.what, s.stmt); err != nil {
				return err
			}
		}
	}
	if err := exec("creating company_daily's view", companyDailyMV); err != nil {
		return err
	}
	if err := exec("dropping the old company_daily", "DROP TABLE IF EXISTS company_daily_next"); err != nil {
		return err
	}
	var views uint64
	if err := conn.QueryRow(ctx, `SELECT count() FROM system.tables
		WHERE database = currentDatabase() AND name = 'company_pages_daily_mv'`).Scan(&views); err != nil {
		return fmt.Errorf("looking for company_pages_daily_mv: %w", err)
	}
	if views == 0 {
		for _, s := range []struct{ what, stmt string }{
			{"emptying a half-filled company_pages_daily", "TRUNCATE TABLE company_pages_daily"},
			{"filling company_pages_daily from hits", companyPagesFill},
			{"creating company_pages_daily's view", companyPagesMV},
		} {
			if err := exec(s.what, s.stmt); err != nil {
				return err
			}
		}
	}
	return nil
}
