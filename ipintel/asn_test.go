package ipintel

import (
	"encoding/csv"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

const (
	smallV4 = `1.0.0.0,1.0.0.255,13335,"Cloudflare, Inc."
1.0.4.0,1.0.7.255,38803,Gtelecom Pty Ltd
1.0.8.0,1.0.8.10,13335,"  cloudflare,	INC. "
1.0.9.0,1.0.9.255,13335,"Cloudflare, Inc."
1.0.10.0,1.0.10.255,209242,"Cloudflare, Inc."
`
	smallV6 = `2001:200::,2001:200:1b9:ffff:ffff:ffff:ffff:ffff,2500,WIDE Project
2001:db8::,2001:db8::,64496,"Documentation
Multi-line Org"
`
)

func loadSmall(t *testing.T) *Table {
	t.Helper()
	tab, err := LoadASN(strings.NewReader(smallV4), strings.NewReader(smallV6))
	if err != nil {
		t.Fatalf("LoadASN: %v", err)
	}
	return tab
}

func TestLoadASN(t *testing.T) {
	tab := loadSmall(t)

	check := func(ip string, wantASN uint32, wantOrg string) Network {
		t.Helper()
		got, ok := tab.Lookup(netip.MustParseAddr(ip))
		if !ok || got.ASN != wantASN || got.Org != wantOrg {
			t.Errorf("Lookup(%s) = %+v, %v; want AS%d %q", ip, got, ok, wantASN, wantOrg)
		}
		if ok && got.CompanyID != companyID(wantOrg) {
			t.Errorf("Lookup(%s).CompanyID = %q, want %q", ip, got.CompanyID, companyID(wantOrg))
		}
		return got
	}
	cf := check("1.0.0.1", 13335, "Cloudflare, Inc.")
	check("1.0.0.0", 13335, "Cloudflare, Inc.")
	check("1.0.0.255", 13335, "Cloudflare, Inc.")
	check("::ffff:1.0.0.1", 13335, "Cloudflare, Inc.")
	check("1.0.5.6", 38803, "Gtelecom Pty Ltd")
	cfOddSpelling := check("1.0.8.10", 13335, "  cloudflare,	INC. ")
	cfAgain := check("1.0.9.9", 13335, "Cloudflare, Inc.")
	cfOtherASN := check("1.0.10.1", 209242, "Cloudflare, Inc.")
	check("2001:200::1", 2500, "WIDE Project")
	check("2001:200:1b9:ffff:ffff:ffff:ffff:ffff", 2500, "WIDE Project")
	check("2001:db8::", 64496, "Documentation\nMulti-line Org")

	for _, ip := range []string{"1.0.1.0", "1.0.8.11", "0.0.0.0", "255.255.255.255", "2001:200:1ba::", "::", "::ffff:1.0.1.0", "2001:db8::1"} {
		if got, ok := tab.Lookup(netip.MustParseAddr(ip)); ok {
			t.Errorf("Lookup(%s) = %+v, want no match", ip, got)
		}
	}
	if got, ok := tab.Lookup(netip.Addr{}); ok {
		t.Errorf("Lookup(zero Addr) = %+v, want no match", got)
	}

	// One organisation, several spellings and ASNs: one company.
	if cf.CompanyID != cfOddSpelling.CompanyID || cf.CompanyID != cfOtherASN.CompanyID {
		t.Errorf("company ids differ for one organisation: %q, %q, %q", cf.CompanyID, cfOddSpelling.CompanyID, cfOtherASN.CompanyID)
	}
	// The name is interned: rows with the same name share its bytes.
	if unsafe.StringData(cf.Org) != unsafe.StringData(cfAgain.Org) || unsafe.StringData(cf.Org) != unsafe.StringData(cfOtherASN.Org) {
		t.Error("equal organisation names from different rows are separate copies, want one interned string")
	}

	// 1 + 1 + (/29, /31, /32) + 1 + 1 and 6 + 1.
	if v4, v6 := tab.Len(); v4 != 7 || v6 != 7 {
		t.Errorf("Len() = %d, %d; want 7, 7", v4, v6)
	}
	if v4, v6 := tab.Overlaps(); v4 != 0 || v6 != 0 {
		t.Errorf("Overlaps() = %d, %d; want 0, 0", v4, v6)
	}
	want := []string{"1.0.0.0/24", "1.0.8.0/29", "1.0.8.8/31", "1.0.8.10/32", "1.0.9.0/24"}
	if got := prefixStrings(tab.PrefixesOf(13335)); !slices.Equal(got, want) {
		t.Errorf("PrefixesOf(13335) = %v, want %v", got, want)
	}
	if got := tab.PrefixesOf(1); got != nil {
		t.Errorf("PrefixesOf(1) = %v, want none", got)
	}
}

func TestLoadASNOverlaps(t *testing.T) {
	v4 := `10.0.0.0,10.0.1.255,1,A
10.0.1.0,10.0.2.255,2,B
10.0.1.128,10.0.1.200,3,C
10.0.3.0,10.0.3.255,4,D
10.0.3.0,10.0.4.0,5,E
`
	tab, err := LoadASN(strings.NewReader(v4), strings.NewReader(""))
	if err != nil {
		t.Fatalf("LoadASN: %v", err)
	}
	for ip, want := range map[string]uint32{
		"10.0.0.1": 1, "10.0.1.0": 1, "10.0.1.150": 1, "10.0.1.255": 1,
		"10.0.2.0": 2, "10.0.2.255": 2,
		"10.0.3.0": 4, "10.0.3.255": 4,
		"10.0.4.0": 5,
	} {
		if got, ok := tab.Lookup(netip.MustParseAddr(ip)); !ok || got.ASN != want {
			t.Errorf("Lookup(%s) = %+v, %v; want AS%d (earlier rows win)", ip, got, ok, want)
		}
	}
	if got := tab.PrefixesOf(3); got != nil {
		t.Errorf("PrefixesOf(3) = %v, want none: every address of C was claimed earlier", got)
	}
	if v4, v6 := tab.Overlaps(); v4 != 3 || v6 != 0 {
		t.Errorf("Overlaps() = %d, %d; want 3, 0", v4, v6)
	}
}

func TestLoadASNErrors(t *testing.T) {
	const good4 = "1.0.0.0,1.0.0.255,13335,Cloudflare\n"
	tests := []struct {
		v4, v6 string
		want   string
	}{
		{"x,1.0.0.255,1,A\n", "", `asn-ipv4.csv line 1: bad start address "x"`},
		{good4 + " 1.0.1.0,1.0.1.255,1,A\n", "", `asn-ipv4.csv line 2: bad start address " 1.0.1.0"`},
		{good4 + "1.0.1.0,1.0.1.256,1,A\n", "", `asn-ipv4.csv line 2: bad end address "1.0.1.256"`},
		{good4 + "1.0.1.0,,1,A\n", "", `asn-ipv4.csv line 2: bad end address ""`},
		{"1.0.0.0,1.0.0.255,AS13335,A\n", "", `asn-ipv4.csv line 1: bad ASN "AS13335"`},
		{"1.0.0.0,1.0.0.255,-1,A\n", "", `asn-ipv4.csv line 1: bad ASN "-1"`},
		{"1.0.0.0,1.0.0.255,4294967296,A\n", "", `asn-ipv4.csv line 1: bad ASN "4294967296"`},
		{"1.0.0.0,1.0.0.255,,A\n", "", `asn-ipv4.csv line 1: bad ASN ""`},
		{"1.0.0.0,1.0.0.255,1,\n", "", `asn-ipv4.csv line 1: empty organisation`},
		{"1.0.0.0,1.0.0.255,1,\"  \"\n", "", `asn-ipv4.csv line 1: empty organisation`},
		{"1.0.0.0,1.0.0.255,1\n", "", `asn-ipv4.csv line 1: want 4 fields (start, end, ASN, organisation), got 3`},
		{good4 + "1.0.1.0,1.0.1.255,1,A,extra\n", "", `asn-ipv4.csv line 2: want 4 fields (start, end, ASN, organisation), got 5`},
		{"1.0.0.9,1.0.0.1,1,A\n", "", `asn-ipv4.csv line 1: start 1.0.0.9 is after end 1.0.0.1`},
		{"::1,::2,1,A\n", "", `asn-ipv4.csv line 1: start address "::1" is not IPv4`},
		{"1.0.0.0,::1,1,A\n", "", `asn-ipv4.csv line 1: start 1.0.0.0 and end ::1 are of different address families`},
		{good4 + "0.255.0.0,0.255.0.255,1,A\n", "", `asn-ipv4.csv line 2: start 0.255.0.0 is before the previous row's start 1.0.0.0: rows must be sorted`},
		{good4 + "1.0.1.0,1.0.1.255,1,\"Unterminated\n", "", `asn-ipv4.csv line 2, column 35: extraneous or missing " in quoted-field`},
		{good4 + "1.0.1.0,1.0.1.255,1,Bare\"Quote\n", "", `asn-ipv4.csv line 2, column 25: bare " in non-quoted-field`},
		{good4, "1.0.0.0,1.0.0.255,1,A\n", `asn-ipv6.csv line 1: start address "1.0.0.0" is not IPv6`},
		{good4, "::ffff:1.0.0.0,::ffff:1.0.0.255,1,A\n", `asn-ipv6.csv line 1: address ::ffff:1.0.0.0 is IPv4-mapped IPv6; unmap it to IPv4 first`},
		{good4, "fe80::1%eth0,fe80::2,1,A\n", `asn-ipv6.csv line 1: address fe80::1%eth0 has a zone`},
		{good4, "2001:db8::,2001:db8::1,1,\"Two\nlines\"\n2001:db8::2,2001:db8::x,1,A\n", `asn-ipv6.csv line 3: bad end address "2001:db8::x"`},
	}
	for _, tt := range tests {
		tab, err := LoadASN(strings.NewReader(tt.v4), strings.NewReader(tt.v6))
		if err == nil || err.Error() != tt.want {
			t.Errorf("LoadASN(%q, %q) = %v, %v\nwant error %s", tt.v4, tt.v6, tab, err, tt.want)
		}
	}
}

func TestLoadASNDir(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	_, err := LoadASNDir(dir)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), filepath.Join(dir, ASNFileV4)) {
		t.Errorf("LoadASNDir(empty dir) = %v, want a not-exist error naming %s", err, ASNFileV4)
	}

	write(ASNFileV4, smallV4)
	_, err = LoadASNDir(dir)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), filepath.Join(dir, ASNFileV6)) {
		t.Errorf("LoadASNDir(no IPv6 file) = %v, want a not-exist error naming %s", err, ASNFileV6)
	}

	write(ASNFileV6, smallV6)
	tab, err := LoadASNDir(dir)
	if err != nil {
		t.Fatalf("LoadASNDir: %v", err)
	}
	if got, ok := tab.Lookup(netip.MustParseAddr("2001:200::1")); !ok || got.ASN != 2500 {
		t.Errorf("Lookup(2001:200::1) = %+v, %v; want AS2500", got, ok)
	}

	write(ASNFileV6, smallV6+"x,y,1,A\n")
	_, err = LoadASNDir(dir)
	if want := "loading ASN database from " + dir + `: asn-ipv6.csv line 4: bad start address "x"`; err == nil || err.Error() != want {
		t.Errorf("LoadASNDir(bad row) = %v, want error %s", err, want)
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	tab := loadSmall(t)
	ips := []netip.Addr{
		netip.MustParseAddr("1.0.0.1"),
		netip.MustParseAddr("::ffff:1.0.0.1"),
		netip.MustParseAddr("2001:200::1"),
		netip.MustParseAddr("9.9.9.9"),
	}
	var found int
	if allocs := testing.AllocsPerRun(100, func() {
		for _, ip := range ips {
			if _, ok := tab.Lookup(ip); ok {
				found++
			}
		}
	}); allocs != 0 {
		t.Errorf("Lookup allocates %v times per run, want 0", allocs)
	}
	if found == 0 {
		t.Error("no lookup matched: the allocation count measured nothing")
	}
}

func TestCompanyID(t *testing.T) {
	// Pinned: company ids are stored with every hit, so changing the
	// derivation silently splits every company in two.
	if got, want := companyID("Cloudflare, Inc."), "cf1b3a376db543c02"; got != want {
		t.Errorf(`companyID("Cloudflare, Inc.") = %q, want %q`, got, want)
	}
	same := []string{"Cloudflare, Inc.", "cloudflare, inc.", "  CLOUDFLARE,\t\tInc.\n", "Cloudflare,\u00a0Inc."}
	for _, org := range same[1:] {
		if got, want := companyID(org), companyID(same[0]); got != want {
			t.Errorf("companyID(%q) = %q, want %q as for %q", org, got, want, same[0])
		}
	}
	for _, org := range []string{"Cloudflare Inc.", "Cloudflare, Inc", "Cloudflare London, LLC"} {
		if companyID(org) == companyID(same[0]) {
			t.Errorf("companyID(%q) equals that of %q, want distinct companies", org, same[0])
		}
	}
}

// FuzzLoadASN feeds arbitrary bytes to the CSV loader. Invariants:
//   - it never panics, and runs in time and memory linear in the input
//     (each row adds at most 2*(width-1) prefixes);
//   - a failure names the file and the line ("asn-ipv4.csv line N"), since
//     in-memory readers cannot fail for any other reason;
//   - on success, for every row, the first and last of the addresses that no
//     earlier row claimed look up to that row's ASN and organisation.
func FuzzLoadASN(f *testing.F) {
	f.Add(smallV4, smallV6)
	f.Add("0.0.0.0,255.255.255.255,1,all\n", "::,ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff,2,all\n")
	f.Add("0.0.0.1,255.255.255.254,1,a\n", "::1,::1,1,b\n")
	f.Add("10.0.0.0,10.0.1.255,1,A\n10.0.1.0,10.0.2.255,2,B\n10.0.1.128,10.0.1.200,3,C\n", "")
	f.Add("1.0.0.9,1.0.0.1,1,A\n", "")
	f.Add("1.0.0.0,1.0.0.255,1,\"x\n", "")
	f.Add("", "::ffff:1.0.0.0,::ffff:1.0.0.255,1,A\n")
	f.Add("", "fe80::1%eth0,fe80::2,1,A\n")
	f.Add("1.0.0.0,1.0.0.255,1,A,B\n", "")
	f.Fuzz(func(t *testing.T, v4, v6 string) {
		tab, err := LoadASN(strings.NewReader(v4), strings.NewReader(v6))
		if err != nil {
			if !strings.HasPrefix(err.Error(), ASNFileV4+" line ") && !strings.HasPrefix(err.Error(), ASNFileV6+" line ") {
				t.Fatalf("error does not name file and line: %v", err)
			}
			return
		}
		for _, rows := range [][]asnRow{oracleRows(t, v4), oracleRows(t, v6)} {
			for _, row := range rows {
				for _, ip := range []netip.Addr{row.first, row.last} {
					got, ok := tab.Lookup(ip)
					if !ok || got.ASN != row.asn || got.Org != row.org {
						t.Errorf("Lookup(%s) = %+v, %v; want AS%d %q", ip, got, ok, row.asn, row.org)
					}
				}
			}
		}
	})
}

// asnRow is one row of an ASN file as the tests read it independently of the
// loader, with first already moved past addresses earlier rows claimed.
type asnRow struct {
	first, last netip.Addr
	asn         uint32
	org         string
}

// oracleRows parses data that LoadASN accepted, and applies the documented
// overlap rule (earlier rows win); rows left with no address are dropped.
func oracleRows(t testing.TB, data string) []asnRow {
	t.Helper()
	recs, err := csv.NewReader(strings.NewReader(data)).ReadAll()
	if err != nil {
		t.Fatalf("LoadASN accepted what encoding/csv rejects: %v", err)
	}
	var rows []asnRow
	var covered netip.Addr
	for _, rec := range recs {
		first, err1 := netip.ParseAddr(rec[0])
		last, err2 := netip.ParseAddr(rec[1])
		asn, err3 := strconv.ParseUint(rec[2], 10, 32)
		if err := errors.Join(err1, err2, err3); err != nil {
			t.Fatalf("LoadASN accepted row %q: %v", rec, err)
		}
		if covered.IsValid() && !covered.Less(first) {
			if !covered.Less(last) {
				continue
			}
			first = covered.Next()
		}
		covered = last
		rows = append(rows, asnRow{first, last, uint32(asn), rec[3]})
	}
	return rows
}
