package ipintel

// Benchmarks over the real ASN database. Lookup and Build run bart (what
// Table uses) side by side with github.com/yl2chen/cidranger, the usual
// alternative, so that the choice of bart stays visible and measured;
// cidranger appears nowhere but here.
//
// Compare the implementations (the Build benchmarks take seconds per op for
// cidranger, hence a count-based benchtime):
//
//	export LEADPIPE_ASN_DIR=$HOME/.cache/leadpipe/current/ipdb
//	go test -run='^$' -bench=Lookup -count=10 ./ipintel/ | tee lookup.txt
//	go test -run='^$' -bench='Build|LoadASN' -benchtime=3x -count=6 ./ipintel/ | tee build.txt
//	benchstat -col /impl lookup.txt build.txt
//
// Compare a change: run the same commands before and after it into old.txt
// and new.txt, then
//
//	benchstat old.txt new.txt

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/gaissmai/bart"
	"github.com/yl2chen/cidranger"
)

// benchFamily is what the benchmarks need of one address family.
type benchFamily struct {
	name     string
	prefixes []netip.Prefix
	asns     []uint32 // asns[i] is the ASN of prefixes[i]
	// probes are addresses drawn inside prefixes picked at random, so every
	// lookup is a hit and descends as deep as real traffic from networks
	// does; uniform random IPv6 addresses would almost all miss at the root.
	probes    []netip.Addr
	netProbes []net.IP // probes for cidranger, converted outside the timing
}

const benchProbes = 1 << 16

var benchFamilies = sync.OnceValue(func() []*benchFamily {
	tab, err := realASN()
	if err != nil {
		return nil
	}
	fams := []*benchFamily{{name: "v4"}, {name: "v6"}}
	for p, i := range tab.prefixes.AllSorted() {
		f := fams[0]
		if p.Addr().Is6() {
			f = fams[1]
		}
		f.prefixes = append(f.prefixes, p)
		f.asns = append(f.asns, tab.networks[i].ASN)
	}
	r := rand.New(rand.NewPCG(11, 12))
	for _, f := range fams {
		for range benchProbes {
			ip := RandomAddr(f.prefixes[r.IntN(len(f.prefixes))], r)
			f.probes = append(f.probes, ip)
			f.netProbes = append(f.netProbes, net.IP(ip.AsSlice()))
		}
	}
	return fams
})

func loadBenchFamilies(b *testing.B) []*benchFamily {
	b.Helper()
	loadReal(b) // fails with the set-up hint if the data is missing
	return benchFamilies()
}

// rangerEntry is a cidranger entry carrying its ASN.
type rangerEntry struct {
	ipNet net.IPNet
	asn   uint32
}

func (e *rangerEntry) Network() net.IPNet { return e.ipNet }

func buildRanger(prefixes []netip.Prefix, asns []uint32) (cidranger.Ranger, error) {
	rg := cidranger.NewPCTrieRanger()
	for i, p := range prefixes {
		ipNet := net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
		if err := rg.Insert(&rangerEntry{ipNet, asns[i]}); err != nil {
			return nil, err
		}
	}
	return rg, nil
}

// rangerLookup returns the ASN of the longest prefix containing ip;
// ContainingNetworks lists the matches from the shortest prefix down.
func rangerLookup(rg cidranger.Ranger, ip net.IP) (uint32, bool) {
	es, err := rg.ContainingNetworks(ip)
	if err != nil || len(es) == 0 {
		return 0, false
	}
	return es[len(es)-1].(*rangerEntry).asn, true
}

// benchRangers builds one cidranger per family, once, and checks that it
// answers every probe as the Table does, so the two are timed doing the same
// work.
var benchRangers = sync.OnceValues(func() (map[string]cidranger.Ranger, error) {
	tab, _ := realASN()
	rangers := make(map[string]cidranger.Ranger)
	for _, f := range benchFamilies() {
		rg, err := buildRanger(f.prefixes, f.asns)
		if err != nil {
			return nil, err
		}
		for i, ip := range f.probes {
			want, _ := tab.Lookup(ip)
			if got, ok := rangerLookup(rg, f.netProbes[i]); !ok || got != want.ASN {
				return nil, fmt.Errorf("cidranger and Table disagree on %s: AS%d against AS%d", ip, got, want.ASN)
			}
		}
		rangers[f.name] = rg
	}
	return rangers, nil
})

func BenchmarkLookup(b *testing.B) {
	tab := loadReal(b)
	for _, f := range loadBenchFamilies(b) {
		b.Run("family="+f.name, func(b *testing.B) {
			b.Run("impl=bart", func(b *testing.B) {
				b.ReportAllocs()
				var i int
				var sink uint32
				for b.Loop() {
					n, _ := tab.Lookup(f.probes[i%benchProbes])
					sink += n.ASN
					i++
				}
				benchSink = sink
			})
			b.Run("impl=cidranger", func(b *testing.B) {
				rangers, err := benchRangers()
				if err != nil {
					b.Fatal(err)
				}
				rg := rangers[f.name]
				b.ReportAllocs()
				var i int
				var sink uint32
				for b.Loop() {
					asn, _ := rangerLookup(rg, f.netProbes[i%benchProbes])
					sink += asn
					i++
				}
				benchSink = sink
			})
		})
	}
}

// BenchmarkBuild times building each structure from the prefixes of the real
// database (the CSV parsing LoadASN adds is in BenchmarkLoadASN), and reports
// the heap the built structure holds.
func BenchmarkBuild(b *testing.B) {
	for _, f := range loadBenchFamilies(b) {
		b.Run("family="+f.name, func(b *testing.B) {
			b.Run("impl=bart", func(b *testing.B) {
				build := func() any {
					t := new(bart.Table[uint32])
					for i, p := range f.prefixes {
						t.Insert(p, f.asns[i])
					}
					return t
				}
				heap := heapOf(build)
				b.ReportAllocs()
				for b.Loop() {
					build()
				}
				b.ReportMetric(heap/1e6, "heap-MB")
			})
			b.Run("impl=cidranger", func(b *testing.B) {
				build := func() any {
					rg, err := buildRanger(f.prefixes, f.asns)
					if err != nil {
						b.Fatal(err)
					}
					return rg
				}
				heap := heapOf(build)
				b.ReportAllocs()
				for b.Loop() {
					build()
				}
				b.ReportMetric(heap/1e6, "heap-MB")
			})
		})
	}
}

// BenchmarkLoadASN times the whole load from CSV bytes in memory: parsing,
// splitting ranges into prefixes, interning and building the Table.
func BenchmarkLoadASN(b *testing.B) {
	loadReal(b)
	dir, _ := asnDir()
	v4, err := os.ReadFile(filepath.Join(dir, ASNFileV4))
	if err != nil {
		b.Fatal(err)
	}
	v6, err := os.ReadFile(filepath.Join(dir, ASNFileV6))
	if err != nil {
		b.Fatal(err)
	}
	heap := heapOf(func() any {
		t, err := LoadASN(bytes.NewReader(v4), bytes.NewReader(v6))
		if err != nil {
			b.Fatal(err)
		}
		return t
	})
	b.SetBytes(int64(len(v4) + len(v6)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := LoadASN(bytes.NewReader(v4), bytes.NewReader(v6)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(heap/1e6, "heap-MB")
}

var benchSink uint32

// heapOf returns the bytes of live heap that what build returns holds.
func heapOf(build func() any) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	x := build()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(x)
	return float64(after.HeapAlloc) - float64(before.HeapAlloc)
}
