package schema_test

import (
	"context"
	"testing"

	"github.com/leadpipe/leadpipe/internal/testenv"
	"github.com/leadpipe/leadpipe/schema"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestSplit(t *testing.T) {
	got := schema.Split("-- a comment\nCREATE TABLE a (x UInt8)\nENGINE = Memory;\n\n-- another\nCREATE VIEW b AS SELECT 1;\nSELECT 2")
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
	ms, err := schema.Migrations()
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
	n, err := schema.Migrate(ctx, conn, testenv.Quiet())
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
	ms, _ := schema.Migrations()
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
	conn, _ := testenv.Database(t)
	ms, _ := schema.Migrations()
	for _, m := range ms {
		for i, stmt := range m.Statements {
			if err := conn.Exec(context.Background(), stmt); err != nil {
				t.Errorf("migration %04d statement %d is not safe to re-run: %v", m.Version, i+1, err)
			}
		}
	}
}
