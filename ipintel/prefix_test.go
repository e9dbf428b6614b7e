package ipintel

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

func TestRangeToPrefixes(t *testing.T) {
	tests := []struct {
		first, last string
		want        []string
	}{
		{"1.2.3.4", "1.2.3.4", []string{"1.2.3.4/32"}},
		{"0.0.0.0", "0.0.0.0", []string{"0.0.0.0/32"}},
		{"255.255.255.255", "255.255.255.255", []string{"255.255.255.255/32"}},
		{"0.0.0.0", "255.255.255.255", []string{"0.0.0.0/0"}},
		{"1.0.0.0", "1.0.0.255", []string{"1.0.0.0/24"}},
		{"255.255.255.0", "255.255.255.255", []string{"255.255.255.0/24"}},
		{"10.0.0.5", "10.0.0.10", []string{"10.0.0.5/32", "10.0.0.6/31", "10.0.0.8/31", "10.0.0.10/32"}},
		{"192.168.0.0", "192.168.1.127", []string{"192.168.0.0/24", "192.168.1.0/25"}},
		{"127.255.255.255", "128.0.0.0", []string{"127.255.255.255/32", "128.0.0.0/32"}},
		{"0.0.0.0", "127.255.255.255", []string{"0.0.0.0/1"}},
		{"128.0.0.0", "255.255.255.255", []string{"128.0.0.0/1"}},

		{"2001:db8::1", "2001:db8::1", []string{"2001:db8::1/128"}},
		{"::", "::", []string{"::/128"}},
		{"::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", []string{"::/0"}},
		{"::", "::1", []string{"::/127"}},
		{"8000::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", []string{"8000::/1"}},
		// Crosses the boundary between the two 64-bit halves.
		{"2001:db8::ffff:ffff:ffff:ffff", "2001:db8:0:1::", []string{"2001:db8::ffff:ffff:ffff:ffff/128", "2001:db8:0:1::/128"}},
		{"2001:db8::", "2001:db8::ffff:ffff:ffff:ffff", []string{"2001:db8::/64"}},
		// A real row of asn-ipv6.csv (AS2500, WIDE Project).
		{"2001:200::", "2001:200:1b9:ffff:ffff:ffff:ffff:ffff", []string{
			"2001:200::/40", "2001:200:100::/41", "2001:200:180::/43",
			"2001:200:1a0::/44", "2001:200:1b0::/45", "2001:200:1b8::/47",
		}},
	}
	for _, tt := range tests {
		got, err := RangeToPrefixes(netip.MustParseAddr(tt.first), netip.MustParseAddr(tt.last))
		if err != nil {
			t.Errorf("RangeToPrefixes(%s, %s): %v", tt.first, tt.last, err)
			continue
		}
		if gotS := prefixStrings(got); !slices.Equal(gotS, tt.want) {
			t.Errorf("RangeToPrefixes(%s, %s) = %v, want %v", tt.first, tt.last, gotS, tt.want)
		}
	}
}

// TestRangeToPrefixesWorstCase checks ranges that need the most prefixes: one
// block per host-bit count on each side, 2*(width-1) in all.
func TestRangeToPrefixesWorstCase(t *testing.T) {
	check := func(first, last string, want int) {
		t.Helper()
		f, l := netip.MustParseAddr(first), netip.MustParseAddr(last)
		got, err := RangeToPrefixes(f, l)
		if err != nil {
			t.Fatalf("RangeToPrefixes(%s, %s): %v", first, last, err)
		}
		if len(got) != want {
			t.Errorf("RangeToPrefixes(%s, %s) gave %d prefixes, want %d", first, last, len(got), want)
		}
		checkCover(t, f, l, got)
	}
	check("0.0.0.1", "255.255.255.254", 62)
	check("::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 254)
	check("::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 128)
}

func TestRangeToPrefixesErrors(t *testing.T) {
	tests := []struct {
		first, last netip.Addr
		want        string
	}{
		{netip.MustParseAddr("1.2.3.4"), netip.MustParseAddr("::1"), "start 1.2.3.4 and end ::1 are of different address families"},
		{netip.MustParseAddr("::1"), netip.MustParseAddr("1.2.3.4"), "start ::1 and end 1.2.3.4 are of different address families"},
		{netip.MustParseAddr("1.2.3.5"), netip.MustParseAddr("1.2.3.4"), "start 1.2.3.5 is after end 1.2.3.4"},
		{netip.MustParseAddr("2001:db8::2"), netip.MustParseAddr("2001:db8::1"), "start 2001:db8::2 is after end 2001:db8::1"},
		{netip.Addr{}, netip.MustParseAddr("1.2.3.4"), "invalid address"},
		{netip.MustParseAddr("1.2.3.4"), netip.Addr{}, "invalid address"},
		{netip.MustParseAddr("fe80::1%eth0"), netip.MustParseAddr("fe80::2"), "address fe80::1%eth0 has a zone"},
		{netip.MustParseAddr("::ffff:1.2.3.4"), netip.MustParseAddr("::ffff:1.2.3.5"), "address ::ffff:1.2.3.4 is IPv4-mapped IPv6; unmap it to IPv4 first"},
		{netip.MustParseAddr("::"), netip.MustParseAddr("::ffff:1.2.3.5"), "address ::ffff:1.2.3.5 is IPv4-mapped IPv6; unmap it to IPv4 first"},
	}
	for _, tt := range tests {
		got, err := RangeToPrefixes(tt.first, tt.last)
		if err == nil || err.Error() != tt.want {
			t.Errorf("RangeToPrefixes(%v, %v) = %v, %v; want error %q", tt.first, tt.last, got, err, tt.want)
		}
	}
}

// TestRangeToPrefixesProperties checks random ranges of every scale in both
// families against the definition of a minimal CIDR cover.
func TestRangeToPrefixesProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, width := range []int{32, 128} {
		for range 20_000 {
			first, last := randomRange(r, width)
			got, err := RangeToPrefixes(first, last)
			if err != nil {
				t.Fatalf("RangeToPrefixes(%s, %s): %v", first, last, err)
			}
			checkCover(t, first, last, got)
			if t.Failed() {
				return
			}
		}
	}
}

// checkCover fails t unless ps are canonical prefixes, sorted, disjoint and
// contiguous, covering exactly first..last, with no two neighbours mergeable
// and no prefix whose parent would still fit in the range (which together make
// the cover the unique minimal one).
func checkCover(t *testing.T, first, last netip.Addr, ps []netip.Prefix) {
	t.Helper()
	if len(ps) == 0 {
		t.Errorf("%s-%s: no prefixes", first, last)
		return
	}
	if ps[0].Addr() != first {
		t.Errorf("%s-%s: cover starts at %s", first, last, ps[0])
	}
	if end := lastAddr(ps[len(ps)-1]); end != last {
		t.Errorf("%s-%s: cover ends at %s", first, last, end)
	}
	for i, p := range ps {
		if !p.IsValid() || p != p.Masked() || p.Addr().Is4() != first.Is4() {
			t.Errorf("%s-%s: prefix %d %s is not a canonical prefix of the range's family", first, last, i, p)
		}
		if p.Bits() > 0 {
			parent := netip.PrefixFrom(p.Addr(), p.Bits()-1).Masked()
			if !parent.Addr().Less(first) && !last.Less(lastAddr(parent)) {
				t.Errorf("%s-%s: %s could be widened to %s", first, last, p, parent)
			}
		}
		if i == 0 {
			continue
		}
		prev := ps[i-1]
		if next := lastAddr(prev).Next(); next != p.Addr() {
			t.Errorf("%s-%s: %s follows %s, want it to start at %s", first, last, p, prev, next)
		}
		if prev.Bits() == p.Bits() && prev.Bits() > 0 &&
			netip.PrefixFrom(prev.Addr(), prev.Bits()-1).Masked().Addr() == prev.Addr() {
			t.Errorf("%s-%s: neighbours %s and %s could merge", first, last, prev, p)
		}
	}
}

// randomRange returns a random range whose size is spread over every scale:
// the endpoints share a random number of leading bits, and now and then start
// at the lowest or end at the highest address of the family.
func randomRange(r *rand.Rand, width int) (first, last netip.Addr) {
	block := netip.PrefixFrom(randomAddr(r, width), r.IntN(width+1))
	first, last = RandomAddr(block, r), RandomAddr(block, r)
	if last.Less(first) {
		first, last = last, first
	}
	switch r.IntN(8) {
	case 0:
		first = block.Masked().Addr()
	case 1:
		last = lastAddr(block)
	}
	return first, last
}

func randomAddr(r *rand.Rand, width int) netip.Addr {
	b := make([]byte, width/8)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// lastAddr returns the highest address in p, computed bytewise so as not to
// share code with what it checks.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func prefixStrings(ps []netip.Prefix) []string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return s
}

func TestRandomAddr(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, s := range []string{"1.2.3.0/24", "1.2.3.4/32", "0.0.0.0/0", "2001:db8::/32", "2001:db8::1/128", "::/0", "10.1.2.3/8"} {
		p := netip.MustParsePrefix(s)
		seen := make(map[netip.Addr]bool)
		for range 1000 {
			a := RandomAddr(p, r)
			if !p.Contains(a) {
				t.Fatalf("RandomAddr(%s) = %s, outside the prefix", p, a)
			}
			seen[a] = true
		}
		// 1000 draws from 256 or more addresses all but surely hit 200 of
		// them; a stuck generator hits one.
		if size := p.Addr().BitLen() - p.Bits(); size >= 8 && len(seen) < 200 {
			t.Errorf("RandomAddr(%s) gave only %d distinct addresses in 1000 draws", p, len(seen))
		}
	}
	if a := RandomAddr(netip.Prefix{}, r); a.IsValid() {
		t.Errorf("RandomAddr(invalid prefix) = %s, want the zero Addr", a)
	}
}

// TestRandomAddrCoversHostBits checks every host bit can be set and cleared,
// including across the two 64-bit halves of an IPv6 address.
func TestRandomAddrCoversHostBits(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, s := range []string{"10.0.0.0/8", "2001:db8::/32"} {
		p := netip.MustParsePrefix(s)
		var ones, zeros []byte
		for range 200 {
			b := RandomAddr(p, r).AsSlice()
			if ones == nil {
				ones, zeros = make([]byte, len(b)), make([]byte, len(b))
			}
			for i := range b {
				ones[i] |= b[i]
				zeros[i] |= ^b[i]
			}
		}
		for i := p.Bits(); i < len(ones)*8; i++ {
			bit := byte(0x80 >> (i % 8))
			if ones[i/8]&bit == 0 || zeros[i/8]&bit == 0 {
				t.Errorf("RandomAddr(%s): host bit %d never varied", p, i)
			}
		}
	}
}
