package store

import (
	"context"
	"fmt"
	"regexp"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Backups use ClickHouse's own BACKUP and RESTORE, on a connection to the
// server (not bound to leadpipe's database). ClickHouse takes no query
// parameters in BACKUP, RESTORE and a Backup database's engine arguments,
// so these statements are the only ones leadpipe assembles: from a
// database name, a disk name and a backup name that each match safeName
// (letters, digits, _ and -; nothing to escape) and are quoted as they
// are.
var safeName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_-]{0,127}$`)

// BackupDestination is the engine's backup destination of a backup name,
// as SQL: a directory under the managed engine's backups directory when
// disk is empty, else a backup disk of an external server (its
// backups.allowed_disk).
func BackupDestination(disk, name string) (string, error) {
	if !safeName.MatchString(name) {
		return "", fmt.Errorf("backup name %q: only letters, digits, _ and - are accepted", name)
	}
	if disk == "" {
		return "File('" + name + "/clickhouse')", nil
	}
	if !safeName.MatchString(disk) {
		return "", fmt.Errorf("backup disk %q: only letters, digits, _ and - are accepted", disk)
	}
	return "Disk('" + disk + "', '" + name + "')", nil
}

func quoteIdent(name string) (string, error) {
	if !safeName.MatchString(name) {
		return "", fmt.Errorf("database %q: only letters, digits, _ and - are accepted", name)
	}
	return "`" + name + "`", nil
}

// TableSum is a table's row count and an order-independent checksum of
// its rows.
type TableSum struct {
	Table    string `json:"table"`
	Rows     uint64 `json:"rows"`
	Checksum string `json:"checksum"`
}

const (
	dropDB     = "DROP DATABASE IF EXISTS {db:Identifier} SYNC"
	listTables = "SELECT name FROM system.tables WHERE database = {db:String} AND engine LIKE '%MergeTree' ORDER BY name"
	tableSum   = "SELECT count(), toString(sum(cityHash64(formatRow('TabSeparated', *)))) FROM {db:Identifier}.{table:Identifier}"
	// checkView is a read-only Backup database over a backup, to checksum
	// what the backup holds.
	checkView = "leadpipe_backup_check"
)

// BackupDatabase backs database up to destination (BackupDestination)
// and returns the sums of what the backup holds, read back from the
// backup itself (as a Backup database), so they describe it even while
// processors keep writing.
func BackupDatabase(ctx context.Context, conn driver.Conn, database, destination string) ([]TableSum, error) {
	db, err := quoteIdent(database)
	if err != nil {
		return nil, err
	}
	if err := conn.Exec(ctx, "BACKUP DATABASE "+db+" TO "+destination); err != nil {
		return nil, fmt.Errorf("BACKUP DATABASE %s TO %s: %w", database, destination, err)
	}
	drop := clickhouse.Context(ctx, clickhouse.WithParameters(clickhouse.Parameters{"db": checkView}))
	if err := conn.Exec(drop, dropDB); err != nil {
		return nil, err
	}
	if err := conn.Exec(ctx, "CREATE DATABASE "+checkView+" ENGINE = Backup('"+database+"', "+destination+")"); err != nil {
		return nil, fmt.Errorf("reading the backup back: %w", err)
	}
	defer conn.Exec(drop, dropDB)
	return Sums(ctx, conn, checkView)
}

// RestoreDatabase drops database and restores it from destination.
func RestoreDatabase(ctx context.Context, conn driver.Conn, database, destination string) error {
	db, err := quoteIdent(database)
	if err != nil {
		return err
	}
	pctx := clickhouse.Context(ctx, clickhouse.WithParameters(clickhouse.Parameters{"db": database}))
	if err := conn.Exec(pctx, dropDB); err != nil {
		return fmt.Errorf("dropping %s before the restore: %w", database, err)
	}
	if err := conn.Exec(ctx, "RESTORE DATABASE "+db+" FROM "+destination); err != nil {
		return fmt.Errorf("RESTORE DATABASE %s FROM %s: %w", database, destination, err)
	}
	return nil
}

// Sums returns the row count and checksum of every table of database.
func Sums(ctx context.Context, conn driver.Conn, database string) ([]TableSum, error) {
	tables, err := readAll(clickhouse.Context(ctx, clickhouse.WithParameters(clickhouse.Parameters{"db": database})), conn, listTables,
		func(rows driver.Rows) (name string, err error) { return name, rows.Scan(&name) })
	if err != nil {
		return nil, fmt.Errorf("listing tables of %s: %w", database, err)
	}
	var out []TableSum
	for _, table := range tables {
		s := TableSum{Table: table}
		tctx := clickhouse.Context(ctx, clickhouse.WithParameters(clickhouse.Parameters{"db": database, "table": table}))
		if err := conn.QueryRow(tctx, tableSum).Scan(&s.Rows, &s.Checksum); err != nil {
			return nil, fmt.Errorf("checksumming %s.%s: %w", database, table, err)
		}
		out = append(out, s)
	}
	return out, nil
}
