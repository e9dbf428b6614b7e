// Command chaos is `make chaos`: a load of hits with unique ids through a
// running pipeline while it is hurt — processors killed with SIGKILL and
// restarted, the ClickHouse engine restarted and killed with SIGKILL (its
// supervisor brings it back), NATS restarted with its file store kept —
// then, once the backlog drained, a count by id of what the collector
// acknowledged against what ClickHouse holds, raw and aggregated.
//
// A watchdog checks every part each second; one that stays down longer
// than --down-bound stops the run at once with the part's name and its
// last log lines, and the run still ends with the line below, counted as
// far as it can (hits it could not verify count as lost).
//
// The pieces are the real ones: the collector and two processors are
// `leadpipe collect` and `leadpipe process` processes of the built binary;
// NATS JetStream runs embedded in this process (so it can be stopped and
// started again on the same port and store); the ClickHouse engine is the
// managed one, a child process. The last line is
//
//	chaos: hits=N lost=L duplicates=D kills=K
//
// and the exit status is 1 unless lost=0, duplicates=0, kills≥3 and at
// least one kill was the engine's.
//
// It imports what it hurts and counts: internal/, ipintel and store.
package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/leadpipe/leadpipe/bench/internal/harness"
	"github.com/leadpipe/leadpipe/internal/bus"
	"github.com/leadpipe/leadpipe/internal/chengine"
	"github.com/leadpipe/leadpipe/internal/tenant"
	"github.com/leadpipe/leadpipe/ipintel"
	"github.com/leadpipe/leadpipe/store"
)

// businessASNs are companies' own networks in the ASN data, so every hit is
// kept (a filtered hit would be counted in the ledger, not in hits).
var businessASNs = []uint32{212794, 202200, 136767, 29356, 15580, 8883}

const userAgent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"

type config struct {
	bin         string
	hits        int
	rate        int
	workers     int
	keep        bool
	engineKills int
	downBound   time.Duration
}

func main() {
	chengine.MaybeRunChild() // this executable is also the engine's child
	var cfg config
	flag.StringVar(&cfg.bin, "bin", "./bin/leadpipe", "the leadpipe binary whose collector and processors are run")
	flag.IntVar(&cfg.hits, "hits", 100_000, "hits to send, each with its own id")
	flag.IntVar(&cfg.rate, "rate", 2000, "hits per second offered")
	flag.IntVar(&cfg.workers, "workers", 32, "concurrent senders")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the run's directory (logs, stores) instead of removing it")
	flag.IntVar(&cfg.engineKills, "engine-kills", 1, fmt.Sprintf("kill -9 the ClickHouse engine this many times during the load (at most %d)", len(engineKillTimes)))
	flag.DurationVar(&cfg.downBound, "down-bound", time.Minute, "stop the run when a part stays down longer than this")
	flag.Parse()
	if cfg.hits < 1 || cfg.rate < 1 || cfg.workers < 1 {
		fmt.Fprintln(os.Stderr, "chaos: --hits, --rate and --workers must be positive")
		os.Exit(2)
	}
	if cfg.engineKills < 0 || cfg.engineKills > len(engineKillTimes) {
		fmt.Fprintf(os.Stderr, "chaos: --engine-kills must be between 0 and %d\n", len(engineKillTimes))
		os.Exit(2)
	}
	if cfg.downBound < 5*time.Second {
		fmt.Fprintln(os.Stderr, "chaos: --down-bound must be at least 5s")
		os.Exit(2)
	}
	ok, err := run(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(1)
	}
}

var say = harness.Say

// engineKillTimes are when the engine is killed -9 during the load, the
// first --engine-kills of them: apart from the other faults, and the
// first one late enough that the engine has run a while.
var engineKillTimes = []time.Duration{44 * time.Second, 17 * time.Second, 29 * time.Second, 7 * time.Second, 35 * time.Second, 47 * time.Second}

// run is one chaos run; it reports whether nothing was lost or counted twice.
//
// Long: it is the run's script — the parts up, the load with its faults on
// schedule, the drain, the count — and reads best in that order; what
// stands alone (count, watch, send) is a function of its own.
func run(cfg config) (bool, error) {
	ctx := context.Background()
	bin, dir, done, err := harness.Workspace(cfg.bin, "leadpipe-chaos-", cfg.keep)
	if err != nil {
		return false, err
	}
	defer done()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

	// NATS, embedded here: stopping and starting it keeps port and store.
	natsPort, err := harness.FreePort()
	if err != nil {
		return false, err
	}
	busCfg := bus.Config{Listen: "127.0.0.1:" + strconv.Itoa(natsPort), Encrypt: true, Sync: "interval", Replicas: 1,
		HitsMaxAge: time.Hour, HitsMaxBytes: 1 << 30, DuplicateWindow: 2 * time.Minute}
	var busMu sync.Mutex
	b, err := bus.Open(ctx, busCfg, dir, log)
	if err != nil {
		return false, err
	}
	defer func() { busMu.Lock(); b.Close(); busMu.Unlock() }()
	natsURL := b.ClientURL()
	currentBus := func() *bus.Bus {
		busMu.Lock()
		defer busMu.Unlock()
		return b
	}

	// The managed ClickHouse engine, supervised (an engine that exits is
	// restarted), and the schema.
	ch, err := chengine.Start(ctx, chengine.Config{Database: "leadpipe", Engine: "chdb", EngineLib: chengine.DefaultLibPath()}, dir, log)
	if err != nil {
		return false, err
	}
	defer ch.Close()
	if err := harness.Migrate(ctx, ch); err != nil {
		return false, err
	}

	tenantCtx, stopTenants := context.WithCancel(ctx)
	tenants, err := tenant.Open(tenantCtx, b.JS, log)
	if err != nil {
		stopTenants()
		return false, err
	}
	site, err := tenants.CreateSite(ctx, "", "chaos", "chaos.example")
	stopTenants()
	if err != nil {
		return false, err
	}

	var ipdb ipintel.Config
	ipdb.RegisterFlags(flag.NewFlagSet("ipdb", flag.ContinueOnError))
	table, err := ipintel.LoadASNDir(ipdb.ASNDir)
	if err != nil {
		return false, fmt.Errorf("ASN data: %w (run `make setup`)", err)
	}
	var prefixes []netip.Prefix
	for _, asn := range businessASNs {
		prefixes = append(prefixes, table.PrefixesOf(asn)...)
	}
	if len(prefixes) == 0 {
		return false, errors.New("none of the business networks is in the ASN data")
	}

	// The collector and two processors, as separate processes.
	collectorPort, err := harness.FreePort()
	if err != nil {
		return false, err
	}
	collectorAddr := "127.0.0.1:" + strconv.Itoa(collectorPort)
	collector := &harness.Child{Name: "collector", Bin: bin, Dir: dir, Args: []string{"collect", "--nats.url", natsURL,
		"--collector.addr", collectorAddr, "--collector.trusted-proxies", "127.0.0.1/32",
		"--collector.site-rate", strconv.Itoa(4 * cfg.rate), "--metrics.addr", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "collector")}}
	if err := collector.Start(); err != nil {
		return false, err
	}
	defer collector.Stop()
	var procs []*harness.Child
	var procMetrics []string
	for i := range 2 {
		port, err := harness.FreePort()
		if err != nil {
			return false, err
		}
		procMetrics = append(procMetrics, "127.0.0.1:"+strconv.Itoa(port))
		p := &harness.Child{Name: fmt.Sprintf("processor-%d", i+1), Bin: bin, Dir: dir, Args: []string{"process", "--nats.url", natsURL,
			"--clickhouse.addr", ch.Addr, "--metrics.addr", procMetrics[i], "--data-dir", filepath.Join(dir, fmt.Sprintf("p%d", i+1))}}
		if err := p.Start(); err != nil {
			return false, err
		}
		defer p.Stop()
		procs = append(procs, p)
	}
	if err := harness.WaitReady(ctx, "http://"+collectorAddr+"/readyz", time.Minute); err != nil {
		return false, fmt.Errorf("collector: %w (log: %s)", err, collector.LogPath())
	}
	say("pipeline up: collector %s, 2 processors, NATS %s, ClickHouse %s", collectorAddr, natsURL, ch.Addr)

	// The watchdog: a part down longer than the bound stops the run.
	parts := []part{
		{name: "NATS", check: func(ctx context.Context) error { return currentBus().Ready(ctx) }},
		{name: "the ClickHouse engine", check: func(ctx context.Context) error { return engineUp(ctx, ch) },
			logs: func() string { return ch.LastLogLines(20) }},
		{name: collector.Name, check: readyz("http://" + collectorAddr + "/readyz"), logs: func() string { return collector.LastLines(20) }},
	}
	for i, p := range procs {
		parts = append(parts, part{name: p.Name, check: readyz("http://" + procMetrics[i] + "/readyz"), logs: func() string { return p.LastLines(20) }})
	}
	runCtx, abort := context.WithCancelCause(ctx)
	defer abort(nil)
	go watch(runCtx, parts, cfg.downBound, abort)

	// The load and, alongside, the faults.
	acked := make([]atomic.Bool, cfg.hits)
	var retries, refused atomic.Int64
	loadDone := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(loadDone)
		send(runCtx, cfg, site.ID, "http://"+collectorAddr+"/v1/hit", prefixes, acked, &retries, &refused)
	}()
	kills, engineKills := 0, 0
	faults := []fault{
		{4 * time.Second, "kill -9 processor-1", func() error { kills++; return procs[0].Kill() }},
		{9 * time.Second, "kill -9 processor-2", func() error { kills++; return procs[1].Kill() }},
		{14 * time.Second, "restart the ClickHouse engine", func() error { return ch.Restart(ctx) }},
		{20 * time.Second, "kill -9 processor-1", func() error { kills++; return procs[0].Kill() }},
		{26 * time.Second, "restart NATS (file store kept)", func() error {
			busMu.Lock()
			defer busMu.Unlock()
			b.Close()
			nb, err := bus.Open(ctx, busCfg, dir, log)
			if err != nil {
				return err
			}
			b = nb
			return nil
		}},
		{32 * time.Second, "kill -9 processor-2", func() error { kills++; return procs[1].Kill() }},
		{38 * time.Second, "kill -9 processor-1", func() error { kills++; return procs[0].Kill() }},
	}
	for _, at := range engineKillTimes[:cfg.engineKills] {
		faults = append(faults, fault{at, "kill -9 the ClickHouse engine", func() error {
			pid := ch.PID()
			if pid == 0 {
				return errors.New("the engine is not running")
			}
			kills++
			engineKills++
			return syscall.Kill(pid, syscall.SIGKILL)
		}})
	}
	slices.SortStableFunc(faults, func(a, b fault) int { return cmp.Compare(a.at, b.at) })
	var failure error
	for _, f := range faults {
		// On schedule, whether the load still runs or the backlog drains.
		select {
		case <-time.After(time.Until(start.Add(f.at))):
		case <-runCtx.Done():
		}
		if runCtx.Err() != nil {
			break
		}
		t0 := time.Now()
		if err := f.do(); err != nil {
			return false, fmt.Errorf("%s: %w", f.what, err)
		}
		say("%s (%v)", f.what, time.Since(t0).Round(time.Millisecond))
	}
	<-loadDone
	n := 0
	for i := range acked {
		if acked[i].Load() {
			n++
		}
	}
	say("load done: %d of %d hits acknowledged in %v (%d retries, %d never acknowledged)",
		n, cfg.hits, time.Since(start).Round(time.Millisecond), retries.Load(), refused.Load())

	// Wait for the backlog to drain.
	if runCtx.Err() == nil {
		left, err := harness.Drain(runCtx, currentBus().JS, 5*time.Minute)
		if err == nil {
			say("backlog drained after %v (%d acknowledged messages left in the stream)", time.Since(start).Round(time.Millisecond), left)
		} else {
			failure = err
		}
	}
	if cause := context.Cause(runCtx); cause != nil && failure == nil {
		failure = cause
	}
	for _, c := range append([]*harness.Child{collector}, procs...) {
		if n := c.Restarts(); n > 0 {
			say("%s exited by itself %d times and was started again", c.Name, n)
		}
	}
	if r := ch.Restarts(); r > 0 {
		say("the ClickHouse engine was restarted %d times by its supervisor", r)
	}

	lost, dups, err := count(ctx, ch, site.ID, acked)
	if err != nil {
		say("could not count what ClickHouse holds (%v): every acknowledged hit counts as lost", err)
		lost = uint64(n)
	}
	if failure != nil {
		say("stopped: %v", failure)
	}
	fmt.Printf("chaos: hits=%d lost=%d duplicates=%d kills=%d\n", n, lost, dups, kills)
	return failure == nil && err == nil && lost == 0 && dups == 0 && kills >= 3 && engineKills >= min(1, cfg.engineKills), nil
}

type fault struct {
	at   time.Duration
	what string
	do   func() error
}

// count compares by id what the collector acknowledged with what
// ClickHouse holds, raw and in the company aggregates.
func count(ctx context.Context, ch *chengine.Server, site string, acked []atomic.Bool) (lost, dups uint64, err error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := ch.Open()
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	db := store.New(conn)
	stored, err := db.StoredCopies(ctx, site)
	if err != nil {
		return 0, 0, err
	}
	var rawDup, storedUnacked uint64
	for i := range acked {
		c, ok := stored[hitID(i)]
		switch {
		case acked[i].Load() && !ok:
			lost++
		case ok && !acked[i].Load():
			storedUnacked++
		}
		if c > 1 {
			rawDup += c - 1
		}
	}
	aggregated, err := db.SitePageviews(ctx, site)
	if err != nil {
		return 0, 0, err
	}
	distinct := uint64(len(stored))
	var aggDup, aggLost uint64
	if aggregated > distinct {
		aggDup = aggregated - distinct
	} else {
		aggLost = distinct - aggregated
	}
	say("ClickHouse: %d distinct hits stored (%d stored though the client never saw a 202), %d extra raw rows; company_daily counts %d pageviews",
		distinct, storedUnacked, rawDup, aggregated)
	return lost + aggLost, rawDup + aggDup, nil
}

// part is a piece of the running pipeline the watchdog checks.
type part struct {
	name  string
	check func(context.Context) error
	logs  func() string // its last log lines; nil if it logs nowhere of its own
}

// watch checks every part each second; when one has been down longer
// than bound, it prints which and its last log lines and ends the run.
// Parts are listed in dependency order, so the first one down is the
// likeliest cause of the others.
func watch(ctx context.Context, parts []part, bound time.Duration, abort context.CancelCauseFunc) {
	downSince := make([]time.Time, len(parts))
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for i, p := range parts {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := p.check(cctx)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				downSince[i] = time.Time{}
				continue
			}
			if downSince[i].IsZero() {
				downSince[i] = time.Now()
			}
			if d := time.Since(downSince[i]); d > bound {
				say("%s has been down for %v: %v", p.name, d.Round(time.Second), err)
				if p.logs != nil {
					say("last lines of its log:\n%s", p.logs())
				}
				for j, q := range parts {
					if j != i && !downSince[j].IsZero() {
						say("also down: %s, for %v", q.name, time.Since(downSince[j]).Round(time.Second))
					}
				}
				abort(fmt.Errorf("%s down for more than %v", p.name, bound))
				return
			}
		}
	}
}

// engineUp asks the engine's supervisor, then the engine itself: a hung
// engine is down too.
func engineUp(ctx context.Context, ch *chengine.Server) error {
	if err := ch.Down(); err != nil {
		return err
	}
	conn, err := ch.Open()
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Ping(ctx)
}

// readyz checks a process's /readyz.
func readyz(url string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			return fmt.Errorf("readyz: %s %s", resp.Status, bytes.TrimSpace(body))
		}
		return nil
	}
}

func hitID(i int) string { return "chaos-" + strconv.Itoa(i) }

// send offers the hits at cfg.rate (open loop: a slow answer does not slow
// the offered rate until every worker is busy), retrying each until it is
// acknowledged with a 202, as the tracker and server-side senders do.
func send(ctx context.Context, cfg config, site, url string, prefixes []netip.Prefix, acked []atomic.Bool, retries, refused *atomic.Int64) {
	next := make(chan int, cfg.workers)
	go func() {
		defer close(next)
		interval := time.Second / time.Duration(cfg.rate)
		t0 := time.Now()
		for i := range cfg.hits {
			if d := time.Until(t0.Add(time.Duration(i) * interval)); d > 0 {
				time.Sleep(d)
			}
			next <- i
		}
	}()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.workers}}
	var wg sync.WaitGroup
	for w := range cfg.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 99))
			for i := range next {
				// Five hits per visitor, from one address of a business network.
				visitor := i / 5
				vr := rand.New(rand.NewPCG(uint64(visitor), 7))
				ip := ipintel.RandomAddr(prefixes[vr.IntN(len(prefixes))], vr)
				body := fmt.Appendf(nil, `{"site":%q,"type":"pageview","url":"https://chaos.example/p/%d","title":"Page %d","cid":"chaos.%d","id":%q,"consent":"granted"}`,
					site, i%50, i%50, visitor, hitID(i))
				deadline := time.Now().Add(3 * time.Minute)
				for attempt := 0; ctx.Err() == nil; attempt++ {
					if attempt > 0 {
						retries.Add(1)
						time.Sleep(time.Duration(50+r.IntN(200)) * time.Millisecond)
					}
					if post(ctx, client, url, body, ip) {
						acked[i].Store(true)
						break
					}
					if time.Now().After(deadline) {
						refused.Add(1)
						break
					}
				}
			}
		}()
	}
	wg.Wait()
}

func post(ctx context.Context, client *http.Client, url string, body []byte, ip netip.Addr) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("X-Forwarded-For", ip.String())
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Accept-Language", "de-DE,de;q=0.9")
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusAccepted
}
