package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadpipe/leadpipe/app"
	"github.com/leadpipe/leadpipe/internal/backup"
	"github.com/leadpipe/leadpipe/internal/bus"
	"github.com/leadpipe/leadpipe/internal/chengine"
)

// backupFlags are the flags backup and restore share.
type backupFlags struct {
	dataDir string
	ch      chengine.Config
	nats    bus.Config
	disk    string
}

func (f *backupFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.dataDir, "data-dir", "./data", "the installation's data dir; backups are kept in <data-dir>/backups")
	f.ch.RegisterFlags(fs)
	f.nats.RegisterFlags(fs)
	fs.StringVar(&f.disk, "backup.disk", "", "with --clickhouse.addr: the server's backup disk (one of its backups.allowed_disk) for the database part")
}

func (f *backupFlags) validate() error {
	if err := f.ch.Validate(); err != nil {
		return err
	}
	if err := f.nats.Validate(); err != nil {
		return err
	}
	if f.ch.Addr != "" && f.disk == "" {
		return errors.New("--backup.disk: required with --clickhouse.addr (the server writes the database part to its own backup disk)")
	}
	if f.ch.Addr == "" && f.disk != "" {
		return errors.New("--backup.disk: only with --clickhouse.addr; the managed engine writes to <data-dir>/backups")
	}
	return nil
}

// installation is what backup and restore work on.
type installation struct {
	conn   driver.Conn
	srv    *chengine.Server
	js     jetstream.JetStream
	target backup.Target
	close  func()
}

// open reaches the installation's ClickHouse and NATS. While a serve runs
// on the data dir, through it (its engine's endpoint, its NATS listener);
// otherwise by starting the managed engine and the embedded NATS on the
// data dir here, holding its lock. exclusive refuses the first case for a
// local installation: a restore must not race a running pipeline.
func (f *backupFlags) open(ctx context.Context, exclusive bool, log *slog.Logger) (*installation, error) {
	if err := os.MkdirAll(f.dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	in := &installation{target: backup.Target{Dir: chengine.BackupDir(f.dataDir), Disk: f.disk}}
	var closers []func()
	in.close = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	fail := func(err error) (*installation, error) { in.close(); return nil, err }

	lock, lockErr := app.LockDataDir(f.dataDir)
	if lockErr == nil {
		closers = append(closers, func() { lock.Close() })
	} else if exclusive && (f.nats.URL == "" || f.ch.Addr == "") {
		return nil, fmt.Errorf("--data-dir: %s is in use (a running serve?): stop it before restoring", f.dataDir)
	}

	// ClickHouse: the external server, serve's engine, or one started here.
	ch := f.ch
	if ch.Addr == "" && lockErr != nil {
		addr, err := chengine.Endpoint(f.dataDir)
		if err != nil {
			return fail(err)
		}
		ch.Addr = addr
	}
	srv, err := chengine.Start(ctx, ch, f.dataDir, log)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { srv.Close() })
	in.srv = srv
	// The default database: the installation's may not exist before a restore.
	if in.conn, err = srv.OpenDefault(); err != nil {
		return fail(err)
	}
	closers = append(closers, func() { in.conn.Close() })

	// NATS: the external one, serve's embedded server, or one started here.
	switch {
	case f.nats.URL == "" && lockErr == nil:
		cfg := f.nats
		cfg.Listen = "127.0.0.1:0" // nobody else connects to it
		b, err := bus.Open(ctx, cfg, f.dataDir, log)
		if err != nil {
			return fail(err)
		}
		closers = append(closers, func() { b.Close() })
		in.js = b.JS
	default:
		// An external NATS, or the one the serve running on the data dir
		// embeds, as it recorded it: never a guessed default port.
		cfg := f.nats
		if cfg.URL == "" {
			url, err := bus.Endpoint(f.dataDir)
			if err != nil {
				return fail(fmt.Errorf("--data-dir %s is in use, but %w", f.dataDir, err))
			}
			cfg.URL = url
		}
		nc, err := bus.Dial(cfg, "leadpipe backup")
		if err != nil {
			return fail(err)
		}
		closers = append(closers, nc.Close)
		if in.js, err = jetstream.New(nc); err != nil {
			return fail(err)
		}
	}
	return in, nil
}

// runBackup backs up the database and the buckets, then removes backups
// older than --keep.
func runBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f backupFlags
	f.register(fs)
	keep := fs.Duration("keep", 7*24*time.Hour, "remove local backups older than this (the newest always stays)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := f.validate(); err != nil {
		return usageError{err}
	}
	if *keep <= 0 {
		return usageError{errors.New("--keep: must be positive")}
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	in, err := f.open(ctx, false, log)
	if err != nil {
		return err
	}
	defer in.close()
	name := backup.NewName(time.Now())
	m, err := backup.Create(ctx, in.conn, in.js, f.ch.Database, in.target, name)
	if err != nil {
		return err
	}
	pruned, err := backup.Prune(in.target.Dir, *keep, time.Now())
	if err != nil {
		return fmt.Errorf("removing old backups: %w", err)
	}
	fmt.Fprintf(stdout, "backup: name=%s tables=%d rows=%d buckets=%d entries=%d pruned=%d dir=%s\n",
		m.Name, len(m.Tables), rowsOf(m), len(m.Buckets), entriesOf(m), len(pruned), in.target.Dir)
	return nil
}

// runRestore replaces the database and the buckets with a backup.
func runRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f backupFlags
	f.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{errors.New("usage: leadpipe restore [flags] NAME (a directory name under <data-dir>/backups, like 20261201T120000Z)")}
	}
	if err := f.validate(); err != nil {
		return usageError{err}
	}
	name := fs.Arg(0)
	m, err := backup.Read(chengine.BackupDir(f.dataDir), name)
	if err != nil {
		return usageError{err}
	}
	if m.Database != f.ch.Database {
		return usageError{fmt.Errorf("--clickhouse.database: the backup is of database %q, not %q", m.Database, f.ch.Database)}
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	in, err := f.open(ctx, true, log)
	if err != nil {
		return err
	}
	defer in.close()
	if m, err = backup.Restore(ctx, in.conn, in.srv.Open, in.js, in.target, name); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "restore: name=%s tables=%d rows=%d buckets=%d entries=%d checksums=ok\n",
		m.Name, len(m.Tables), rowsOf(m), len(m.Buckets), entriesOf(m))
	return nil
}

func rowsOf(m backup.Manifest) (n uint64) {
	for _, t := range m.Tables {
		n += t.Rows
	}
	return n
}

func entriesOf(m backup.Manifest) (n int) {
	for _, b := range m.Buckets {
		n += b.Entries
	}
	return n
}
