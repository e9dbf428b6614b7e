package store_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/leadpipe/leadpipe/internal/testenv"
	"github.com/leadpipe/leadpipe/store"
)

// tablesWithColumn lists every table of the database with the column,
// from system.columns, whatever erasure derives: views that store no rows
// of their own and the Records apart.
func tablesWithColumn(t *testing.T, conn driver.Conn, column string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT DISTINCT c.table FROM system.columns AS c
		INNER JOIN system.tables AS t ON t.database = c.database AND t.name = c.table
		WHERE c.database = currentDatabase() AND c.name = ? AND t.engine NOT IN ('View', 'MaterializedView')
		ORDER BY c.table`, column)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var table string
		if err := rows.Scan(&table); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(store.Records, table) {
			out = append(out, table)
		}
	}
	return out
}

// rowsIn runs count, a query of {table:Identifier}, {site:String} and
// {visitor:UInt64}, on each table.
func rowsIn(t *testing.T, conn driver.Conn, tables []string, count, site string, visitor uint64) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	for _, table := range tables {
		ctx := clickhouse.Context(context.Background(), clickhouse.WithParameters(clickhouse.Parameters{
			"table": table, "site": site, "visitor": fmt.Sprint(visitor)}))
		var n uint64
		if err := conn.QueryRow(ctx, count).Scan(&n); err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		out[table] = n
	}
	return out
}

// TestErasureCoversEveryTable writes hits of two visitors of two sites
// through the store, so that every table the views fill has rows, then
// erases one visitor and one site. Every table with a visitor_id (a
// site_id) column, listed from system.columns, must have rows of the
// erased visitor (site) before and none after, and keep the others'. A
// new table that erasure missed fails here; one the test gives no rows
// fails too, so that the test is made to cover it.
func TestErasureCoversEveryTable(t *testing.T) {
	t.Parallel()
	conn, _ := testenv.Database(t)
	ctx := context.Background()
	db := store.New(conn)
	now := time.Now().UTC().Truncate(time.Millisecond)
	var hits []*store.Hit
	for i, site := range []string{"erased", "kept"} {
		for visitor := uint64(1); visitor <= 2; visitor++ {
			hits = append(hits, &store.Hit{SiteID: site, TS: now, ReceivedAt: now, HitID: fmt.Sprintf("h%d%d", i, visitor),
				Type: "pageview", URL: "https://x.example/pricing", Path: "/pricing", Source: "direct",
				VisitorID: visitor, VisitID: visitor*10 + uint64(i), VisitStart: now, NewVisit: 1, Consent: "granted",
				CompanyID: "c1", CompanyName: "Org", NetworkType: "business", Country: "DE", RetentionDays: 180})
		}
	}
	if err := db.InsertHits(ctx, "t1", len(hits), slices.Values(hits)); err != nil {
		t.Fatal(err)
	}
	if err := db.InsertFiltered(ctx, "t1", []store.Filtered{
		{SiteID: "erased", TS: now, Reason: "residential", HitKey: 1}, {SiteID: "kept", TS: now, Reason: "residential", HitKey: 2}}); err != nil {
		t.Fatal(err)
	}

	if err := db.WriteSites(ctx, []store.Site{{SiteID: "erased", Name: "Erased"}, {SiteID: "kept", Name: "Kept"}}); err != nil {
		t.Fatal(err)
	}

	byVisitor := tablesWithColumn(t, conn, "visitor_id")
	if len(byVisitor) < 2 {
		t.Fatalf("tables with a visitor_id: %v; want hits and visits at least", byVisitor)
	}
	const visitorRows = "SELECT count() FROM {table:Identifier} WHERE site_id = {site:String} AND visitor_id = {visitor:UInt64}"
	for table, n := range rowsIn(t, conn, byVisitor, visitorRows, "erased", 1) {
		if n == 0 {
			t.Fatalf("%s has no rows of the visitor before the erasure: give the test rows for it", table)
		}
	}
	if n, err := db.EraseVisitor(ctx, "erased", 1); err != nil || n != 1 {
		t.Fatalf("EraseVisitor = %d, %v; want 1 hit", n, err)
	}
	for table, n := range rowsIn(t, conn, byVisitor, visitorRows, "erased", 1) {
		if n != 0 {
			t.Errorf("%s keeps %d rows of the erased visitor: visitor erasure misses it", table, n)
		}
	}
	for table, n := range rowsIn(t, conn, byVisitor, visitorRows, "erased", 2) {
		if n == 0 {
			t.Errorf("%s lost the other visitor's rows", table)
		}
	}

	bySite := tablesWithColumn(t, conn, "site_id")
	if len(bySite) < 6 {
		t.Fatalf("tables with a site_id: %v; want six at least", bySite)
	}
	const siteRows = "SELECT count() FROM {table:Identifier} WHERE site_id = {site:String}"
	for table, n := range rowsIn(t, conn, bySite, siteRows, "erased", 0) {
		if n == 0 {
			t.Fatalf("%s has no rows of the site before the erasure: give the test rows for it", table)
		}
	}
	if err := db.EraseSite(ctx, "erased"); err != nil {
		t.Fatal(err)
	}
	for table, n := range rowsIn(t, conn, bySite, siteRows, "erased", 0) {
		if n != 0 {
			t.Errorf("%s keeps %d rows of the erased site: site erasure misses it", table, n)
		}
	}
	for table, n := range rowsIn(t, conn, bySite, siteRows, "kept", 0) {
		if n == 0 {
			t.Errorf("%s lost the other site's rows", table)
		}
	}
	if left, err := db.SitesWithRows(ctx, []string{"erased", "kept"}); err != nil || !slices.Equal(left, []string{"kept"}) {
		t.Errorf("SitesWithRows = %v, %v; want [kept]", left, err)
	}
}
