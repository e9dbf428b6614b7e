package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/leadpipe/leadpipe/internal/chengine"
	"github.com/leadpipe/leadpipe/ipintel"
	"github.com/leadpipe/leadpipe/store"
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
	if err := store.CreateDatabase(ctx, def, srv.Database()); err != nil {
		return err
	}
	conn, err := srv.Open()
	if err != nil {
		return err
	}
	defer conn.Close()
	n, err := store.Migrate(ctx, conn, log)
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

// stdin is where `leadpipe sql` reads a query given no argument.
var stdin io.Reader = os.Stdin

func runSQL(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sql", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var ch chengine.Config
	ch.RegisterFlags(fs)
	dataDir := fs.String("data-dir", "./data", "data dir of the managed engine a running serve uses")
	format := fs.String("format", "TSVWithNames", "ClickHouse output format: TSVWithNames, CSVWithNames, JSONEachRow, Pretty, …")
	httpAddr := fs.String("clickhouse.http-addr", "", "an external ClickHouse's HTTP interface host:port, for --format other than TSVWithNames")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return usageError{errors.New(`usage: leadpipe sql [--data-dir DIR | --clickhouse.addr ADDR] [--format FORMAT] ["<query>"] (no query: read from standard input)`)}
	}
	if !validFormat(*format) {
		return usageError{fmt.Errorf("--format: %q is not a ClickHouse format name", *format)}
	}
	if err := ch.Validate(); err != nil {
		return usageError{err}
	}
	query := fs.Arg(0)
	if fs.NArg() == 0 {
		raw, err := io.ReadAll(io.LimitReader(stdin, 16<<20))
		if err != nil {
			return fmt.Errorf("reading the query from standard input: %w", err)
		}
		query = string(raw)
	}
	if query = strings.TrimSpace(query); query == "" {
		return usageError{errors.New("sql: no query (give it as the argument or on standard input)")}
	}
	srv, err := connectEngine(ctx, ch, *dataDir, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return err
	}
	defer srv.Close()
	if *format != "TSVWithNames" {
		// ClickHouse formats its own output over HTTP; the native
		// protocol carries blocks for the client to format.
		addr := cmp.Or(*httpAddr, srv.HTTPAddr)
		if addr == "" && ch.Addr == "" {
			addr, _ = chengine.HTTPEndpoint(*dataDir) // the engine a running serve manages
		}
		if addr == "" {
			return usageError{fmt.Errorf("--clickhouse.http-addr: needed for --format=%s with an external ClickHouse (its HTTP interface, usually host:8123)", *format)}
		}
		return sqlOverHTTP(ctx, addr, ch, query, *format, stdout)
	}
	conn, err := srv.Open()
	if err != nil {
		return err
	}
	defer conn.Close()
	rows, err := conn.Query(ctx, query)
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

// validFormat accepts ClickHouse format names (letters and digits); the
// server says whether it knows the name.
func validFormat(f string) bool {
	if f == "" || len(f) > 64 {
		return false
	}
	for _, r := range f {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// sqlOverHTTP runs query on ClickHouse's HTTP interface at addr and
// copies its answer, formatted by ClickHouse as format, to out.
func sqlOverHTTP(ctx context.Context, addr string, ch chengine.Config, query, format string, out io.Writer) error {
	u := url.URL{Scheme: "http", Host: addr, Path: "/", RawQuery: url.Values{"database": {ch.Database}, "default_format": {format}}.Encode()}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(query))
	if err != nil {
		return err
	}
	req.Header.Set("X-ClickHouse-User", ch.User)
	if ch.Password != "" {
		req.Header.Set("X-ClickHouse-Key", ch.Password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("querying ClickHouse over HTTP: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("ClickHouse: %s", bytes.TrimSpace(msg))
	}
	_, err = io.Copy(out, resp.Body)
	return err
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
	dataDir := fs.String("data-dir", "./data", "data dir whose imported registry assignments (leadpipe rir import) to use")
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
	src := cfg.Sources()
	src.Registry = ipintel.RegistryFile(*dataDir)
	store, err := ipintel.OpenStore(src, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return fmt.Errorf("IP data: %w", err)
	}
	db := store.DB()
	enc := json.NewEncoder(stdout)
	for _, ip := range ips {
		if err := enc.Encode(db.Explain(ip, ipintel.Signals{})); err != nil {
			return err
		}
	}
	return nil
}

// runIPEval handles `leadpipe ip eval FILE`: it answers every labelled
// address of FILE from the local IP data and reports how the answers
// compare, overall and by the layer that decided, then lists the misses.
// The last line is the summary scripts read.
func runIPEval(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ip eval", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg ipintel.Config
	cfg.RegisterFlags(fs)
	dataDir := fs.String("data-dir", "./data", "data dir whose imported registry assignments (leadpipe rir import) to use")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{errors.New("usage: leadpipe ip eval FILE (CSV: ip,expected_type[,expected_domain])")}
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()
	cases, err := ipintel.ReadEvalCases(f, filepath.Base(fs.Arg(0)))
	if err != nil {
		return err
	}
	src := cfg.Sources()
	src.Registry = ipintel.RegistryFile(*dataDir)
	store, err := ipintel.OpenStore(src, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return fmt.Errorf("IP data: %w", err)
	}
	opt := ipintel.EvalOptions{Ctx: context.Background()}
	if cfg.RDAP {
		// Asked now, case by case, within the configured limits; the
		// answers are kept in memory for the evaluation only.
		opt.RDAP = ipintel.NewRDAP(cfg.RDAPConfig(), nil, store.Classifier(), slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	}
	db := store.DB()
	rep := db.Evaluate(cases, opt)
	for _, m := range rep.Misses {
		fmt.Fprintf(stdout, "miss: line %d %s: labelled %s, answered %s by %s (AS%d %s)\n",
			m.Case.Line, m.Case.IP, m.Case.Type, m.Answer.NetworkType, m.Answer.Decided, m.Answer.ASN, m.Answer.ASOrg)
	}
	for _, l := range rep.Layers() {
		n, b, named := rep.ByLayer[l], rep.BusinessByLayer[l], rep.Named[l]
		fmt.Fprintf(stdout, "layer: %s cases=%d correct=%d accuracy=%.3f business_verdicts=%d business_precision=%.3f named=%d coverage=%.3f precision=%.3f false_identification=%.3f\n",
			l, n[0], n[1], ipintel.Ratio(n[1], n[0]), b[0], ipintel.Ratio(b[1], b[0]),
			named.Named, ipintel.Ratio(named.Organisations, rep.Organisations), ipintel.Ratio(named.Organisations, named.Named),
			ipintel.Ratio(named.Others, rep.Others))
	}
	// What each layer adds: the evaluation again without it, for every
	// layer this installation has.
	for _, l := range ipintel.EvalLayers {
		if !db.HasLayer(l) && (l != ipintel.SourceRDAP || opt.RDAP == nil) {
			continue
		}
		w := opt
		w.Without = l
		r := db.Evaluate(cases, w)
		fmt.Fprintf(stdout, "without: %s business_coverage=%.3f precision=%.3f false_identification=%.3f\n",
			l, ipintel.Ratio(r.Covered, r.Organisations), ipintel.Ratio(r.BusinessRight, r.BusinessVerdicts), ipintel.Ratio(r.FalseIdentifications, r.Others))
	}
	// decision: whether leadpipe shows the address as a company's when it
	// is one, and drops it when it is not — what the feed gets right.
	decision := rep.Covered + rep.Others - rep.FalseIdentifications
	// feed_business: the business verdicts the feed shows by default, the
	// address-space fall-back's candidates aside.
	fmt.Fprintf(stdout, "accuracy=%.3f decision_accuracy=%.3f business_verdicts=%d business_precision=%.3f feed_business_verdicts=%d feed_business_precision=%.3f identified=%d domains=%d/%d\n",
		ipintel.Ratio(rep.Correct, rep.Cases), ipintel.Ratio(decision, rep.Cases), rep.BusinessVerdicts,
		ipintel.Ratio(rep.BusinessRight, rep.BusinessVerdicts), rep.FeedBusinessVerdicts,
		ipintel.Ratio(rep.FeedBusinessRight, rep.FeedBusinessVerdicts), rep.Identified, rep.DomainRight, rep.DomainCases)
	fmt.Fprintf(stdout, "eval: cases=%d business_coverage=%.3f precision=%.3f false_identification=%.3f\n",
		rep.Cases, ipintel.Ratio(rep.Covered, rep.Organisations), ipintel.Ratio(rep.BusinessRight, rep.BusinessVerdicts),
		ipintel.Ratio(rep.FalseIdentifications, rep.Others))
	return nil
}
