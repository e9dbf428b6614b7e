// Package backup makes and restores backups of an installation: the
// ClickHouse database with ClickHouse's own BACKUP and RESTORE (parts
// copied as they are, so materialized views are not fed twice), and the
// JetStream key-value buckets (accounts, sites, hashed keys, users, the
// visitor-id secret, salts, saved feeds, erasure markers) as JSON.
//
// The HITS and DEADLETTERS streams are deliberately not backed up: they
// hold visitor IPs, which leadpipe keeps only until a hit is processed.
// Hits waiting there at backup time are in no backup; after a restore the
// collector's clients retry, and the rest is the few seconds of traffic a
// processor had not written yet.
//
// A backup is a directory <dir>/<name>/ holding manifest.json (row counts
// and checksums of every table, entries of every bucket), nats/*.json, and
// — for the managed engine — clickhouse/, the engine's backup. With an
// external ClickHouse the engine's backup is on the server's backup disk.
//
// It imports store (the BACKUP and RESTORE statements) and internal/bus and
// internal/visitorid; no stage.
package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadpipe/leadpipe/internal/bus"
	"github.com/leadpipe/leadpipe/internal/visitorid"
	"github.com/leadpipe/leadpipe/store"
)

// Buckets are the key-value buckets a backup holds. The logins bucket
// (sign-ins in progress, ten minutes), the RDAP answers (a cache the
// registries refill) and the identifications (pseudonymous, 30 days) are
// not among them.
var Buckets = []string{bus.AccountsBucket, bus.SitesBucket, bus.KeysBucket, bus.UsersBucket,
	bus.SecretsBucket, bus.SaltsBucket, bus.FeedsBucket, bus.ErasedBucket, bus.LearnedBucket}

// Manifest describes a backup; restore checks the restored database
// against it.
type Manifest struct {
	Name     string    `json:"name"`
	Created  time.Time `json:"created"`
	Database string    `json:"database"`
	// Destination is where the engine wrote its part: File('…') under the
	// managed engine's backup directory, or Disk('<disk>', '…').
	Destination string       `json:"destination"`
	Tables      []TableSum   `json:"tables"`
	Buckets     []BucketDump `json:"buckets"`
}

// TableSum is a table's row count and an order-independent checksum of
// its rows.
type TableSum = store.TableSum

// BucketDump is how many entries of a bucket the backup holds.
type BucketDump struct {
	Bucket  string `json:"bucket"`
	Entries int    `json:"entries"`
}

type entry struct {
	Key   string `json:"key"`
	Value []byte `json:"value"`
}

// Target is where the ClickHouse part of a backup goes.
type Target struct {
	// Dir holds the backups (manifests, buckets; the engine's part too when
	// Disk is empty: the managed engine's backups.allowed_path).
	Dir string
	// Disk is a backup disk of an external ClickHouse (its
	// backups.allowed_disk); empty for the managed engine.
	Disk string
}

var nameRE = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z$`)

// NewName is a backup's name: its UTC start time, so names sort by age.
func NewName(now time.Time) string { return now.UTC().Format("20060102T150405Z") }

// destination is the engine's backup destination of name, as SQL.
func (t Target) destination(name string) (string, error) {
	if !nameRE.MatchString(name) {
		return "", fmt.Errorf("backup name %q is not like 20261201T120000Z", name)
	}
	return store.BackupDestination(t.Disk, name)
}

// Create backs up database and the buckets under t as name. The tables are
// checksummed from the engine's backup itself (read back as a Backup
// database), so the manifest describes what the backup holds even while
// processors keep writing.
func Create(ctx context.Context, conn driver.Conn, js jetstream.JetStream, database string, t Target, name string) (Manifest, error) {
	m := Manifest{Name: name, Created: time.Now().UTC(), Database: database}
	var err error
	if m.Destination, err = t.destination(name); err != nil { // checks the name too
		return Manifest{}, err
	}
	dir := filepath.Join(t.Dir, name)
	if err := os.MkdirAll(filepath.Join(dir, "nats"), 0o700); err != nil {
		return Manifest{}, fmt.Errorf("creating %s: %w", dir, err)
	}
	if m.Tables, err = store.BackupDatabase(ctx, conn, database, m.Destination); err != nil {
		return Manifest{}, err
	}
	for _, b := range Buckets {
		n, err := dumpBucket(ctx, js, b, filepath.Join(dir, "nats", b+".json"))
		if err != nil {
			return Manifest{}, err
		}
		m.Buckets = append(m.Buckets, BucketDump{b, n})
	}
	raw, _ := json.MarshalIndent(m, "", "  ")
	if err := writeFile(filepath.Join(dir, "manifest.json"), raw); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// Sums returns the row count and checksum of every table of database.
func Sums(ctx context.Context, conn driver.Conn, database string) ([]TableSum, error) {
	return store.Sums(ctx, conn, database)
}

func dumpBucket(ctx context.Context, js jetstream.JetStream, bucket, path string) (int, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return 0, fmt.Errorf("opening bucket %s: %w", bucket, err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return 0, fmt.Errorf("listing bucket %s: %w", bucket, err)
	}
	entries := []entry{}
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted meanwhile
		} else if err != nil {
			return 0, fmt.Errorf("reading %s in bucket %s: %w", k, bucket, err)
		}
		entries = append(entries, entry{k, e.Value()})
	}
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.Key, b.Key) })
	raw, _ := json.Marshal(entries)
	return len(entries), writeFile(path, raw)
}

// writeFile writes a file readable by its owner only: buckets hold hashed
// keys and the visitor-id secret.
func writeFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// Read returns the manifest of backup name under dir.
func Read(dir, name string) (Manifest, error) {
	if !nameRE.MatchString(name) {
		return Manifest{}, fmt.Errorf("backup name %q is not like 20261201T120000Z", name)
	}
	raw, err := os.ReadFile(filepath.Join(dir, name, "manifest.json"))
	if err != nil {
		return Manifest{}, fmt.Errorf("backup %s: %w", name, err)
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return Manifest{}, fmt.Errorf("backup %s: manifest: %w", name, err)
	}
	return m, nil
}

// Restore replaces database and the buckets with backup name: the
// database is dropped and restored from the engine's backup, then every
// table's rows are checked against the manifest; each bucket is made to
// hold exactly the backup's entries, but for erasure markers, which are
// merged, and the visitors they name are erased again in the restored
// database (opened with openDB). Nothing may write meanwhile: stop the
// pipeline first.
func Restore(ctx context.Context, conn driver.Conn, openDB func() (driver.Conn, error), js jetstream.JetStream, t Target, name string) (Manifest, error) {
	m, err := Read(t.Dir, name)
	if err != nil {
		return Manifest{}, err
	}
	destination, err := t.destination(name)
	if err != nil {
		return Manifest{}, err
	}
	if err := store.RestoreDatabase(ctx, conn, m.Database, destination); err != nil {
		return Manifest{}, err
	}
	got, err := Sums(ctx, conn, m.Database)
	if err != nil {
		return Manifest{}, err
	}
	if !slices.Equal(got, m.Tables) {
		return Manifest{}, fmt.Errorf("the restored tables differ from the backup's manifest: got %v, want %v", got, m.Tables)
	}
	for _, b := range m.Buckets {
		// Erasure markers are merged, not replaced: erasures made after the
		// backup must survive its restore.
		merge := b.Bucket == bus.ErasedBucket
		if err := restoreBucket(ctx, js, b.Bucket, filepath.Join(t.Dir, name, "nats", b.Bucket+".json"), b.Entries, merge); err != nil {
			return Manifest{}, err
		}
	}
	if err := reErase(ctx, openDB, js); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// reErase erases again, in the restored database, every visitor whose
// marker the erased bucket holds: a backup made before an erasure still
// holds the visitor's rows. Markers outlive backups (bus.ErasedKept).
func reErase(ctx context.Context, openDB func() (driver.Conn, error), js jetstream.JetStream) error {
	kv, err := js.KeyValue(ctx, bus.ErasedBucket)
	if err != nil {
		return fmt.Errorf("opening bucket %s: %w", bus.ErasedBucket, err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("listing bucket %s: %w", bus.ErasedBucket, err)
	}
	var markers []string
	for k := range keys.Keys() {
		markers = append(markers, k)
	}
	if len(markers) == 0 {
		return nil
	}
	conn, err := openDB()
	if err != nil {
		return fmt.Errorf("opening the restored database: %w", err)
	}
	defer conn.Close()
	for _, k := range markers {
		site, vid, ok := visitorid.ParseErasedKey(k)
		if !ok {
			continue
		}
		if _, err := store.New(conn).EraseVisitor(ctx, site, vid); err != nil {
			return fmt.Errorf("erasing again a visitor erased after the backup: %w", err)
		}
	}
	return nil
}

func restoreBucket(ctx context.Context, js jetstream.JetStream, bucket, path string, want int, merge bool) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", bucket, err)
	}
	var entries []entry
	if err := json.Unmarshal(raw, &entries); err != nil {
		return fmt.Errorf("bucket %s: %w", bucket, err)
	}
	if len(entries) != want {
		return fmt.Errorf("bucket %s: the backup holds %d entries, its manifest says %d", bucket, len(entries), want)
	}
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return fmt.Errorf("opening bucket %s: %w", bucket, err)
	}
	keep := map[string]bool{}
	for _, e := range entries {
		keep[e.Key] = true
		if _, err := kv.Put(ctx, e.Key, e.Value); err != nil {
			return fmt.Errorf("restoring %s in bucket %s: %w", e.Key, bucket, err)
		}
	}
	if merge {
		return nil
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("listing bucket %s: %w", bucket, err)
	}
	var extra []string
	for k := range keys.Keys() {
		if !keep[k] {
			extra = append(extra, k)
		}
	}
	for _, k := range extra {
		if err := kv.Purge(ctx, k); err != nil {
			return fmt.Errorf("removing %s from bucket %s: %w", k, bucket, err)
		}
	}
	return nil
}

// Prune removes the backups under dir older than keep (by their names),
// except the newest, and returns the names it removed. Backups on an
// external ClickHouse's disk are the disk's to expire.
func Prune(dir string, keep time.Duration, now time.Time) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() && nameRE.MatchString(e.Name()) {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	var removed []string
	for _, n := range names[:max(len(names)-1, 0)] {
		at, _ := time.Parse("20060102T150405Z", n)
		if now.Sub(at) <= keep {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, n)); err != nil {
			return removed, err
		}
		removed = append(removed, n)
	}
	return removed, nil
}
