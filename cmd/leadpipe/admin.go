package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"reflect"
	"strings"
	"time"

	"github.com/leadpipe/leadpipe/internal/chengine"
	"github.com/leadpipe/leadpipe/ipintel"
	"github.com/leadpipe/leadpipe/schema"
)

// runMigrate applies the schema to the configured ClickHouse: an external
// one, or the managed engine under --data-dir (started for the occasion when
// no serve runs).
func runMigrate(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var ch chengine.Config
	ch.RegisterFlags(fs)
	dataDir := fs.String("data-dir", "./data", "data dir of the managed engine")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := ch.Validate(); err != nil {
		return usageError{err}
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	srv, err := connectEngine(ctx, ch, *dataDir, log)
	if err != nil {
		return err
	}
	defer srv.Close()
	def, err := srv.OpenDefault()
	if err != nil {
		return err
	}
	defer def.Close()
	if err := schema.CreateDatabase(ctx, def, srv.Database()); err != nil {
		return err
	}
	conn, err := srv.Open()
	if err != nil {
		return err
	}
	defer conn.Close()
	n, err := schema.Migrate(ctx, conn, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "migrate: %d migration(s) applied\n", n)
	return nil
}

// connectEngine reaches --clickhouse.addr, else the engine a running serve
// manages under dataDir, else starts the managed engine itself.
func connectEngine(ctx context.Context, ch chengine.Config, dataDir string, log *slog.Logger) (*chengine.Server, error) {
	if ch.Addr == "" {
		if addr, err := chengine.Endpoint(dataDir); err == nil {
			ch.Addr = addr
		}
	}
	if ch.Addr == "" {
		log.Info("no running engine under --data-dir; starting it for this command", "data_dir", dataDir)
	}
	return chengine.Start(ctx, ch, dataDir, log)
}

func runSQL(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sql", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var ch chengine.Config
	ch.RegisterFlags(fs)
	dataDir := fs.String("data-dir", "./data", "data dir of the managed engine a running serve uses")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{fmt.Errorf("usage: leadpipe sql [--data-dir DIR | --clickhouse.addr ADDR] \"<query>\"")}
	}
	if err := ch.Validate(); err != nil {
		return usageError{err}
	}
	srv, err := connectEngine(ctx, ch, *dataDir, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return err
	}
	defer srv.Close()
	conn, err := srv.Open()
	if err != nil {
		return err
	}
	defer conn.Close()
	rows, err := conn.Query(ctx, fs.Arg(0))
	if errors.Is(err, io.EOF) {
		// A statement without a result (DDL, INSERT): the driver reports
		// the end of a result that never began.
		return nil
	}
	if err != nil {
		return err
	}
	defer rows.Close()
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	cols := rows.Columns()
	fmt.Fprintln(w, strings.Join(cols, "\t"))
	types := rows.ColumnTypes()
	dest := make([]any, len(cols))
	for i, t := range types {
		dest[i] = reflect.New(t.ScanType()).Interface()
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		for i, d := range dest {
			if i > 0 {
				w.WriteByte('\t')
			}
			w.WriteString(tsvEscape(formatValue(reflect.ValueOf(d).Elem().Interface())))
		}
		w.WriteByte('\n')
	}
	return rows.Err()
}

func formatValue(v any) string {
	switch x := v.(type) {
	case time.Time:
		return x.UTC().Format("2006-01-02 15:04:05.999")
	case *time.Time:
		if x == nil {
			return `\N`
		}
		return x.UTC().Format("2006-01-02 15:04:05.999")
	case fmt.Stringer:
		return x.String()
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return `\N`
		}
		return formatValue(rv.Elem().Interface())
	}
	return fmt.Sprint(v)
}

// tsvEscape escapes as ClickHouse's TSV format does.
func tsvEscape(s string) string {
	return strings.NewReplacer("\\", `\\`, "\t", `\t`, "\n", `\n`).Replace(s)
}

func runIPLookup(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ip lookup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg ipintel.Config
	cfg.RegisterFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageError{errors.New("usage: leadpipe ip lookup IP [IP ...]")}
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	var ips []netip.Addr
	for _, a := range fs.Args() {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return usageError{fmt.Errorf("%q is not an IPv4 or IPv6 address", a)}
		}
		ips = append(ips, ip)
	}
	store, err := ipintel.OpenStore(cfg.Sources(), slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return fmt.Errorf("IP data: %w", err)
	}
	db := store.DB()
	enc := json.NewEncoder(stdout)
	for _, ip := range ips {
		if err := enc.Encode(db.Explain(ip, nil)); err != nil {
			return err
		}
	}
	return nil
}
