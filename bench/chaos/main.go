// Command chaos is `make chaos`: a load of hits with unique ids through a
// running pipeline while it is hurt — processors killed with SIGKILL and
// restarted, the ClickHouse engine restarted, NATS restarted with its file
// store kept — then, once the backlog drained, a count by id of what the
// collector acknowledged against what ClickHouse holds, raw and aggregated.
//
// The pieces are the real ones: the collector and two processors are
// `leadpipe collect` and `leadpipe process` processes of the built binary;
// NATS JetStream runs embedded in this process (so it can be stopped and
// started again on the same port and store); the ClickHouse engine is the
// managed one, a child process. The last line is
//
//	chaos: hits=N lost=L duplicates=D kills=K
//
// and the exit status is 1 unless lost=0, duplicates=0 and kills≥3.
package main

import (
	"bytes"
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
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leadpipe/leadpipe/bench/internal/harness"
	"github.com/leadpipe/leadpipe/internal/bus"
	"github.com/leadpipe/leadpipe/internal/chengine"
	"github.com/leadpipe/leadpipe/internal/stack"
	"github.com/leadpipe/leadpipe/internal/tenant"
	"github.com/leadpipe/leadpipe/ipintel"
)

// businessASNs are companies' own networks in the ASN data, so every hit is
// kept (a filtered hit would be counted in the ledger, not in hits).
var businessASNs = []uint32{212794, 202200, 136767, 29356, 15580, 8883}

const userAgent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"

type config struct {
	bin     string
	hits    int
	rate    int
	workers int
	keep    bool
}

func main() {
	chengine.MaybeRunChild() // this executable is also the engine's child
	var cfg config
	flag.StringVar(&cfg.bin, "bin", "./bin/leadpipe", "the leadpipe binary whose collector and processors are run")
	flag.IntVar(&cfg.hits, "hits", 100_000, "hits to send, each with its own id")
	flag.IntVar(&cfg.rate, "rate", 2000, "hits per second offered")
	flag.IntVar(&cfg.workers, "workers", 32, "concurrent senders")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the run's directory (logs, stores) instead of removing it")
	flag.Parse()
	if cfg.hits < 1 || cfg.rate < 1 || cfg.workers < 1 {
		fmt.Fprintln(os.Stderr, "chaos: --hits, --rate and --workers must be positive")
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

	// The managed ClickHouse engine, and the schema.
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

	var ipdb stack.IPDataConfig
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
		"--collector.site-rate", strconv.Itoa(4 * cfg.rate), "--data-dir", filepath.Join(dir, "collector")}}
	if err := collector.Start(); err != nil {
		return false, err
	}
	defer collector.Stop()
	var procs []*harness.Child
	for i := range 2 {
		p := &harness.Child{Name: fmt.Sprintf("processor-%d", i+1), Bin: bin, Dir: dir, Args: []string{"process", "--nats.url", natsURL,
			"--clickhouse.addr", ch.Addr, "--metrics.addr", "127.0.0.1:0", "--data-dir", filepath.Join(dir, fmt.Sprintf("p%d", i+1))}}
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

	// The load and, alongside, the faults.
	acked := make([]atomic.Bool, cfg.hits)
	var retries, refused atomic.Int64
	loadDone := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(loadDone)
		send(ctx, cfg, site.ID, "http://"+collectorAddr+"/v1/hit", prefixes, acked, &retries, &refused)
	}()
	kills := 0
	faults := []struct {
		at   time.Duration
		what string
		do   func() error
	}{
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
	for _, f := range faults {
		// On schedule, whether the load still runs or the backlog drains.
		time.Sleep(time.Until(start.Add(f.at)))
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
	busMu.Lock()
	js := b.JS
	busMu.Unlock()
	left, err := harness.Drain(ctx, js, 5*time.Minute)
	if err != nil {
		return false, err
	}
	say("backlog drained after %v (%d acknowledged messages left in the stream)", time.Since(start).Round(time.Millisecond), left)

	// Count by id.
	conn, err := ch.Open()
	if err != nil {
		return false, err
	}
	defer conn.Close()
	stored := map[string]uint64{}
	rows, err := conn.Query(ctx, "SELECT hit_id, count() FROM hits WHERE site_id = ? GROUP BY hit_id", site.ID)
	if err != nil {
		return false, err
	}
	for rows.Next() {
		var id string
		var c uint64
		if err := rows.Scan(&id, &c); err != nil {
			rows.Close()
			return false, err
		}
		stored[id] = c
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return false, err
	}
	var lost, rawDup, storedUnacked uint64
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
	var aggregated uint64
	if err := conn.QueryRow(ctx, "SELECT sum(pageviews) FROM company_daily WHERE site_id = ?", site.ID).Scan(&aggregated); err != nil {
		return false, err
	}
	distinct := uint64(len(stored))
	var aggDup, aggLost uint64
	if aggregated > distinct {
		aggDup = aggregated - distinct
	} else {
		aggLost = distinct - aggregated
	}
	for _, c := range append([]*harness.Child{collector}, procs...) {
		if n := c.Restarts(); n > 0 {
			say("%s exited by itself %d times and was started again", c.Name, n)
		}
	}
	say("ClickHouse: %d distinct hits stored (%d stored though the client never saw a 202), %d extra raw rows; company_daily counts %d pageviews",
		distinct, storedUnacked, rawDup, aggregated)
	lost += aggLost
	dups := rawDup + aggDup
	fmt.Printf("chaos: hits=%d lost=%d duplicates=%d kills=%d\n", n, lost, dups, kills)
	return lost == 0 && dups == 0 && kills >= 3, nil
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
				for attempt := 0; ; attempt++ {
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
