package processor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/leadpipe/leadpipe/internal/bus"
	"github.com/leadpipe/leadpipe/internal/chengine"
	"github.com/leadpipe/leadpipe/internal/tenant"
	"github.com/leadpipe/leadpipe/internal/testenv"
	"github.com/leadpipe/leadpipe/ipintel"
	"github.com/leadpipe/leadpipe/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const browserUA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"

func testConfig() Config {
	return Config{BatchSize: 500, BatchWait: 50 * time.Millisecond, Consumer: "processor", AckWait: 30 * time.Second}
}

// businessIPs returns n addresses inside real networks of the ASN data.
func businessIPs(t *testing.T, table *ipintel.Table, asn uint32, n int) []netip.Addr {
	t.Helper()
	prefixes := table.PrefixesOf(asn)
	if len(prefixes) == 0 {
		t.Fatalf("AS%d has no prefixes in the ASN data", asn)
	}
	r := rand.New(rand.NewPCG(uint64(asn), 1))
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = ipintel.RandomAddr(prefixes[r.IntN(len(prefixes))], r)
	}
	return out
}

func publish(t *testing.T, js jetstream.JetStream, site string, ips []netip.Addr, idPrefix string) {
	t.Helper()
	now := time.Now().UnixMilli()
	for i, ip := range ips {
		publishHit(t, js, bus.Hit{ID: fmt.Sprintf("%s-%d", idPrefix, i), Site: site, Type: "pageview", URL: "https://example.com/p",
			Consent: "granted", ClientID: fmt.Sprintf("cid-%d", i%7), TS: now, ReceivedAt: now, IP: ip.String(), UserAgent: browserUA, Lang: "en"})
	}
}

// publishHit publishes one hit as the collector does.
func publishHit(t *testing.T, js jetstream.JetStream, h bus.Hit) {
	t.Helper()
	data, _ := h.Encode()
	msg := nats.NewMsg(bus.HitSubject(h.Site))
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, h.MsgID())
	if _, err := js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
}

func count(t *testing.T, conn driver.Conn, query string, args ...any) uint64 {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// expectCounts waits until ClickHouse holds exactly `hits` hits of the site,
// each once, the company aggregate agrees, and the ledger holds `unmatched`.
func expectCounts(t *testing.T, conn driver.Conn, site string, hits, unmatched uint64) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, func() error {
		got := count(t, conn, "SELECT count() FROM hits WHERE site_id = ?", site)
		agg := count(t, conn, "SELECT sum(pageviews) FROM company_daily WHERE site_id = ?", site)
		led := count(t, conn, "SELECT sum(hits) FROM filtered_daily WHERE site_id = ? AND reason = 'unknown'", site)
		if got != hits || agg != hits || led != unmatched {
			return fmt.Errorf("hits=%d aggregate=%d unmatched=%d, want %d %d %d", got, agg, led, hits, hits, unmatched)
		}
		return nil
	})
	if u := count(t, conn, "SELECT uniqExact(hit_id) FROM hits WHERE site_id = ?", site); u != hits {
		t.Errorf("%d distinct hit ids for %d rows: some hit was stored twice", u, hits)
	}
}

// deps are a processor's real dependencies on the test's bus and database.
func deps(t *testing.T, b *bus.Bus, conn driver.Conn) Deps {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	sites, err := tenant.Open(ctx, b.JS, testenv.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	return Deps{JS: b.JS, ClickHouse: conn, IPData: testenv.IPData(t), Sites: sites}
}

func run(t *testing.T, p *Processor) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("processor: %v", err)
		}
	})
}

func TestProcessorEnrichesWritesAndCountsFiltered(t *testing.T) {
	table := testenv.ASN(t)
	b := testenv.Bus(t)
	conn, _ := testenv.Database(t)
	p := New(testConfig(), deps(t, b, conn), prometheus.NewRegistry(), testenv.Logger())
	run(t, p)

	sap := businessIPs(t, table, 212794, 300)
	siemens := businessIPs(t, table, 202200, 200)
	private := []netip.Addr{netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("192.168.0.1"), netip.MustParseAddr("fd00::1")}
	publish(t, b.JS, "site1", sap, "sap")
	publish(t, b.JS, "site1", siemens, "siemens")
	publish(t, b.JS, "site1", private, "private")
	expectCounts(t, conn, "site1", 500, 3)

	var name string
	var asn uint32
	var pageviews uint64
	if err := conn.QueryRow(context.Background(),
		"SELECT anyLast(company_name), any(asn), count() FROM hits WHERE site_id = 'site1' AND as_org = 'SAP SE'").Scan(&name, &asn, &pageviews); err != nil {
		t.Fatal(err)
	}
	if name != "SAP" || asn != 212794 || pageviews != 300 {
		t.Errorf("SAP hits: name %q asn %d count %d, want SAP (its profile's name) / 212794 / 300", name, asn, pageviews)
	}
	if v := count(t, conn, "SELECT uniqExactMerge(visitors) FROM company_daily WHERE site_id = 'site1' AND company_name = 'SAP'"); v != 7 {
		t.Errorf("SAP visitors %d, want 7 distinct client ids", v)
	}
}

// TestProcessorRedeliveryAfterCrash: a batch written to ClickHouse whose
// acks never reached JetStream (a crash between insert and ack) is
// redelivered; the processor must recognise the stored hits.
func TestProcessorRedeliveryAfterCrash(t *testing.T) {
	table := testenv.ASN(t)
	b := testenv.Bus(t)
	conn, _ := testenv.Database(t)
	cfg := testConfig()
	cfg.AckWait = time.Second // redeliver quickly
	reg := prometheus.NewRegistry()
	p := New(cfg, deps(t, b, conn), reg, testenv.Logger())

	publish(t, b.JS, "s", businessIPs(t, table, 212794, 120), "a")
	ctx := context.Background()
	cons, err := b.JS.CreateOrUpdateConsumer(ctx, bus.HitsStream, jetstream.ConsumerConfig{
		Durable: cfg.Consumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: cfg.AckWait, MaxDeliver: -1, FilterSubject: bus.HitsSubjects,
	})
	if err != nil {
		t.Fatal(err)
	}
	// The first "life": fetch 80, write them, die before acking.
	batch, err := cons.Fetch(80, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	built, err := p.build(ctx, msgs)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.write(ctx, built); err != nil {
		t.Fatal(err)
	}
	if n := count(t, conn, "SELECT count() FROM hits"); n != uint64(len(msgs)) {
		t.Fatalf("first life wrote %d rows, want %d", n, len(msgs))
	}
	// The second life gets all 120 (80 redelivered, in other batches).
	run(t, p)
	testenv.Eventually(t, 30*time.Second, func() error {
		if skipped := testutil.ToFloat64(p.metrics.duplicatesSkipped); skipped != float64(len(msgs)) {
			return fmt.Errorf("duplicates skipped %v, want %d", skipped, len(msgs))
		}
		return nil
	})
	expectCounts(t, conn, "s", 120, 0)
}

// TestProcessorClickHouseDown: with ClickHouse gone, hits wait in JetStream,
// the processor reports itself unhealthy, and when ClickHouse returns every
// hit is written once.
func TestProcessorClickHouseDown(t *testing.T) {
	testenv.Slow(t, "starts and stops a ClickHouse engine of its own")
	table := testenv.ASN(t)
	b := testenv.Bus(t)
	// Its own engine: this test stops it.
	engine, err := chengine.Start(context.Background(), testenv.ClickHouseConfig(), t.TempDir(), testenv.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { engine.Close() })
	if err := migrateEngine(engine); err != nil {
		t.Fatal(err)
	}
	conn, err := engine.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The shortest ack wait: ClickHouse stays away three times longer, and
	// the batch in hand must not be redelivered meanwhile.
	cfg := testConfig()
	cfg.AckWait = 10 * time.Second
	p := New(cfg, deps(t, b, conn), prometheus.NewRegistry(), testenv.Quiet())
	run(t, p)

	ips := businessIPs(t, table, 29356, 200)
	publish(t, b.JS, "s", ips[:100], "before")
	expectCounts(t, conn, "s", 100, 0)

	if err := engine.StopEngine(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	publish(t, b.JS, "s", ips[100:], "during")
	testenv.Eventually(t, 30*time.Second, func() error {
		if p.Healthy() == nil {
			return fmt.Errorf("processor still healthy with ClickHouse down")
		}
		return nil
	})
	// The backlog shows in the lag metrics.
	testenv.Eventually(t, 30*time.Second, func() error {
		if n, age := testutil.ToFloat64(p.metrics.pending), testutil.ToFloat64(p.metrics.oldestAge); n < 100 || age <= 0 {
			return fmt.Errorf("pending %v, oldest age %vs; want the 100 waiting hits", n, age)
		}
		return nil
	})
	// Down for three ack waits: consumption pauses, nothing is given up
	// or dead-lettered, and the batch in hand stays this processor's (it
	// reports progress), so nothing is delivered twice. The wait is the
	// property under test, not a wait for work.
	time.Sleep(time.Until(down.Add(3 * cfg.AckWait)))
	if err := engine.StartEngine(context.Background()); err != nil {
		t.Fatal(err)
	}
	expectCounts(t, conn, "s", 200, 0)
	testenv.Eventually(t, 10*time.Second, p.Healthy)
	if n := testutil.ToFloat64(p.metrics.redelivered); n != 0 {
		t.Errorf("%v hits redelivered while ClickHouse was down, want 0", n)
	}
	if n := testutil.ToFloat64(p.metrics.deadLetters); n != 0 {
		t.Errorf("%v hits dead-lettered for a transient failure, want 0", n)
	}
}

// TestProcessorShutdownDrainsBatchInHand: stopping a processor while it
// holds a batch writes and acknowledges that batch before Run returns, so a
// graceful stop leaves nothing waiting for the ack timeout.
func TestProcessorShutdownDrainsBatchInHand(t *testing.T) {
	table := testenv.ASN(t)
	b := testenv.Bus(t)
	conn, _ := testenv.Database(t)
	cfg := testConfig()
	// A batch waits up to 3 s for more hits: the stop comes while it waits.
	cfg.BatchSize, cfg.BatchWait = 1000, 3*time.Second
	p := New(cfg, deps(t, b, conn), prometheus.NewRegistry(), testenv.Quiet())
	publish(t, b.JS, "s", businessIPs(t, table, 212794, 50), "drain")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	// Stop once the 50 hits are delivered to it and its batch waits for more.
	testenv.Eventually(t, 10*time.Second, func() error {
		c, err := b.JS.Consumer(context.Background(), bus.HitsStream, cfg.Consumer)
		if err != nil {
			return err
		}
		ci, err := c.Info(context.Background())
		if err != nil {
			return err
		}
		if ci.NumAckPending != 50 {
			return fmt.Errorf("%d hits delivered and awaiting an ack, want 50", ci.NumAckPending)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := count(t, conn, "SELECT count() FROM hits WHERE site_id = 's'"); n != 50 {
		t.Errorf("%d hits written by the time Run returned, want 50", n)
	}
	// Acks are sent before Run returns (and flushed when the connection
	// closes); the server removes the hits as it reads them.
	stream, err := b.JS.Stream(context.Background(), bus.HitsStream)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		si, err := stream.Info(context.Background())
		if err != nil {
			return err
		}
		if si.State.Msgs != 0 {
			return fmt.Errorf("%d hits still in the stream after a graceful stop, want 0 (all acknowledged)", si.State.Msgs)
		}
		return nil
	})
}

func TestBatchTokenIsDeterministic(t *testing.T) {
	a := batchToken([]uint64{5, 3, 4})
	b := batchToken([]uint64{3, 4, 5})
	c := batchToken([]uint64{3, 4, 6})
	if a != b {
		t.Errorf("same sequences in another order gave %q and %q", a, b)
	}
	if a == c {
		t.Errorf("different sequences gave the same token %q", a)
	}
}

// TestProcessorFilters: residential, mobile, hosting and bot hits leave only
// a count per site, day and reason; a site that keeps hosting keeps them.
func TestProcessorFilters(t *testing.T) {
	table := testenv.ASN(t)
	b := testenv.Bus(t)
	conn, _ := testenv.Database(t)
	d := deps(t, b, conn)
	ctx := context.Background()
	keeper, err := d.Sites.(*tenant.Store).CreateSite(ctx, "", "Keeps hosting", "keeper.example")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Sites.(*tenant.Store).UpdateSite(ctx, keeper.ID, func(s *tenant.Site) { s.KeepHosting = true }); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	p := New(testConfig(), d, reg, testenv.Logger())
	run(t, p)

	publish(t, b.JS, "s", businessIPs(t, table, 7922, 40), "comcast")   // residential
	publish(t, b.JS, "s", businessIPs(t, table, 22394, 30), "verizonw") // mobile
	publish(t, b.JS, "s", businessIPs(t, table, 16509, 20), "aws")      // hosting
	publish(t, b.JS, "s", businessIPs(t, table, 212794, 10), "sap")     // kept
	publish(t, b.JS, keeper.ID, businessIPs(t, table, 16509, 5), "aws-kept")
	bots := businessIPs(t, table, 202200, 6)
	for i, ip := range bots {
		h := bus.Hit{ID: fmt.Sprintf("bot-%d", i), Site: "s", Type: "pageview", URL: "https://example.com/", Consent: "unknown",
			TS: time.Now().UnixMilli(), ReceivedAt: time.Now().UnixMilli(), IP: ip.String(), UserAgent: "curl/8.5.0", Lang: ""}
		if i%2 == 0 {
			h.UserAgent, h.Lang = browserUA, "" // a browser's UA without Accept-Language
		}
		data, _ := h.Encode()
		if _, err := b.JS.Publish(ctx, bus.HitSubject("s"), data); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		got := map[string]uint64{}
		rows, err := conn.Query(ctx, "SELECT reason, sum(hits) FROM filtered_daily WHERE site_id = 's' GROUP BY reason")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r string
			var n uint64
			rows.Scan(&r, &n)
			got[r] = n
		}
		want := map[string]uint64{"residential": 40, "mobile": 30, "hosting": 20, "bot": 6}
		for k, v := range want {
			if got[k] != v {
				return fmt.Errorf("ledger %v, want %v", got, want)
			}
		}
		return nil
	})
	if n := count(t, conn, "SELECT count() FROM hits WHERE site_id = 's'"); n != 10 {
		t.Errorf("stored %d hits of site s, want only the 10 SAP ones", n)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := count(t, conn, "SELECT count() FROM hits WHERE site_id = ? AND network_type = 'hosting'", keeper.ID); n != 5 {
			return fmt.Errorf("site keeping hosting stored %d hosting hits, want 5", n)
		}
		return nil
	})
	if got := testutil.ToFloat64(p.metrics.filtered.WithLabelValues("residential")); got != 40 {
		t.Errorf("metric filtered{reason=residential} = %v, want 40", got)
	}
	// Nothing about a dropped hit but its site, time, reason and a hash of
	// its id is kept, and the ledger has no visitor data at all.
	cols := count(t, conn, "SELECT count() FROM system.columns WHERE database = currentDatabase() AND table IN ('dropped_hits', 'filtered_daily') AND name NOT IN ('site_id', 'ts', 'day', 'reason', 'hit_key', 'hits')")
	if cols != 0 {
		t.Errorf("dropped_hits or filtered_daily has %d columns beyond site, time, reason, hit hash and count", cols)
	}
}

// TestRetriedInsertCountedOnceInAggregates: the same batch inserted twice
// (a retry whose first attempt did reach ClickHouse) counts once in hits
// and in the company aggregate alike.
func TestRetriedInsertCountedOnceInAggregates(t *testing.T) {
	table := testenv.ASN(t)
	b := testenv.Bus(t)
	conn, _ := testenv.Database(t)
	p := New(testConfig(), deps(t, b, conn), prometheus.NewRegistry(), testenv.Quiet())
	publish(t, b.JS, "s", businessIPs(t, table, 212794, 25), "r")
	cons, err := p.consumer(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := p.fetch(cons)
	if err != nil || len(msgs) != 25 {
		t.Fatalf("fetched %d: %v", len(msgs), err)
	}
	built, err := p.build(context.Background(), msgs)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := p.db.InsertHits(context.Background(), built.token, len(built.rows), hitsOf(built.rows)); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(t, conn, "SELECT count() FROM hits"); n != 25 {
		t.Errorf("hits: %d rows, want 25", n)
	}
	if n := count(t, conn, "SELECT sum(pageviews) FROM company_daily"); n != 25 {
		t.Errorf("company_daily: %d pageviews, want 25 (the retried block deduplicated in the view too)", n)
	}
}

// TestRetryAfterPartialWrite: ClickHouse dies after storing a batch's hits
// but before its materialized views had their share (simulated with the
// views detached during the first attempt). The retry sends the same rows
// under the same token: the hits are not stored twice and the views get
// the batch once. And a hit that another message stored while a batch
// waited (a client's retry, taken by another processor) is left out of
// the batch's retry.
func TestRetryAfterPartialWrite(t *testing.T) {
	table := testenv.ASN(t)
	b := testenv.Bus(t)
	conn, db := testenv.Database(t)
	p := New(testConfig(), deps(t, b, conn), prometheus.NewRegistry(), testenv.Quiet())
	ctx := context.Background()
	publish(t, b.JS, "s", businessIPs(t, table, 212794, 25), "partial")
	cons, err := p.consumer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := p.fetch(cons)
	if err != nil || len(msgs) != 25 {
		t.Fatalf("fetched %d: %v", len(msgs), err)
	}
	built, err := p.build(ctx, msgs)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, "SELECT name FROM system.tables WHERE database = ? AND engine = 'MaterializedView'", db)
	if err != nil {
		t.Fatal(err)
	}
	var views []string
	for rows.Next() {
		var v string
		rows.Scan(&v)
		views = append(views, v)
	}
	rows.Close()
	if len(views) == 0 {
		t.Fatal("no materialized views")
	}
	for _, v := range views {
		if err := conn.Exec(ctx, "DETACH TABLE "+v); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.write(ctx, built); err != nil { // the hits land, the views miss them
		t.Fatal(err)
	}
	for _, v := range views {
		if err := conn.Exec(ctx, "ATTACH TABLE "+v); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(t, conn, "SELECT count() FROM company_daily"); n != 0 {
		t.Fatalf("company_daily has %d rows after the first attempt, want none", n)
	}
	for range 2 { // the retry, and one more
		if err := p.write(ctx, built); err != nil {
			t.Fatal(err)
		}
	}
	expectCounts(t, conn, "s", 25, 0)

	// A batch whose first attempt stored nothing; meanwhile another
	// message's copy of one of its hits was stored.
	publish(t, b.JS, "t", businessIPs(t, table, 212794, 10), "waiting")
	msgs, err = p.fetch(cons)
	if err != nil || len(msgs) != 10 {
		t.Fatalf("fetched %d: %v", len(msgs), err)
	}
	if built, err = p.build(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	built.checked, built.unwritten = true, built.rows
	copyOf := built.rows[3]
	copyOf.StreamSeq += 1000
	if err := p.db.InsertHits(ctx, "another-batch", 1, hitsOf([]row{copyOf})); err != nil {
		t.Fatal(err)
	}
	if err := p.write(ctx, built); err != nil {
		t.Fatal(err)
	}
	expectCounts(t, conn, "t", 10, 0)
}

// TestHitJudgedAgainIsNotWrittenTwice: a hit dropped once and delivered
// again after its site changed a setting (so it would now be kept) stays
// dropped: it is written once, in one table.
func TestHitJudgedAgainIsNotWrittenTwice(t *testing.T) {
	table := testenv.ASN(t)
	b := testenv.Bus(t)
	conn, _ := testenv.Database(t)
	d := deps(t, b, conn)
	ctx := context.Background()
	site, err := d.Sites.(*tenant.Store).CreateSite(ctx, "", "Flip", "flip.example")
	if err != nil {
		t.Fatal(err)
	}
	p := New(testConfig(), d, prometheus.NewRegistry(), testenv.Quiet())
	run(t, p)
	aws := businessIPs(t, table, 16509, 1)[0]
	h := bus.Hit{ID: "flip-1", Site: site.ID, Type: "pageview", URL: "https://flip.example/", Consent: "granted",
		TS: time.Now().UnixMilli(), ReceivedAt: time.Now().UnixMilli(), IP: aws.String(), UserAgent: browserUA, Lang: "en"}
	data, _ := h.Encode()
	// No Nats-Msg-Id: JetStream must not be what recognises the repeat.
	if _, err := b.JS.Publish(ctx, bus.HitSubject(site.ID), data); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		if n := count(t, conn, "SELECT sum(hits) FROM filtered_daily WHERE reason = 'hosting'"); n != 1 {
			return fmt.Errorf("ledger hosting = %d", n)
		}
		return nil
	})
	if _, err := d.Sites.(*tenant.Store).UpdateSite(ctx, site.ID, func(s *tenant.Site) { s.KeepHosting = true }); err != nil {
		t.Fatal(err)
	}
	if _, err := b.JS.Publish(ctx, bus.HitSubject(site.ID), data); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		if skipped := testutil.ToFloat64(p.metrics.duplicatesSkipped); skipped != 1 {
			return fmt.Errorf("duplicates skipped %v", skipped)
		}
		return nil
	})
	if n := count(t, conn, "SELECT count() FROM hits"); n != 0 {
		t.Errorf("the repeated hit was stored after being dropped: %d rows", n)
	}
}

func TestHealthyReportsAStall(t *testing.T) {
	p := &Processor{}
	if p.Healthy() == nil {
		t.Error("a processor that is not running reports healthy")
	}
	p.running.Store(true)
	p.lastWrite.Store(time.Now().UnixNano())
	p.oldestAge.Store(int64(10 * time.Minute))
	if err := p.Healthy(); err != nil {
		t.Errorf("old backlog but a batch just written: %v", err)
	}
	p.lastWrite.Store(time.Now().Add(-6 * time.Minute).UnixNano())
	if err := p.Healthy(); err == nil || !strings.Contains(err.Error(), "stalled") {
		t.Errorf("old backlog and nothing written for 6 minutes: %v, want stalled", err)
	}
	p.oldestAge.Store(int64(time.Minute))
	if err := p.Healthy(); err != nil {
		t.Errorf("idle with a fresh backlog: %v", err)
	}
}

// TestRefusedHitsAreDeadLettered: hits ClickHouse refuses (here a CHECK
// constraint the operator added; a value out of a column's range would do
// the same) are found after a few whole-batch attempts by writing the batch
// in halves, and set aside as dead letters with ClickHouse's reason; the
// rest of the batch is written once, and a message that breaks the hit
// schema (a type no collector sends) is dead-lettered without retries.
func TestRefusedHitsAreDeadLettered(t *testing.T) {
	table := testenv.ASN(t)
	b := testenv.Bus(t)
	conn, _ := testenv.Database(t)
	if err := conn.Exec(context.Background(), "ALTER TABLE hits ADD CONSTRAINT no_poison CHECK positionCaseInsensitive(url, 'poison') = 0"); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.BatchWait = 500 * time.Millisecond
	reg := prometheus.NewRegistry()
	p := New(cfg, deps(t, b, conn), reg, testenv.Quiet())
	ips := businessIPs(t, table, 212794, 40)
	now := time.Now().UnixMilli()
	for i, ip := range ips {
		url := fmt.Sprintf("https://example.com/p%d", i)
		if i == 7 || i == 31 {
			url = "https://example.com/poison"
		}
		h := bus.Hit{ID: fmt.Sprintf("r-%d", i), Site: "s", Type: "pageview", URL: url, Consent: "granted",
			TS: now, ReceivedAt: now, IP: ip.String(), UserAgent: browserUA, Lang: "en"}
		if i == 20 {
			h.Type = "purchase"
		}
		data, _ := h.Encode()
		if _, err := b.JS.Publish(context.Background(), bus.HitSubject("s"), data); err != nil {
			t.Fatal(err)
		}
	}
	run(t, p)
	expectCounts(t, conn, "s", 37, 0)
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := testutil.ToFloat64(p.metrics.deadLetters); n != 3 {
			return fmt.Errorf("%v dead letters, want 3", n)
		}
		return nil
	})
	stream, err := b.JS.Stream(context.Background(), bus.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]int{}
	for seq := uint64(1); seq <= 3; seq++ {
		m, err := stream.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		why := m.Header.Get(bus.DeadLetterReasonHeader)
		switch {
		case strings.Contains(why, "refused by ClickHouse") && strings.Contains(why, "no_poison"):
			reasons["refused"]++
		case strings.Contains(why, "hit schema: type"):
			reasons["schema"]++
		default:
			t.Errorf("dead letter %d: reason %q", seq, why)
		}
	}
	if reasons["refused"] != 2 || reasons["schema"] != 1 {
		t.Errorf("dead-letter reasons %v, want 2 refused by ClickHouse and 1 schema", reasons)
	}
}

// TestProcessorsShareTheWork: two processors on the one durable consumer
// split the hits between them, and each hit is stored and counted once.
func TestProcessorsShareTheWork(t *testing.T) {
	table := testenv.ASN(t)
	b := testenv.Bus(t)
	conn, _ := testenv.Database(t)
	cfg := testConfig()
	cfg.BatchSize = 100
	var procs []*Processor
	for range 2 {
		p := New(cfg, deps(t, b, conn), prometheus.NewRegistry(), testenv.Quiet())
		run(t, p)
		procs = append(procs, p)
	}
	// Both must be asking for hits before any arrive, or the first one to
	// ask could take them all.
	testenv.Eventually(t, 10*time.Second, func() error {
		cons, err := b.JS.Consumer(context.Background(), bus.HitsStream, cfg.Consumer)
		if err != nil {
			return err
		}
		info, err := cons.Info(context.Background())
		if err != nil {
			return err
		}
		if info.NumWaiting < 2 {
			return fmt.Errorf("%d pull requests waiting, want 2", info.NumWaiting)
		}
		return nil
	})
	publish(t, b.JS, "s", businessIPs(t, table, 136767, 3000), "shared")
	expectCounts(t, conn, "s", 3000, 0)
	for i, p := range procs {
		if n := testutil.ToFloat64(p.metrics.inserted); n == 0 || n == 3000 {
			t.Errorf("processor %d inserted %v of 3000 hits: the work was not shared", i+1, n)
		}
	}
}

// TestRetentionStampedFromSite: each stored hit carries its site's
// retention (the tables' TTL reads it); a site without the setting gets
// the default.
func TestRetentionStampedFromSite(t *testing.T) {
	table := testenv.ASN(t)
	b := testenv.Bus(t)
	conn, _ := testenv.Database(t)
	d := deps(t, b, conn)
	ctx := context.Background()
	store := d.Sites.(*tenant.Store)
	short, err := store.CreateSite(ctx, "", "Short", "short.example")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.UpdateSite(ctx, short.ID, func(s *tenant.Site) { s.RetentionDays = 30 }); err != nil {
		t.Fatal(err)
	}
	plain, err := store.CreateSite(ctx, "", "Plain", "plain.example")
	if err != nil {
		t.Fatal(err)
	}
	run(t, New(testConfig(), d, prometheus.NewRegistry(), testenv.Quiet()))
	ips := businessIPs(t, table, 212794, 10)
	publish(t, b.JS, short.ID, ips[:5], "short")
	publish(t, b.JS, plain.ID, ips[5:], "plain")
	expectCounts(t, conn, short.ID, 5, 0)
	expectCounts(t, conn, plain.ID, 5, 0)
	for site, want := range map[string]uint64{short.ID: 30, plain.ID: tenant.DefaultRetentionDays} {
		if n := count(t, conn, "SELECT countIf(retention_days != ?) FROM hits WHERE site_id = ?", want, site); n != 0 {
			t.Errorf("site %s: %d hits without its retention of %d days", site, n, want)
		}
	}
}

// TestIntentAndHeadquartersStamped: pageviews of a site's high-intent
// pages are stamped (the default words, or the site's own once it names
// them; engagement hits never), company_daily sums them, and each hit
// carries its company's headquarters from the company's profile.
func TestIntentAndHeadquartersStamped(t *testing.T) {
	table := testenv.ASN(t)
	b := testenv.Bus(t)
	conn, _ := testenv.Database(t)
	d := deps(t, b, conn)
	ctx := context.Background()
	sites := d.Sites.(*tenant.Store)
	plain, err := sites.CreateSite(ctx, "", "Plain", "plain.example")
	if err != nil {
		t.Fatal(err)
	}
	docs, err := sites.CreateSite(ctx, "", "Docs", "docs.example")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sites.UpdateSite(ctx, docs.ID, func(s *tenant.Site) { s.IntentPages = []string{"/docs"} }); err != nil {
		t.Fatal(err)
	}
	run(t, New(testConfig(), d, prometheus.NewRegistry(), testenv.Quiet()))
	ip := businessIPs(t, table, 212794, 1)[0] // SAP SE: headquartered in DE by its profile
	now := time.Now().UnixMilli()
	n := 0
	for _, site := range []string{plain.ID, docs.ID} {
		for _, h := range []struct{ typ, path string }{{"pageview", "/Pricing"}, {"pageview", "/docs/api"}, {"pageview", "/blog"}, {"engagement", "/pricing"}} {
			n++
			publishHit(t, b.JS, bus.Hit{ID: fmt.Sprintf("i-%d", n), Site: site, Type: h.typ, URL: "https://example.com" + h.path,
				Consent: "granted", ClientID: "c", TS: now, ReceivedAt: now, IP: ip.String(), UserAgent: browserUA, Lang: "en"})
		}
	}
	for site, want := range map[string]string{plain.ID: "/Pricing", docs.ID: "/docs/api"} {
		testenv.Eventually(t, 30*time.Second, func() error {
			// The view's rows may be committed a moment after the hits'.
			if got, agg := count(t, conn, "SELECT count() FROM hits WHERE site_id = ?", site),
				count(t, conn, "SELECT sum(hits) FROM company_daily WHERE site_id = ?", site); got != 4 || agg != 4 {
				return fmt.Errorf("%d hits stored, %d in company_daily", got, agg)
			}
			return nil
		})
		var paths []string
		rows, err := conn.Query(ctx, "SELECT path FROM hits WHERE site_id = ? AND intent = 1", site)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var p string
			rows.Scan(&p)
			paths = append(paths, p)
		}
		rows.Close()
		if strings.Join(paths, ",") != want {
			t.Errorf("site %s: intent stamped on %v, want only %s", site, paths, want)
		}
		if got := count(t, conn, "SELECT sum(intent_pageviews) FROM company_daily WHERE site_id = ?", site); got != 1 {
			t.Errorf("site %s: company_daily counts %d intent pageviews, want 1", site, got)
		}
		if got := count(t, conn, "SELECT countIf(company_country != 'DE' OR company_name != 'SAP') FROM hits WHERE site_id = ?", site); got != 0 {
			t.Errorf("site %s: %d hits without SAP's profile name and headquarters", site, got)
		}
	}
}

// TestHitsOfDeletedSiteAreDropped: hits of a site erased while they
// waited leave nothing behind — no row, no ledger count — and are
// acknowledged.
func TestHitsOfDeletedSiteAreDropped(t *testing.T) {
	table := testenv.ASN(t)
	b := testenv.Bus(t)
	conn, _ := testenv.Database(t)
	d := deps(t, b, conn)
	ctx := context.Background()
	store := d.Sites.(*tenant.Store)
	gone, err := store.CreateSite(ctx, "", "Gone", "gone.example")
	if err != nil {
		t.Fatal(err)
	}
	kept, err := store.CreateSite(ctx, "", "Kept", "kept.example")
	if err != nil {
		t.Fatal(err)
	}
	ips := businessIPs(t, table, 212794, 10)
	// Published after the erasure (its purge of the queue is past), as a
	// hit in flight at a collector would arrive.
	if err := store.DeleteSite(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	publish(t, b.JS, gone.ID, ips[:5], "gone")
	publish(t, b.JS, kept.ID, ips[5:], "kept")
	p := New(testConfig(), d, prometheus.NewRegistry(), testenv.Quiet())
	run(t, p)
	expectCounts(t, conn, kept.ID, 5, 0)
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := testutil.ToFloat64(p.metrics.filtered.WithLabelValues(ReasonSiteDeleted)); n != 5 {
			return fmt.Errorf("%v hits dropped as of a deleted site, want 5", n)
		}
		return nil
	})
	for _, q := range []string{"SELECT count() FROM hits WHERE site_id = ?", "SELECT count() FROM dropped_hits WHERE site_id = ?", "SELECT count() FROM filtered_daily WHERE site_id = ?"} {
		if n := count(t, conn, q, gone.ID); n != 0 {
			t.Errorf("%s = %d for the deleted site, want 0", q, n)
		}
	}
	stream, _ := b.JS.Stream(ctx, bus.HitsStream)
	testenv.Eventually(t, 5*time.Second, func() error {
		si, err := stream.Info(ctx)
		if err != nil {
			return err
		}
		if si.State.Msgs != 0 {
			return fmt.Errorf("%d hits still queued, want none (all acknowledged)", si.State.Msgs)
		}
		return nil
	})
}

// TestMessagesOfSeveralHits: a message the collector filled with several
// hits (one per line) is written hit by hit: a hit that breaks the schema
// and one ClickHouse refuses are set aside alone, with their reasons, the
// others of their messages stored; a hit id in two messages (a retry that
// shared a message with others) is stored once; every message is
// acknowledged.
func TestMessagesOfSeveralHits(t *testing.T) {
	table := testenv.ASN(t)
	b := testenv.Bus(t)
	conn, _ := testenv.Database(t)
	if err := conn.Exec(context.Background(), "ALTER TABLE hits ADD CONSTRAINT no_poison CHECK positionCaseInsensitive(url, 'poison') = 0"); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	p := New(testConfig(), deps(t, b, conn), reg, testenv.Quiet())
	ips := businessIPs(t, table, 212794, 60)
	now := time.Now().UnixMilli()
	encode := func(i int) []byte {
		h := bus.Hit{ID: fmt.Sprintf("m-%d", i), Site: "s", Type: "pageview", URL: fmt.Sprintf("https://example.com/p%d", i), Consent: "granted",
			TS: now, ReceivedAt: now, IP: ips[i].String(), UserAgent: browserUA, Lang: "en"}
		switch i {
		case 13:
			h.Type = "purchase"
		case 42:
			h.URL = "https://example.com/poison"
		}
		data, _ := h.Encode()
		return data
	}
	// Six messages of ten hits; hit 5 is also in the last message (a retry).
	for m := range 6 {
		var lines [][]byte
		for i := m * 10; i < m*10+10; i++ {
			lines = append(lines, encode(i))
		}
		if m == 5 {
			lines = append(lines, encode(5))
		}
		if _, err := b.JS.Publish(context.Background(), bus.HitSubject("s"), bytes.Join(lines, []byte("\n"))); err != nil {
			t.Fatal(err)
		}
	}
	run(t, p)
	expectCounts(t, conn, "s", 58, 0)
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := testutil.ToFloat64(p.metrics.deadLetters); n != 2 {
			return fmt.Errorf("%v dead letters, want 2", n)
		}
		cons, err := b.JS.Consumer(context.Background(), bus.HitsStream, "processor")
		if err != nil {
			return err
		}
		info, err := cons.Info(context.Background())
		if err != nil {
			return err
		}
		if info.NumPending != 0 || info.NumAckPending != 0 {
			return fmt.Errorf("%d messages pending, %d awaiting an ack", info.NumPending, info.NumAckPending)
		}
		return nil
	})
	stream, err := b.JS.Stream(context.Background(), bus.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for seq := uint64(1); seq <= 2; seq++ {
		m, err := stream.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		var h bus.Hit
		if err := json.Unmarshal(m.Data, &h); err != nil || bytes.IndexByte(m.Data, '\n') >= 0 {
			t.Fatalf("dead letter %d is not one hit: %q", seq, m.Data)
		}
		ids[h.ID] = m.Header.Get(bus.DeadLetterReasonHeader)
	}
	if !strings.Contains(ids["m-13"], "hit schema: type") || !strings.Contains(ids["m-42"], "no_poison") {
		t.Errorf("dead letters %v, want m-13 (schema) and m-42 (refused)", ids)
	}
}

// TestWrittenHitsOfAWholeBatch: the already-written check of a batch of
// the largest size, with long hit ids, is not refused for its length (the
// ids are written into the query text).
func TestWrittenHitsOfAWholeBatch(t *testing.T) {
	b := testenv.Bus(t)
	conn, _ := testenv.Database(t)
	p := New(testConfig(), deps(t, b, conn), prometheus.NewRegistry(), testenv.Quiet())
	refs := make([]store.HitRef, 20_000)
	now := time.Now()
	for i := range refs {
		refs[i] = store.HitRef{SiteID: "s", HitID: fmt.Sprintf("%064d", i), TS: now}
	}
	if _, err := p.db.StoredHits(context.Background(), refs); err != nil {
		t.Fatal(err)
	}
	rows := make([]row, 20_000)
	idx := make([]int, len(rows))
	for i := range rows {
		rows[i] = row{Hit: store.Hit{SiteID: "s", CompanyID: fmt.Sprintf("company-%060d", i), VisitorID: uint64(i), TS: now}}
		idx[i] = i
	}
	if _, err := p.sessions.lookup(context.Background(), rows, idx); err != nil {
		t.Fatal(err)
	}
}

// TestRegistryAndCandidateStamped: with registry assignments imported, a
// hit from a company's assignment is stored under the company the registry
// names, confirmed; a hit from a network only the address-space fall-back
// calls a company is stored as a candidate; a hit from the assigning ISP's
// own block (in no announced network) is dropped as unknown.
func TestRegistryAndCandidateStamped(t *testing.T) {
	ri := ipintel.NewRegistryImport(nil)
	if err := ri.ReadFiles("../ipintel/testdata/rpsl/networks.db", "../ipintel/testdata/rpsl/organisations.db"); err != nil {
		t.Fatal(err)
	}
	kept, _ := ri.Result()
	src := testenv.IPSources()
	src.Registry = ipintel.RegistryFile(t.TempDir())
	if err := ipintel.WriteRegistry(src.Registry, kept); err != nil {
		t.Fatal(err)
	}
	ipdata, err := ipintel.OpenStore(src, testenv.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	b := testenv.Bus(t)
	conn, _ := testenv.Database(t)
	d := deps(t, b, conn)
	d.IPData = ipdata
	run(t, New(testConfig(), d, prometheus.NewRegistry(), testenv.Quiet()))

	// AS26662 (Xerox's legacy /16, in no curated list) is a candidate by the
	// address-space fall-back alone.
	legacy := businessIPs(t, testenv.ASN(t), 26662, 1)[0]
	ips := []netip.Addr{netip.MustParseAddr("198.51.100.5"), legacy, netip.MustParseAddr("198.51.100.20")}
	publish(t, b.JS, "reg", ips, "reg")
	expectCounts(t, conn, "reg", 2, 1)
	for ip, want := range map[string]string{"reg-0": "Example Paper Mill Oy business 0 registry", "reg-1": "XEROX CORPORATION business 1 address-space"} {
		var name, typ, decided string
		var candidate uint8
		if err := conn.QueryRow(context.Background(), "SELECT company_name, toString(network_type), candidate, decided_by FROM hits WHERE site_id = 'reg' AND hit_id = ?", ip).
			Scan(&name, &typ, &candidate, &decided); err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%s %s %d %s", name, typ, candidate, decided); got != want {
			t.Errorf("%s: stored %q, want %q", ip, got, want)
		}
	}
}

// TestRDAPCompanyStored: with RDAP on, the first hit from a network in no
// organisation's space is processed with what is known (dropped as
// unknown) while the registry is asked in the background; a later hit from
// the network is stored under the company the registry assigned it to. A
// person's assignment and a residential pool never name a company.
func TestRDAPCompanyStored(t *testing.T) {
	b := testenv.Bus(t)
	conn, _ := testenv.Database(t)
	srv := testenv.StartRDAP(t, "../ipintel/testdata/rdap")
	kv, err := b.JS.KeyValue(context.Background(), bus.RDAPBucket)
	if err != nil {
		t.Fatal(err)
	}
	d := deps(t, b, conn)
	rdap := ipintel.NewRDAP(ipintel.RDAPConfig{Bootstrap: srv.Bootstrap, Rate: 100}, kv, d.IPData.(*ipintel.Store).Classifier(), testenv.Quiet())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rdap.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	d.RDAP = rdap
	run(t, New(testConfig(), d, prometheus.NewRegistry(), testenv.Quiet()))

	first := []netip.Addr{netip.MustParseAddr("198.51.100.5"), netip.MustParseAddr("198.51.100.66"), netip.MustParseAddr("198.51.100.200")}
	publish(t, b.JS, "rdap", first, "first")
	expectCounts(t, conn, "rdap", 0, 3)
	for _, ip := range first {
		testenv.Eventually(t, 10*time.Second, func() error {
			if _, ok := rdap.Lookup(ip); !ok {
				return fmt.Errorf("no RDAP answer for %s yet", ip)
			}
			return nil
		})
	}
	later := []netip.Addr{netip.MustParseAddr("198.51.100.9"), netip.MustParseAddr("198.51.100.67"), netip.MustParseAddr("198.51.100.201")}
	publish(t, b.JS, "rdap", later, "later")
	expectCounts(t, conn, "rdap", 1, 5)
	var name, typ string
	var candidate uint8
	var decided string
	if err := conn.QueryRow(context.Background(), "SELECT company_name, toString(network_type), candidate, decided_by FROM hits WHERE site_id = 'rdap'").
		Scan(&name, &typ, &candidate, &decided); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("%s %s %d %s", name, typ, candidate, decided); got != "Example Paper Mill Oy business 0 rdap" {
		t.Errorf("stored %q, want the paper mill, confirmed", got)
	}
	if n := len(srv.Queries()); n != 3 {
		t.Errorf("%d RDAP queries for three networks", n)
	}
}

// TestIdentifyTeachesNetwork: three visitors who identify, with consent,
// with addresses at one company from one network teach the network: a
// later pageview from it, by anyone, is stored under that company. The
// identify hits themselves store nothing in ClickHouse; an identification
// from a mobile carrier's or a consumer ISP's network is not recorded.
func TestIdentifyTeachesNetwork(t *testing.T) {
	b := testenv.Bus(t)
	conn, _ := testenv.Database(t)
	ctx := context.Background()
	ids, _ := b.JS.KeyValue(ctx, bus.IdentitiesBucket)
	removals, _ := b.JS.KeyValue(ctx, bus.LearnedBucket)
	learner := ipintel.NewLearner(ids, removals, testenv.Quiet())
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- learner.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })
	d := deps(t, b, conn)
	d.Learned = learner
	reg := prometheus.NewRegistry()
	run(t, New(testConfig(), d, reg, testenv.Quiet()))

	now := time.Now().UnixMilli()
	mobile := businessIPs(t, testenv.ASN(t), 22394, 1)[0] // Verizon Wireless: mobile
	comcast := businessIPs(t, testenv.ASN(t), 7922, 1)[0] // a consumer ISP: residential
	for i, ip := range []string{"198.51.100.10", "198.51.100.11", "198.51.100.12", mobile.String(), comcast.String()} {
		publishHit(t, b.JS, bus.Hit{ID: fmt.Sprintf("id-%d", i), Site: "ident", Type: "identify", URL: "https://example.com/contact",
			Consent: "granted", ClientID: fmt.Sprintf("visitor-%d", i), TS: now, ReceivedAt: now, IP: ip, UserAgent: browserUA, Lang: "en",
			Domain: "paper-mill.example"})
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if _, ok := learner.Lookup(netip.MustParseAddr("198.51.100.99")); !ok {
			return fmt.Errorf("198.51.100.0/24 not learned yet (recorded %v, no consent %v)", testutilCount(t, reg, "leadpipe_processor_identifications_total", "recorded"), testutilCount(t, reg, "leadpipe_processor_identifications_total", "no_consent"))
		}
		return nil
	})
	for _, outcome := range []string{"mobile", "residential"} {
		if n := testutilCount(t, reg, "leadpipe_processor_identifications_total", outcome); n != 1 {
			t.Errorf("identifications{outcome=%s}: %v, want 1 (not recorded)", outcome, n)
		}
	}
	publish(t, b.JS, "ident", []netip.Addr{netip.MustParseAddr("198.51.100.99"), netip.MustParseAddr("203.0.113.9")}, "page")
	expectCounts(t, conn, "ident", 1, 1)
	var name, domain, typ, decided string
	if err := conn.QueryRow(ctx, "SELECT company_name, company_domain, toString(network_type), decided_by FROM hits WHERE site_id = 'ident'").
		Scan(&name, &domain, &typ, &decided); err != nil {
		t.Fatal(err)
	}
	if got := name + " " + domain + " " + typ + " " + decided; got != "paper-mill.example paper-mill.example business learned" {
		t.Errorf("stored %q, want the learned company", got)
	}
	keys, err := ids.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range keys.Keys() {
		n++
	}
	if n != 3 {
		t.Errorf("%d identifications recorded, want 3 (not the mobile or the residential one)", n)
	}
}

// testutilCount reads a counter of reg with one label value.
func testutilCount(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == label {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

// TestIdentifyOff: with learning off (no learner), identify hits are
// dropped and counted, and nothing is recorded.
func TestIdentifyOff(t *testing.T) {
	b := testenv.Bus(t)
	conn, _ := testenv.Database(t)
	reg := prometheus.NewRegistry()
	run(t, New(testConfig(), deps(t, b, conn), reg, testenv.Quiet()))
	now := time.Now().UnixMilli()
	publishHit(t, b.JS, bus.Hit{ID: "id-off", Site: "off", Type: "identify", URL: "https://example.com/contact", Consent: "granted",
		ClientID: "v1", TS: now, ReceivedAt: now, IP: "198.51.100.10", UserAgent: browserUA, Lang: "en", Domain: "paper-mill.example"})
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := testutilCount(t, reg, "leadpipe_processor_identifications_total", "off"); n != 1 {
			return fmt.Errorf("identifications{outcome=off} = %v", n)
		}
		return nil
	})
	ids, _ := b.JS.KeyValue(context.Background(), bus.IdentitiesBucket)
	if st, err := ids.Status(context.Background()); err != nil || st.Values() != 0 {
		t.Errorf("identifications recorded with learning off: %v, %v", st, err)
	}
}
