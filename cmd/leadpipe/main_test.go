package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/leadpipe/leadpipe/api"
	"github.com/leadpipe/leadpipe/app"
	"github.com/leadpipe/leadpipe/collector"
	"github.com/leadpipe/leadpipe/internal/bus"
	"github.com/leadpipe/leadpipe/internal/testenv"
	"github.com/leadpipe/leadpipe/ipintel"
	"github.com/leadpipe/leadpipe/processor"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestBadConfigs: every configuration mistake stops the command before it
// starts anything, with exit status 2 and a message naming the flag.
func TestBadConfigs(t *testing.T) {
	stdin = strings.NewReader("") // `sql` without a query reads it from here
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--collector.addr", "nohostport"}, `--collector.addr: "nohostport" is not host:port`},
		{[]string{"serve", "--api.addr", "8090"}, `--api.addr: "8090" is not host:port`},
		{[]string{"serve", "--api.addr", "127.0.0.1:8080"}, `--api.addr: 127.0.0.1:8080 is also --collector.addr`},
		{[]string{"serve", "--collector.trusted-proxies", "10.0.0.0/8,bogus"}, `--collector.trusted-proxies: "bogus" is not a CIDR or an IP address`},
		{[]string{"serve", "--collector.max-body-bytes", "10"}, `--collector.max-body-bytes: 10 is not between 1024 and 1048576`},
		{[]string{"serve", "--clickhouse.addr", "localhost"}, `--clickhouse.addr: "localhost" is not host:port`},
		{[]string{"serve", "--clickhouse.database", "drop table"}, `--clickhouse.database: "drop table" is not a plain identifier`},
		{[]string{"serve", "--clickhouse.engine", "docker"}, `--clickhouse.engine: "docker" is not one of auto, binary, chdb`},
		{[]string{"serve", "--nats.sync", "sometimes"}, `--nats.sync: "sometimes" is not one of interval, always`},
		{[]string{"serve", "--nats.replicas", "7"}, `--nats.replicas: 7 is not between 1 and 5`},
		{[]string{"serve", "--nats.hits-max-age", "1s"}, `--nats.hits-max-age: 1s is shorter than a minute`},
		{[]string{"serve", "--nats.hits-max-bytes", "100"}, `--nats.hits-max-bytes: 100 is less than 1 MiB`},
		{[]string{"serve", "--nats.listen", "nope"}, `--nats.listen: "nope" is not host:port`},
		{[]string{"serve", "--nats.listen", "0.0.0.0:4222"}, `--nats.listen: "0.0.0.0:4222" is not a loopback address`},
		{[]string{"serve", "--processor.batch-size", "0"}, `--processor.batch-size: 0 is not between 1 and 100000`},
		{[]string{"serve", "--processor.batch-wait", "1ns"}, `--processor.batch-wait: 1ns is not between 10ms and 1m`},
		{[]string{"serve", "--processor.consumer", "a.b"}, `--processor.consumer: "a.b" must be letters, digits, - or _`},
		{[]string{"serve", "--processor.ack-wait", "1s"}, `--processor.ack-wait: 1s is shorter than 10s`},
		{[]string{"serve", "--data-dir", ""}, `--data-dir: must not be empty`},
		{[]string{"serve", "--api.tls-cert", "cert.pem"}, `--api.tls-cert and --api.tls-key: give both, or neither`},
		{[]string{"serve", "--nats.tls-ca", "ca.pem"}, `--nats.tls-ca: only for an external NATS (--nats.url)`},
		{[]string{"collect", "--nats.url", "tls://127.0.0.1:4222", "--nats.tls-ca", "/nonexistent/ca.pem"}, `--nats.tls-ca: stat /nonexistent/ca.pem: no such file or directory`},
		{[]string{"serve", "--collector.tls-cert", "/nonexistent.pem", "--collector.tls-key", "/nonexistent.key"}, `--collector.tls-cert, --collector.tls-key: open /nonexistent.pem: no such file or directory`},
		{[]string{"serve", "--log.level", "loud"}, `--log.level: "loud" is not debug, info, warn or error`},
		{[]string{"serve", "--no-such-flag"}, `flag provided but not defined: -no-such-flag`},
		{[]string{"collect"}, `--nats.url: required when a stage runs on its own`},
		{[]string{"process", "--nats.url", "nats://127.0.0.1:4222"}, `--clickhouse.addr: required when a stage runs on its own`},
		{[]string{"sql"}, `sql: no query`},
		{[]string{"sql", "a", "b"}, `usage: leadpipe sql`},
		{[]string{"sql", "--format", "JSON; DROP", "SELECT 1"}, `--format: "JSON; DROP" is not a ClickHouse format name`},
		{[]string{"serve", "--clickhouse.engine-native-addr", "0.0.0.0:9000"}, `--clickhouse.engine-native-addr: "0.0.0.0:9000" is not a loopback address`},
		{[]string{"serve", "--clickhouse.addr", "db:9000", "--clickhouse.engine-http-addr", "127.0.0.1:8123"}, `--clickhouse.engine-http-addr: only for the managed engine`},
		{[]string{"serve", "--clickhouse.tls"}, `--clickhouse.tls: only for an external ClickHouse`},
		{[]string{"backup", "--clickhouse.addr", "127.0.0.1:9000"}, `--backup.disk: required with --clickhouse.addr`},
		{[]string{"backup", "--backup.disk", "backups"}, `--backup.disk: only with --clickhouse.addr`},
		{[]string{"backup", "--keep", "0s"}, `--keep: must be positive`},
		{[]string{"restore"}, `usage: leadpipe restore`},
		{[]string{"ip", "lookup", "not-an-ip"}, `"not-an-ip" is not an IPv4 or IPv6 address`},
	} {
		code, _, stderr := runCmd(t, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("leadpipe %s: exit %d, stderr %q; want exit 2 and %q", strings.Join(tc.args, " "), code, stderr, tc.want)
		}
	}
}

func TestEnvironmentOverridesDefaultsNotFlags(t *testing.T) {
	t.Setenv("LEADPIPE_COLLECTOR_ADDR", "bad-from-env")
	if code, _, stderr := runCmd(t, "serve"); code != 2 || !strings.Contains(stderr, `--collector.addr: "bad-from-env"`) {
		t.Errorf("env value not applied: exit %d, %q", code, stderr)
	}
	t.Setenv("LEADPIPE_NATS_REPLICAS", "many")
	if code, _, stderr := runCmd(t, "serve"); code != 2 || !strings.Contains(stderr, "LEADPIPE_NATS_REPLICAS (for --nats.replicas)") {
		t.Errorf("bad env value: exit %d, %q", code, stderr)
	}
	if EnvName("clickhouse.engine-lib") != "LEADPIPE_CLICKHOUSE_ENGINE_LIB" {
		t.Errorf("EnvName = %s", EnvName("clickhouse.engine-lib"))
	}
}

func TestIPLookup(t *testing.T) {
	sap := testenv.ASN(t).PrefixesOf(212794)[0].Addr().Next().String()
	code, out, stderr := runCmd(t, "ip", "lookup", sap, "1.1.1.1", "10.0.0.1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("want one JSON line per IP, got %q", out)
	}
	type answer struct {
		IP          string
		NetworkType string `json:"network_type"`
		ASN         uint32
		ASOrg       string `json:"as_org"`
		Company     *struct{ Name string }
		Evidence    []struct{ Source, Says string }
	}
	var a [3]answer
	for i, l := range lines {
		if err := json.Unmarshal([]byte(l), &a[i]); err != nil {
			t.Fatal(err)
		}
	}
	if a[0].IP != sap || a[0].ASN != 212794 || a[0].NetworkType != "business" || a[0].Company == nil || a[0].Company.Name != "SAP" || len(a[0].Evidence) < 2 {
		t.Errorf("%s → %s", sap, lines[0])
	}
	if a[1].ASN != 13335 || a[1].NetworkType != "hosting" || a[1].Company != nil {
		t.Errorf("1.1.1.1 (Cloudflare) should be hosting without a company: %s", lines[1])
	}
	if a[2].Company != nil || a[2].ASN != 0 || a[2].NetworkType != "unknown" {
		t.Errorf("a private address should be unknown without a company: %s", lines[2])
	}
}

// TestRIRImportThenLookup imports registry files into a data dir and looks
// addresses up on it: the paper mill's assignment answers with its holder,
// decided by the registry, with the assignment as evidence; its ISP's
// customer block and a dynamic pool do not; a lookup on another data dir
// knows nothing of the import.
func TestRIRImportThenLookup(t *testing.T) {
	dir := t.TempDir()
	code, out, stderr := runCmd(t, "rir", "import", "--data-dir", dir,
		"../../ipintel/testdata/rpsl/networks.db", "../../ipintel/testdata/rpsl/organisations.db")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); lines[len(lines)-1] != "rir: networks=10 companies=2 skipped=8" {
		t.Errorf("rir import printed %q", out)
	}
	if code, _, stderr := runCmd(t, "rir", "import", "--data-dir", t.TempDir(), "--countries", "Finland", "../../ipintel/testdata/rpsl/networks.db"); code != 2 || !strings.Contains(stderr, "--countries") {
		t.Errorf("--countries Finland: exit %d, %q; want a usage error naming the flag", code, stderr)
	}
	type answer struct {
		NetworkType string `json:"network_type"`
		Decided     string `json:"decided_by"`
		Company     *struct{ Name string }
		Evidence    []struct{ Source, Says string }
	}
	lookup := func(dataDir string, ips ...string) []answer {
		t.Helper()
		code, out, stderr := runCmd(t, append([]string{"ip", "lookup", "--data-dir", dataDir}, ips...)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var as []answer
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			var a answer
			if err := json.Unmarshal([]byte(l), &a); err != nil {
				t.Fatal(err)
			}
			as = append(as, a)
		}
		return as
	}
	as := lookup(dir, "198.51.100.5", "2001:db8:1234::1", "198.51.100.20", "198.51.100.40")
	for i, ip := range []string{"198.51.100.5", "2001:db8:1234::1"} {
		a := as[i]
		if a.NetworkType != "business" || a.Decided != "registry" || a.Company == nil || a.Company.Name != "Example Paper Mill Oy" ||
			!slices.ContainsFunc(a.Evidence, func(e struct{ Source, Says string }) bool {
				return e.Source == "registry" && strings.Contains(e.Says, "PAPERMILL")
			}) {
			t.Errorf("%s: %+v; want the paper mill, decided by the registry", ip, a)
		}
	}
	for i, ip := range []string{"198.51.100.20", "198.51.100.40"} {
		if a := as[2+i]; a.Decided == "registry" || a.Company != nil {
			t.Errorf("%s: %+v; want no registry company", ip, a)
		}
	}
	if a := lookup(t.TempDir(), "198.51.100.5")[0]; a.Decided == "registry" || a.Company != nil {
		t.Errorf("another data dir: %+v", a)
	}
}

// startServe runs every stage on dir, as `leadpipe serve` does, until the
// test ends.
func startServe(t *testing.T, dir string) *app.Stack {
	t.Helper()
	testenv.Slow(t, "runs serve with the ClickHouse engine")
	cfg := app.Config{
		Stages: app.All, DataDir: dir, IPData: ipDataConfig(),
		NATS: testenv.BusConfig(), ClickHouse: testenv.ClickHouseConfig(),
		Collector: collector.Config{Addr: "127.0.0.1:0", MaxBodyBytes: 16 << 10, PublishTimeout: time.Second, SiteRate: 1000, SiteBurst: 5000},
		Processor: processor.Config{BatchSize: 100, BatchWait: 100 * time.Millisecond, Consumer: "processor", AckWait: time.Minute},
		API:       api.Config{Addr: "127.0.0.1:0"},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := app.Start(context.Background(), cfg, testenv.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}

// TestSQLReachesRunningServe runs `leadpipe sql --data-dir` against the
// engine a running stack manages, and checks the TSV.
func TestSQLReachesRunningServe(t *testing.T) {
	dir := t.TempDir()
	startServe(t, dir)
	code, out, stderr := runCmd(t, "sql", "--data-dir", dir, "SELECT version, name FROM schema_migrations ORDER BY version LIMIT 2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if out != "version\tname\n1\thits\n2\tcompany_daily\n" {
		t.Errorf("TSV:\n%s", out)
	}
	// A statement without a result succeeds quietly.
	code, out, stderr = runCmd(t, "sql", "--data-dir", dir, "CREATE TABLE scratch (x UInt8) ENGINE = Memory")
	if code != 0 || out != "" {
		t.Errorf("DDL: exit %d, out %q, err %q", code, out, stderr)
	}
	code, _, stderr = runCmd(t, "sql", "--data-dir", dir, "SELECT nonsense FROM nowhere")
	if code != 1 || !strings.Contains(stderr, "nowhere") {
		t.Errorf("bad SQL: exit %d, %q", code, stderr)
	}
	// Other formats come from ClickHouse itself; the query from stdin.
	for format, want := range map[string]string{
		"CSVWithNames": "\"version\",\"name\"\n1,\"hits\"\n",
		"JSONEachRow":  `{"version":1,"name":"hits"}` + "\n",
	} {
		stdin = strings.NewReader("SELECT version, name FROM schema_migrations ORDER BY version LIMIT 1")
		code, out, stderr = runCmd(t, "sql", "--data-dir", dir, "--format", format)
		if code != 0 || out != want {
			t.Errorf("--format %s: exit %d, %q (%s); want %q", format, code, out, stderr, want)
		}
	}
	// serve's NATS listens on a random port: found through the data dir.
	code, out, stderr = runCmd(t, "ipdb", "reload", "--data-dir", dir, "--wait", "2m")
	if code != 0 || !strings.Contains(out, "reloaded in") {
		t.Errorf("ipdb reload: exit %d, out %q, err %q", code, out, stderr)
	}
}

func ipDataConfig() ipintel.Config {
	src := testenv.IPSources()
	return ipintel.Config{ASNDir: src.ASNDir, CountryMMDB: src.CountryMMDB, RDNSRate: 1, Learn: true}
}

// TestDeadLetters: a hit that can never be processed is set aside with its
// reason (not retried forever, not dropped silently); `dlq list` shows it
// and `dlq replay` sends it back once the cause is fixed.
func TestDeadLetters(t *testing.T) {
	dir := t.TempDir()
	s := startServe(t, dir)
	ctx := context.Background()
	if _, err := s.Bus.JS.Publish(ctx, bus.HitSubject("somesite"), []byte("not a hit at all")); err != nil {
		t.Fatal(err)
	}
	url := s.Bus.ClientURL()
	var out string
	testenv.Eventually(t, 20*time.Second, func() error {
		code, o, stderr := runCmd(t, "dlq", "list", "--nats.url", url)
		if code != 0 || !strings.Contains(o, "hits.somesite") || !strings.Contains(o, "decoding hit") {
			return fmt.Errorf("dlq list: %d %q %q", code, o, stderr)
		}
		out = o
		return nil
	})
	seq := strings.Fields(out)[0]
	st, _ := s.Bus.JS.Stream(ctx, bus.DeadLetterStream)
	info, _ := st.Info(ctx)
	if info.State.Msgs != 1 {
		t.Fatalf("%d dead letters, want 1", info.State.Msgs)
	}
	if code, o, stderr := runCmd(t, "dlq", "replay", "--nats.url", url, "--seq", seq); code != 0 || !strings.Contains(o, "replayed 1") {
		t.Fatalf("dlq replay: %d %q %q", code, o, stderr)
	}
	// Still undecodable: it comes back to the dead letters, never lost.
	testenv.Eventually(t, 20*time.Second, func() error {
		info, _ := st.Info(ctx)
		if info.State.Msgs != 1 {
			return fmt.Errorf("%d dead letters after replaying an undecodable one", info.State.Msgs)
		}
		return nil
	})
	// A dead letter a fixed processor can read (here: a valid hit set
	// aside) is processed once replayed.
	site, err := s.Tenants.CreateSite(ctx, "", "Replay", "replay.example")
	if err != nil {
		t.Fatal(err)
	}
	ip := testenv.ASN(t).PrefixesOf(212794)[0].Addr().Next()
	h := bus.Hit{ID: "replayed-1", Site: site.ID, Type: "pageview", URL: "https://replay.example/", Consent: "granted",
		TS: time.Now().UnixMilli(), ReceivedAt: time.Now().UnixMilli(), IP: ip.String(), UserAgent: app.BrowserUserAgent, Lang: "en"}
	data, _ := h.Encode()
	dl := nats.NewMsg(bus.DeadLetterSubject(bus.HitSubject(site.ID)))
	dl.Data = data
	dl.Header.Set(bus.DeadLetterSubjectHeader, bus.HitSubject(site.ID))
	dl.Header.Set(bus.DeadLetterReasonHeader, "set aside by the test")
	if _, err := s.Bus.JS.PublishMsg(ctx, dl); err != nil {
		t.Fatal(err)
	}
	runCmd(t, "dlq", "replay", "--nats.url", url)
	conn, _ := s.ClickHouse.Open()
	defer conn.Close()
	testenv.Eventually(t, 20*time.Second, func() error {
		var n uint64
		conn.QueryRow(ctx, "SELECT count() FROM hits WHERE hit_id = 'replayed-1'").Scan(&n)
		if n != 1 {
			return fmt.Errorf("replayed hit stored %d times", n)
		}
		return nil
	})
}

// TestBackupAndRestoreCommands: `leadpipe backup` beside a running serve;
// `restore` refused while it runs; then, on a data dir whose database and
// NATS store are gone (a new machine with the backups copied over),
// `restore` brings back the rows and the sites, and serve starts on it.
func TestBackupAndRestoreCommands(t *testing.T) {
	dir := t.TempDir()
	s := startServe(t, dir)
	site, err := s.Tenants.CreateSite(context.Background(), "", "Kept", "kept.example")
	if err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCmd(t, "sql", "--data-dir", dir, `INSERT INTO hits (site_id, ts, received_at, hit_id, type, url, path, visitor_id, visit_id, visit_start, new_visit,
		consent, company_id, company_name, asn, as_org, network_type) SELECT 'site', now64(3), now64(3), toString(number), 'pageview', 'https://x/', '/', number % 9, number, now64(3), 1,
		'granted', toString(number % 4), 'Company', 1, 'Org', 'business' FROM numbers(1234)`)
	if code != 0 {
		t.Fatalf("insert: %s", stderr)
	}
	count := func() string {
		t.Helper()
		code, out, stderr := runCmd(t, "sql", "--data-dir", dir, "SELECT count() AS hits, sum(pageviews) AS pageviews FROM company_daily FINAL")
		if code != 0 {
			t.Fatalf("count: %s", stderr)
		}
		return out
	}
	want := count()
	// Beside a running serve, backup uses serve's NATS (on a random port
	// here) as serve recorded it, and refuses when it cannot tell.
	endpoint := filepath.Join(dir, "nats", "endpoint")
	if err := os.Rename(endpoint, endpoint+".away"); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runCmd(t, "backup", "--data-dir", dir); code == 0 || !strings.Contains(stderr, "give --nats.url") {
		t.Errorf("backup beside a serve whose NATS is unknown: exit %d, %q; want a refusal naming --nats.url", code, stderr)
	}
	if err := os.Rename(endpoint+".away", endpoint); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCmd(t, "backup", "--data-dir", dir)
	if code != 0 || !strings.HasPrefix(out, "backup: name=") {
		t.Fatalf("backup: exit %d, out %q, err %q", code, out, stderr)
	}
	name := strings.TrimPrefix(strings.Fields(out)[1], "name=")
	code, _, stderr = runCmd(t, "restore", "--data-dir", dir, name)
	if code != 1 || !strings.Contains(stderr, "stop it before restoring") {
		t.Errorf("restore beside a running serve: exit %d, %q", code, stderr)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{"nats", "clickhouse", "nats.key", "owner.key"} {
		if err := os.RemoveAll(filepath.Join(dir, gone)); err != nil {
			t.Fatal(err)
		}
	}
	code, out, stderr = runCmd(t, "restore", "--data-dir", dir, name)
	if code != 0 || !strings.Contains(out, "checksums=ok") {
		t.Fatalf("restore: exit %d, out %q, err %q", code, out, stderr)
	}
	s = startServe(t, dir)
	if got := count(); got != want {
		t.Errorf("after restore:\n%s\nwant\n%s", got, want)
	}
	if got, ok := s.Tenants.Site(site.ID); !ok || got.Name != "Kept" {
		t.Errorf("the site after restore: %+v %v", got, ok)
	}
	code, _, stderr = runCmd(t, "restore", "--data-dir", dir, "20200101T000000Z")
	if code != 2 || !strings.Contains(stderr, "20200101T000000Z") {
		t.Errorf("restore of a backup that does not exist: exit %d, %q", code, stderr)
	}
}

// TestIPEval: `leadpipe ip eval` reports each miss and the summary line
// the contract names: SAP's address labelled business is right, Comcast's
// labelled business is a miss (leadpipe says residential), Cloudflare's
// labelled hosting is right.
func TestIPEval(t *testing.T) {
	asn := testenv.ASN(t)
	sap := asn.PrefixesOf(212794)[0].Addr().Next().String()
	comcast := asn.PrefixesOf(7922)[0].Addr().Next().String()
	file := filepath.Join(t.TempDir(), "cases.csv")
	os.WriteFile(file, []byte("ip,expected_type,expected_domain,source\n"+sap+",business,sap.com,sap.com\n"+
		comcast+",business,,a wrong label\n1.1.1.1,hosting,,cloudflare.com\n"), 0o600)
	code, out, stderr := runCmd(t, "ip", "eval", file)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if last := lines[len(lines)-1]; last != "eval: cases=3 business_coverage=0.500 precision=1.000 false_identification=0.000" {
		t.Errorf("last line %q", last)
	}
	if !strings.Contains(out, "miss: line 3 "+comcast+": labelled business, answered residential") || strings.Count(out, "miss:") != 1 ||
		!strings.Contains(out, "domains=1/1") {
		t.Errorf("output:\n%s", out)
	}
	os.WriteFile(file, []byte("ip,expected_type\n1.1.1.1,cloud\n"), 0o600)
	if code, _, stderr := runCmd(t, "ip", "eval", file); code == 0 || !strings.Contains(stderr, "expected_type") {
		t.Errorf("a bad label: exit %d, %s", code, stderr)
	}
}

// TestIPEvalLayers: `leadpipe ip eval` reports each deciding layer's
// coverage, precision and false identification, and the figures without
// each layer the installation has: with registry assignments imported
// and RDAP asked (a local RDAP server), the paper mill's two networks are
// covered; without the registry, RDAP still names the IPv4 one; without
// RDAP, the registry names both.
func TestIPEvalLayers(t *testing.T) {
	dir := t.TempDir()
	if code, _, stderr := runCmd(t, "rir", "import", "--data-dir", dir,
		"../../ipintel/testdata/rpsl/networks.db", "../../ipintel/testdata/rpsl/organisations.db"); code != 0 {
		t.Fatalf("rir import: exit %d: %s", code, stderr)
	}
	srv := testenv.StartRDAP(t, "../../ipintel/testdata/rdap")
	file := filepath.Join(t.TempDir(), "cases.csv")
	// 198.51.100.5 is the paper mill's by both layers; 2001:db8:1234::1
	// by the registry only; 198.51.100.66 a person's, 198.51.100.200 a
	// pool's: neither is an organisation's.
	os.WriteFile(file, []byte("ip,expected_type,expected_domain,source\n198.51.100.5,business,,registry fixture\n"+
		"2001:db8:1234::1,business,,registry fixture\n198.51.100.66,residential,,RDAP fixture: a person's /29\n"+
		"198.51.100.200,residential,,RDAP fixture: an FTTH pool\n"), 0o600)
	code, out, stderr := runCmd(t, "ip", "eval", "--data-dir", dir, "--ipdb.rdap", "--ipdb.rdap-bootstrap", srv.Bootstrap,
		"--ipdb.rdap-rate", "100", file)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"layer: registry cases=2 correct=2 accuracy=1.000 business_verdicts=2 business_precision=1.000 named=2 coverage=1.000 precision=1.000 false_identification=0.000",
		"without: registry business_coverage=0.500 precision=1.000 false_identification=0.000",
		"without: rdap business_coverage=1.000 precision=1.000 false_identification=0.000",
		"eval: cases=4 business_coverage=1.000 precision=1.000 false_identification=0.000",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("want %q in:\n%s", want, out)
		}
	}
	// Asked about: the person's and the pool's networks (no imported
	// assignment), then, in the run without the registry, the paper
	// mill's two; each once, however many runs need the answer.
	if q := srv.Queries(); len(q) != 4 {
		t.Errorf("RDAP queries %v: want each of the four networks asked about once", q)
	}
}
