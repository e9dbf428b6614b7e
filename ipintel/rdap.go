package ipintel

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gaissmai/bart"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"
)

// RDAPConfig configures the RDAP layer. Zero fields take the defaults of
// withDefaults.
type RDAPConfig struct {
	// Bootstrap is where the IANA bootstrap files (ipv4.json, ipv6.json,
	// RFC 9224) are read from: which registry answers for which address.
	Bootstrap string
	// Rate is the most queries per second sent to one registry.
	Rate float64
	// DailyCap is the most queries a process sends in a UTC day, all
	// registries together.
	DailyCap int
	// Timeout bounds one query.
	Timeout time.Duration
	// AnswerTTL is how long what a registry said is kept; MissTTL how long
	// a network the registry knows nothing useful about is left alone.
	AnswerTTL, MissTTL time.Duration
	// QueueSize bounds the networks waiting for a query; past it a
	// network is asked about at a later hit.
	QueueSize int
	// FailuresToOpen consecutive failures of a registry open its circuit
	// for Cooldown (doubling while it keeps failing, up to an hour).
	FailuresToOpen int
	Cooldown       time.Duration
}

// DefaultRDAPBootstrap is IANA's bootstrap registry.
const DefaultRDAPBootstrap = "https://data.iana.org/rdap/"

func (c RDAPConfig) withDefaults() RDAPConfig {
	if c.Bootstrap == "" {
		c.Bootstrap = DefaultRDAPBootstrap
	}
	if !strings.HasSuffix(c.Bootstrap, "/") {
		c.Bootstrap += "/"
	}
	if c.Rate <= 0 {
		c.Rate = 1
	}
	if c.DailyCap <= 0 {
		c.DailyCap = 5000
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.AnswerTTL <= 0 {
		c.AnswerTTL = 30 * 24 * time.Hour
	}
	if c.MissTTL <= 0 {
		c.MissTTL = 24 * time.Hour
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 1024
	}
	if c.FailuresToOpen <= 0 {
		c.FailuresToOpen = 5
	}
	if c.Cooldown <= 0 {
		c.Cooldown = time.Minute
	}
	return c
}

// SourceRDAP names the RDAP layer's evidence and decisions.
const SourceRDAP = "rdap"

// confRDAP is the confidence of an RDAP answer: the registry's own record,
// as an imported assignment, read one network at a time.
const confRDAP = 0.85

// RDAPAnswer is what leadpipe keeps of one RDAP answer, per network:
// the registry's network, and the company it is assigned to or why it is
// not counted as one. It never holds a visitor's address: Prefix is the
// registry's network, or the /24 (/48) a miss is kept for.
type RDAPAnswer struct {
	Prefix   netip.Prefix `json:"prefix"`
	First    netip.Addr   `json:"first,omitzero"`
	Last     netip.Addr   `json:"last,omitzero"`
	Handle   string       `json:"handle,omitempty"`
	NetName  string       `json:"netname,omitempty"`
	Status   string       `json:"status,omitempty"`
	Country  string       `json:"country,omitempty"`
	Company  string       `json:"company,omitempty"`
	Type     string       `json:"type,omitempty"` // the company's: business, education or government
	Skip     string       `json:"skip,omitempty"`
	Registry string       `json:"registry,omitempty"`
	Checked  time.Time    `json:"checked"`
	Expires  time.Time    `json:"expires"`
	rev      uint64       // its revision in the bucket, once known
}

// Says is the answer as evidence.
func (a *RDAPAnswer) Says() string {
	if a.Company != "" {
		return fmt.Sprintf("%s holds %s (%s, %s, %s) per RDAP at %s, %s", a.Company, a.Prefix, a.Status, a.NetName, a.Country,
			a.Registry, a.Checked.UTC().Format(time.DateOnly))
	}
	return fmt.Sprintf("no company's assignment for %s per RDAP at %s (%s), %s", a.Prefix, a.Registry, a.Skip, a.Checked.UTC().Format(time.DateOnly))
}

// Why an RDAP query did not give an answer worth keeping.
const (
	SkipNotFound = "not-found" // 404: the registry has no network for the address
	SkipRefused  = "refused"   // another 4xx: the registry will not answer for it
)

// RDAP asks the regional registries, over RDAP (RFC 9083), who holds the
// network a visitor came from, when the network is in an ISP's space and
// no other source names an organisation. It never makes a hit wait: Peek
// answers from the answers known and queues the network, and Run's worker
// asks the registry in the background, within per-registry rate limits,
// Retry-After pauses, a circuit breaker and a daily cap. A later hit from
// the same network gets the answer.
//
// Answers are kept in a JetStream key-value bucket, keyed by network, so
// every processor shares them and a restart does not ask again; each
// process holds them in a radix tree for Peek.
type RDAP struct {
	cfg    RDAPConfig
	kv     jetstream.KeyValue
	cls    *Classifier
	client *http.Client
	log    *slog.Logger
	queue  chan rdapJob

	mu      sync.RWMutex
	table   bart.Table[*RDAPAnswer]
	pending map[netip.Prefix]struct{} // by queryPrefix

	boot     atomic.Pointer[rdapBootstrap]
	regMu    sync.Mutex
	regs     map[string]*registryState
	day      string
	usedDay  int
	running  atomic.Bool
	counters rdapCounters
}

// rdapJob is one network to ask about: the /29 (/48) around a visitor's
// address, never the address.
type rdapJob struct {
	net netip.Prefix
	isp string
}

type rdapCounters struct {
	queries, hits, misses, dropped, capped, paused, broken, errs, companies atomic.Uint64
}

// RDAPStats counts what an RDAP layer did since it was made.
type RDAPStats struct {
	// Queries is the number of RDAP queries sent; Companies how many
	// answers named a company.
	Queries, Companies uint64
	// Hits and Misses count Peek calls answered from the known answers or
	// not.
	Hits, Misses uint64
	// Dropped counts networks not queued (queue full); Capped, Paused and
	// Broken those not asked because of the daily cap, a registry's
	// Retry-After, or its open circuit.
	Dropped, Capped, Paused, Broken uint64
	// Errors counts failed queries (network errors, timeouts, 5xx, bad
	// documents).
	Errors uint64
}

// registryState is one registry's limiter, pause and circuit breaker.
type registryState struct {
	limiter   *rate.Limiter
	pausedTil time.Time // Retry-After
	failures  int       // consecutive
	openTil   time.Time // circuit open until
	opens     int       // consecutive openings, for the back-off
}

// NewRDAP returns the RDAP layer over the bucket kv, judging holders'
// names with cls. It does no I/O; Run starts the work. Without a bucket
// (kv nil) answers are kept in memory only and only Ask is of use.
func NewRDAP(cfg RDAPConfig, kv jetstream.KeyValue, cls *Classifier, log *slog.Logger) *RDAP {
	cfg = cfg.withDefaults()
	return &RDAP{cfg: cfg, kv: kv, cls: cls, log: log, client: &http.Client{Timeout: cfg.Timeout},
		queue: make(chan rdapJob, cfg.QueueSize), pending: map[netip.Prefix]struct{}{}, regs: map[string]*registryState{}}
}

// worthAsking reports whether a registry could name an organisation the
// other layers did not: the address is in an ISP's space (residential or
// unknown by its ASN, or a business only by the address-space fall-back),
// and neither the operator's files nor an imported assignment decided.
func worthAsking(res *Result) bool {
	switch res.Source {
	case "override", "companies", SourceLearned, SourceRegistry, SourceRDAP:
		return false
	}
	return res.Type == TypeResidential || res.Type == TypeUnknown || res.Candidate()
}

// Peek returns the RDAP answer known for ip's network, if res (what the
// other layers said) leaves room for one. Without a fresh answer it queues
// the network, unless it is queued already or the queue is full, and
// returns false. ok is true only for an answer naming a company.
func (r *RDAP) Peek(ip netip.Addr, res *Result) (a *RDAPAnswer, ok bool) {
	ip = ip.Unmap()
	if !ip.IsGlobalUnicast() || ip.IsPrivate() || !worthAsking(res) {
		return nil, false
	}
	now := time.Now()
	if a, found := r.Lookup(ip); found && now.Before(a.Expires) {
		r.counters.hits.Add(1)
		return a, a.Company != ""
	}
	r.counters.misses.Add(1)
	key := queryPrefix(ip)
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, queued := r.pending[key]; queued {
		return nil, false
	}
	select {
	case r.queue <- rdapJob{net: key, isp: res.ASOrg}:
		r.pending[key] = struct{}{}
	default:
		r.counters.dropped.Add(1)
	}
	return nil, false
}

// Lookup returns the answer known for the network containing ip, fresh or
// not. It does not queue anything.
func (r *RDAP) Lookup(ip netip.Addr) (*RDAPAnswer, bool) {
	if r == nil {
		return nil, false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	a, ok := r.table.Lookup(ip.Unmap())
	return a, ok
}

// Stats returns the counters so far.
func (r *RDAP) Stats() RDAPStats {
	c := &r.counters
	return RDAPStats{Queries: c.queries.Load(), Companies: c.companies.Load(), Hits: c.hits.Load(), Misses: c.misses.Load(),
		Dropped: c.dropped.Load(), Capped: c.capped.Load(), Paused: c.paused.Load(), Broken: c.broken.Load(), Errors: c.errs.Load()}
}

// missPrefix is the network a miss is kept for: the /24 or /48 of ip.
func missPrefix(ip netip.Addr) netip.Prefix { return around(ip, 24, 48) }

// queryPrefix is what a registry is asked about for a visitor's address:
// its /29 (IPv4) or /48 (IPv6), so that the registry never learns the
// address itself. The registry answers with the most specific network
// containing all of it: a company's assignment of a /29 or more (nearly
// all of them), or the ISP's block. Hits from the same /29 meanwhile
// queue nothing more.
func queryPrefix(ip netip.Addr) netip.Prefix { return around(ip, 29, 48) }

// around is the network of ip with bits4 (IPv4) or bits6 (IPv6) bits.
func around(ip netip.Addr, bits4, bits6 int) netip.Prefix {
	if ip.Is4() {
		return netip.PrefixFrom(ip, bits4).Masked()
	}
	return netip.PrefixFrom(ip, bits6).Masked()
}

// Run follows the shared answers and asks the registries about queued
// networks until ctx ends. It needs the bucket (NewRDAP's kv).
func (r *RDAP) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("BUG: RDAP.Run called twice")
	}
	w, err := r.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watching the RDAP answers: %w", err)
	}
	defer w.Stop()
	watchCtx := ctx // the watch's: its end is Run's end when this one ends
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := r.follow(watchCtx, w); err != nil {
			cancel(err)
		}
	})
	wg.Go(func() { r.sweepEvery(ctx, time.Hour) })
	wg.Go(func() { r.work(ctx) })
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// follow inserts every answer written to the bucket, by any process. A
// watch that ends before ctx (the watch's own) is an error: the answers
// would no longer be shared.
func (r *RDAP) follow(ctx context.Context, w jetstream.KeyWatcher) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return watchEnded(ctx, "RDAP answers")
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue // nil: the initial values are all in
			}
			var a RDAPAnswer
			if err := json.Unmarshal(e.Value(), &a); err != nil || !a.Prefix.IsValid() {
				r.log.Warn("RDAP answer unreadable; ignored", "key", e.Key(), "err", err)
				continue
			}
			a.rev = e.Revision()
			r.insert(&a)
		}
	}
}

func (r *RDAP) insert(a *RDAPAnswer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.table.Insert(a.Prefix, a)
}

// sweepEvery drops expired answers from the radix tree and the bucket.
func (r *RDAP) sweepEvery(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			r.mu.Lock()
			var stale []*RDAPAnswer
			for p, a := range r.table.All() {
				if !now.Before(a.Expires) {
					stale = append(stale, a)
					r.table.Delete(p)
				}
			}
			r.mu.Unlock()
			// Deleted from the bucket too, unless another process
			// answered again meanwhile (a newer revision): the bucket's
			// own age limit is a month, a miss is kept for a day.
			for _, a := range stale {
				if r.kv != nil && a.rev != 0 {
					_ = r.kv.Purge(ctx, netKey(a.Prefix), jetstream.LastRevision(a.rev))
				}
			}
		}
	}
}

// work asks about queued networks, one at a time: the limits are per
// registry and low, so one worker is enough and keeps the order.
func (r *RDAP) work(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			r.drain()
			return
		case job := <-r.queue:
			r.ask(ctx, job)
			r.mu.Lock()
			delete(r.pending, job.net)
			r.mu.Unlock()
		}
	}
}

// drain forgets the queued addresses when Run stops.
func (r *RDAP) drain() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		select {
		case <-r.queue:
		default:
			clear(r.pending)
			return
		}
	}
}

// ask queries the registry for job's network, within its limits, and
// keeps the answer.
func (r *RDAP) ask(ctx context.Context, job rdapJob) {
	at := job.net.Addr()
	if a, ok := r.Lookup(at); ok && time.Now().Before(a.Expires) {
		return // answered by another process meanwhile
	}
	boot, err := r.bootstrap(ctx)
	if err != nil {
		r.counters.errs.Add(1)
		r.log.Warn("RDAP bootstrap unavailable; network not asked about", "err", err)
		return
	}
	base, ok := boot.serviceFor(at)
	if !ok {
		r.keep(ctx, &RDAPAnswer{Prefix: missPrefix(at), Skip: SkipNotFound, Registry: "none"}, r.cfg.MissTTL)
		return
	}
	host := hostOf(base)
	reg, allowed := r.admit(host)
	if !allowed {
		return
	}
	// The cap first: a capped network must not wait its turn for nothing.
	if !r.spend() {
		r.counters.capped.Add(1)
		return
	}
	if err := reg.limiter.Wait(ctx); err != nil {
		return
	}
	r.counters.queries.Add(1)
	ans, ttl, err := r.query(ctx, base, job)
	r.record(host, err)
	if err != nil {
		if ctx.Err() == nil {
			r.counters.errs.Add(1)
			r.log.Debug("RDAP query failed", "registry", host, "err", err)
		}
		return
	}
	ans.Registry = host
	if ans.Company != "" {
		r.counters.companies.Add(1)
	}
	r.keep(ctx, ans, ttl)
}

// Ask is Peek that waits: it asks the registry now, within the same
// limits, when no fresh answer is known, and returns what is then known.
// It is for evaluations (`leadpipe ip eval --ipdb.rdap`), not for hits.
func (r *RDAP) Ask(ctx context.Context, ip netip.Addr, res *Result) *RDAPAnswer {
	ip = ip.Unmap()
	if !ip.IsGlobalUnicast() || ip.IsPrivate() || !worthAsking(res) {
		return nil
	}
	if a, ok := r.Lookup(ip); !ok || !time.Now().Before(a.Expires) {
		r.ask(ctx, rdapJob{net: queryPrefix(ip), isp: res.ASOrg})
	}
	if a, ok := r.Lookup(ip); ok && time.Now().Before(a.Expires) {
		return a
	}
	return nil
}

// keep stores an answer in the bucket and in this process's tree.
func (r *RDAP) keep(ctx context.Context, a *RDAPAnswer, ttl time.Duration) {
	a.Checked = time.Now().UTC().Truncate(time.Second)
	a.Expires = a.Checked.Add(ttl)
	raw, err := json.Marshal(a)
	if err != nil {
		panic("BUG: RDAP answer does not marshal: " + err.Error())
	}
	if r.kv != nil { // without: an evaluation's, kept as long as the process
		rev, err := r.kv.Put(ctx, netKey(a.Prefix), raw)
		if err != nil && ctx.Err() == nil {
			r.log.Warn("keeping an RDAP answer failed", "network", a.Prefix, "err", err)
		}
		a.rev = rev
	}
	r.insert(a)
}

// ApplyRDAP folds an RDAP answer naming a company into a result: it names
// the organisation the registry assigned the network to, below the
// operator's files and an imported assignment, above reverse DNS and the
// ASN's organisation. A university's or a public body's assignment keeps
// the type its name gives.
func ApplyRDAP(r *Result, a *RDAPAnswer) {
	if a == nil || a.Company == "" {
		return
	}
	switch r.Source {
	case "override", "companies", SourceLearned, SourceRegistry:
		return
	}
	r.Known = true
	r.CompanyID, r.CompanyName, r.CompanyDomain = companyID(a.Company), a.Company, ""
	r.Industry, r.Size, r.CompanyCountry, r.Profile = "", "", "", nil
	r.Type, r.Confidence, r.Source = cmp.Or(a.Type, TypeBusiness), confRDAP, SourceRDAP
}

// organisationType is the type of an organisation named by a registry:
// education or government when the name rules say so, else business.
func organisationType(name string, cls *Classifier) string {
	if cls != nil {
		if t := cls.ClassifyName(name).Type; t == TypeEducation || t == TypeGovernment {
			return t
		}
	}
	return TypeBusiness
}
