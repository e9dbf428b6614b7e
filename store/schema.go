package store

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

//go:embed migrations/*.sql
var files embed.FS

// Migration is one numbered SQL file.
type Migration struct {
	Version    uint32
	Name       string
	Statements []string
}

var fileName = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.sql$`)

// Migrations returns the embedded migrations in order.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(files, "migrations")
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, e := range entries {
		m := fileName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("BUG: migration file %q is not named NNNN_name.sql", e.Name())
		}
		v, _ := strconv.ParseUint(m[1], 10, 32)
		body, err := files.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: uint32(v), Name: m[2], Statements: Split(string(body))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("BUG: two migrations numbered %04d", out[i].Version)
		}
	}
	return out, nil
}

// Split cuts a migration file into statements: it drops whole-line `--`
// comments and splits where a line ends with a semicolon.
func Split(sql string) []string {
	var stmts []string
	var cur strings.Builder
	for _, line := range strings.Split(sql, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(trimmed, ";") {
			stmts = append(stmts, strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		stmts = append(stmts, s)
	}
	return stmts
}

// CreateDatabase creates leadpipe's database; conn must be connected to
// another database (default) of the same server.
func CreateDatabase(ctx context.Context, conn driver.Conn, database string) error {
	ctx = clickhouse.Context(ctx, clickhouse.WithParameters(clickhouse.Parameters{"db": database}))
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS {db:Identifier}"); err != nil {
		return fmt.Errorf("creating database %s: %w", database, err)
	}
	return nil
}

// Migrate applies every migration not yet recorded in schema_migrations, in
// order, and returns how many it applied. conn must use leadpipe's database.
func Migrate(ctx context.Context, conn driver.Conn, log *slog.Logger) (int, error) {
	return MigrateTo(ctx, conn, log, ^uint32(0))
}

// MigrateTo is Migrate stopping after version last (tests of a migration
// start from the schema before it).
func MigrateTo(ctx context.Context, conn driver.Conn, log *slog.Logger, last uint32) (int, error) {
	migrations, err := Migrations()
	if err != nil {
		return 0, err
	}
	if err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations
		(version UInt32, name String, applied_at DateTime DEFAULT now())
		ENGINE = MergeTree ORDER BY version`); err != nil {
		return 0, fmt.Errorf("creating schema_migrations: %w", err)
	}
	applied := map[uint32]bool{}
	rows, err := conn.Query(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return 0, fmt.Errorf("reading schema_migrations: %w", err)
	}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return 0, fmt.Errorf("reading schema_migrations: %w", err)
		}
		applied[v] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("reading schema_migrations: %w", err)
	}
	n := 0
	for _, m := range migrations {
		if applied[m.Version] {
			continue
		}
		if m.Version > last {
			break
		}
		for i, stmt := range m.Statements {
			if err := conn.Exec(ctx, stmt); err != nil {
				return n, fmt.Errorf("applying migration %04d_%s statement %d: %w", m.Version, m.Name, i+1, err)
			}
		}
		if hook := hooks[m.Version]; hook != nil {
			if err := hook(ctx, conn, log); err != nil {
				return n, fmt.Errorf("applying migration %04d_%s: %w", m.Version, m.Name, err)
			}
		}
		if err := conn.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", m.Version, m.Name); err != nil {
			return n, fmt.Errorf("recording migration %04d_%s: %w", m.Version, m.Name, err)
		}
		log.Info("applied migration", "version", m.Version, "name", m.Name)
		n++
	}
	return n, nil
}
