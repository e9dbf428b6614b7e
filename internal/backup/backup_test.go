package backup_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/leadpipe/leadpipe/internal/backup"
	"github.com/leadpipe/leadpipe/internal/bus"
	"github.com/leadpipe/leadpipe/internal/tenant"
	"github.com/leadpipe/leadpipe/internal/testenv"
	"github.com/leadpipe/leadpipe/internal/visitorid"
	"github.com/leadpipe/leadpipe/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestBackupWipeRestore: a backup of a database with data in every kind of
// table (raw hits, the views' aggregates, the audit log) and of the
// buckets, then the database dropped and the buckets changed, then the
// restore: every table has the same rows (count and checksum, computed
// here independently of the manifest) and the buckets the same entries.
func TestBackupWipeRestore(t *testing.T) {
	conn, db := testenv.Database(t)
	b := testenv.Bus(t)
	ctx := context.Background()
	exec := func(q string, args ...any) {
		t.Helper()
		if err := conn.Exec(ctx, q, args...); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 50 {
		exec(`INSERT INTO hits (site_id, ts, received_at, hit_id, type, url, path, visitor_id, visit_id, visit_start, new_visit,
			consent, company_id, company_name, asn, as_org, network_type, engaged_ms)
			VALUES ('s1', now64(3) - ?, now64(3), ?, 'pageview', 'https://x/', '/p', ?, ?, now64(3) - ?, 1, 'granted', ?, 'Company', 1, 'Org', 'business', 1000)`,
			i*60, fmt.Sprintf("h%d", i), i%7, i, i*60, fmt.Sprintf("c%d", i%5))
	}
	exec(`INSERT INTO audit_log (ts, key_id, role, method, route, site_id, status, rows, remote) VALUES (now64(3), 'k', 'admin', 'GET', '/x', 's1', 200, 1, '127.0.0.1')`)
	tenants, err := tenant.Open(ctx, b.JS, testenv.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	site, err := tenants.CreateSite(ctx, "", "Example", "example.com")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := tenants.CreateKey(ctx, tenant.Key{Role: tenant.RoleAdmin, Sites: []string{site.ID}}); err != nil {
		t.Fatal(err)
	}
	before, err := backup.Sums(ctx, conn, db)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]uint64{}
	for _, s := range before {
		rows[s.Table] = s.Rows
	}
	for _, table := range []string{"hits", "visits", "company_daily", "company_pages_daily", "audit_log", "schema_migrations"} {
		if rows[table] == 0 {
			t.Fatalf("table %s is empty before the backup: the test would prove nothing (%v)", table, before)
		}
	}
	bucketsBefore := dumpBuckets(t, b)

	target := backup.Target{Dir: testenv.Engine(t).Backups()}
	name := backup.NewName(time.Now())
	m, err := backup.Create(ctx, conn, b.JS, db, target, name)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.Tables, before) {
		t.Fatalf("manifest sums %v, want %v", m.Tables, before)
	}
	info, err := os.Stat(filepath.Join(target.Dir, name, "nats", bus.KeysBucket+".json"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("bucket file: %v %v, want mode 0600", info, err)
	}

	// Wipe: the database gone, a bucket entry changed, one added.
	if err := conn.Exec(clickhouse.Context(ctx, clickhouse.WithParameters(clickhouse.Parameters{"db": db})), "DROP DATABASE {db:Identifier} SYNC"); err != nil {
		t.Fatal(err)
	}
	if _, err := tenants.CreateSite(ctx, "", "After", "after.example"); err != nil {
		t.Fatal(err)
	}
	if _, err := tenants.UpdateSite(ctx, site.ID, func(s *tenant.Site) { s.Name = "Changed" }); err != nil {
		t.Fatal(err)
	}

	if _, err := backup.Restore(ctx, conn, openDB(t, db), b.JS, target, name); err != nil {
		t.Fatal(err)
	}
	after, err := backup.Sums(ctx, conn, db)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(after, before) {
		t.Errorf("restored tables %v, want %v", after, before)
	}
	if got := dumpBuckets(t, b); got != bucketsBefore {
		t.Errorf("restored buckets differ:\n got %s\nwant %s", got, bucketsBefore)
	}
	// The restored schema is current: migrations have nothing to do.
	if n, err := store.Migrate(ctx, conn, testenv.Quiet()); err != nil || n != 0 {
		t.Errorf("migrating the restored database: %d applied, %v", n, err)
	}

	// A backup that does not match its manifest is refused.
	m.Tables[0].Checksum = "1"
	raw, _ := json.Marshal(m)
	if err := os.WriteFile(filepath.Join(target.Dir, name, "manifest.json"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Restore(ctx, conn, openDB(t, db), b.JS, target, name); err == nil || !strings.Contains(err.Error(), "differ") {
		t.Errorf("restoring against a wrong manifest: %v", err)
	}
}

func openDB(t *testing.T, db string) func() (driver.Conn, error) {
	return func() (driver.Conn, error) { return testenv.Engine(t).OpenDB(db) }
}

// TestErasuresOutliveARestore: a visitor erased after a backup was made
// stays erased when that backup is restored.
func TestErasuresOutliveARestore(t *testing.T) {
	conn, db := testenv.Database(t)
	b := testenv.Bus(t)
	ctx := context.Background()
	for i := range 20 {
		if err := conn.Exec(ctx, `INSERT INTO hits (site_id, ts, received_at, hit_id, type, url, path, visitor_id, visit_id, visit_start, new_visit,
			consent, company_id, company_name, asn, as_org, network_type)
			VALUES ('s1', now64(3), now64(3), ?, 'pageview', 'https://x/', '/', ?, ?, now64(3), 1, 'granted', 'c', 'C', 1, 'Org', 'business')`,
			fmt.Sprintf("h%d", i), 7+i%2, i); err != nil {
			t.Fatal(err)
		}
	}
	target := backup.Target{Dir: testenv.Engine(t).Backups()}
	name := backup.NewName(time.Now())
	if _, err := backup.Create(ctx, conn, b.JS, db, target, name); err != nil {
		t.Fatal(err)
	}
	erased, err := visitorid.OpenErased(ctx, b.JS, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := store.New(conn).EraseVisitor(ctx, "s1", 7); err != nil || n != 10 {
		t.Fatalf("erasing: %d, %v", n, err)
	}
	if err := erased.Add(ctx, "s1", 7); err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Restore(ctx, conn, openDB(t, db), b.JS, target, name); err != nil {
		t.Fatal(err)
	}
	count := func(vid uint64) (n uint64) {
		t.Helper()
		if err := conn.QueryRow(ctx, "SELECT count() FROM hits WHERE visitor_id = ?", vid).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(7); n != 0 {
		t.Errorf("the erased visitor has %d hits after the restore", n)
	}
	if n := count(8); n != 10 {
		t.Errorf("another visitor has %d hits after the restore, want 10", n)
	}
	kv, _ := b.JS.KeyValue(ctx, bus.ErasedBucket)
	if _, err := kv.Get(ctx, "s1.7"); err != nil {
		t.Errorf("the erasure marker is gone after the restore: %v", err)
	}
}

func dumpBuckets(t *testing.T, b *bus.Bus) string {
	t.Helper()
	ctx := context.Background()
	out := map[string]map[string]string{}
	for _, name := range backup.Buckets {
		kv, err := b.JS.KeyValue(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = map[string]string{}
		keys, err := kv.ListKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for k := range keys.Keys() {
			e, err := kv.Get(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			out[name][k] = string(e.Value())
		}
	}
	raw, _ := json.Marshal(out)
	return string(raw)
}

// TestPrune keeps backups younger than the limit, and the newest always.
func TestPrune(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, age := range []time.Duration{10 * 24 * time.Hour, 8 * 24 * time.Hour, 6 * 24 * time.Hour, time.Hour} {
		if err := os.MkdirAll(filepath.Join(dir, backup.NewName(now.Add(-age))), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(dir, "not-a-backup"), 0o700)
	removed, err := backup.Prune(dir, 7*24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"20261121T120000Z", "20261123T120000Z"}; !slices.Equal(removed, want) {
		t.Errorf("removed %v, want %v", removed, want)
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 3 {
		t.Errorf("%d entries left, want 2 backups and the other directory", len(left))
	}
	// Only old backups: the newest stays.
	removed, _ = backup.Prune(dir, time.Minute, now.Add(30*24*time.Hour))
	if len(removed) != 1 {
		t.Errorf("removed %v, want all but the newest", removed)
	}
}
