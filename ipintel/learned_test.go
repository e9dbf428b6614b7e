package ipintel_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/leadpipe/leadpipe/internal/bus"
	"github.com/leadpipe/leadpipe/internal/testenv"
	"github.com/leadpipe/leadpipe/ipintel"
	"github.com/nats-io/nats.go/jetstream"
)

// TestLearnerLearnsAgreeingNetworks: a network is learned as a company's
// once three distinct visitors identified with its domain within 30 days
// and at least 80% of those identified from it agree; fewer visitors, too
// little agreement or old identifications teach nothing, and a network an
// administrator removed is not learned again.
func TestLearnerLearnsAgreeingNetworks(t *testing.T) {
	b := testenv.Bus(t)
	ctx := context.Background()
	ids, _ := b.JS.KeyValue(ctx, bus.IdentitiesBucket)
	removals, _ := b.JS.KeyValue(ctx, bus.LearnedBucket)
	identify := func(kv jetstream.KeyValue, network, site, visitor, domain string, ago time.Duration) {
		t.Helper()
		raw, _ := json.Marshal(ipintel.Identification{Domain: domain, At: time.Now().Add(-ago)})
		if _, err := kv.Put(ctx, ipintel.IdentificationKey(netip.MustParsePrefix(network), site, visitor), raw); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 { // three visitors, two sites, all agree
		identify(ids, "198.51.100.0/24", fmt.Sprintf("s%d", i%2), fmt.Sprintf("v%d", i), "paper-mill.example", time.Hour)
	}
	for i := range 2 { // two visitors only
		identify(ids, "203.0.113.0/24", "s0", fmt.Sprintf("v%d", i), "shipyard.example", time.Hour)
	}
	for i := range 5 { // three of five agree: 60%
		identify(ids, "192.0.2.0/24", "s0", fmt.Sprintf("v%d", i), []string{"a.example", "a.example", "a.example", "b.example", "c.example"}[i], time.Hour)
	}
	for i := range 3 { // out of the window
		identify(ids, "2001:db8::/48", "s0", fmt.Sprintf("v%d", i), "old.example", 31*24*time.Hour)
	}

	l := ipintel.NewLearner(ids, removals, testenv.Quiet())
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- l.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, "the learned networks", func() bool { return l.Rebuilds() > 0 && len(l.Networks()) > 0 })

	got := l.Networks()
	if len(got) != 1 || got[0].Prefix != netip.MustParsePrefix("198.51.100.0/24") || got[0].Domain != "paper-mill.example" ||
		got[0].Visitors != 3 || got[0].Agreement != 1 {
		t.Fatalf("learned %+v, want only 198.51.100.0/24 as paper-mill.example by 3 visitors", got)
	}
	n, ok := l.Lookup(netip.MustParseAddr("198.51.100.77"))
	res := ipintel.Result{Type: ipintel.TypeResidential, Source: "asn-list"}
	ipintel.ApplyLearned(&res, n)
	if !ok || res.CompanyDomain != "paper-mill.example" || res.Source != ipintel.SourceLearned || !res.Identified() {
		t.Errorf("a hit from the network: %+v", res)
	}
	for _, ip := range []string{"203.0.113.5", "192.0.2.5", "2001:db8::5"} {
		if n, ok := l.Lookup(netip.MustParseAddr(ip)); ok {
			t.Errorf("%s learned as %+v", ip, n)
		}
	}

	// A fourth visitor from the shipyard's network: now it is learned.
	identify(ids, "203.0.113.0/24", "s1", "v9", "shipyard.example", time.Minute)
	eventually(t, "the shipyard's network", func() bool { _, ok := l.Lookup(netip.MustParseAddr("203.0.113.5")); return ok })

	if ok, err := l.Remove(ctx, netip.MustParsePrefix("198.51.100.0/24"), "key-1"); !ok || err != nil {
		t.Fatalf("Remove: %v, %v", ok, err)
	}
	if _, ok := l.Lookup(netip.MustParseAddr("198.51.100.77")); ok {
		t.Error("a removed network still names its company")
	}
	identify(ids, "198.51.100.0/24", "s0", "v7", "paper-mill.example", time.Minute)
	second := ipintel.NewLearner(ids, removals, testenv.Quiet())
	go func() { _ = second.Run(runCtx) }()
	eventually(t, "a second learner", func() bool { return len(second.Networks()) > 0 })
	if _, ok := second.Lookup(netip.MustParseAddr("198.51.100.77")); ok {
		t.Error("a removed network was learned again by another process")
	}
	if ok, _ := l.Remove(ctx, netip.MustParsePrefix("192.0.2.0/24"), "key-1"); ok {
		t.Error("removing a network that is not learned reported success")
	}
}
