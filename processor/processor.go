package processor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leadpipe/leadpipe/internal/bus"
	"github.com/leadpipe/leadpipe/internal/tenant"
	"github.com/leadpipe/leadpipe/internal/visitorid"
	"github.com/leadpipe/leadpipe/ipintel"
	"github.com/leadpipe/leadpipe/store"
)

// IPData is the current IP intelligence snapshot; *ipintel.Store is one.
type IPData interface {
	DB() *ipintel.DB
}

// PTR gives what reverse DNS says of an IP without waiting for it;
// *ipintel.RDNS is one.
type PTR interface {
	Peek(ip netip.Addr) (ipintel.PTRSignal, bool)
}

// RDAP names the organisation a registry assigned a visitor's network to,
// without waiting for the registry; *ipintel.RDAP is one.
type RDAP interface {
	Peek(ip netip.Addr, res *ipintel.Result) (*ipintel.RDAPAnswer, bool)
}

// Learned gives the network learned from identifications that contains an
// IP; *ipintel.Learner is one.
type Learned interface {
	Lookup(ip netip.Addr) (*ipintel.LearnedNetwork, bool)
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
	PTR PTR
	// RDAP is nil when RDAP is off.
	RDAP RDAP
	// Learned is nil when learning from identifications is off
	// (--ipdb.learn=false): identify hits are then dropped, not recorded.
	Learned Learned
	Sites   Sites
	// Erased, if set, names visitors erased on request whose queued hits
	// must be dropped on arrival.
	Erased *visitorid.Erased
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
	db       *store.DB
	ipdata   IPData
	ptr      PTR
	rdap     RDAP
	learned  Learned
	idsMu    sync.Mutex
	ids      jetstream.KeyValue // the identifications bucket, once opened
	sites    Sites
	keys     *visitorid.Keys
	erased   *visitorid.Erased
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
	db := store.New(deps.ClickHouse)
	return &Processor{cfg: cfg, js: deps.JS, db: db, ipdata: deps.IPData, ptr: deps.PTR, rdap: deps.RDAP, learned: deps.Learned, sites: deps.Sites,
		keys: visitorid.NewKeys(deps.JS), erased: deps.Erased, sessions: newSessions(db), log: log, metrics: newMetrics(reg)}
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
	// A message may hold several hits (publisher.go in collector): ask for
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

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
