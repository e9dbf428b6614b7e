package ipintel

import (
	"github.com/leadpipe/leadpipe/internal/cache"
	"math/big"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// asnDir is where the tests find the real ASN database: where `make
// setup` puts it, or $LEADPIPE_ASN_DIR.
func asnDir() (string, error) { return cache.IPDataDir(), nil }

// realASN loads the real database once for all tests and benchmarks.
var realASN = sync.OnceValues(func() (*Table, error) {
	dir, err := asnDir()
	if err != nil {
		return nil, err
	}
	return LoadASNDir(dir)
})

// loadReal returns the real database. Its absence is a failure, not a skip:
// these tests are the only check that the loader accepts the data leadpipe
// actually ships with.
func loadReal(tb testing.TB) *Table {
	tb.Helper()
	tab, err := realASN()
	if err != nil {
		tb.Fatalf("%v\nthe real ASN database is missing or unreadable: run `make setup` (or point LEADPIPE_ASN_DIR at a directory holding %s and %s)", err, ASNFileV4, ASNFileV6)
	}
	return tab
}

// readReal returns the rows of one real file, read independently of the
// loader.
func readReal(tb testing.TB, name string) []asnRow {
	tb.Helper()
	dir, err := asnDir()
	if err != nil {
		tb.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		tb.Fatalf("%v: run `make setup`", err)
	}
	return oracleRows(tb, string(data))
}

func TestRealASN(t *testing.T) {
	tab := loadReal(t)

	v4, v6 := tab.Len()
	t.Logf("prefixes: %d IPv4, %d IPv6; networks: %d", v4, v6, len(tab.networks))
	if v4 < 500_000 || v6 < 100_000 {
		t.Errorf("Len() = %d, %d; want more than 500,000 IPv4 and 100,000 IPv6 prefixes", v4, v6)
	}

	check := func(ip string, wantASN uint32, wantOrg string) {
		t.Helper()
		got, ok := tab.Lookup(netip.MustParseAddr(ip))
		if !ok || got.ASN != wantASN || got.Org != wantOrg {
			t.Errorf("Lookup(%s) = %+v, %v; want AS%d %q", ip, got, ok, wantASN, wantOrg)
		}
	}
	check("1.0.0.1", 13335, "Cloudflare, Inc.")
	check("::ffff:1.0.0.1", 13335, "Cloudflare, Inc.")
	check("2001:200::1", 2500, "WIDE Project")
	check("2001:200:1b9:ffff:ffff:ffff:ffff:ffff", 2500, "WIDE Project")
	for _, ip := range []string{"10.0.0.1", "192.168.1.1", "127.0.0.1", "::1", "fe80::1"} {
		if got, ok := tab.Lookup(netip.MustParseAddr(ip)); ok {
			t.Errorf("Lookup(%s) = %+v, want no match for a private address", ip, got)
		}
	}

	// Amazon announces from many ASNs under one name: one company.
	const amazon = 16509
	ps := tab.PrefixesOf(amazon)
	if len(ps) < 100 {
		t.Fatalf("PrefixesOf(%d) gave %d prefixes, want the hundreds Amazon holds", amazon, len(ps))
	}
	r := rand.New(rand.NewPCG(7, 8))
	var company string
	for range 100 {
		p := ps[r.IntN(len(ps))]
		ip := RandomAddr(p, r)
		got, ok := tab.Lookup(ip)
		if !ok || got.ASN != amazon {
			t.Errorf("Lookup(%s) in %s = %+v, %v; want AS%d", ip, p, got, ok, amazon)
		}
		company = got.CompanyID
	}
	amazonASNs := make(map[uint32]bool)
	for _, n := range tab.networks {
		if n.CompanyID == company {
			amazonASNs[n.ASN] = true
		}
	}
	if !amazonASNs[14618] {
		t.Errorf("AS14618 (Amazon.com, Inc.) does not share AS16509's company id %s; ASNs that do: %v", company, amazonASNs)
	}
}

// TestRealASNMatchesCSV checks the table against a sample of the rows it was
// built from: an address drawn at random inside each sampled row resolves to
// that row's network.
func TestRealASNMatchesCSV(t *testing.T) {
	tab := loadReal(t)
	r := rand.New(rand.NewPCG(9, 10))
	for _, f := range []struct {
		name     string
		overlaps func() int
	}{
		{ASNFileV4, func() int { v4, _ := tab.Overlaps(); return v4 }},
		{ASNFileV6, func() int { _, v6 := tab.Overlaps(); return v6 }},
	} {
		rows := readReal(t, f.name)
		if len(rows) < 100_000 {
			t.Fatalf("%s: only %d rows", f.name, len(rows))
		}
		t.Logf("%s: %d rows, %d overlapping earlier rows", f.name, len(rows), f.overlaps())
		for range 2000 {
			row := rows[r.IntN(len(rows))]
			ip := randomInRange(r, row.first, row.last)
			got, ok := tab.Lookup(ip)
			if !ok || got.ASN != row.asn || got.Org != row.org {
				t.Errorf("%s: Lookup(%s) in %s-%s = %+v, %v; want AS%d %q", f.name, ip, row.first, row.last, got, ok, row.asn, row.org)
			}
		}
	}
}

// randomInRange draws an address uniformly from first..last with big
// integers, independently of the package's own arithmetic.
func randomInRange(r *rand.Rand, first, last netip.Addr) netip.Addr {
	lo := new(big.Int).SetBytes(first.AsSlice())
	span := new(big.Int).Sub(new(big.Int).SetBytes(last.AsSlice()), lo)
	span.Add(span, big.NewInt(1))
	// Reduce a 192-bit random number modulo the span: the bias is below 2^-64.
	var buf [24]byte
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	off := new(big.Int).Mod(new(big.Int).SetBytes(buf[:]), span)
	b := lo.Add(lo, off).FillBytes(make([]byte, len(first.AsSlice())))
	a, _ := netip.AddrFromSlice(b)
	return a
}

// slow skips a long test in the fast tier (`go test -short`), saying why,
// unless CI=true (testenv.Slow; this package cannot import testenv, which
// imports it).
func slow(t *testing.T, why string) {
	t.Helper()
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skipf("skipped by -short: %s (CI=true runs it)", why)
	}
}
