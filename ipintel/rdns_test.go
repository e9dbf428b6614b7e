package ipintel

// Tests of RDNS against a real DNS server (miekg/dns on 127.0.0.1) that
// answers PTR queries from a table, fails or stalls on purpose for some
// addresses, and records when each query arrived.
//
// Measure Peek (the call on the processor's hot path):
//
//	go test -run='^$' -bench=RDNSPeek -count=10 ./ipintel/ | tee new.txt
//	benchstat old.txt new.txt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Addresses the test server knows. Documentation ranges: public as far as
// Peek is concerned, and never routed anywhere real.
var (
	ipComcast  = netip.MustParseAddr("198.51.100.10")
	ipSiemens  = netip.MustParseAddr("198.51.100.11")
	ipBBC6     = netip.MustParseAddr("2001:db8::1")
	ipStanford = netip.MustParseAddr("2001:db8::2")
	ipNX       = netip.MustParseAddr("198.51.100.20")
	ipNX6      = netip.MustParseAddr("2001:db8::20")
	ipSlow     = netip.MustParseAddr("198.51.100.30")
	ipFail     = netip.MustParseAddr("198.51.100.40")
)

// ptrServer is a DNS server answering PTR queries the way a resolver would.
type ptrServer struct {
	addr     string
	names    map[string]string // reverse name → PTR name
	slow     string            // reverse name answered only after delay
	servfail string            // reverse name answered with SERVFAIL
	delay    time.Duration
	done     chan struct{}

	mu    sync.Mutex
	times []time.Time    // arrival of each query
	asked map[string]int // queries per reverse name
}

// startPTRServer serves the test addresses; queries for ipSlow are answered
// after delay, too late for any RDNS timeout used here.
func startPTRServer(t *testing.T, delay time.Duration) *ptrServer {
	t.Helper()
	s := &ptrServer{
		names: map[string]string{
			reverse(t, ipComcast):  "c-198-51-100-10.hsd1.ca.comcast.net.",
			reverse(t, ipSiemens):  "mail.siemens.com.",
			reverse(t, ipBBC6):     "proxy.bbc.co.uk.",
			reverse(t, ipStanford): "vpn.cs.stanford.edu.",
		},
		slow:     reverse(t, ipSlow),
		servfail: reverse(t, ipFail),
		delay:    delay,
		done:     make(chan struct{}),
		asked:    make(map[string]int),
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = pc.LocalAddr().String()
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serve), NotifyStartedFunc: func() { close(started) }}
	served := make(chan error, 1)
	go func() { served <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-served:
		t.Fatalf("starting DNS server: %v", err)
	}
	t.Cleanup(func() {
		close(s.done) // release stalled handlers, which Shutdown waits for
		if err := srv.Shutdown(); err != nil {
			t.Errorf("stopping DNS server: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("DNS server: %v", err)
		}
	})
	return s
}

func reverse(t testing.TB, ip netip.Addr) string {
	t.Helper()
	arpa, err := dns.ReverseAddr(ip.String())
	if err != nil {
		t.Fatal(err)
	}
	return arpa
}

func (s *ptrServer) serve(w dns.ResponseWriter, q *dns.Msg) {
	if len(q.Question) != 1 {
		return
	}
	name := q.Question[0].Name
	s.mu.Lock()
	s.times = append(s.times, time.Now())
	s.asked[name]++
	s.mu.Unlock()

	resp := new(dns.Msg)
	resp.SetReply(q)
	switch ptr, ok := s.names[name]; {
	case name == s.slow:
		select {
		case <-time.After(s.delay):
		case <-s.done:
			return
		}
		resp.Rcode = dns.RcodeNameError
	case name == s.servfail:
		resp.Rcode = dns.RcodeServerFailure
	case ok && q.Question[0].Qtype == dns.TypePTR:
		resp.Answer = append(resp.Answer, &dns.PTR{
			Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: 3600},
			Ptr: ptr,
		})
	default:
		resp.Rcode = dns.RcodeNameError
	}
	_ = w.WriteMsg(resp)
}

// queries returns how often ip was asked about.
func (s *ptrServer) queries(t testing.TB, ip netip.Addr) int {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.asked[reverse(t, ip)]
}

// arrivals returns the arrival times of all queries so far.
func (s *ptrServer) arrivals() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.times)
}

// startRDNS runs an RDNS for cfg until the test ends.
func startRDNS(t *testing.T, cfg RDNSConfig) *RDNS {
	t.Helper()
	r := NewRDNS(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("RDNS.Run: %v", err)
		}
	})
	return r
}

// rdnsEventually polls cond until it returns nil, failing the test after
// ten seconds.
func rdnsEventually(t *testing.T, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within 10s: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// resolved waits until Peek answers for ip and returns the answer.
func resolved(t *testing.T, r *RDNS, ip netip.Addr) PTRSignal {
	t.Helper()
	var sig PTRSignal
	rdnsEventually(t, func() error {
		var ok bool
		if sig, ok = r.Peek(ip); !ok {
			return fmt.Errorf("no answer for %s yet", ip)
		}
		return nil
	})
	return sig
}

// cached reports whether ip has a cache entry, fresh or not.
func (r *RDNS) cached(ip netip.Addr) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.cache[ip]
	return ok
}

func TestRDNSPeekAnswers(t *testing.T) {
	srv := startPTRServer(t, time.Minute)
	r := startRDNS(t, RDNSConfig{Servers: []string{srv.addr}, Timeout: 500 * time.Millisecond})

	check := func(ip netip.Addr, typ, domain string) {
		t.Helper()
		if sig, ok := r.Peek(ip); ok {
			t.Fatalf("first Peek(%s) = %+v, true; want no answer before any lookup", ip, sig)
		}
		sig := resolved(t, r, ip)
		if sig.Type != typ || sig.Domain != domain || sig.Evidence.Source != ptrSource {
			t.Errorf("Peek(%s) = %+v; want %s %q", ip, sig, typ, domain)
		}
		// Polling Peek while the lookup was in flight must not have asked
		// again, nor may asking now.
		r.Peek(ip)
		if n := srv.queries(t, ip); n != 1 {
			t.Errorf("the server was asked %d times about %s; want 1", n, ip)
		}
	}
	check(ipComcast, TypeResidential, "comcast.net")
	check(ipSiemens, TypeBusiness, "siemens.com")
	check(ipBBC6, TypeBusiness, "bbc.co.uk")
	check(ipStanford, TypeEducation, "stanford.edu")
	mapped := netip.MustParseAddr("::ffff:198.51.100.11") // ipSiemens, cached above as IPv4
	if sig, ok := r.Peek(mapped); !ok || sig.Domain != "siemens.com" {
		t.Errorf("Peek(%s) = %+v, %v; want the answer cached for %s", mapped, sig, ok, ipSiemens)
	}

	// The classifier saw the address, not only the name: the PTR encodes
	// this very address.
	if sig, _ := r.Peek(ipComcast); !strings.Contains(sig.Evidence.Says, "hsd") || sig.Confidence < ClassifyPTR("c-198-51-100-10.hsd1.ca.comcast.net").Confidence {
		t.Errorf("Peek(%s) = %+v", ipComcast, sig)
	}
	st := r.Stats()
	if st.Lookups != 4 || st.Errors != 0 || st.Timeouts != 0 || st.Dropped != 0 || st.Hits == 0 || st.Misses < 4 {
		t.Errorf("stats = %+v; want 4 lookups, no failure, some hits and at least 4 misses", st)
	}
}

func TestRDNSNegativeAnswers(t *testing.T) {
	srv := startPTRServer(t, time.Minute)
	r := startRDNS(t, RDNSConfig{Servers: []string{srv.addr}, Timeout: 200 * time.Millisecond})

	check := func(ip netip.Addr, says string) {
		t.Helper()
		r.Peek(ip)
		sig := resolved(t, r, ip)
		if sig.Type != TypeUnknown || sig.Domain != "" || !strings.Contains(sig.Evidence.Says, says) {
			t.Errorf("Peek(%s) = %+v; want unknown, saying %q", ip, sig, says)
		}
		for range 10 {
			r.Peek(ip)
		}
		if n := srv.queries(t, ip); n != 1 {
			t.Errorf("the server was asked %d times about %s; want 1 (the failure cached)", n, ip)
		}
	}
	check(ipNX, "NXDOMAIN")
	check(ipNX6, "NXDOMAIN")
	check(ipFail, "SERVFAIL")
	check(ipSlow, "timed out")

	st := r.Stats()
	if st.Lookups != 4 || st.Errors != 1 || st.Timeouts != 1 {
		t.Errorf("stats = %+v; want 4 lookups, 1 error (SERVFAIL), 1 timeout (NXDOMAIN is an answer)", st)
	}
}

func TestRDNSFailover(t *testing.T) {
	srv := startPTRServer(t, time.Minute)
	// A port nobody listens on: the kernel refuses at once.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := pc.LocalAddr().String()
	pc.Close()

	r := startRDNS(t, RDNSConfig{Servers: []string{refused, srv.addr}, Timeout: 2 * time.Second})
	for _, ip := range []netip.Addr{ipComcast, ipSiemens, ipBBC6} {
		r.Peek(ip)
		if sig := resolved(t, r, ip); sig.Type == TypeUnknown {
			t.Errorf("Peek(%s) = %+v; want the answer of the working server", ip, sig)
		}
	}
	if st := r.Stats(); st.Timeouts != 0 {
		t.Errorf("stats = %+v; want no timeout", st)
	}
}

func TestRDNSRateLimit(t *testing.T) {
	const (
		qps = 20
		n   = 60
	)
	srv := startPTRServer(t, time.Minute)
	r := startRDNS(t, RDNSConfig{Servers: []string{srv.addr}, QueriesPerSecond: qps, Workers: 8, QueueSize: n})

	ips := make([]netip.Addr, n)
	for i := range ips {
		ips[i] = netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)})
		if _, ok := r.Peek(ips[i]); ok {
			t.Fatalf("Peek(%s) answered before any lookup", ips[i])
		}
	}
	rdnsEventually(t, func() error {
		if got := len(srv.arrivals()); got < n {
			return fmt.Errorf("%d of %d queries arrived", got, n)
		}
		return nil
	})

	// A token bucket of rate qps and burst 1 lets at most qps+1 queries
	// through in any one-second window; one more for scheduling jitter.
	times := srv.arrivals()
	slices.SortFunc(times, time.Time.Compare)
	for i, start := range times {
		in := 0
		for _, at := range times[i:] {
			if at.Sub(start) < time.Second {
				in++
			}
		}
		if in > qps+2 {
			t.Fatalf("%d queries arrived within a second of query %d; the limit is %d per second", in, i, qps)
		}
	}
	if span := times[len(times)-1].Sub(times[0]); span < (n-qps-2)*time.Second/qps {
		t.Errorf("%d queries arrived within %v", n, span)
	}
	for _, ip := range ips {
		resolved(t, r, ip)
	}
	if st := r.Stats(); st.Lookups != n || st.Dropped != 0 {
		t.Errorf("stats = %+v; want %d lookups, none dropped", st, n)
	}
}

func TestRDNSQueueFull(t *testing.T) {
	// A server that never answers: every lookup hangs for the whole timeout.
	blackhole, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { blackhole.Close() })

	const (
		queue = 8
		peeks = 10_000
	)
	r := startRDNS(t, RDNSConfig{Servers: []string{blackhole.LocalAddr().String()}, Timeout: time.Minute, Workers: 1, QueueSize: queue})

	start := time.Now()
	for i := range peeks {
		ip := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		if sig, ok := r.Peek(ip); ok {
			t.Fatalf("Peek(%s) = %+v with a dead server", ip, sig)
		}
	}
	// Loose on purpose: this is not a benchmark (BenchmarkRDNSPeek is), it
	// only proves that Peek never waits for the queue or the network.
	if took := time.Since(start); took > time.Second {
		t.Errorf("%d Peek calls took %v with a dead server", peeks, took)
	}

	// The one worker holds at most one address; the queue holds the next
	// ones; everything else was dropped and counted.
	st := r.Stats()
	if st.Misses != peeks || st.Dropped < peeks-queue-1 || st.Dropped > peeks-queue {
		t.Errorf("stats = %+v; want %d misses and %d or %d dropped", st, peeks, peeks-queue-1, peeks-queue)
	}
	if n := r.Len(); n != 0 {
		t.Errorf("Len() = %d; want 0: nothing was answered", n)
	}
}

func TestRDNSExpiry(t *testing.T) {
	const ttl = 200 * time.Millisecond
	srv := startPTRServer(t, time.Minute)
	r := startRDNS(t, RDNSConfig{Servers: []string{srv.addr}, CacheTTL: ttl, NegativeTTL: ttl})

	r.Peek(ipComcast)
	r.Peek(ipNX)
	resolved(t, r, ipComcast)
	resolved(t, r, ipNX)

	// Nobody peeks: the sweep alone must delete both entries.
	rdnsEventually(t, func() error {
		if n := r.Len(); n != 0 {
			return fmt.Errorf("%d addresses still cached", n)
		}
		return nil
	})
	r.mu.Lock()
	lists, pending := r.answers.Len()+r.failures.Len(), len(r.pending)
	r.mu.Unlock()
	if lists != 0 || pending != 0 {
		t.Errorf("after expiry, %d entries still listed and %d pending", lists, pending)
	}

	// An expired address is looked up afresh.
	if _, ok := r.Peek(ipComcast); ok {
		t.Errorf("Peek(%s) answered after its entry expired", ipComcast)
	}
	resolved(t, r, ipComcast)
	if n := srv.queries(t, ipComcast); n != 2 {
		t.Errorf("the server was asked %d times about %s; want 2", n, ipComcast)
	}
}

func TestRDNSMaxCache(t *testing.T) {
	srv := startPTRServer(t, time.Minute)
	r := startRDNS(t, RDNSConfig{Servers: []string{srv.addr}, MaxCache: 3})

	// Answers and failures alternate, so that eviction has to pick the
	// oldest across both.
	order := []netip.Addr{ipComcast, ipNX, ipSiemens, ipNX6, ipBBC6}
	for i, ip := range order {
		r.Peek(ip)
		resolved(t, r, ip)
		if n := r.Len(); n > 3 || n != min(i+1, 3) {
			t.Fatalf("after %d lookups, Len() = %d; want %d", i+1, n, min(i+1, 3))
		}
	}
	for i, ip := range order {
		if want := i >= 2; r.cached(ip) != want {
			t.Errorf("%s cached = %v; want %v (the oldest two evicted)", ip, !want, want)
		}
	}
}

func TestRDNSConcurrentPeek(t *testing.T) {
	srv := startPTRServer(t, time.Minute)
	r := startRDNS(t, RDNSConfig{Servers: []string{srv.addr}, Timeout: time.Second, QueriesPerSecond: 1000})

	want := map[netip.Addr]string{ipComcast: TypeResidential, ipSiemens: TypeBusiness, ipBBC6: TypeBusiness, ipStanford: TypeEducation}
	ips := []netip.Addr{ipComcast, ipSiemens, ipBBC6, ipStanford}
	for i := range 50 {
		ip := netip.AddrFrom4([4]byte{203, 0, 113, byte(100 + i)})
		ips = append(ips, ip)
		want[ip] = TypeUnknown
	}

	const goroutines, peeks = 16, 2000
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range peeks {
				ip := ips[(g*7+i)%len(ips)]
				if sig, ok := r.Peek(ip); ok && sig.Type != want[ip] {
					t.Errorf("Peek(%s) = %+v; want %s", ip, sig, want[ip])
					return
				}
			}
		})
	}
	wg.Wait()
	if st := r.Stats(); st.Hits+st.Misses != goroutines*peeks {
		t.Errorf("stats = %+v; want hits + misses = %d Peek calls", st, goroutines*peeks)
	}

	for _, ip := range ips {
		resolved(t, r, ip)
		if n := srv.queries(t, ip); n != 1 {
			t.Errorf("the server was asked %d times about %s; want 1", n, ip)
		}
	}
	if st := r.Stats(); st.Lookups != uint64(len(ips)) {
		t.Errorf("stats = %+v; want %d lookups", st, len(ips))
	}
}

func TestRDNSNonPublic(t *testing.T) {
	// No server and no Run: these must be answered without either.
	r := NewRDNS(RDNSConfig{Servers: []string{"192.0.2.53:53"}})
	for _, s := range []string{"10.1.2.3", "192.168.0.1", "127.0.0.1", "169.254.1.1", "fd00::1", "fe80::1%eth0", "::1", "224.0.0.1", "0.0.0.0", "::ffff:10.0.0.1"} {
		ip := netip.MustParseAddr(s)
		if sig, ok := r.Peek(ip); !ok || sig.Type != TypeUnknown {
			t.Errorf("Peek(%s) = %+v, %v; want unknown at once", ip, sig, ok)
		}
	}
	if sig, ok := r.Peek(netip.Addr{}); !ok || sig.Type != TypeUnknown {
		t.Errorf("Peek(invalid) = %+v, %v; want unknown at once", sig, ok)
	}
	if st := r.Stats(); st != (RDNSStats{}) {
		t.Errorf("stats = %+v; want nothing counted", st)
	}
	if len(r.queue) != 0 {
		t.Errorf("%d addresses queued", len(r.queue))
	}
}

func TestRDNSConfigDefaults(t *testing.T) {
	got := RDNSConfig{}.withDefaults()
	want := RDNSConfig{
		Timeout: defaultRDNSTimeout, CacheTTL: defaultRDNSCacheTTL, NegativeTTL: defaultRDNSNegativeTTL,
		MaxCache: defaultRDNSMaxCache, QueriesPerSecond: defaultRDNSQPS, Workers: defaultRDNSWorkers, QueueSize: defaultRDNSQueueSize,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("zero config with defaults = %+v; want %+v", got, want)
	}
	set := RDNSConfig{Servers: []string{"a:53"}, Timeout: 1, CacheTTL: 2, NegativeTTL: 3, MaxCache: 4, QueriesPerSecond: 5, Workers: 6, QueueSize: 7}
	if got := set.withDefaults(); fmt.Sprint(got) != fmt.Sprint(set) {
		t.Errorf("set config with defaults = %+v; want it unchanged", got)
	}
	neg := RDNSConfig{Timeout: -1, MaxCache: -1, QueriesPerSecond: -1}.withDefaults()
	if neg.Timeout != defaultRDNSTimeout || neg.MaxCache != defaultRDNSMaxCache || neg.QueriesPerSecond != defaultRDNSQPS {
		t.Errorf("negative config with defaults = %+v; want defaults", neg)
	}

	r := NewRDNS(RDNSConfig{Servers: []string{"192.0.2.53", "2001:db8::53", "192.0.2.54:5353"}})
	if want := []string{"192.0.2.53:53", "[2001:db8::53]:53", "192.0.2.54:5353"}; !slices.Equal(r.servers, want) {
		t.Errorf("servers = %q; want %q", r.servers, want)
	}
}

func TestRDNSSystemResolvers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(path, []byte("# test\nsearch example.com\nnameserver 192.0.2.53\nnameserver 2001:db8::53\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := systemResolvers(path)
	if want := []string{"192.0.2.53:53", "[2001:db8::53]:53"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("systemResolvers = %q, %v; want %q", got, err, want)
	}

	if _, err := systemResolvers(filepath.Join(dir, "missing")); err == nil || !strings.HasPrefix(err.Error(), "reading system resolvers") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("systemResolvers(missing) error = %v", err)
	}
	empty := filepath.Join(dir, "empty.conf")
	if err := os.WriteFile(empty, []byte("search example.com\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := systemResolvers(empty); err == nil || !strings.Contains(err.Error(), "no nameserver") {
		t.Errorf("systemResolvers(no nameserver) error = %v", err)
	}
}

func TestRDNSRunTwice(t *testing.T) {
	srv := startPTRServer(t, time.Minute)
	r := startRDNS(t, RDNSConfig{Servers: []string{srv.addr}})
	r.Peek(ipSiemens)
	resolved(t, r, ipSiemens) // Run is up
	if err := r.Run(context.Background()); err == nil {
		t.Error("a second Run did not fail")
	}
}

func BenchmarkRDNSPeek(b *testing.B) {
	b.Run("path=hit", func(b *testing.B) {
		r := NewRDNS(RDNSConfig{Servers: []string{"192.0.2.53:53"}})
		r.store(ipSiemens, ClassifyPTR("mail.siemens.com"), false)
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := r.Peek(ipSiemens); !ok {
				b.Fatal("no hit")
			}
		}
	})
	b.Run("path=dropped", func(b *testing.B) {
		// No Run: the queue fills at once and every later miss is dropped.
		r := NewRDNS(RDNSConfig{Servers: []string{"192.0.2.53:53"}, QueueSize: 1})
		b.ReportAllocs()
		var i uint32
		for b.Loop() {
			i++
			r.Peek(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}))
		}
	})
}
