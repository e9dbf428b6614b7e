// Command bench is `make bench`: the end-to-end load benchmark of
// leadpipe on one machine, the load generator included.
//
// The parts are separate processes, so each one's CPU and memory are
// measured: `leadpipe collect` and `leadpipe process` of the built binary,
// JetStream (this executable re-run as the server `leadpipe serve` embeds:
// file store, encrypted), the managed ClickHouse engine, and a null
// fasthttp handler (this executable again). The driver generates the load
// open-loop (hits scheduled at a rate, latency measured from the schedule)
// from visitors of real networks in a configurable mix.
//
// Phases: IP lookups through bart against cidranger; the null handler and
// the collector each taking as much as they can (the processor paused);
// raw JetStream publishing of the same payloads; a search for the highest
// rate the whole pipeline sustains (every hit accepted, lag bounded);
// a sustained run at half that rate (collector latency, lag, memory over
// time); raw inserts (the store's) of the rows the processor wrote. At
// the end every accepted hit must be in ClickHouse, kept or counted as
// dropped. It writes a Markdown report and an SVG chart to bench/results/
// and ends with
//
//	bench: e2e_hits_per_s=N collector_vs_null=R lookup_vs_cidranger=X ch_insert_vs_raw=Y lost=L
//
// It imports what it measures: internal/, ipintel and store.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadpipe/leadpipe/bench/internal/harness"
	"github.com/leadpipe/leadpipe/internal/chengine"
	"github.com/leadpipe/leadpipe/internal/tenant"
	"github.com/leadpipe/leadpipe/ipintel"
)

type config struct {
	bin, out, mix, prof  string
	short, keep          bool
	botShare             float64
	step, sustain        time.Duration
	saturate, lagBound   time.Duration
	startRate, maxRate   int
	conns, searchRefines int
}

var say = harness.Say

func main() {
	chengine.MaybeRunChild() // this executable is also the engine's child
	maybeRunRole()           // … and the JetStream server and the null handler
	var cfg config
	flag.StringVar(&cfg.bin, "bin", "./bin/leadpipe", "the leadpipe binary whose collector and processor are measured")
	flag.StringVar(&cfg.out, "out", "bench/results", "where the report and the chart go")
	flag.StringVar(&cfg.mix, "mix", "business=40,residential=35,mobile=15,hosting=10", "visitors' network types, in percent")
	flag.Float64Var(&cfg.botShare, "bots", 0.03, "share of visitors that are crawlers or scripts")
	flag.BoolVar(&cfg.short, "short", false, "a quick check: short steps and a 30 s sustained run")
	flag.DurationVar(&cfg.step, "step", 15*time.Second, "how long each rate of the search is offered")
	flag.DurationVar(&cfg.sustain, "sustain", 10*time.Minute, "the sustained run at half the highest rate")
	flag.DurationVar(&cfg.saturate, "saturate", 10*time.Second, "each as-fast-as-it-goes run (null handler, collector)")
	flag.DurationVar(&cfg.lagBound, "lag-bound", 5*time.Second, "the most lag a sustainable rate may show")
	flag.IntVar(&cfg.startRate, "start-rate", 2000, "the search's first rate, hits per second")
	flag.IntVar(&cfg.maxRate, "max-rate", 100_000, "the search's last rate")
	flag.IntVar(&cfg.conns, "conns", 1024, "connections (and senders) of the load generator: browsers are many, each with its own connection")
	flag.IntVar(&cfg.searchRefines, "refine", 2, "bisections between the last sustained and the first failed rate")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the run's directory (logs, stores)")
	flag.StringVar(&cfg.prof, "profile", "", "write CPU profiles of the collector (while it runs alone) and the processor (sustained run) to this directory")
	flag.Parse()
	if cfg.short {
		cfg.step, cfg.sustain, cfg.saturate, cfg.searchRefines = 5*time.Second, 30*time.Second, 4*time.Second, 1
	}
	m, err := parseMix(cfg.mix)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	rep, err := run(cfg, m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	if err := rep.write(cfg.out); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	fmt.Println(rep.lastLine())
	if rep.lost != 0 {
		os.Exit(1)
	}
}

// bench is a run in progress.
type bench struct {
	cfg       config
	mon       *monitor
	collector *sender
	null      *sender
	accepted  atomic.Int64 // by the collector, over the whole run
	proc      *harness.Child
	site      string
	natsPprof string
}

// run is the whole benchmark.
//
// Long: it is the benchmark's script, phase after phase as the report
// lists them; each phase's work is a function of its own.
func run(cfg config, m mix) (*report, error) {
	ctx := context.Background()
	rep := &report{cfg: cfg, started: time.Now()}
	bin, dir, done, err := harness.Workspace(cfg.bin, "leadpipe-bench-", cfg.keep)
	if err != nil {
		return nil, err
	}
	defer done()
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

	// JetStream, as a process of its own.
	natsPort, err := harness.FreePort()
	if err != nil {
		return nil, err
	}
	natsPprofPort, err := harness.FreePort()
	if err != nil {
		return nil, err
	}
	natsAddr, natsPprof := "127.0.0.1:"+strconv.Itoa(natsPort), "127.0.0.1:"+strconv.Itoa(natsPprofPort)
	natsProc := &harness.Child{Name: "nats", Bin: self, Dir: dir,
		Env: []string{roleEnv + "=nats", "LEADPIPE_BENCH_ADDR=" + natsAddr, "LEADPIPE_BENCH_DIR=" + filepath.Join(dir, "nats-data"),
			"LEADPIPE_BENCH_PPROF=" + natsPprof}}
	if err := natsProc.Start(); err != nil {
		return nil, err
	}
	defer natsProc.Stop()
	natsURL := "nats://" + natsAddr
	nc, err := connectNATS(natsURL, time.Minute)
	if err != nil {
		return nil, fmt.Errorf("JetStream: %w (log: %s)", err, natsProc.LogPath())
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	// The managed ClickHouse engine and the schema.
	ch, err := chengine.Start(ctx, chengine.Config{Database: "leadpipe", Engine: "chdb", EngineLib: chengine.DefaultLibPath()}, dir, log)
	if err != nil {
		return nil, err
	}
	defer ch.Close()
	if err := harness.Migrate(ctx, ch); err != nil {
		return nil, err
	}
	conn, err := ch.Open()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	site, err := createSite(ctx, js, log)
	if err != nil {
		return nil, err
	}

	// The IP data and the workload.
	var ipdb ipintel.Config
	ipdb.RegisterFlags(flag.NewFlagSet("ipdb", flag.ContinueOnError))
	store, err := ipintel.OpenStore(ipdb.Sources(), log)
	if err != nil {
		return nil, fmt.Errorf("IP data: %w (run `make setup`)", err)
	}
	load, err := buildWorkload(store.DB(), site, m, cfg.botShare, 200_000, 1)
	if err != nil {
		return nil, err
	}
	rep.workload = load
	say("workload: %d hit templates, %.0f%% of hits from business networks and human", len(load.hits), 100*load.keptShare)

	// The collector, the processor and the null handler.
	ports := make([]int, 5)
	for i := range ports {
		if ports[i], err = harness.FreePort(); err != nil {
			return nil, err
		}
	}
	collectorAddr, metricsAddr, nullAddr := "127.0.0.1:"+strconv.Itoa(ports[0]), "127.0.0.1:"+strconv.Itoa(ports[1]), "127.0.0.1:"+strconv.Itoa(ports[2])
	collectorPprof, procPprof := "127.0.0.1:"+strconv.Itoa(ports[3]), "127.0.0.1:"+strconv.Itoa(ports[4])
	collector := &harness.Child{Name: "collector", Bin: bin, Dir: dir, Args: []string{"collect", "--nats.url", natsURL,
		"--collector.addr", collectorAddr, "--collector.trusted-proxies", "127.0.0.1/32",
		"--collector.site-rate", "10000000", "--collector.site-burst", "10000000", "--metrics.addr", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "collector"),
		"--debug.pprof-addr", collectorPprof}}
	proc := &harness.Child{Name: "processor", Bin: bin, Dir: dir, Args: []string{"process", "--nats.url", natsURL,
		"--clickhouse.addr", ch.Addr, "--metrics.addr", metricsAddr, "--data-dir", filepath.Join(dir, "processor"),
		"--debug.pprof-addr", procPprof}}
	null := &harness.Child{Name: "null", Bin: self, Dir: dir, Env: []string{roleEnv + "=null", "LEADPIPE_BENCH_ADDR=" + nullAddr}}
	for _, c := range []*harness.Child{collector, proc, null} {
		if err := c.Start(); err != nil {
			return nil, err
		}
		defer c.Stop()
	}
	for _, w := range []struct {
		url string
		c   *harness.Child
	}{{"http://" + collectorAddr + "/readyz", collector}, {"http://" + metricsAddr + "/readyz", proc}, {"http://" + nullAddr + "/", null}} {
		if err := harness.WaitReady(ctx, w.url, time.Minute); err != nil {
			return nil, fmt.Errorf("%s: %w (log: %s)", w.c.Name, err, w.c.LogPath())
		}
	}
	say("pipeline up: collector %s, processor, JetStream %s, ClickHouse %s, null handler %s", collectorAddr, natsAddr, ch.Addr, nullAddr)

	b := &bench{cfg: cfg, proc: proc, site: site, natsPprof: natsPprof}
	var next atomic.Uint64
	var nullAccepted atomic.Int64
	run := "b" + strconv.FormatInt(time.Now().Unix(), 36)
	b.collector = newSender(collectorAddr, "/v1/hit", load, run, &next, &b.accepted, cfg.conns)
	b.null = newSender(nullAddr, "/v1/hit", load, run, &next, &nullAccepted, cfg.conns)
	self_ := os.Getpid()
	b.mon = newMonitor(&b.accepted, conn, site, []part{
		{"collector", collector.PID}, {"processor", proc.PID}, {"jetstream", natsProc.PID},
		{"clickhouse", ch.PID}, {"load generator", func() int { return self_ }},
	})
	monCtx, stopMon := context.WithCancel(ctx)
	defer stopMon()
	go b.mon.run(monCtx)

	// 1. IP lookups: bart against cidranger, nothing else running.
	b.mon.setPhase("lookups")
	lookupFor := 2 * time.Second
	if cfg.short {
		lookupFor = time.Second
	}
	rep.bartNS, rep.rangerNS, rep.prefixes, err = lookupVsCidranger(store.DB().ASN(), lookupFor)
	if err != nil {
		return nil, err
	}
	say("lookups over %d prefixes: bart %.0f ns, cidranger %.0f ns", rep.prefixes, rep.bartNS, rep.rangerNS)

	// 2. Raw JetStream publishing of the same payloads, nothing else running.
	b.mon.setPhase("raw JetStream")
	if rep.jsRaw, err = rawPublish(ctx, natsURL, load, cfg.saturate); err != nil {
		return nil, err
	}
	say("raw JetStream async publish: %.0f msgs/s", rep.jsRaw)
	// 3. The null handler and the collector, each as fast as it goes.
	b.mon.setPhase("null handler")
	rep.null = b.null.closedLoop(cfg.saturate, cfg.conns)
	say("null handler: %.0f requests/s", rep.null.achieved())
	b.mon.setPhase("collector alone")
	// The processor's counters before it drains what the collector queues.
	before, err := scrape("http://" + metricsAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	if err := proc.Signal(syscall.SIGSTOP); err != nil {
		return nil, err
	}
	profDone := b.profile(collectorPprof, "collector", cfg.saturate-time.Second)
	rep.collectorMax = b.collector.closedLoop(cfg.saturate, cfg.conns)
	<-profDone
	if err := proc.Signal(syscall.SIGCONT); err != nil {
		return nil, err
	}
	say("collector (durable JetStream acks, processor paused): %.0f hits/s, p99 %s", rep.collectorMax.achieved(), us(rep.collectorMax.lat.ValueAtQuantile(99)))

	b.mon.setPhase("backlog")
	if _, ok := b.waitDrained(5 * time.Minute); !ok {
		return nil, errors.New("the collector's backlog did not drain within 5 minutes")
	}
	// The processor's inserts while it drained that backlog: the machine
	// otherwise idle, as for the raw inserts later.
	after, err := scrape("http://" + metricsAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	delta := func(name string) float64 { return after[name] - before[name] }
	inserted, insertSecs, inserts := delta("leadpipe_processor_hits_inserted_total"), delta("leadpipe_processor_insert_seconds_sum"), delta("leadpipe_processor_insert_seconds_count")
	if inserts == 0 || insertSecs == 0 {
		return nil, errors.New("the processor reports no inserts while draining the backlog")
	}
	rep.procInsert, rep.batch = inserted/insertSecs, int(inserted/inserts)
	say("processor inserts while draining the backlog: %.0f rows/s in batches of %d", rep.procInsert, rep.batch)

	// 4. The highest rate the pipeline sustains.
	rep.e2e, rep.steps = b.search()
	say("e2e: %d hits/s sustained", rep.e2e)

	// 5. Half that rate, for a while.
	rate := max(rep.e2e/2, 500)
	phase := fmt.Sprintf("sustained %d/s", rate)
	b.mon.setPhase(phase)
	from := b.mon.now()
	// Profiles of the sustained run's last 30 seconds, when the parts hold
	// the most.
	profFor := min(cfg.sustain-time.Second, 30*time.Second)
	profiles := make(chan []<-chan struct{}, 1)
	profTimer := time.AfterFunc(cfg.sustain-profFor-time.Second, func() {
		profiles <- []<-chan struct{}{b.profile(procPprof, "processor", profFor), b.profile(b.natsPprof, "jetstream", profFor),
			b.profile(collectorPprof, "collector-sustained", profFor)}
	})
	rep.sustained = b.collector.openLoop(rate, cfg.sustain, cfg.conns)
	if !profTimer.Stop() {
		for _, done := range <-profiles {
			<-done
		}
	}
	_, drained := b.waitDrained(5 * time.Minute)
	rep.sustainSamples = b.mon.since(from)
	say("sustained %d/s for %v: p50 %s p99 %s p999 %s, drained: %v", rate, cfg.sustain,
		us(rep.sustained.lat.ValueAtQuantile(50)), us(rep.sustained.lat.ValueAtQuantile(99)), us(rep.sustained.lat.ValueAtQuantile(99.9)), drained)

	// 6. Raw inserts of the rows the processor wrote, the machine idle as
	// it was while the processor drained the backlog.
	b.mon.setPhase("raw inserts")
	if rep.rawInsert, rep.rawRows, err = rawInsert(ctx, conn, site, 300_000, rep.batch); err != nil {
		return nil, err
	}
	say("raw inserts (the store's, column by column): %.0f rows/s over %d rows in batches of %d", rep.rawInsert, rep.rawRows, rep.batch)

	// Everything accepted must be counted.
	stopMon()
	rep.accepted = b.accepted.Load()
	n, err := processed(ctx, conn, site)
	if err != nil {
		return nil, err
	}
	rep.processed = n
	rep.lost = max(rep.accepted-n, 0)
	rep.samples = b.mon.since(-1)
	rep.machine = machine()
	rep.restarts = map[string]int{"collector": collector.Restarts(), "processor": proc.Restarts()}
	return rep, nil
}

// search offers rising rates until one is not sustained, then bisects
// between the last sustained and the first failed one.
func (b *bench) search() (int, []stepResult) {
	var steps []stepResult
	good, bad := 0, 0
	for rate := b.cfg.startRate; rate <= b.cfg.maxRate; rate = rate * 3 / 2 {
		s := b.step(rate)
		steps = append(steps, s)
		if !s.ok {
			bad = rate
			break
		}
		good = rate
	}
	for range b.cfg.searchRefines {
		if bad == 0 || bad-good <= b.cfg.startRate/4 {
			break
		}
		mid := (good + bad) / 2 / 100 * 100
		s := b.step(mid)
		steps = append(steps, s)
		if s.ok {
			good = mid
		} else {
			bad = mid
		}
	}
	return good, steps
}

// stepResult is one rate of the search.
type stepResult struct {
	rate     int
	res      *result
	maxLag   time.Duration
	drainFor time.Duration
	ok       bool
	why      string
}

// step offers rate for the step's duration and judges it: every hit
// accepted, the generator on schedule, the lag within the bound, and the
// backlog gone within the bound after the load stops.
func (b *bench) step(rate int) stepResult {
	b.mon.setPhase(fmt.Sprintf("search %d/s", rate))
	from := b.mon.now()
	res := b.collector.openLoop(rate, b.cfg.step, b.cfg.conns)
	drainFor, drained := b.waitDrained(b.cfg.lagBound)
	s := stepResult{rate: rate, res: res, drainFor: drainFor}
	for _, smp := range b.mon.since(from) {
		s.maxLag = max(s.maxLag, smp.lag)
	}
	switch {
	case res.accepted < res.offered:
		s.why = fmt.Sprintf("%d of %d hits not accepted", res.offered-res.accepted, res.offered)
	case res.generatorBehind || res.behindAtEnd > int64(rate):
		s.why = "hits waited over a second to be sent: every connection busy awaiting the collector"
	case !drained:
		s.why = fmt.Sprintf("backlog not processed %v after the load", b.cfg.lagBound)
	case s.maxLag > b.cfg.lagBound:
		s.why = fmt.Sprintf("lag reached %v", s.maxLag.Round(100*time.Millisecond))
	default:
		s.ok = true
	}
	verdict := "sustained"
	if !s.ok {
		verdict = "not sustained: " + s.why
		// The next step starts from an empty backlog.
		if _, ok := b.waitDrained(5 * time.Minute); !ok {
			s.why += "; the backlog did not drain within 5 minutes"
		}
	}
	say("%6d/s: accepted %d/%d, p99 %s, max lag %v: %s", rate, res.accepted, res.offered,
		us(res.lat.ValueAtQuantile(99)), s.maxLag.Round(100*time.Millisecond), verdict)
	return s
}

// profile writes a CPU profile of d from the pprof address to
// <--profile>/<name>.pprof, in the background; the channel closes when done.
func (b *bench) profile(addr, name string, d time.Duration) <-chan struct{} {
	done := make(chan struct{})
	if b.cfg.prof == "" {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, max(int(d.Seconds()), 1))
		resp, err := http.Get(url)
		if err != nil {
			say("profile of %s: %v", name, err)
			return
		}
		defer resp.Body.Close()
		_ = os.MkdirAll(b.cfg.prof, 0o755)
		f, err := os.Create(filepath.Join(b.cfg.prof, name+".pprof"))
		if err != nil {
			say("profile of %s: %v", name, err)
			return
		}
		defer f.Close()
		_, _ = io.Copy(f, resp.Body)
	}()
	return done
}

// waitDrained waits until ClickHouse counts every hit the collector
// accepted, and reports how long that took.
func (b *bench) waitDrained(timeout time.Duration) (time.Duration, bool) {
	start := time.Now()
	for {
		n, err := processed(context.Background(), b.mon.conn, b.site)
		if err == nil && n >= b.accepted.Load() {
			return time.Since(start), true
		}
		if time.Since(start) > timeout {
			return time.Since(start), false
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func connectNATS(url string, timeout time.Duration) (*nats.Conn, error) {
	deadline := time.Now().Add(timeout)
	for {
		nc, err := nats.Connect(url, nats.Name("leadpipe bench"))
		if err == nil {
			return nc, nil
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func createSite(ctx context.Context, js jetstream.JetStream, log *slog.Logger) (string, error) {
	// The buckets are made by the JetStream role (bus.Open); wait for them.
	var tenants *tenant.Store
	var err error
	tctx, stop := context.WithCancel(ctx)
	defer stop()
	for range 50 {
		if tenants, err = tenant.Open(tctx, js, log); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		return "", err
	}
	site, err := tenants.CreateSite(ctx, "", "bench", "northwind-industrial.example")
	return site.ID, err
}

func us(v int64) string {
	d := time.Duration(v) * time.Microsecond
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%d µs", v)
}
