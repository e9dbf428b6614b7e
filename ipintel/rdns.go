package ipintel

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/time/rate"
)

// RDNSConfig configures an RDNS resolver. Zero (or negative) fields take the
// defaults of withDefaults.
type RDNSConfig struct {
	// Servers are the DNS resolvers to ask, as host:port (a bare host means
	// port 53). Each lookup starts at the next server in turn and moves on
	// to the others only when one fails outright. Empty means the
	// nameservers of /etc/resolv.conf, read when Run starts.
	Servers []string
	// Timeout bounds one lookup, all servers tried included. A PTR name is
	// a hint; a worker stuck on a slow resolver is worth more than it.
	Timeout time.Duration
	// CacheTTL is how long an answer is kept. The cache is keyed by visitor
	// IP, so this is also how long leadpipe remembers an address it saw.
	CacheTTL time.Duration
	// NegativeTTL is how long a missing answer (NXDOMAIN, no PTR, timeout,
	// SERVFAIL or any other failure) is kept, so that the many addresses
	// without a PTR are not asked about on every hit.
	NegativeTTL time.Duration
	// MaxCache bounds the number of cached addresses; past it, the oldest
	// answer is evicted.
	MaxCache int
	// QueriesPerSecond caps the queries sent by all workers together, so
	// that a traffic spike never floods the resolver (or gets leadpipe
	// rate-limited by it).
	QueriesPerSecond float64
	// Workers is the number of lookups in flight at once.
	Workers int
	// QueueSize bounds the addresses waiting for a lookup. When it is full,
	// Peek drops the request (and counts it): the address will be asked for
	// again on its next hit.
	QueueSize int
}

// Defaults of RDNSConfig.
const (
	defaultRDNSTimeout     = time.Second
	defaultRDNSCacheTTL    = time.Hour
	defaultRDNSNegativeTTL = 10 * time.Minute
	defaultRDNSMaxCache    = 100_000
	defaultRDNSQPS         = 100
	defaultRDNSWorkers     = 32
	defaultRDNSQueueSize   = 4096
)

// withDefaults returns c with every unset field at its default.
func (c RDNSConfig) withDefaults() RDNSConfig {
	if c.Timeout <= 0 {
		c.Timeout = defaultRDNSTimeout
	}
	if c.CacheTTL <= 0 {
		c.CacheTTL = defaultRDNSCacheTTL
	}
	if c.NegativeTTL <= 0 {
		c.NegativeTTL = defaultRDNSNegativeTTL
	}
	if c.MaxCache <= 0 {
		c.MaxCache = defaultRDNSMaxCache
	}
	if c.QueriesPerSecond <= 0 {
		c.QueriesPerSecond = defaultRDNSQPS
	}
	if c.Workers <= 0 {
		c.Workers = defaultRDNSWorkers
	}
	if c.QueueSize <= 0 {
		c.QueueSize = defaultRDNSQueueSize
	}
	return c
}

// resolvConf is where the system resolvers are read from.
const resolvConf = "/etc/resolv.conf"

// RDNS looks up and classifies the PTR names of visitor addresses without
// ever making the caller wait: Peek answers from a cache or queues the
// address, and Run's workers do the lookups in the background, at a bounded
// rate, and cache what ClassifyPTR makes of the answers.
//
// The cache holds visitor IPs, so it forgets them: an entry is deleted (not
// merely ignored) once its TTL has passed, by Peek when it meets it and by a
// periodic sweep otherwise, and there are never more than MaxCache entries.
//
// Peek is safe for concurrent use; Run must be called once.
type RDNS struct {
	cfg     RDNSConfig
	servers []string // from the config; empty until Run reads resolv.conf
	queue   chan netip.Addr
	limiter *rate.Limiter
	client  *dns.Client
	running atomic.Bool
	next    atomic.Uint32 // the server the next lookup starts at

	mu      sync.Mutex
	cache   map[netip.Addr]*rdnsEntry
	pending map[netip.Addr]struct{} // queued or being looked up
	// Entries by insertion, answers and failures apart: within each list all
	// entries share one TTL, so insertion order is also expiry order and a
	// sweep stops at the first entry still fresh.
	answers, failures list.List

	lookups, hits, misses, dropped, errs, timeouts atomic.Uint64
}

// rdnsEntry is one cached lookup.
type rdnsEntry struct {
	ip      netip.Addr
	sig     PTRSignal
	added   time.Time
	expires time.Time
	list    *list.List // answers or failures
	elem    *list.Element
}

// RDNSStats counts what an RDNS did since it was made.
type RDNSStats struct {
	// Lookups is the number of PTR queries sent.
	Lookups uint64
	// Hits is the number of Peek calls answered from the cache.
	Hits uint64
	// Misses is the number of Peek calls that found no fresh answer: the
	// address was queued, already waiting, or dropped.
	Misses uint64
	// Dropped is the number of addresses not queued because the queue was
	// full.
	Dropped uint64
	// Errors is the number of lookups that failed other than by timing out:
	// SERVFAIL, REFUSED, network errors. NXDOMAIN is an answer, not an error.
	Errors uint64
	// Timeouts is the number of lookups that got no answer within Timeout.
	Timeouts uint64
}

// NewRDNS returns a resolver for cfg. It does no I/O; Run starts the work.
func NewRDNS(cfg RDNSConfig) *RDNS {
	cfg = cfg.withDefaults()
	r := &RDNS{
		cfg:     cfg,
		queue:   make(chan netip.Addr, cfg.QueueSize),
		limiter: rate.NewLimiter(rate.Limit(cfg.QueriesPerSecond), 1),
		client:  &dns.Client{Net: "udp", Timeout: cfg.Timeout},
		cache:   make(map[netip.Addr]*rdnsEntry),
		pending: make(map[netip.Addr]struct{}),
	}
	for _, s := range cfg.Servers {
		r.servers = append(r.servers, withDNSPort(s))
	}
	return r
}

// withDNSPort adds port 53 to a server given without one.
func withDNSPort(server string) string {
	if _, _, err := net.SplitHostPort(server); err == nil {
		return server
	}
	return net.JoinHostPort(server, "53")
}

// Peek returns the cached PTR signal of ip, if there is a fresh one. If there
// is not, it queues ip for a lookup, unless it is already queued or the queue
// is full, and returns false: the answer will be there for a later hit. It
// never blocks on the network or on a full queue.
//
// Addresses that are not public (private, loopback, link-local, multicast,
// unspecified or invalid) have no PTR worth asking the world about: Peek
// answers them at once with TypeUnknown and counts neither hit nor miss.
func (r *RDNS) Peek(ip netip.Addr) (PTRSignal, bool) {
	ip = ip.Unmap().WithZone("")
	if !ip.IsGlobalUnicast() || ip.IsPrivate() {
		return unknownPTR("not a public address"), true
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.cache[ip]; ok {
		if now.Before(e.expires) {
			r.hits.Add(1)
			return e.sig, true
		}
		r.removeLocked(e)
	}
	r.misses.Add(1)
	if _, ok := r.pending[ip]; ok {
		return PTRSignal{}, false
	}
	select {
	case r.queue <- ip:
		r.pending[ip] = struct{}{}
	default:
		r.dropped.Add(1)
	}
	return PTRSignal{}, false
}

// Len returns the number of cached addresses, fresh or not yet swept.
func (r *RDNS) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.cache)
}

// Stats returns the counters so far.
func (r *RDNS) Stats() RDNSStats {
	return RDNSStats{
		Lookups:  r.lookups.Load(),
		Hits:     r.hits.Load(),
		Misses:   r.misses.Load(),
		Dropped:  r.dropped.Load(),
		Errors:   r.errs.Load(),
		Timeouts: r.timeouts.Load(),
	}
}

// Run does the lookups Peek queues, and sweeps expired entries, until ctx
// ends. When it returns, the queue is emptied: addresses are not kept for
// lookups that will not happen.
func (r *RDNS) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("BUG: RDNS.Run called twice")
	}
	servers := r.servers
	if len(servers) == 0 {
		var err error
		if servers, err = systemResolvers(resolvConf); err != nil {
			return err
		}
	}
	var wg sync.WaitGroup
	for range r.cfg.Workers {
		wg.Go(func() { r.work(ctx, servers) })
	}
	wg.Go(func() { r.sweepEvery(ctx, sweepInterval(r.cfg)) })
	wg.Wait()

	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		select {
		case <-r.queue:
		default:
			clear(r.pending)
			return nil
		}
	}
}

// systemResolvers reads the nameservers of a resolv.conf file.
func systemResolvers(path string) ([]string, error) {
	conf, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading system resolvers: %w", err)
	}
	if len(conf.Servers) == 0 {
		return nil, fmt.Errorf("reading system resolvers: no nameserver in %s", path)
	}
	servers := make([]string, len(conf.Servers))
	for i, s := range conf.Servers {
		servers[i] = net.JoinHostPort(s, conf.Port)
	}
	return servers, nil
}

// sweepInterval is how often expired entries are deleted: a quarter of the
// shorter TTL, so that none outlives its TTL by much, but at least every
// minute and no more than every 10ms.
func sweepInterval(c RDNSConfig) time.Duration {
	return min(max(min(c.CacheTTL, c.NegativeTTL)/4, 10*time.Millisecond), time.Minute)
}

func (r *RDNS) sweepEvery(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			r.sweep(now)
		}
	}
}

// sweep deletes the entries expired at now.
func (r *RDNS) sweep(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range []*list.List{&r.answers, &r.failures} {
		for front := l.Front(); front != nil; front = l.Front() {
			e := front.Value.(*rdnsEntry)
			if now.Before(e.expires) {
				break
			}
			r.removeLocked(e)
		}
	}
}

// work looks up queued addresses until ctx ends.
func (r *RDNS) work(ctx context.Context, servers []string) {
	for {
		var ip netip.Addr
		select {
		case <-ctx.Done():
			return
		case ip = <-r.queue:
		}
		if r.limiter.Wait(ctx) != nil {
			r.forget(ip)
			return
		}
		sig, negative, ok := r.lookup(ctx, servers, ip)
		if !ok {
			r.forget(ip)
			return
		}
		r.store(ip, sig, negative)
	}
}

// lookup asks for the PTR of ip and classifies the answer. negative marks a
// missing answer, cached for NegativeTTL; ok is false only when ctx ended.
func (r *RDNS) lookup(ctx context.Context, servers []string, ip netip.Addr) (sig PTRSignal, negative, ok bool) {
	arpa, err := dns.ReverseAddr(ip.String())
	if err != nil { // cannot happen for a valid address
		r.errs.Add(1)
		return unknownPTR("no reverse name for the address"), true, true
	}
	q := new(dns.Msg)
	q.SetQuestion(arpa, dns.TypePTR)

	qctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	start := int(r.next.Add(1))
	var resp *dns.Msg
	for i := range servers {
		r.lookups.Add(1)
		resp, err = r.exchange(qctx, q, servers[(start+i)%len(servers)])
		if ctx.Err() != nil {
			return PTRSignal{}, false, false
		}
		if qctx.Err() != nil || (err == nil && resp.Rcode != dns.RcodeServerFailure && resp.Rcode != dns.RcodeRefused) {
			break
		}
	}

	var netErr net.Error
	switch {
	case err != nil && (errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout()):
		r.timeouts.Add(1)
		return unknownPTR("PTR lookup timed out"), true, true
	case err != nil:
		r.errs.Add(1)
		return unknownPTR("PTR lookup failed"), true, true
	case resp.Rcode == dns.RcodeNameError:
		return unknownPTR("no PTR record (NXDOMAIN)"), true, true
	case resp.Rcode != dns.RcodeSuccess:
		r.errs.Add(1)
		return unknownPTR("PTR lookup failed: " + dns.RcodeToString[resp.Rcode]), true, true
	}
	for _, rr := range resp.Answer {
		if ptr, isPTR := rr.(*dns.PTR); isPTR {
			return classifyPTR(ptr.Ptr, ip), false, true
		}
	}
	return unknownPTR("no PTR record"), true, true
}

// exchange sends q to server and reads the answer. miekg/dns honours ctx's
// deadline but not its cancellation, so a lookup in flight would hold Run's
// shutdown for up to Timeout: closing the read deadline when ctx ends
// releases it at once.
func (r *RDNS) exchange(ctx context.Context, q *dns.Msg, server string) (*dns.Msg, error) {
	co, err := r.client.DialContext(ctx, server)
	if err != nil {
		return nil, err
	}
	defer co.Close()
	stop := context.AfterFunc(ctx, func() { _ = co.SetDeadline(time.Now()) })
	defer stop()
	resp, _, err := r.client.ExchangeWithConnContext(ctx, q, co)
	return resp, err
}

// forget drops ip from the pending set when its lookup will not happen.
func (r *RDNS) forget(ip netip.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.pending, ip)
}

// store caches the outcome of ip's lookup, evicting the oldest entries to
// stay within MaxCache.
func (r *RDNS) store(ip netip.Addr, sig PTRSignal, negative bool) {
	now := time.Now()
	l, ttl := &r.answers, r.cfg.CacheTTL
	if negative {
		l, ttl = &r.failures, r.cfg.NegativeTTL
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.pending, ip)
	if old, ok := r.cache[ip]; ok {
		r.removeLocked(old)
	}
	for len(r.cache) >= r.cfg.MaxCache {
		r.evictOldestLocked()
	}
	e := &rdnsEntry{ip: ip, sig: sig, added: now, expires: now.Add(ttl), list: l}
	e.elem = l.PushBack(e)
	r.cache[ip] = e
}

// evictOldestLocked removes the entry inserted first.
func (r *RDNS) evictOldestLocked() {
	a, f := r.answers.Front(), r.failures.Front()
	switch {
	case a == nil && f == nil:
		panic("BUG: RDNS cache is over its bound with no entry listed")
	case a == nil:
		r.removeLocked(f.Value.(*rdnsEntry))
	case f == nil || !f.Value.(*rdnsEntry).added.Before(a.Value.(*rdnsEntry).added):
		r.removeLocked(a.Value.(*rdnsEntry))
	default:
		r.removeLocked(f.Value.(*rdnsEntry))
	}
}

func (r *RDNS) removeLocked(e *rdnsEntry) {
	e.list.Remove(e.elem)
	delete(r.cache, e.ip)
}
