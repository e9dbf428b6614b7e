package store

import (
	"context"
	"embed"
	"fmt"
	"log/slog"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// hooks are steps of a migration that plain idempotent SQL cannot express:
// they run after the migration's statements, inspect what is there and
// run the files under rebuild/ that finish what an interrupted run left,
// so they too can be run again.
var hooks = map[uint32]func(context.Context, driver.Conn, *slog.Logger) error{
	10: visitsRebuild,
}

//go:embed rebuild/*.sql
var rebuildFiles embed.FS

// runFile executes the statements of one file under rebuild/.
func runFile(ctx context.Context, conn driver.Conn, name string) error {
	body, err := rebuildFiles.ReadFile("rebuild/" + name)
	if err != nil {
		return fmt.Errorf("BUG: %w", err)
	}
	for i, stmt := range Split(string(body)) {
		if err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("%s statement %d: %w", name, i+1, err)
		}
	}
	return nil
}

// companyDailyKey is company_daily's sorting key from migration 0010 on.
const companyDailyKey = "site_id, company_id, day"

// visitsRebuild re-sorts company_daily by company with the visit-based
// columns, and fills company_pages_daily from the stored hits. Hits
// written while it runs would miss the new views, so processors must be
// stopped for it: `leadpipe serve` migrates before it starts them, a
// split deployment runs `leadpipe migrate` with its processors stopped.
func visitsRebuild(ctx context.Context, conn driver.Conn, log *slog.Logger) error {
	var key string
	if err := conn.QueryRow(ctx, `SELECT sorting_key FROM system.tables
		WHERE database = currentDatabase() AND name = 'company_daily'`).Scan(&key); err != nil {
		return fmt.Errorf("reading company_daily's sorting key: %w", err)
	}
	if key != companyDailyKey {
		log.Info("rebuilding company_daily sorted by company; processors must be stopped meanwhile")
		if err := runFile(ctx, conn, "0010_company_daily_resort.sql"); err != nil {
			return err
		}
	}
	if err := runFile(ctx, conn, "0010_company_daily_view.sql"); err != nil {
		return err
	}
	var views uint64
	if err := conn.QueryRow(ctx, `SELECT count() FROM system.tables
		WHERE database = currentDatabase() AND name = 'company_pages_daily_mv'`).Scan(&views); err != nil {
		return fmt.Errorf("looking for company_pages_daily_mv: %w", err)
	}
	if views == 0 {
		return runFile(ctx, conn, "0010_company_pages.sql")
	}
	return nil
}
