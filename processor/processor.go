package processor

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/cespare/xxhash/v2"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leadpipe/leadpipe/internal/bus"
	"github.com/leadpipe/leadpipe/ipintel"
)

// Config is the processor's configuration.
type Config struct {
	// BatchSize is the most hits inserted at once.
	BatchSize int
	// BatchWait is the longest a partial batch waits for more hits.
	BatchWait time.Duration
	// Consumer is the durable consumer's name; processors sharing it share the work.
	Consumer string
	// AckWait is how long JetStream waits for an ack before redelivering.
	AckWait time.Duration
}

// RegisterFlags registers the processor.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.BatchSize, "processor.batch-size", 5000, "most hits per ClickHouse insert")
	fs.DurationVar(&c.BatchWait, "processor.batch-wait", time.Second, "longest a partial batch waits before it is inserted")
	fs.StringVar(&c.Consumer, "processor.consumer", "processor", "durable JetStream consumer name shared by processors")
	fs.DurationVar(&c.AckWait, "processor.ack-wait", 2*time.Minute, "how long an unacknowledged hit waits before JetStream redelivers it")
}

// Validate refuses values that cannot work, naming the flag.
func (c *Config) Validate() error {
	if c.BatchSize < 1 || c.BatchSize > 100000 {
		return fmt.Errorf("--processor.batch-size: %d is not between 1 and 100000", c.BatchSize)
	}
	if c.BatchWait < 10*time.Millisecond || c.BatchWait > time.Minute {
		return fmt.Errorf("--processor.batch-wait: %v is not between 10ms and 1m", c.BatchWait)
	}
	if c.Consumer == "" || !validConsumerName(c.Consumer) {
		return fmt.Errorf("--processor.consumer: %q must be letters, digits, - or _", c.Consumer)
	}
	if c.AckWait < 10*time.Second {
		return fmt.Errorf("--processor.ack-wait: %v is shorter than 10s", c.AckWait)
	}
	return nil
}

func validConsumerName(s string) bool {
	for _, r := range s {
		if !(r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// Locator maps an IP to its network; *ipintel.Table is one.
type Locator interface {
	Lookup(ip netip.Addr) (ipintel.Network, bool)
}

// Filter reasons recorded in the ledger.
const (
	ReasonUnmatched = "unmatched" // no organisation known for the IP
	ReasonInvalid   = "invalid"   // the message could not be decoded
)

// Processor turns hits in JetStream into rows in ClickHouse.
type Processor struct {
	cfg     Config
	js      jetstream.JetStream
	ch      driver.Conn
	ipdb    Locator
	keys    *visitorKeys
	log     *slog.Logger
	metrics *metrics
	// lastProgress is when a batch was last written or the stream last found
	// empty (unix nanoseconds); readiness uses it.
	lastProgress atomic.Int64
	failing      atomic.Bool
}

// New builds a processor.
func New(cfg Config, js jetstream.JetStream, ch driver.Conn, ipdb Locator, reg prometheus.Registerer, log *slog.Logger) *Processor {
	return &Processor{cfg: cfg, js: js, ch: ch, ipdb: ipdb, keys: newVisitorKeys(js), log: log, metrics: newMetrics(reg)}
}

// Healthy reports whether ClickHouse currently accepts the processor's inserts.
func (p *Processor) Healthy() error {
	if p.failing.Load() {
		return errors.New("processor: ClickHouse inserts are failing; hits wait in JetStream")
	}
	return nil
}

// Run consumes until ctx ends; the batch in hand is then finished (inserted
// and acknowledged) before Run returns.
func (p *Processor) Run(ctx context.Context) error {
	cons, err := p.js.CreateOrUpdateConsumer(ctx, bus.HitsStream, jetstream.ConsumerConfig{
		Durable:       p.cfg.Consumer,
		Description:   "leadpipe processors",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       p.cfg.AckWait,
		MaxAckPending: 4 * p.cfg.BatchSize,
		// Transient failures (ClickHouse down) are retried in place and
		// never count against a delivery limit.
		MaxDeliver:    -1,
		FilterSubject: bus.HitsSubjects,
	})
	if err != nil {
		return fmt.Errorf("creating consumer %s: %w", p.cfg.Consumer, err)
	}
	for ctx.Err() == nil {
		msgs, err := p.fetch(cons)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			p.log.Warn("fetching hits", "err", err)
			sleep(ctx, time.Second)
			continue
		}
		if len(msgs) == 0 {
			p.lastProgress.Store(time.Now().UnixNano())
			continue
		}
		// The batch is finished even if ctx ends meanwhile: it is drained,
		// not abandoned (a hard stop still loses nothing; it redelivers).
		p.handle(ctx, msgs)
	}
	return nil
}

func (p *Processor) fetch(cons jetstream.Consumer) ([]jetstream.Msg, error) {
	batch, err := cons.Fetch(p.cfg.BatchSize, jetstream.FetchMaxWait(p.cfg.BatchWait))
	if err != nil {
		return nil, err
	}
	msgs := make([]jetstream.Msg, 0, 64)
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && len(msgs) == 0 {
		return nil, err
	}
	return msgs, nil
}

// handle writes one batch, retrying until ClickHouse accepts it or ctx ends
// for good, then acknowledges every message of it.
func (p *Processor) handle(ctx context.Context, msgs []jetstream.Msg) {
	start := time.Now()
	var b *batch
	backoff := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		var err error
		if b == nil {
			b, err = p.build(ctx, msgs)
		}
		if err == nil {
			err = p.write(ctx, b)
		}
		if err == nil {
			break
		}
		p.failing.Store(true)
		p.metrics.insertErrors.Inc()
		p.log.Warn("writing batch failed; retrying", "hits", len(msgs), "attempt", attempt, "err", err)
		// Keep JetStream from redelivering what this processor still holds.
		for _, m := range msgs {
			_ = m.InProgress()
		}
		if ctx.Err() != nil && attempt >= 3 {
			p.log.Warn("stopping with an unwritten batch; JetStream will redeliver it", "hits", len(msgs))
			return
		}
		sleep(context.Background(), backoff)
		backoff = min(backoff*2, 15*time.Second)
	}
	p.failing.Store(false)
	for _, m := range msgs {
		if err := m.Ack(); err != nil {
			// The hit is stored; a lost ack means a redelivery that the
			// stored-id check will recognise.
			p.log.Warn("acknowledging hit", "err", err)
		}
	}
	for _, m := range b.poison {
		_ = m.Term()
	}
	p.lastProgress.Store(time.Now().UnixNano())
	p.metrics.batchSeconds.Observe(time.Since(start).Seconds())
	p.metrics.batchHits.Observe(float64(len(msgs)))
}

// batch is one insert's worth of enriched rows and ledger counts.
type batch struct {
	token       string
	rows        []row
	filtered    map[ledgerKey]uint64
	poison      []jetstream.Msg
	redelivered bool
}

type ledgerKey struct {
	site   string
	day    time.Time
	reason string
}

type row struct {
	site, hitID, typ, url, path, referrer, title, consent string
	ts, received                                          time.Time
	visitorID                                             uint64
	engagedMS                                             uint32
	companyID, companyName, companyDomain, asOrg          string
	networkType, country                                  string
	asn                                                   uint32
	seq                                                   uint64
}

func (p *Processor) build(ctx context.Context, msgs []jetstream.Msg) (*batch, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	b := &batch{filtered: map[ledgerKey]uint64{}, rows: make([]row, 0, len(msgs))}
	seqs := make([]uint64, 0, len(msgs))
	for _, m := range msgs {
		meta, err := m.Metadata()
		var seq uint64
		if err == nil {
			seq = meta.Sequence.Stream
			if meta.NumDelivered > 1 {
				b.redelivered = true
				p.metrics.redelivered.Inc()
			}
		}
		seqs = append(seqs, seq)
		hit, err := bus.DecodeHit(m.Data())
		if err != nil {
			p.log.Error("dropping undecodable hit", "seq", seq, "err", err)
			b.poison = append(b.poison, m)
			p.metrics.filtered.WithLabelValues(ReasonInvalid).Inc()
			continue
		}
		ts := time.UnixMilli(hit.TS).UTC()
		day := ts.Truncate(24 * time.Hour)
		ip, err := netip.ParseAddr(hit.IP)
		var nw ipintel.Network
		found := false
		if err == nil {
			nw, found = p.ipdb.Lookup(ip)
		}
		if !found {
			b.filtered[ledgerKey{hit.Site, day, ReasonUnmatched}]++
			p.metrics.filtered.WithLabelValues(ReasonUnmatched).Inc()
			continue
		}
		vid, err := p.keys.visitorID(ctx, &hit, ip, day)
		if err != nil {
			return nil, fmt.Errorf("deriving visitor id: %w", err)
		}
		b.rows = append(b.rows, row{
			site: hit.Site, hitID: hit.ID, typ: hit.Type, url: hit.URL, path: urlPath(hit.URL),
			referrer: hit.Referrer, title: hit.Title, consent: hit.Consent,
			ts: ts, received: time.UnixMilli(hit.ReceivedAt).UTC(), visitorID: vid, engagedMS: hit.EngagedMS,
			companyID: nw.CompanyID, companyName: nw.Org, asOrg: nw.Org, asn: nw.ASN,
			networkType: "unknown", seq: seq,
		})
	}
	b.token = batchToken(seqs)
	return b, nil
}

// batchToken derives the insert deduplication token from the stream
// sequences in the batch: the same messages always give the same token.
func batchToken(seqs []uint64) string {
	slices.Sort(seqs)
	h := xxhash.New()
	var buf [8]byte
	for _, s := range seqs {
		for i := range buf {
			buf[i] = byte(s >> (8 * i))
		}
		_, _ = h.Write(buf[:])
	}
	first, last := uint64(0), uint64(0)
	if len(seqs) > 0 {
		first, last = seqs[0], seqs[len(seqs)-1]
	}
	return "seq-" + strconv.FormatUint(first, 10) + "-" + strconv.FormatUint(last, 10) + "-" + strconv.FormatUint(h.Sum64(), 16)
}

func urlPath(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Path == "" {
		return "/"
	}
	return u.Path
}

// write inserts the batch's rows and ledger counts, each idempotently.
func (p *Processor) write(ctx context.Context, b *batch) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	rows := b.rows
	if b.redelivered && len(rows) > 0 {
		stored, err := p.storedHits(ctx, rows)
		if err != nil {
			return err
		}
		if len(stored) > 0 {
			p.metrics.duplicatesSkipped.Add(float64(len(stored)))
			rows = slices.DeleteFunc(slices.Clone(rows), func(r row) bool { return stored[r.site+"\x00"+r.hitID] })
		}
	}
	if len(rows) > 0 {
		start := time.Now()
		if err := p.insertHits(ctx, b.token, rows); err != nil {
			return err
		}
		p.metrics.insertSeconds.Observe(time.Since(start).Seconds())
		p.metrics.inserted.Add(float64(len(rows)))
	}
	if len(b.filtered) > 0 {
		if err := p.insertLedger(ctx, b.token, b.filtered); err != nil {
			return err
		}
	}
	return nil
}

func insertContext(ctx context.Context, token string) context.Context {
	return clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
		"insert_deduplicate":         1,
		"insert_deduplication_token": token,
		// The company aggregates must not count a deduplicated block either.
		"deduplicate_blocks_in_dependent_materialized_views": 1,
	}))
}

func (p *Processor) insertHits(ctx context.Context, token string, rows []row) error {
	batch, err := p.ch.PrepareBatch(insertContext(ctx, "hits-"+token), `INSERT INTO hits
		(site_id, ts, received_at, hit_id, type, url, path, referrer, title, visitor_id, consent,
		 engaged_ms, company_id, company_name, company_domain, asn, as_org, network_type, country, stream_seq)`)
	if err != nil {
		return fmt.Errorf("preparing hits insert: %w", err)
	}
	for i := range rows {
		r := &rows[i]
		if err := batch.Append(r.site, r.ts, r.received, r.hitID, r.typ, r.url, r.path, r.referrer, r.title,
			r.visitorID, r.consent, r.engagedMS, r.companyID, r.companyName, r.companyDomain, r.asn, r.asOrg,
			r.networkType, r.country, r.seq); err != nil {
			batch.Abort()
			return fmt.Errorf("appending hit row: %w", err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("inserting %d hits: %w", len(rows), err)
	}
	return nil
}

func (p *Processor) insertLedger(ctx context.Context, token string, counts map[ledgerKey]uint64) error {
	batch, err := p.ch.PrepareBatch(insertContext(ctx, "filtered-"+token), "INSERT INTO filtered_daily (site_id, day, reason, hits)")
	if err != nil {
		return fmt.Errorf("preparing ledger insert: %w", err)
	}
	keys := make([]ledgerKey, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	// A deterministic order keeps the block, and so its dedup hash, stable.
	slices.SortFunc(keys, func(a, b ledgerKey) int {
		if c := a.day.Compare(b.day); c != 0 {
			return c
		}
		if a.site != b.site {
			return cmpStr(a.site, b.site)
		}
		return cmpStr(a.reason, b.reason)
	})
	for _, k := range keys {
		if err := batch.Append(k.site, k.day, k.reason, counts[k]); err != nil {
			batch.Abort()
			return fmt.Errorf("appending ledger row: %w", err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("inserting filter ledger: %w", err)
	}
	return nil
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// storedHits returns which of rows' hits ClickHouse already holds, keyed
// site + "\x00" + hit id.
func (p *Processor) storedHits(ctx context.Context, rows []row) (map[string]bool, error) {
	ids := make([]string, 0, len(rows))
	sites := map[string]bool{}
	for _, r := range rows {
		ids = append(ids, r.hitID)
		sites[r.site] = true
	}
	siteList := make([]string, 0, len(sites))
	for s := range sites {
		siteList = append(siteList, s)
	}
	res, err := p.ch.Query(ctx, "SELECT site_id, hit_id FROM hits WHERE site_id IN ? AND hit_id IN ?", siteList, ids)
	if err != nil {
		return nil, fmt.Errorf("checking stored hits of a redelivered batch: %w", err)
	}
	defer res.Close()
	stored := map[string]bool{}
	for res.Next() {
		var site, id string
		if err := res.Scan(&site, &id); err != nil {
			return nil, fmt.Errorf("checking stored hits: %w", err)
		}
		stored[site+"\x00"+id] = true
	}
	return stored, res.Err()
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

type metrics struct {
	inserted          prometheus.Counter
	insertErrors      prometheus.Counter
	redelivered       prometheus.Counter
	duplicatesSkipped prometheus.Counter
	filtered          *prometheus.CounterVec
	insertSeconds     prometheus.Histogram
	batchSeconds      prometheus.Histogram
	batchHits         prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		inserted:          prometheus.NewCounter(prometheus.CounterOpts{Name: "leadpipe_processor_hits_inserted_total", Help: "Hits written to ClickHouse."}),
		insertErrors:      prometheus.NewCounter(prometheus.CounterOpts{Name: "leadpipe_processor_insert_errors_total", Help: "Failed batch writes (each is retried)."}),
		redelivered:       prometheus.NewCounter(prometheus.CounterOpts{Name: "leadpipe_processor_redelivered_total", Help: "Hits JetStream delivered more than once."}),
		duplicatesSkipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "leadpipe_processor_duplicates_skipped_total", Help: "Redelivered hits found already stored and not written again."}),
		filtered:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leadpipe_processor_hits_filtered_total", Help: "Hits dropped before storage, by reason."}, []string{"reason"}),
		insertSeconds:     prometheus.NewHistogram(prometheus.HistogramOpts{Name: "leadpipe_processor_insert_seconds", Help: "ClickHouse insert latency per batch.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)}),
		batchSeconds:      prometheus.NewHistogram(prometheus.HistogramOpts{Name: "leadpipe_processor_batch_seconds", Help: "Time to enrich, write and acknowledge a batch.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)}),
		batchHits:         prometheus.NewHistogram(prometheus.HistogramOpts{Name: "leadpipe_processor_batch_hits", Help: "Hits per batch.", Buckets: prometheus.ExponentialBuckets(1, 4, 9)}),
	}
	reg.MustRegister(m.inserted, m.insertErrors, m.redelivered, m.duplicatesSkipped, m.filtered, m.insertSeconds, m.batchSeconds, m.batchHits)
	return m
}
