// Command leadpipe tells a B2B company which companies visit its website.
//
// One binary, subcommands for each way to run it; see `leadpipe help`.
//
// It owns the subcommands, their flags and environment overrides, and
// imports what they run: app, store, ipintel and internal/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/leadpipe/leadpipe/app"
	"github.com/leadpipe/leadpipe/internal/chengine"
)

const usage = `leadpipe: which companies visit your website

Usage: leadpipe <command> [flags]

Commands:
  serve      run every stage in one process (embedded NATS, managed ClickHouse)
  collect    run the collector against external NATS
  process    run a processor against external NATS and ClickHouse
  query      run the query API against external NATS and ClickHouse
  migrate    apply the ClickHouse schema migrations
  sql        run SQL on leadpipe's ClickHouse database, print TSV
  ip lookup  explain what leadpipe knows about IP addresses
  ip eval    compare leadpipe's answers with labelled addresses (CSV)
  rir import  import registry assignments (RPSL dumps you obtained) into a data dir
  ipdb reload  make every running process reload its IP data files
  dlq list|replay  show or replay hits that could never be processed
  backup     back up the database and the buckets to <data-dir>/backups
  restore    replace the database and the buckets with a backup
  version    print the version

Every flag can also be set in the environment: --collector.addr is
LEADPIPE_COLLECTOR_ADDR. Run 'leadpipe <command> -h' for a command's flags.
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	// A managed ClickHouse engine is this executable re-run; it never returns.
	chengine.MaybeRunChild()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch cmd {
	case "serve":
		err = runStack(ctx, "serve", app.All, args, stderr)
	case "collect":
		err = runStack(ctx, "collect", app.Stages{Collector: true}, args, stderr)
	case "process":
		err = runStack(ctx, "process", app.Stages{Processor: true}, args, stderr)
	case "query":
		err = runStack(ctx, "query", app.Stages{API: true}, args, stderr)
	case "migrate":
		err = runMigrate(ctx, args, stderr)
	case "sql":
		err = runSQL(ctx, args, stdout, stderr)
	case "ip":
		switch {
		case len(args) > 0 && args[0] == "lookup":
			err = runIPLookup(args[1:], stdout, stderr)
		case len(args) > 0 && args[0] == "eval":
			err = runIPEval(args[1:], stdout, stderr)
		default:
			fmt.Fprintln(stderr, "usage: leadpipe ip lookup IP... | leadpipe ip eval FILE")
			return 2
		}
	case "ipdb":
		err = runIPDB(args, stdout, stderr)
	case "rir":
		err = runRIR(args, stdout, stderr)
	case "dlq":
		err = runDLQ(ctx, args, stdout, stderr)
	case "backup":
		err = runBackup(ctx, args, stdout, stderr)
	case "restore":
		err = runRestore(ctx, args, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "leadpipe", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "leadpipe: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "leadpipe %s: %v\n", cmd, err)
			return 2
		}
		fmt.Fprintf(stderr, "leadpipe %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

// usageError is a mistake in the command line (exit status 2).
type usageError struct{ error }

// parseFlags parses args, then fills every flag not given on the command
// line from its LEADPIPE_* environment variable: the one place where
// environment overrides are applied.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		env := EnvName(f.Name)
		if v, ok := os.LookupEnv(env); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = usageError{fmt.Errorf("%s (for --%s): %v", env, f.Name, e)}
			}
		}
	})
	return err
}

// EnvName is the environment variable for a flag: data-dir → LEADPIPE_DATA_DIR.
func EnvName(flagName string) string {
	return "LEADPIPE_" + strings.NewReplacer(".", "_", "-", "_").Replace(strings.ToUpper(flagName))
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError{fmt.Errorf("--log.level: %q is not debug, info, warn or error", level)}
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

func runStack(ctx context.Context, name string, stages app.Stages, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := app.Config{Stages: stages}
	cfg.RegisterFlags(fs)
	logLevel := fs.String("log.level", "info", "log level: debug, info, warn, error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	s, err := app.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	if s.CollectorAddr != "" {
		log.Info("collector listening", "url", "http://"+s.CollectorAddr)
	}
	if s.MetricsAddr != "" {
		log.Info("metrics listening", "url", "http://"+s.MetricsAddr+"/metrics")
	}
	if s.APIAddr != "" {
		log.Info("API listening", "url", "http://"+s.APIAddr, "owner_key", s.OwnerKeyPath)
		if cfg.Demo {
			fmt.Fprintf(stderr, "\nleadpipe is running with demo traffic.\n"+
				"  Dashboard:     http://%s/ (sign in with the owner key)\n"+
				"  Owner key:     %s\n"+
				"  Company feed:  curl -s -H \"Authorization: Bearer $(cat %s)\" http://%s/api/v1/sites/%s/companies\n"+
				"  SQL:           leadpipe sql --data-dir %s \"SELECT company_name, sum(pageviews) FROM company_daily GROUP BY 1 ORDER BY 2 DESC\"\n"+
				"  Ctrl-C stops every part cleanly.\n\n", s.APIAddr, s.OwnerKeyPath, s.OwnerKeyPath, s.APIAddr, s.DemoSite, cfg.DataDir)
		}
	}
	// SIGHUP reloads the IP data files; lookups go on meanwhile.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	errc := make(chan error, 1)
	go func() { errc <- s.Wait() }()
	for {
		select {
		case <-hup:
			if s.IPData != nil {
				go s.ReloadIPData() // logs its own outcome
			}
		case <-ctx.Done():
			log.Info("stopping: draining the pipeline")
			return s.Stop()
		case err := <-errc:
			s.Stop()
			return err
		}
	}
}
