package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/valyala/fasthttp"
	"github.com/yl2chen/cidranger"

	"github.com/leadpipe/leadpipe/internal/bus"
	"github.com/leadpipe/leadpipe/ipintel"
	"github.com/leadpipe/leadpipe/store"
)

// roleEnv makes this executable one of the run's servers instead of the
// driver: "nats" (JetStream, as serve embeds it) or "null" (the null
// fasthttp handler), so each is a process of its own whose CPU and memory
// are measured apart from the load generator's.
const roleEnv = "LEADPIPE_BENCH_ROLE"

// maybeRunRole runs a server role and exits, when this process is one.
func maybeRunRole() {
	role := os.Getenv(roleEnv)
	if role == "" {
		return
	}
	addr, dir := os.Getenv("LEADPIPE_BENCH_ADDR"), os.Getenv("LEADPIPE_BENCH_DIR")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if addr := os.Getenv("LEADPIPE_BENCH_PPROF"); addr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		go func() { _ = http.ListenAndServe(addr, mux) }()
	}
	var err error
	switch role {
	case "nats":
		err = runNATS(ctx, addr, dir)
	case "null":
		err = runNull(ctx, addr)
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, role+":", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// natsConfig is the JetStream of `leadpipe serve` with its defaults:
// file store, encrypted, synced on the default interval.
func natsConfig(addr string) bus.Config {
	return bus.Config{Listen: addr, Encrypt: true, Sync: "interval", Replicas: 1,
		HitsMaxAge: 72 * time.Hour, HitsMaxBytes: 4 << 30, DuplicateWindow: 2 * time.Minute}
}

func runNATS(ctx context.Context, addr, dir string) error {
	b, err := bus.Open(ctx, natsConfig(addr), dir, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return err
	}
	defer b.Close()
	<-ctx.Done()
	return nil
}

// runNull answers every request 204 after reading its body: the most an
// HTTP server on fasthttp can take on this machine.
func runNull(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &fasthttp.Server{
		Handler: func(c *fasthttp.RequestCtx) {
			if c.IsGet() {
				c.SetStatusCode(fasthttp.StatusOK) // readiness
				return
			}
			_ = c.PostBody()
			c.SetStatusCode(fasthttp.StatusNoContent)
		},
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second,
	}
	go func() { <-ctx.Done(); srv.Shutdown() }()
	return srv.Serve(ln)
}

// lookupVsCidranger times IP lookups through the IP data's bart table and
// through cidranger built from the same prefixes, over the same random
// addresses inside the table's networks (so every lookup descends as real
// traffic does), after checking the two agree. Returns ns per lookup.
func lookupVsCidranger(table *ipintel.Table, d time.Duration) (bartNS, rangerNS float64, prefixes int, err error) {
	rg := cidranger.NewPCTrieRanger()
	var all []netip.Prefix
	for p, n := range table.All() {
		e := &rangerEntry{ipNet: net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}, asn: n.ASN}
		if err := rg.Insert(e); err != nil {
			return 0, 0, 0, err
		}
		all = append(all, p)
	}
	r := rand.New(rand.NewPCG(3, 4))
	const probes = 1 << 16
	ips := make([]netip.Addr, probes)
	netIPs := make([]net.IP, probes)
	for i := range ips {
		ips[i] = ipintel.RandomAddr(all[r.IntN(len(all))], r)
		netIPs[i] = net.IP(ips[i].AsSlice())
		want, _ := table.Lookup(ips[i])
		if got, ok := rangerLookup(rg, netIPs[i]); !ok || got != want.ASN {
			return 0, 0, 0, fmt.Errorf("cidranger and bart disagree on %s: AS%d against AS%d", ips[i], got, want.ASN)
		}
	}
	var sink uint32
	timeIt := func(f func(i int)) float64 {
		n, start := 0, time.Now()
		for time.Since(start) < d {
			for range 4096 {
				f(n % probes)
				n++
			}
		}
		return float64(time.Since(start).Nanoseconds()) / float64(n)
	}
	bartNS = timeIt(func(i int) { nw, _ := table.Lookup(ips[i]); sink += nw.ASN })
	rangerNS = timeIt(func(i int) { asn, _ := rangerLookup(rg, netIPs[i]); sink += asn })
	runtime.KeepAlive(sink) // the timed lookups must not be optimised away
	return bartNS, rangerNS, len(all), nil
}

type rangerEntry struct {
	ipNet net.IPNet
	asn   uint32
}

func (e *rangerEntry) Network() net.IPNet { return e.ipNet }

// rangerLookup returns the ASN of the longest prefix containing ip.
func rangerLookup(rg cidranger.Ranger, ip net.IP) (uint32, bool) {
	es, err := rg.ContainingNetworks(ip)
	if err != nil || len(es) == 0 {
		return 0, false
	}
	return es[len(es)-1].(*rangerEntry).asn, true
}

// rawPublish publishes the workload's payloads straight to JetStream for
// d, asynchronously with as many acks pending as the collector allows, to
// a scratch stream stored as HITS is: what JetStream takes without the
// collector.
func rawPublish(ctx context.Context, natsURL string, load *workload, d time.Duration) (float64, error) {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	var failed atomic.Int64
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(bus.MaxPendingPublishes),
		jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { failed.Add(1) }))
	if err != nil {
		return 0, err
	}
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCHRAW", Subjects: []string{"benchraw.>"},
		Storage: jetstream.FileStorage, Retention: jetstream.WorkQueuePolicy, Duplicates: 10 * time.Minute, MaxAge: time.Hour})
	if err != nil {
		return 0, err
	}
	defer js.DeleteStream(context.Background(), s.CachedInfo().Config.Name)
	var buf []byte
	start := time.Now()
	var published int64
	for ; time.Since(start) < d; published++ {
		buf, _ = load.body(buf, "raw", uint64(published))
		msg := nats.NewMsg("benchraw.site")
		msg.Data = append([]byte(nil), buf...)
		msg.Header.Set(jetstream.MsgIDHeader, "raw-"+strconv.FormatInt(published, 36))
		if _, err := js.PublishMsgAsync(msg); err != nil {
			return 0, err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		return 0, errors.New("raw JetStream publishes not acknowledged within 30 s")
	}
	return float64(published-failed.Load()) / time.Since(start).Seconds(), nil
}

// scrape reads a Prometheus text exposition into name → value (labels
// kept in the name).
func scrape(url string) (map[string]float64, error) {
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

// rawInsert reads back up to n rows the processor wrote for site, and
// inserts them again through the store in batches of batchSize into the
// same table (as another site, so the views aggregate them too), with the
// same insert settings: what ClickHouse takes without the processor.
// Returns rows per second of insert time.
func rawInsert(ctx context.Context, conn driver.Conn, site string, n, batchSize int) (float64, int, error) {
	db := store.New(conn)
	data, err := db.SiteHitRows(ctx, site, n)
	if err != nil {
		return 0, 0, err
	}
	if len(data) == 0 {
		return 0, 0, fmt.Errorf("no rows of site %s to insert again", site)
	}
	for i := range data {
		data[i].SiteID = "rawinsert"
	}
	var spent time.Duration
	for from := 0; from < len(data); from += batchSize {
		part := data[from:min(from+batchSize, len(data))]
		start := time.Now()
		if err := db.InsertHits(ctx, "raw-"+strconv.Itoa(from), len(part), slices.Values(pointers(part))); err != nil {
			return 0, 0, err
		}
		spent += time.Since(start)
	}
	return float64(len(data)) / spent.Seconds(), len(data), nil
}

func pointers(hits []store.Hit) []*store.Hit {
	out := make([]*store.Hit, len(hits))
	for i := range hits {
		out[i] = &hits[i]
	}
	return out
}
