package ipintel

import (
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// realSources are the real ASN data and country database of `make setup`.
func realSources(tb testing.TB) Sources {
	tb.Helper()
	dir, err := asnDir()
	if err != nil {
		tb.Fatal(err)
	}
	loadReal(tb) // fails with the `make setup` hint if the data is missing
	return Sources{ASNDir: dir, CountryMMDB: filepath.Join(dir, "country.mmdb")}
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestEnrichPrecedence(t *testing.T) {
	src := realSources(t)
	dir := t.TempDir()
	sap := loadReal(t).PrefixesOf(212794)[0].Addr()
	comcast := loadReal(t).PrefixesOf(7922)[0].Addr()
	src.Companies = filepath.Join(dir, "companies.csv")
	os.WriteFile(src.Companies, []byte("cidr,name,domain,industry,size,country\n"+
		netip.PrefixFrom(comcast, 32).String()+",Acme Home Office,acme.example,Software,10-50,US\n"), 0o600)
	src.Overrides = filepath.Join(dir, "overrides.csv")
	os.WriteFile(src.Overrides, []byte("match,type,company,domain,note\n"+
		netip.PrefixFrom(sap.Next(), 32).String()+",hosting,,,SAP's cloud egress\n"), 0o600)
	cls, err := DefaultClassifier()
	if err != nil {
		t.Fatal(err)
	}
	db, err := Load(src, cls)
	if err != nil {
		t.Fatal(err)
	}
	check := func(ip netip.Addr, wantType, wantSource, wantCompany string) {
		t.Helper()
		r := db.Enrich(ip)
		if r.Type != wantType || r.Source != wantSource || r.CompanyName != wantCompany {
			t.Errorf("Enrich(%s) = %s by %s, company %q; want %s by %s, %q", ip, r.Type, r.Source, r.CompanyName, wantType, wantSource, wantCompany)
		}
	}
	check(sap, TypeBusiness, "asn-list", "SAP")
	check(sap.Next(), TypeHosting, "override", "SAP")
	check(comcast, TypeBusiness, "companies", "Acme Home Office")
	check(comcast.Next(), TypeResidential, "asn-list", "Comcast Cable Communications, LLC")
	check(netip.MustParseAddr("10.0.0.1"), TypeUnknown, "", "")

	r := db.Enrich(sap)
	if r.Country != "DE" {
		t.Errorf("SAP's first network: country %q, want DE from the geo database", r.Country)
	}
	a := db.Explain(comcast, Signals{})
	if a.Company == nil || a.Company.Domain != "acme.example" || a.Decided != "companies" || len(a.Evidence) < 3 {
		t.Errorf("Explain(%s) = %+v", comcast, a)
	}
	// A confident PTR signal decides over a name rule, never over the
	// operator's own data.
	r = db.Enrich(comcast.Next())
	ApplyPTR(&r, PTRSignal{Type: TypeBusiness, Confidence: 0.99, Domain: "x.example"})
	if r.Type != TypeBusiness || r.Source != "rdns" {
		t.Errorf("a 0.99 PTR signal did not decide: %+v", r)
	}
	r = db.Enrich(sap.Next())
	ApplyPTR(&r, PTRSignal{Type: TypeResidential, Confidence: 0.99})
	if r.Type != TypeHosting {
		t.Errorf("a PTR signal overrode an operator override: %+v", r)
	}
}

// TestReloadUnderLookups swaps the data while goroutines look up without
// pause: every answer comes whole from one snapshot or the other (the
// override and the company move together), and a broken file leaves the
// current data in place.
func TestReloadUnderLookups(t *testing.T) {
	slow(t, "reloads the full IP data under load, about 10 s")
	src := realSources(t)
	src.CountryMMDB = ""
	dir := t.TempDir()
	src.Overrides = filepath.Join(dir, "overrides.json")
	probe := netip.MustParseAddr("198.51.100.7")
	write := func(body string) {
		t.Helper()
		tmp := src.Overrides + ".tmp"
		if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Rename(tmp, src.Overrides)
	}
	versionA := `[{"cidr":"198.51.100.0/24","type":"business","company":"Alpha","domain":"alpha.example"}]`
	versionB := `[{"cidr":"198.51.100.0/24","type":"education","company":"Beta University","domain":"beta.example"}]`
	write(versionA)
	store, err := OpenStore(src, quiet)
	if err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var lookups, torn atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				r := store.DB().Enrich(probe)
				ok := r.Type == TypeBusiness && r.CompanyName == "Alpha" || r.Type == TypeEducation && r.CompanyName == "Beta University"
				if !ok {
					torn.Add(1)
				}
				lookups.Add(1)
			}
		}()
	}
	for i := range 4 {
		if i%2 == 0 {
			write(versionB)
		} else {
			write(versionA)
		}
		if err := store.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	write(`[{"cidr":"198.51.100.0/24","type":"carrier pigeon"}]`)
	before := store.DB()
	if err := store.Reload(); err == nil {
		t.Error("reloading a broken overrides file succeeded")
	}
	if store.DB() != before {
		t.Error("a failed reload replaced the data")
	}
	stop.Store(true)
	wg.Wait()
	if torn.Load() > 0 {
		t.Errorf("%d of %d lookups saw a mix of two snapshots", torn.Load(), lookups.Load())
	}
	if ok, failed := store.Reloads(); ok != 5 || failed != 1 {
		t.Errorf("reloads ok=%d failed=%d, want 5 and 1", ok, failed)
	}
	if got := store.DB().Enrich(probe); got.CompanyName != "Alpha" {
		t.Errorf("after the failed reload the data is %q, want the last good (Alpha)", got.CompanyName)
	}
}

// BenchmarkEnrich measures the processor's hot path: type, company and
// country of one address over the full real data (ASN table, classification,
// country database). Target: under 300 ns and no allocation.
//
//	go test -run='^$' -bench=Enrich -count=10 ./ipintel/ | tee enrich.txt
//	benchstat enrich.txt
func BenchmarkEnrich(b *testing.B) {
	src := realSources(b)
	cls, err := DefaultClassifier()
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	db, err := Load(src, cls)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("loaded in %v, %d cells", time.Since(start), db.cells.Size())
	runtime.GC() // the load's garbage is not the lookups' cost
	for _, f := range benchFamilies() {
		b.Run("family="+f.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r := db.Enrich(f.probes[i&(benchProbes-1)])
				if !r.Known {
					b.Fatal("probe not found")
				}
				i++
			}
		})
	}
	b.Run("family=v4-uniform", func(b *testing.B) {
		r := rand.New(rand.NewPCG(1, 2))
		probes := make([]netip.Addr, benchProbes)
		for i := range probes {
			probes[i] = netip.AddrFrom4([4]byte{byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())})
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			_ = db.Enrich(probes[i&(benchProbes-1)])
			i++
		}
	})
}
