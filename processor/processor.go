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
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leadpipe/leadpipe/internal/bus"
	"github.com/leadpipe/leadpipe/internal/tenant"
	"github.com/leadpipe/leadpipe/internal/visitor"
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
	// Short: it is how long the hits of a processor that died wait before
	// another one gets them. A live processor never hits it, however slow
	// its insert, since it reports progress every third of it.
	fs.DurationVar(&c.AckWait, "processor.ack-wait", 30*time.Second, "how long the hits a processor holds wait, after it stopped reporting progress, before JetStream redelivers them")
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
	if c.BatchWait > c.AckWait/3 {
		// Messages wait for their batch before the in-progress ticker runs.
		return fmt.Errorf("--processor.batch-wait: %v must be at most a third of --processor.ack-wait (%v)", c.BatchWait, c.AckWait)
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

// IPData is the current IP intelligence snapshot; *ipintel.Store is one.
type IPData interface {
	DB() *ipintel.DB
}

// PTR gives what reverse DNS says of an IP without waiting for it;
// *ipintel.RDNS is one.
type PTR interface {
	Peek(ip netip.Addr) (ipintel.PTRSignal, bool)
}

// Sites gives a site's settings; *tenant.Store is one.
type Sites interface {
	LookupSite(ctx context.Context, id string) (tenant.Site, bool)
	// Deleted reports a site erased on request: its hits in flight are
	// dropped, leaving no trace (not even a count).
	Deleted(id string) bool
}

// Deps are what a processor reads from and writes to.
type Deps struct {
	JS         jetstream.JetStream
	ClickHouse driver.Conn
	IPData     IPData
	// PTR is nil when reverse DNS is off.
	PTR   PTR
	Sites Sites
	// Erased, if set, names visitors erased on request whose queued hits
	// must be dropped on arrival.
	Erased *visitor.Erased
}

// Reasons a hit is dropped before anything about it is stored; the filter
// ledger counts each per site and day.
const (
	ReasonResidential = "residential" // a home broadband network
	ReasonMobile      = "mobile"      // a mobile carrier
	ReasonHosting     = "hosting"     // a data centre, cloud or VPN: not a person (unless the site keeps them)
	ReasonBot         = "bot"         // a crawler, a headless browser, or a request no browser would send
	ReasonUnknown     = "unknown"     // no organisation known for the address
	ReasonInvalid     = "invalid"     // the message could not be decoded
	ReasonErased      = "erased"      // the visitor's data was erased on request while the hit waited
	// ReasonSiteDeleted is counted in metrics only: the site is gone.
	ReasonSiteDeleted = "site_deleted"
)

// Reasons lists every filter reason.
var Reasons = []string{ReasonResidential, ReasonMobile, ReasonHosting, ReasonBot, ReasonUnknown, ReasonInvalid, ReasonErased}

// Processor turns hits in JetStream into rows in ClickHouse.
type Processor struct {
	cfg      Config
	js       jetstream.JetStream
	ch       driver.Conn
	ipdata   IPData
	ptr      PTR
	sites    Sites
	keys     *visitor.Keys
	erased   *visitor.Erased
	sessions *sessions
	log      *slog.Logger
	metrics  *metrics
	running  atomic.Bool
	failing  atomic.Bool
	// lastWrite is when a batch was last written (unix nanoseconds);
	// oldestAge the age of the oldest hit waiting in the stream.
	lastWrite atomic.Int64
	oldestAge atomic.Int64
	// hitsPerMsg is the last batch's mean hits per message, which sizes
	// the next fetch.
	hitsPerMsg atomic.Uint64
}

// New builds a processor.
func New(cfg Config, deps Deps, reg prometheus.Registerer, log *slog.Logger) *Processor {
	return &Processor{cfg: cfg, js: deps.JS, ch: deps.ClickHouse, ipdata: deps.IPData, ptr: deps.PTR, sites: deps.Sites,
		keys: visitor.NewKeys(deps.JS), erased: deps.Erased, sessions: newSessions(deps.ClickHouse), log: log, metrics: newMetrics(reg)}
}

// Healthy reports whether the processor is running and ClickHouse accepts
// its inserts.
func (p *Processor) Healthy() error {
	if !p.running.Load() {
		return errors.New("processor: not running")
	}
	if p.failing.Load() {
		return errors.New("processor: ClickHouse inserts are failing; hits wait in JetStream")
	}
	// Stalled: hits have waited long and nothing was written for a while.
	if age := time.Duration(p.oldestAge.Load()); age > stallAfter && time.Since(time.Unix(0, p.lastWrite.Load())) > stallAfter {
		return fmt.Errorf("processor: stalled, the oldest hit has waited %v", age.Round(time.Second))
	}
	return nil
}

// stallAfter is how long hits may wait with no batch written before the
// processor reports the pipeline as unable to make progress.
const stallAfter = 5 * time.Minute

// watchLag samples the backlog every few seconds for metrics and readiness:
// how many hits wait (unfetched and unacknowledged) and how old the oldest
// is (the HITS stream is a work queue, so its first message is the oldest
// one not yet acknowledged).
func (p *Processor) watchLag(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		if st, err := p.js.Stream(sctx, bus.HitsStream); err == nil {
			if info, err := st.Info(sctx); err == nil {
				p.metrics.pending.Set(float64(info.State.Msgs))
				age := time.Duration(0)
				if info.State.Msgs > 0 && !info.State.FirstTime.IsZero() {
					age = time.Since(info.State.FirstTime)
				}
				p.oldestAge.Store(int64(age))
				p.metrics.oldestAge.Set(age.Seconds())
			}
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Run consumes until ctx ends; the batch in hand is then finished (inserted
// and acknowledged) before Run returns.
func (p *Processor) Run(ctx context.Context) error {
	p.running.Store(true)
	defer p.running.Store(false)
	p.lastWrite.Store(time.Now().UnixNano())
	lagCtx, stopLag := context.WithCancel(ctx)
	defer stopLag()
	go p.watchLag(lagCtx)
	var cons jetstream.Consumer
	for ctx.Err() == nil {
		if cons == nil {
			var err error
			if cons, err = p.consumer(ctx); err != nil {
				p.log.Warn("creating the JetStream consumer; retrying", "err", err)
				sleep(ctx, time.Second)
				continue
			}
		}
		msgs, err := p.fetch(cons)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			// The consumer may be gone (deleted, or lost with a NATS
			// node): make sure it exists before fetching again.
			p.log.Warn("fetching hits", "err", err)
			cons = nil
			sleep(ctx, time.Second)
			continue
		}
		if len(msgs) > 0 {
			// The batch is finished even if ctx ends meanwhile: it is
			// drained, not abandoned (a hard stop loses nothing either: it
			// is redelivered).
			p.handle(ctx, msgs)
		}
	}
	return nil
}

func (p *Processor) consumer(ctx context.Context) (jetstream.Consumer, error) {
	return p.js.CreateOrUpdateConsumer(ctx, bus.HitsStream, jetstream.ConsumerConfig{
		Durable:     p.cfg.Consumer,
		Description: "leadpipe processors",
		AckPolicy:   jetstream.AckExplicitPolicy,
		AckWait:     p.cfg.AckWait,
		// Room for many processors, each holding a batch in hand and one
		// being fetched.
		MaxAckPending: 64 * p.cfg.BatchSize,
		// Transient failures (ClickHouse down) are retried in place and
		// never count against a delivery limit.
		MaxDeliver:    -1,
		FilterSubject: bus.HitsSubjects,
	})
}

func (p *Processor) fetch(cons jetstream.Consumer) ([]jetstream.Msg, error) {
	// A message may hold several hits (publisher.go in ingest): ask for
	// as many messages as make about BatchSize hits at the last batch's
	// hits per message.
	n := max(p.cfg.BatchSize/int(max(p.hitsPerMsg.Load(), 1)), 1)
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(p.cfg.BatchWait))
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
	// Tell JetStream the batch is being worked on for as long as it is, so
	// a slow insert is never redelivered to another processor meanwhile.
	working := make(chan struct{})
	defer close(working)
	go func() {
		t := time.NewTicker(p.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-working:
				return
			case <-t.C:
				for _, m := range msgs {
					_ = m.InProgress()
				}
			}
		}
	}()
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
		if err != nil && attempt >= refusedAttempts && refusedData(err) {
			// ClickHouse refuses the batch's data itself, every time: write
			// it in halves until the rows it refuses stand alone, and set
			// those aside as dead letters.
			b.refused = nil // found afresh, should an earlier search have failed
			err = p.isolate(ctx, b)
		}
		if err == nil {
			break
		}
		p.failing.Store(true)
		p.metrics.insertErrors.Inc()
		p.log.Warn("writing batch failed; retrying", "hits", len(msgs), "attempt", attempt, "err", err)
		if ctx.Err() != nil && attempt >= 3 {
			p.log.Warn("stopping with an unwritten batch; JetStream will redeliver it", "hits", len(msgs))
			return
		}
		sleep(context.Background(), backoff)
		backoff = min(backoff*2, 15*time.Second)
	}
	p.failing.Store(false)
	p.lastWrite.Store(time.Now().UnixNano())
	// A message whose dead hit could not be set aside is not acknowledged:
	// it comes back, and its other hits are recognised as written.
	unsettled := map[jetstream.Msg]bool{}
	for _, d := range slices.Concat(b.poison, b.refused) {
		if !p.deadLetter(d) {
			unsettled[d.msg] = true
		}
	}
	for _, m := range msgs {
		if unsettled[m] {
			continue
		}
		if err := m.Ack(); err != nil {
			// The hit is stored; a lost ack means a redelivery that the
			// stored-id check will recognise.
			p.log.Warn("acknowledging hit", "err", err)
		}
	}
	p.metrics.batchSeconds.Observe(time.Since(start).Seconds())
	p.metrics.batchHits.Observe(float64(b.hits))
	if len(msgs) > 0 {
		p.hitsPerMsg.Store(max(uint64(b.hits/len(msgs)), 1))
	}
}

// deadHit is a hit that can never be processed, with why, and the
// message that carried it.
type deadHit struct {
	msg    jetstream.Msg
	raw    []byte // the encoded hit
	reason string
}

// deadLetter sets a hit that can never be processed aside in the
// dead-letter stream, with the reason (the message that carried it is then
// acknowledged with the batch). It reports false if the dead-letter publish
// failed: the message is then left unacknowledged and comes back later, so
// nothing is dropped silently.
func (p *Processor) deadLetter(d deadHit) bool {
	dl := nats.NewMsg(bus.DeadLetterSubject(d.msg.Subject()))
	dl.Data = d.raw
	dl.Header.Set(bus.DeadLetterReasonHeader, d.reason)
	dl.Header.Set(bus.DeadLetterSubjectHeader, d.msg.Subject())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := p.js.PublishMsg(ctx, dl); err != nil {
		p.log.Error("setting a hit aside in the dead-letter stream", "err", err)
		return false
	}
	p.metrics.deadLetters.Inc()
	return true
}

// batch is one insert's worth of enriched rows and dropped hits.
type batch struct {
	token   string
	hits    int // in the batch's messages
	rows    []row
	dropped []droppedHit
	// poison are hits that cannot be decoded or break the hit schema.
	poison []deadHit
	// refused are hits ClickHouse refused on their own, with its reason.
	refused []deadHit
	// checked says that the already-written check ran; unwritten and
	// unrecorded are what it left to insert. See write for why a retry
	// starts from them.
	checked    bool
	unwritten  []row
	unrecorded []droppedHit
}

// refusedAttempts is how many times a batch is written whole before the
// rows ClickHouse refuses are looked for.
const refusedAttempts = 3

// refusedData reports whether ClickHouse refused an insert for what it
// holds (a value it cannot parse or store, a violated constraint) rather
// than for being unavailable or busy: retrying such a batch as it is can
// never succeed.
func refusedData(err error) bool {
	var ex *clickhouse.Exception
	if !errors.As(err, &ex) {
		return false
	}
	switch ex.Code {
	case 6, 27, 38, 41, 53, 69, 70, 72, 131, 321, 349, 469:
		// CANNOT_PARSE_TEXT, CANNOT_PARSE_INPUT_ASSERTION_FAILED,
		// CANNOT_PARSE_DATE, CANNOT_PARSE_DATETIME, TYPE_MISMATCH,
		// ARGUMENT_OUT_OF_BOUND, CANNOT_CONVERT_TYPE, CANNOT_PARSE_NUMBER,
		// TOO_LARGE_STRING_SIZE, VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE,
		// CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN, VIOLATED_CONSTRAINT
		return true
	}
	return false
}

// isolate writes b in halves, and those in halves, until every part is
// written or holds a single hit that ClickHouse refuses; those are recorded
// in b.refused. Each part has its own deduplication token derived from
// b's, and the already-written check runs before each, so isolating again
// after a failure writes nothing twice. At most about 2·log2(n) inserts
// per refused hit.
func (p *Processor) isolate(ctx context.Context, b *batch) error {
	err := p.write(ctx, b)
	if err == nil || !refusedData(err) {
		return err
	}
	if len(b.rows)+len(b.dropped) == 1 {
		d := deadHit{reason: "refused by ClickHouse: " + err.Error()}
		if len(b.rows) == 1 {
			d.msg, d.raw = b.rows[0].msg, b.rows[0].raw
		} else {
			d.msg, d.raw = b.dropped[0].msg, b.dropped[0].raw
		}
		b.refused = append(b.refused, d)
		return nil
	}
	h := (len(b.rows) + len(b.dropped)) / 2
	left, right := &batch{token: b.token + "a"}, &batch{token: b.token + "b"}
	if h <= len(b.rows) {
		left.rows, right.rows, right.dropped = b.rows[:h], b.rows[h:], b.dropped
	} else {
		left.rows, left.dropped, right.dropped = b.rows, b.dropped[:h-len(b.rows)], b.dropped[h-len(b.rows):]
	}
	for _, part := range []*batch{left, right} {
		if err := p.isolate(ctx, part); err != nil {
			return err
		}
		b.refused = append(b.refused, part.refused...)
	}
	return nil
}

// droppedHit is all that is kept of a dropped hit, for two days.
type droppedHit struct {
	site, id, reason string
	ts               time.Time
	key              uint64 // hitKey(site, id)
	msg              jetstream.Msg
	raw              []byte // the encoded hit, to dead-letter it
}

// hitKey hashes a hit's identity for the dropped-hit record.
func hitKey(site, id string) uint64 {
	h := xxhash.New()
	_, _ = h.WriteString(site)
	_, _ = h.Write([]byte{0})
	_, _ = h.WriteString(id)
	return h.Sum64()
}

type row struct {
	site, hitID, typ, url, path, referrer, title, consent string
	ts, received                                          time.Time
	visitorID                                             uint64
	// The visit, stamped by sessions.assign.
	visitID                                          uint64
	visitStart                                       time.Time
	newVisit                                         uint8
	source                                           string
	engagedMS                                        uint32
	companyID, companyName, companyDomain, asOrg     string
	industry, size, networkType, country, city, lang string
	asn                                              uint32
	seq                                              uint64
	msg                                              jetstream.Msg // the hit's message
	raw                                              []byte        // the encoded hit, to dead-letter it
	retentionDays                                    uint16        // the site's, read by the tables' TTL
}

func (p *Processor) build(ctx context.Context, msgs []jetstream.Msg) (*batch, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	b := &batch{rows: make([]row, 0, len(msgs))}
	db := p.ipdata.DB() // one snapshot for the whole batch
	seqs := make([]uint64, 0, len(msgs))
	for _, m := range msgs {
		meta, err := m.Metadata()
		var seq uint64
		if err == nil {
			seq = meta.Sequence.Stream
			if meta.NumDelivered > 1 {
				p.metrics.redelivered.Inc()
			}
		}
		seqs = append(seqs, seq)
		for _, raw := range bus.SplitHits(m.Data()) {
			b.hits++
			if err := p.buildHit(ctx, b, db, m, seq, raw); err != nil {
				return nil, err
			}
		}
	}
	if err := p.sessions.assign(ctx, b.rows); err != nil {
		return nil, err
	}
	b.token = batchToken(seqs)
	return b, nil
}

// buildHit turns one hit of message m into a row, a dropped hit or a dead
// letter of b.
func (p *Processor) buildHit(ctx context.Context, b *batch, db *ipintel.DB, m jetstream.Msg, seq uint64, raw []byte) error {
	hit, err := bus.DecodeHit(raw)
	if err != nil {
		p.log.Error("setting aside an undecodable hit", "seq", seq, "err", err)
		b.poison = append(b.poison, deadHit{msg: m, raw: raw, reason: err.Error()})
		p.metrics.filtered.WithLabelValues(ReasonInvalid).Inc()
		return nil
	}
	if p.sites.Deleted(hit.Site) {
		// The site was erased while this hit waited: writing it, or
		// even a ledger count of it, would bring the site back. The
		// message is acknowledged with the batch.
		p.metrics.filtered.WithLabelValues(ReasonSiteDeleted).Inc()
		return nil
	}
	ts := time.UnixMilli(hit.TS).UTC()
	ip, err := netip.ParseAddr(hit.IP)
	if err != nil {
		p.log.Error("dropping hit with an unparsable IP", "seq", seq, "err", err)
		p.drop(b, m, raw, &hit, ts, ReasonInvalid)
		return nil
	}
	res, reason := p.enrich(ctx, db, &hit, ip)
	if reason != "" {
		p.drop(b, m, raw, &hit, ts, reason)
		return nil
	}
	vid, err := p.keys.ID(ctx, &hit, ip)
	if err != nil {
		return fmt.Errorf("deriving visitor id: %w", err)
	}
	if hit.ClientID != "" && p.erased.Has(hit.Site, vid) {
		p.drop(b, m, raw, &hit, ts, ReasonErased)
		return nil
	}
	b.rows = append(b.rows, row{
		site: hit.Site, hitID: hit.ID, typ: hit.Type, url: hit.URL, path: urlPath(hit.URL),
		referrer: hit.Referrer, title: hit.Title, consent: hit.Consent,
		ts: ts, received: time.UnixMilli(hit.ReceivedAt).UTC(), visitorID: vid, engagedMS: hit.EngagedMS,
		companyID: res.CompanyID, companyName: res.CompanyName, companyDomain: res.CompanyDomain,
		industry: res.Industry, size: res.Size, asOrg: res.ASOrg, asn: res.ASN,
		networkType: res.Type, country: res.Country, city: db.City(ip), lang: hit.Lang, seq: seq, msg: m, raw: raw,
		retentionDays: p.retention(ctx, hit.Site),
	})
	return nil
}

// retention is the site's retention in days (the default for a site the
// processor cannot find).
func (p *Processor) retention(ctx context.Context, site string) uint16 {
	if s, ok := p.sites.LookupSite(ctx, site); ok {
		return uint16(s.Retention())
	}
	return tenant.DefaultRetentionDays
}

// enrich decides what is known of a hit's visitor, or why the hit must be
// dropped: software rather than a person first, then the network type.
func (p *Processor) enrich(ctx context.Context, db *ipintel.DB, hit *bus.Hit, ip netip.Addr) (ipintel.Result, string) {
	if why := botReason(hit.UserAgent, hit.Lang); why != "" {
		return ipintel.Result{}, ReasonBot
	}
	res := db.Enrich(ip)
	if p.ptr != nil {
		if sig, ok := p.ptr.Peek(ip); ok {
			ipintel.ApplyPTR(&res, sig)
		}
	}
	switch res.Type {
	case ipintel.TypeResidential:
		return res, ReasonResidential
	case ipintel.TypeMobile:
		return res, ReasonMobile
	case ipintel.TypeHosting:
		if site, ok := p.sites.LookupSite(ctx, hit.Site); !ok || !site.KeepHosting {
			return res, ReasonHosting
		}
	}
	if res.CompanyID == "" || res.Type == ipintel.TypeUnknown {
		return res, ReasonUnknown
	}
	return res, ""
}

// drop records a hit that is not stored: what remains of it is a count.
func (p *Processor) drop(b *batch, m jetstream.Msg, raw []byte, hit *bus.Hit, ts time.Time, reason string) {
	b.dropped = append(b.dropped, droppedHit{site: hit.Site, id: hit.ID, reason: reason, ts: ts, key: hitKey(hit.Site, hit.ID), msg: m, raw: raw})
}

// batchToken derives the insert deduplication token from the stream
// sequences in the batch: the same messages always give the same token, so
// retrying a batch in hand is a no-op in ClickHouse. A redelivered message
// usually arrives in a batch of other messages, hence another token: the
// stored-hit check in write covers that case.
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

// write inserts the batch's kept rows and dropped-hit records, leaving out
// what an earlier delivery of the same hits already wrote.
func (p *Processor) write(ctx context.Context, b *batch) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	// Every batch asks which of its hits are already written, kept or
	// dropped: a redelivery after a crash between insert and ack, a message
	// JetStream hands out again after its own crash (acks are persisted on
	// a timer), or a client's retry that JetStream no longer recognised —
	// even if the hit is judged differently this time (new IP data, a PTR
	// answer, a site setting). A hit id twice in one batch is written once.
	refs := make([]hitRef, 0, len(b.rows)+len(b.dropped))
	for _, r := range b.rows {
		refs = append(refs, hitRef{site: r.site, id: r.hitID, ts: r.ts})
	}
	for _, d := range b.dropped {
		refs = append(refs, hitRef{site: d.site, id: d.id, ts: d.ts})
	}
	rows, dropped := b.rows, b.dropped
	if b.checked {
		// A retry. If ClickHouse died after storing this batch's hits but
		// before the materialized views had their share, the hits must be
		// sent again as they were, under the same token: ClickHouse drops
		// them as a duplicate block and still gives the views the block
		// once. So a hit found stored with this batch's own stream
		// sequence stays in; one stored from another message meanwhile (a
		// client's retry of it, taken by another processor while this
		// batch waited) is left out. Dropped-hit records carry no
		// sequence; they are sent again as they were.
		rows, dropped = b.unwritten, b.unrecorded
		if len(rows) > 0 {
			refs = refs[:0]
			for _, r := range rows {
				refs = append(refs, hitRef{site: r.site, id: r.hitID, ts: r.ts})
			}
			stored, err := p.writtenHits(ctx, refs)
			if err != nil {
				return err
			}
			rows = slices.DeleteFunc(slices.Clone(rows), func(r row) bool {
				seqs, ok := stored[hitKey(r.site, r.hitID)]
				return ok && !slices.Contains(seqs, r.seq)
			})
			p.metrics.duplicatesSkipped.Add(float64(len(b.unwritten) - len(rows)))
		}
	} else if len(refs) > 0 {
		written, err := p.writtenHits(ctx, refs)
		if err != nil {
			return err
		}
		seen := make(map[uint64]bool, len(refs))
		skip := func(site, id string) bool {
			k := hitKey(site, id)
			if _, ok := written[k]; ok || seen[k] {
				return true
			}
			seen[k] = true
			return false
		}
		rows = slices.DeleteFunc(slices.Clone(rows), func(r row) bool { return skip(r.site, r.hitID) })
		dropped = slices.DeleteFunc(slices.Clone(dropped), func(d droppedHit) bool { return skip(d.site, d.id) })
		p.metrics.duplicatesSkipped.Add(float64(len(b.rows) + len(b.dropped) - len(rows) - len(dropped)))
		b.checked, b.unwritten, b.unrecorded = true, rows, dropped
	}
	if len(rows) > 0 {
		start := time.Now()
		if err := p.insertHits(ctx, b.token, rows); err != nil {
			return err
		}
		p.metrics.insertSeconds.Observe(time.Since(start).Seconds())
		p.metrics.inserted.Add(float64(len(rows)))
	}
	if len(dropped) > 0 {
		if err := p.insertDropped(ctx, b.token, dropped); err != nil {
			return err
		}
		for _, d := range dropped {
			p.metrics.filtered.WithLabelValues(d.reason).Inc()
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
		(site_id, ts, received_at, hit_id, type, url, path, referrer, source, title,
		 visitor_id, visit_id, visit_start, new_visit, consent, engaged_ms, company_id, company_name, company_domain, company_industry, company_size,
		 asn, as_org, network_type, country, city, lang, stream_seq, retention_days)`)
	if err != nil {
		return fmt.Errorf("preparing hits insert: %w", err)
	}
	for i := range rows {
		r := &rows[i]
		if err := batch.Append(r.site, r.ts, r.received, r.hitID, r.typ, r.url, r.path, r.referrer, r.source, r.title,
			r.visitorID, r.visitID, r.visitStart, r.newVisit, r.consent, r.engagedMS, r.companyID, r.companyName, r.companyDomain, r.industry, r.size,
			r.asn, r.asOrg, r.networkType, r.country, r.city, r.lang, r.seq, r.retentionDays); err != nil {
			batch.Abort()
			return fmt.Errorf("appending hit row: %w", err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("inserting %d hits: %w", len(rows), err)
	}
	return nil
}

// insertDropped records dropped hits; the filter ledger counts them through
// its materialized view, in the same insert.
func (p *Processor) insertDropped(ctx context.Context, token string, dropped []droppedHit) error {
	batch, err := p.ch.PrepareBatch(insertContext(ctx, "dropped-"+token), "INSERT INTO dropped_hits (site_id, ts, reason, hit_key)")
	if err != nil {
		return fmt.Errorf("preparing dropped-hit insert: %w", err)
	}
	for _, d := range dropped {
		if err := batch.Append(d.site, d.ts, d.reason, d.key); err != nil {
			batch.Abort()
			return fmt.Errorf("appending dropped hit: %w", err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("inserting %d dropped hits: %w", len(dropped), err)
	}
	return nil
}

// hitRef identifies a hit for the already-written check.
type hitRef struct {
	site, id string
	ts       time.Time
}

// retryHorizon is how long after a hit a retry of it (same id, with no
// client timestamp) is still recognised as already written.
const retryHorizon = 24 * time.Hour

// writtenHits returns the keys (hitKey) of the hits already stored in hits,
// with the stream sequences of the messages they were stored from, or
// recorded in dropped_hits (sequence 0: the record has none). The time range prunes the search to a few
// daily partitions; the bloom filter index on hit_id (hits) and the
// primary key (dropped_hits) do the rest. A retried hit without a client
// timestamp gets a new one at the collector, so the range reaches back by
// the retry horizon.
func (p *Processor) writtenHits(ctx context.Context, refs []hitRef) (map[uint64][]uint64, error) {
	ids := make([]string, 0, len(refs))
	keys := make([]uint64, 0, len(refs))
	sites := map[string]bool{}
	from, to := refs[0].ts, refs[0].ts
	for _, r := range refs {
		ids = append(ids, r.id)
		keys = append(keys, hitKey(r.site, r.id))
		sites[r.site] = true
		if r.ts.Before(from) {
			from = r.ts
		}
		if r.ts.After(to) {
			to = r.ts
		}
	}
	siteList := make([]string, 0, len(sites))
	for s := range sites {
		siteList = append(siteList, s)
	}
	since, until := from.Add(-retryHorizon).UnixMilli(), to.UnixMilli()
	written := map[uint64][]uint64{}
	ctx = listQuery(ctx)
	res, err := p.ch.Query(ctx, `SELECT site_id, hit_id, stream_seq FROM hits
		WHERE site_id IN ? AND ts BETWEEN fromUnixTimestamp64Milli(?) AND fromUnixTimestamp64Milli(?) AND hit_id IN ?`,
		siteList, since, until, ids)
	if err != nil {
		return nil, fmt.Errorf("checking stored hits: %w", err)
	}
	for res.Next() {
		var site, id string
		var seq uint64
		if err := res.Scan(&site, &id, &seq); err != nil {
			res.Close()
			return nil, fmt.Errorf("checking stored hits: %w", err)
		}
		k := hitKey(site, id)
		written[k] = append(written[k], seq)
	}
	res.Close()
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("checking stored hits: %w", err)
	}
	res, err = p.ch.Query(ctx, `SELECT hit_key FROM dropped_hits
		WHERE site_id IN ? AND ts >= fromUnixTimestamp64Milli(?) AND hit_key IN ?`, siteList, since, keys)
	if err != nil {
		return nil, fmt.Errorf("checking recorded dropped hits: %w", err)
	}
	defer res.Close()
	for res.Next() {
		var k uint64
		if err := res.Scan(&k); err != nil {
			return nil, fmt.Errorf("checking recorded dropped hits: %w", err)
		}
		written[k] = append(written[k], 0)
	}
	return written, res.Err()
}

// listQuery allows a query text as long as the lists of a whole batch
// make it: the driver writes a bound slice into the query as literals, and
// 5,000 hit ids or keys pass ClickHouse's default max_query_size (256 KiB),
// which would stop a batch for good.
func listQuery(ctx context.Context) context.Context {
	return clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_query_size": 64 << 20}))
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
	pending           prometheus.Gauge
	oldestAge         prometheus.Gauge
	deadLetters       prometheus.Counter
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
	m.pending = prometheus.NewGauge(prometheus.GaugeOpts{Name: "leadpipe_processor_pending_hits", Help: "Hits waiting in the HITS stream (not yet acknowledged)."})
	m.oldestAge = prometheus.NewGauge(prometheus.GaugeOpts{Name: "leadpipe_processor_oldest_pending_age_seconds", Help: "Age of the oldest hit not yet acknowledged."})
	for _, r := range Reasons {
		m.filtered.WithLabelValues(r)
	}
	m.deadLetters = prometheus.NewCounter(prometheus.CounterOpts{Name: "leadpipe_processor_dead_letters_total", Help: "Hits that can never be processed, set aside in the dead-letter stream."})
	reg.MustRegister(m.pending, m.oldestAge, m.deadLetters)
	reg.MustRegister(m.inserted, m.insertErrors, m.redelivered, m.duplicatesSkipped, m.filtered, m.insertSeconds, m.batchSeconds, m.batchHits)
	return m
}
