package ipintel_test

import (
	"context"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/leadpipe/leadpipe/internal/bus"
	"github.com/leadpipe/leadpipe/internal/testenv"
	"github.com/leadpipe/leadpipe/ipintel"
)

// TestJudgeRealRDAPDocuments reads responses the registries published
// (recorded by the ipwhois project, see testdata/README.md) and judges
// them as the RDAP layer does: only the university's assignment, held by
// an organisation, is an organisation's network; the ISP's own assignment
// without a registrant, an allocation, a network with no type, one larger
// than a /22 and networks registered to no named organisation are not.
func TestJudgeRealRDAPDocuments(t *testing.T) {
	cls, err := ipintel.DefaultClassifier()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file, first, last, status, registrant, isp, want string
	}{
		{"ripe-62.239.237.1.json", "62.239.237.0", "62.239.237.255", "ASSIGNED PA", "", "British Telecommunications PLC", "skip:" + ipintel.SkipNoOrg},
		{"lacnic-200.57.141.161.json", "200.57.141.161", "200.57.141.161", "ALLOCATED", "Triara.com, S.A. de C.V.", "", "skip:" + ipintel.SkipNotAssignment},
		{"lacnic-2801-10-c000.json", "2801:10:c000::", "2801:10:c000::", "ASSIGNED", "Universidad Catolica de Oriente", "", "company:Universidad Catolica de Oriente"},
		// The same assignment seen from the university's own network: the
		// registrant is the announcing organisation, not a customer of it.
		{"lacnic-2801-10-c000.json", "2801:10:c000::", "2801:10:c000::", "ASSIGNED", "Universidad Catolica de Oriente", "Universidad Catolica de Oriente", "skip:" + ipintel.SkipISP},
		{"arin-74.125.225.229.json", "74.125.0.0", "74.125.255.255", "", "Google Inc.", "", "skip:" + ipintel.SkipNotAssignment},
		{"afrinic-196.11.240.215.json", "196.11.239.0", "196.11.246.255", "ASSIGNED PI", "", "", "skip:" + ipintel.SkipTooLarge},
		{"afrinic-2001-43f8-7b0.json", "2001:43f8:7b0::", "2001:43f8:7b0:ffff:ffff:ffff:ffff:ffff", "ASSIGNED PI", "", "", "skip:" + ipintel.SkipNoOrg},
	} {
		raw, err := os.ReadFile("testdata/rdap/" + tc.file)
		if err != nil {
			t.Fatal(err)
		}
		n, err := ipintel.ParseRDAPNetwork(raw)
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if n.First.String() != tc.first || n.Last.String() != tc.last || n.Status != tc.status || n.Registrant != tc.registrant {
			t.Errorf("%s: read %s - %s %q registrant %q, want %s - %s %q registrant %q", tc.file, n.First, n.Last, n.Status, n.Registrant,
				tc.first, tc.last, tc.status, tc.registrant)
		}
		v := ipintel.JudgeRDAP(n, tc.isp, cls)
		got := "company:" + v.Company
		if v.Company == "" {
			got = "skip:" + v.Skip
		}
		if got != tc.want {
			t.Errorf("%s (ISP %q): judged %s, want %s", tc.file, tc.isp, got, tc.want)
		}
	}
	if _, err := ipintel.ParseRDAPNetwork([]byte(`{"errorCode":404,"title":"Not Found"}`)); err == nil {
		t.Error("an RDAP error document was read as a network")
	}
}

// rdapLayer starts an RDAP layer on the bucket of b against srv.
func rdapLayer(t *testing.T, b *bus.Bus, srv *testenv.RDAPServer, cfg ipintel.RDAPConfig) *ipintel.RDAP {
	t.Helper()
	kv, err := b.JS.KeyValue(context.Background(), bus.RDAPBucket)
	if err != nil {
		t.Fatal(err)
	}
	cls, err := ipintel.DefaultClassifier()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Bootstrap = srv.Bootstrap
	if cfg.Rate == 0 {
		cfg.Rate = 1000
	}
	r := ipintel.NewRDAP(cfg, kv, cls, testenv.Quiet())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return r
}

// unknownISP is what the other layers say of an address in space no
// announced network names: worth asking a registry about.
var unknownISP = ipintel.Result{Type: ipintel.TypeUnknown}

// eventually polls cond for up to ten seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRDAPAnswersLaterHitsAndSharesThem: the first hit from a network is
// answered with what is known (nothing) and queues one query; the answer
// names the company for the hits after it, in this process and in a second
// one sharing the bucket, which asks nothing. A person's assignment and a
// pool are kept as misses; a network another layer decided is never asked
// about; no bucket key is a visitor's address.
func TestRDAPAnswersLaterHitsAndSharesThem(t *testing.T) {
	b := testenv.Bus(t)
	srv := testenv.StartRDAP(t, "testdata/rdap")
	first := rdapLayer(t, b, srv, ipintel.RDAPConfig{})

	company := netip.MustParseAddr("198.51.100.5")
	if _, ok := first.Peek(company, &unknownISP); ok {
		t.Fatal("the first hit waited for RDAP")
	}
	eventually(t, "the company's answer", func() bool { _, ok := first.Lookup(company); return ok })
	a, ok := first.Peek(netip.MustParseAddr("198.51.100.9"), &unknownISP)
	if !ok || a.Company != "Example Paper Mill Oy" || a.Prefix != netip.MustParsePrefix("198.51.100.0/28") {
		t.Fatalf("a later hit from the network: %+v, %v; want Example Paper Mill Oy's /28", a, ok)
	}
	res := unknownISP
	ipintel.ApplyRDAP(&res, a)
	if res.Type != ipintel.TypeBusiness || res.Source != ipintel.SourceRDAP || res.CompanyName != "Example Paper Mill Oy" || !res.Identified() {
		t.Errorf("applied: %+v", res)
	}
	ans := testenv.IPData(t).DB().Explain(netip.MustParseAddr("198.51.100.9"), ipintel.Signals{RDAP: a})
	if ans.Decided != ipintel.SourceRDAP || ans.Company == nil || ans.Company.Name != "Example Paper Mill Oy" ||
		!slices.ContainsFunc(ans.Evidence, func(e ipintel.Evidence) bool {
			return e.Source == ipintel.SourceRDAP && strings.Contains(e.Says, "Example Paper Mill Oy holds 198.51.100.0/28 (ASSIGNED PA")
		}) {
		t.Errorf("explained: %+v", ans)
	}

	for _, tc := range []struct{ ip, skip string }{
		{"198.51.100.66", ipintel.SkipNoOrg}, // Jane Doe's /29
		{"198.51.100.200", ipintel.SkipPool},
		{"198.51.100.40", ipintel.SkipNotFound},
	} {
		ip := netip.MustParseAddr(tc.ip)
		first.Peek(ip, &unknownISP)
		eventually(t, tc.ip+"'s answer", func() bool { _, ok := first.Lookup(ip); return ok })
		if a, ok := first.Peek(ip, &unknownISP); ok || a == nil || a.Skip != tc.skip || a.Company != "" {
			t.Errorf("%s: %+v, %v; want a miss for %s", tc.ip, a, ok, tc.skip)
		}
	}
	decided := ipintel.Result{Type: ipintel.TypeBusiness, Source: "companies"}
	first.Peek(netip.MustParseAddr("198.51.100.100"), &decided)
	residential := ipintel.Result{Type: ipintel.TypeResidential, Source: "asn-list"}
	first.Peek(netip.MustParseAddr("203.0.113.7"), &residential) // in no fixture: 404
	eventually(t, "the residential network's answer", func() bool { _, ok := first.Lookup(netip.MustParseAddr("203.0.113.7")); return ok })
	queries := srv.Queries()
	want := []string{"rdap.arin.net 198.51.100.0/29", "rdap.arin.net 198.51.100.64/29", "rdap.arin.net 198.51.100.200/29",
		"rdap.arin.net 198.51.100.40/29", "rdap.apnic.net 203.0.113.0/29"}
	if !slices.Equal(queries, want) {
		t.Errorf("queries %v, want %v: one per network asked about, at the registry the bootstrap names, for the visitor's /29 and never the address, none for the network the operator's file decided", queries, want)
	}

	second := rdapLayer(t, b, srv, ipintel.RDAPConfig{})
	eventually(t, "the second process to see the answers", func() bool { _, ok := second.Lookup(netip.MustParseAddr("203.0.113.7")); return ok })
	if a, ok := second.Peek(netip.MustParseAddr("198.51.100.1"), &unknownISP); !ok || a.Company != "Example Paper Mill Oy" {
		t.Errorf("the second process: %+v, %v", a, ok)
	}
	if n := len(srv.Queries()); n != 5 {
		t.Errorf("the second process sent %d queries; the shared answers should have served it", n-5)
	}

	kv, _ := b.JS.KeyValue(context.Background(), bus.RDAPBucket)
	keys, err := kv.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for k := range keys.Keys() {
		got = append(got, k)
	}
	slices.Sort(got)
	// 198.51.100.0/28, .64/29, .128/25, the /24s of .40 and of 203.0.113.7.
	want = []string{"c6336400-24", "c6336400-28", "c6336440-29", "c6336480-25", "cb007100-24"}
	if !slices.Equal(got, want) {
		t.Errorf("bucket keys %v, want the networks %v", got, want)
	}
}

// TestRDAPLimits: a registry's Retry-After pauses it, failures open its
// circuit, and the daily cap stops all queries; each counted.
func TestRDAPLimits(t *testing.T) {
	b := testenv.Bus(t)
	ip := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, byte(i), 1}) }
	ask := func(r *ipintel.RDAP, from, to int) {
		for i := from; i < to; i++ {
			r.Peek(ip(i), &unknownISP)
		}
	}

	t.Run("retry-after", func(t *testing.T) {
		srv := testenv.StartRDAP(t, "testdata/rdap")
		srv.FailWith(func(w http.ResponseWriter) bool {
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(http.StatusTooManyRequests)
			return true
		})
		r := rdapLayer(t, b, srv, ipintel.RDAPConfig{})
		ask(r, 0, 5)
		eventually(t, "the paused queries", func() bool { return r.Stats().Paused == 4 })
		if n := len(srv.Queries()); n != 1 {
			t.Errorf("%d queries reached a registry that asked to wait an hour, want 1", n)
		}
	})
	t.Run("circuit", func(t *testing.T) {
		srv := testenv.StartRDAP(t, "testdata/rdap")
		srv.FailWith(func(w http.ResponseWriter) bool { w.WriteHeader(http.StatusInternalServerError); return true })
		r := rdapLayer(t, b, srv, ipintel.RDAPConfig{FailuresToOpen: 3, Cooldown: time.Hour})
		ask(r, 10, 18)
		eventually(t, "the open circuit", func() bool { s := r.Stats(); return s.Errors == 3 && s.Broken == 5 })
		if n := len(srv.Queries()); n != 3 {
			t.Errorf("%d queries reached a failing registry, want 3 before the circuit opened", n)
		}
	})
	t.Run("daily cap", func(t *testing.T) {
		srv := testenv.StartRDAP(t, "testdata/rdap")
		r := rdapLayer(t, b, srv, ipintel.RDAPConfig{DailyCap: 2})
		ask(r, 20, 25)
		eventually(t, "the capped queries", func() bool { return r.Stats().Capped == 3 })
		if n := len(srv.Queries()); n != 2 {
			t.Errorf("%d queries with a daily cap of 2", n)
		}
	})
}
