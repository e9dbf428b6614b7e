package store_test

import (
	"context"
	"strings"
	"testing"

	"github.com/leadpipe/leadpipe/internal/testenv"
	"github.com/leadpipe/leadpipe/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestSplit(t *testing.T) {
	t.Parallel()
	got := store.Split("-- a comment\nCREATE TABLE a (x UInt8)\nENGINE = Memory;\n\n-- another\nCREATE VIEW b AS SELECT 1;\nSELECT 2")
	want := []string{"CREATE TABLE a (x UInt8)\nENGINE = Memory", "CREATE VIEW b AS SELECT 1", "SELECT 2"}
	if len(got) != len(want) {
		t.Fatalf("got %d statements %q, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("statement %d = %q, want %q", i, got[i], want[i])
		}
	}
}

func TestMigrationsAreNumberedInOrder(t *testing.T) {
	t.Parallel()
	ms, err := store.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range ms {
		if m.Version != uint32(i+1) {
			t.Errorf("migration %d is numbered %04d: numbers must run 0001, 0002, … without gaps", i, m.Version)
		}
		if len(m.Statements) == 0 {
			t.Errorf("migration %04d_%s has no statements", m.Version, m.Name)
		}
	}
}

// TestMigrateIdempotent applies the schema to a fresh database on the real
// engine, then again: the second run applies nothing and changes nothing.
func TestMigrateIdempotent(t *testing.T) {
	t.Parallel()
	conn, _ := testenv.Database(t) // applies every migration once
	ctx := context.Background()
	tables := func() []string {
		rows, err := conn.Query(ctx, "SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				t.Fatal(err)
			}
			out = append(out, n)
		}
		return out
	}
	before := tables()
	for _, want := range []string{"company_daily", "company_daily_mv", "filtered_daily", "hits", "schema_migrations"} {
		found := false
		for _, n := range before {
			found = found || n == want
		}
		if !found {
			t.Errorf("table %s missing after migrating; have %v", want, before)
		}
	}
	n, err := store.Migrate(ctx, conn, testenv.Quiet())
	if err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	if n != 0 {
		t.Errorf("second migrate applied %d migrations, want 0", n)
	}
	var recorded uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM schema_migrations").Scan(&recorded); err != nil {
		t.Fatal(err)
	}
	ms, _ := store.Migrations()
	if recorded != uint64(len(ms)) {
		t.Errorf("schema_migrations has %d rows, want %d (one per migration)", recorded, len(ms))
	}
	if after := tables(); len(after) != len(before) {
		t.Errorf("tables changed on second migrate: %v → %v", before, after)
	}
}

// TestMigrationReRunAfterPartialFailure re-runs every statement of every
// migration on an already migrated database, as happens when a migration
// is interrupted before it is recorded: each statement must be harmless.
func TestMigrationStatementsRerunnable(t *testing.T) {
	t.Parallel()
	conn, _ := testenv.Database(t)
	ms, _ := store.Migrations()
	for _, m := range ms {
		for i, stmt := range m.Statements {
			if err := conn.Exec(context.Background(), stmt); err != nil {
				t.Errorf("migration %04d statement %d is not safe to re-run: %v", m.Version, i+1, err)
			}
		}
	}
}

// TestVisitsMigrationCarriesAggregatesOver: a company_daily built before
// migration 0010 (sorted by day, visits counted as visitor-days) is rebuilt
// sorted by company with its figures intact, company_pages_daily is filled
// from the stored hits, hits written afterwards feed the new views, and
// running the migration again changes nothing.
func TestVisitsMigrationCarriesAggregatesOver(t *testing.T) {
	t.Parallel()
	conn, _ := testenv.DatabaseAt(t, 9)
	ctx := context.Background()
	exec := func(q string, args ...any) {
		t.Helper()
		if err := conn.Exec(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// Company a: visitor 1 on two days (two visitor-days), visitor 2 once;
	// company b: one visitor, one pageview and one engagement hit.
	exec(`INSERT INTO hits (site_id, ts, hit_id, type, url, path, title, visitor_id, engaged_ms, company_id, company_name, country)
		VALUES ('s', '2026-11-01 10:00:00', 'h1', 'pageview', 'https://x/', '/', 'Home', 1, 0, 'ca', 'A', 'DE'),
		       ('s', '2026-11-01 10:01:00', 'h2', 'pageview', 'https://x/p', '/p', 'Pricing', 1, 0, 'ca', 'A', 'DE'),
		       ('s', '2026-11-02 09:00:00', 'h3', 'pageview', 'https://x/', '/', 'Home', 1, 0, 'ca', 'A', 'DE'),
		       ('s', '2026-11-02 09:30:00', 'h4', 'pageview', 'https://x/', '/', 'Home', 2, 0, 'ca', 'A', 'DE'),
		       ('s', '2026-11-01 12:00:00', 'h5', 'pageview', 'https://x/jobs', '/jobs', 'Jobs', 3, 0, 'cb', 'B', 'FR'),
		       ('s', '2026-11-01 12:01:00', 'h6', 'engagement', 'https://x/jobs', '/jobs', '', 3, 42000, 'cb', 'B', 'FR')`)
	type fig struct{ pageviews, visits, visitors, engagedMS uint64 }
	figures := func() map[string]fig {
		t.Helper()
		rows, err := conn.Query(ctx, `SELECT company_id, sum(pageviews), `+
			`toUInt64(sum(visits)), uniqExactMerge(visitors), sum(engaged_ms) FROM company_daily GROUP BY company_id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[string]fig{}
		for rows.Next() {
			var id string
			var f fig
			if err := rows.Scan(&id, &f.pageviews, &f.visits, &f.visitors, &f.engagedMS); err != nil {
				t.Fatal(err)
			}
			out[id] = f
		}
		return out
	}
	var before map[string]fig
	{
		rows, err := conn.Query(ctx, `SELECT company_id, sum(pageviews), uniqExactMerge(visits), uniqExactMerge(visitors), sum(engaged_ms)
			FROM company_daily GROUP BY company_id`)
		if err != nil {
			t.Fatal(err)
		}
		before = map[string]fig{}
		for rows.Next() {
			var id string
			var f fig
			if err := rows.Scan(&id, &f.pageviews, &f.visits, &f.visitors, &f.engagedMS); err != nil {
				t.Fatal(err)
			}
			before[id] = f
		}
		rows.Close()
	}
	if want := (fig{4, 3, 2, 0}); before["ca"] != want {
		t.Fatalf("company a before the migration: %+v, want %+v", before["ca"], want)
	}
	if _, err := store.MigrateTo(ctx, conn, testenv.Quiet(), 10); err != nil {
		t.Fatal(err)
	}
	var key string
	if err := conn.QueryRow(ctx, "SELECT sorting_key FROM system.tables WHERE database = currentDatabase() AND name = 'company_daily'").Scan(&key); err != nil {
		t.Fatal(err)
	}
	if key != "site_id, company_id, day" {
		t.Errorf("company_daily sorted by %q after the migration", key)
	}
	after := figures()
	for id, f := range before {
		if after[id] != f {
			t.Errorf("company %s: %+v after the migration, %+v before", id, after[id], f)
		}
	}
	pages := func() string {
		t.Helper()
		var s string
		if err := conn.QueryRow(ctx, `SELECT arrayStringConcat(groupArray(r), ' ') FROM (
			SELECT concat(company_id, path, ':', toString(sum(pageviews)), '/', toString(sum(engaged_ms))) AS r
			FROM company_pages_daily GROUP BY company_id, path ORDER BY company_id, path)`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	if got, want := pages(), "ca/:3/0 ca/p:1/0 cb/jobs:1/42000"; got != want {
		t.Errorf("company_pages_daily = %q, want %q", got, want)
	}

	// Run again, as after an interruption before it was recorded.
	exec("DELETE FROM schema_migrations WHERE version = 10")
	if n, err := store.Migrate(ctx, conn, testenv.Quiet()); err != nil || n == 0 {
		t.Fatalf("re-running migration 10: %d applied, %v", n, err)
	}
	if again := figures(); again["ca"] != after["ca"] || again["cb"] != after["cb"] {
		t.Errorf("figures changed on re-run: %+v → %+v", after, again)
	}
	if got, want := pages(), "ca/:3/0 ca/p:1/0 cb/jobs:1/42000"; got != want {
		t.Errorf("company_pages_daily after re-run = %q, want %q", got, want)
	}

	// A hit that opens a visit, stored now, reaches every view.
	exec(`INSERT INTO hits (site_id, ts, hit_id, type, url, path, referrer, source, title, visitor_id, visit_id, visit_start, new_visit, company_id, company_name, country)
		VALUES ('s', '2026-11-03 08:00:00', 'h7', 'pageview', 'https://x/p', '/p', 'https://www.google.com/', 'search', 'Pricing', 1, 77, '2026-11-03 08:00:00', 1, 'ca', 'A', 'AT')`)
	if got := figures()["ca"]; got.visits != 4 || got.pageviews != 5 {
		t.Errorf("company a after a new visit: %+v, want 4 visits and 5 pageviews", got)
	}
	var sources, countries map[string]uint64
	if err := conn.QueryRow(ctx, "SELECT sumMap(sources), sumMap(countries) FROM company_daily WHERE company_id = 'ca'").Scan(&sources, &countries); err != nil {
		t.Fatal(err)
	}
	if sources["search"] != 1 || len(sources) != 1 || countries["DE"] != 4 || countries["AT"] != 1 {
		t.Errorf("sources %v, countries %v", sources, countries)
	}
	var entry, source string
	var pv uint64
	if err := conn.QueryRow(ctx, "SELECT argMinMerge(entry_page), argMinMerge(source), sum(pageviews) FROM visits WHERE visit_id = 77").Scan(&entry, &source, &pv); err != nil {
		t.Fatal(err)
	}
	if entry != "/p" || source != "search" || pv != 1 {
		t.Errorf("visit 77: entry %q source %q pageviews %d", entry, source, pv)
	}
}

// TestPerSiteRetention: raw hits and visits expire by the retention their
// site had when they were stored (a row's retention_days), not one
// table-wide period.
func TestPerSiteRetention(t *testing.T) {
	t.Parallel()
	conn, _ := testenv.Database(t)
	ctx := context.Background()
	for _, r := range []struct {
		site string
		days uint16
	}{{"short", 1}, {"default", 180}} {
		if err := conn.Exec(ctx, `INSERT INTO hits (site_id, ts, hit_id, type, url, path, visitor_id, visit_id, visit_start, new_visit,
			company_id, company_name, retention_days)
			VALUES (?, now64(3) - INTERVAL 3 DAY, 'h1', 'pageview', 'https://x/', '/', 1, 7, now64(3) - INTERVAL 3 DAY, 1, 'c1', 'Org', ?)`,
			r.site, r.days); err != nil {
			t.Fatal(err)
		}
	}
	for _, stmt := range []string{"OPTIMIZE TABLE hits FINAL", "OPTIMIZE TABLE visits FINAL"} {
		if err := conn.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		q    string
		site string
		want uint64
	}{
		{"SELECT count() FROM hits WHERE site_id = ?", "short", 0},
		{"SELECT count() FROM visits WHERE site_id = ?", "short", 0},
		{"SELECT count() FROM hits WHERE site_id = ?", "default", 1},
		{"SELECT count() FROM visits WHERE site_id = ?", "default", 1},
		// The aggregates are company-level and keep their 800 days.
		{"SELECT count() FROM company_daily WHERE site_id = ?", "short", 1},
	} {
		var n uint64
		if err := conn.QueryRow(ctx, c.q, c.site).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != c.want {
			t.Errorf("%s [%s] = %d after the TTL merge, want %d", c.q, c.site, n, c.want)
		}
	}
}

// TestEveryTableHasARetention: no table of leadpipe keeps rows forever;
// each MergeTree table has a TTL (schema_migrations, a list of applied
// migrations, excepted).
func TestEveryTableHasARetention(t *testing.T) {
	t.Parallel()
	conn, _ := testenv.Database(t)
	rows, err := conn.Query(context.Background(), `SELECT name, create_table_query FROM system.tables
		WHERE database = currentDatabase() AND engine LIKE '%MergeTree' AND name != 'schema_migrations'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var name, create string
		if err := rows.Scan(&name, &create); err != nil {
			t.Fatal(err)
		}
		n++
		if !strings.Contains(create, " TTL ") {
			t.Errorf("table %s has no TTL: %s", name, create)
		}
	}
	if n < 8 {
		t.Errorf("found %d tables; the query is wrong", n)
	}
}
