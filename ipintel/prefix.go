package ipintel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"net/netip"
)

// RangeToPrefixes returns the minimal list of CIDR prefixes, in ascending
// order, that together cover exactly the inclusive range first..last.
//
// Both addresses must be valid, unzoned and of the same family. IPv4-mapped
// IPv6 addresses (::ffff:a.b.c.d) are rejected rather than unmapped: a range
// written with them is either IPv4 data in the wrong place or IPv6 data that
// [Table.Lookup] could never reach (it looks mapped addresses up as IPv4), and
// guessing which would hide a data error. Call [netip.Addr.Unmap] first if the
// IPv4 reading is what you mean.
func RangeToPrefixes(first, last netip.Addr) ([]netip.Prefix, error) {
	if err := checkRange(first, last); err != nil {
		return nil, err
	}
	return appendPrefixes(nil, first, last), nil
}

// checkRange reports why first..last is not a range RangeToPrefixes accepts.
func checkRange(first, last netip.Addr) error {
	for _, a := range [...]netip.Addr{first, last} {
		switch {
		case !a.IsValid():
			return errors.New("invalid address")
		case a.Zone() != "":
			return fmt.Errorf("address %s has a zone", a)
		case a.Is4In6():
			return fmt.Errorf("address %s is IPv4-mapped IPv6; unmap it to IPv4 first", a)
		}
	}
	if first.Is4() != last.Is4() {
		return fmt.Errorf("start %s and end %s are of different address families", first, last)
	}
	if first.Compare(last) > 0 {
		return fmt.Errorf("start %s is after end %s", first, last)
	}
	return nil
}

// appendPrefixes appends the prefixes covering first..last to dst. The range
// must have passed checkRange.
//
// It is the classic greedy split: from the start of what is left, take the
// largest block that is aligned there and does not run past last. Each block
// is as large as alignment and the remaining span allow, which is what makes
// the result minimal (no two neighbours could merge into one prefix).
func appendPrefixes(dst []netip.Prefix, first, last netip.Addr) []netip.Prefix {
	is4 := first.Is4()
	width := first.BitLen()
	lo, hi := fromAddr(first), fromAddr(last)
	for {
		// Host bits of the block: no more than lo's alignment allows...
		host := min(lo.trailingZeros(), width)
		// ...and no more than fits in what is left, 2^host <= hi-lo+1.
		span := hi.sub(lo)
		if span != maxUint128 {
			host = min(host, span.addOne().bitLen()-1)
		}
		dst = append(dst, netip.PrefixFrom(lo.addr(is4), width-host))
		end := lo.or(lowBits(host))
		if end == hi {
			return dst
		}
		lo = end.addOne()
	}
}

// prefixEnd is the highest address of p.
func prefixEnd(p netip.Prefix) netip.Addr {
	base := p.Masked().Addr()
	return fromAddr(base).or(lowBits(base.BitLen() - p.Bits())).addr(base.Is4())
}

// RandomAddr returns an address chosen uniformly at random inside p, or the
// zero Addr if p is not valid. The demo traffic generator and the tests use it
// to aim at a known network.
func RandomAddr(p netip.Prefix, r *rand.Rand) netip.Addr {
	if !p.IsValid() {
		return netip.Addr{}
	}
	p = p.Masked()
	base := p.Addr()
	host := lowBits(base.BitLen() - p.Bits())
	noise := uint128{hi: r.Uint64(), lo: r.Uint64()}
	return fromAddr(base).or(noise.and(host)).addr(base.Is4())
}

// uint128 is an address as a number: IPv6 uses all 128 bits, IPv4 the low 32.
type uint128 struct{ hi, lo uint64 }

var maxUint128 = uint128{^uint64(0), ^uint64(0)}

func fromAddr(a netip.Addr) uint128 {
	if a.Is4() {
		b := a.As4()
		return uint128{lo: uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return uint128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func (u uint128) addr(is4 bool) netip.Addr {
	if is4 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(u.lo))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], u.hi)
	binary.BigEndian.PutUint64(b[8:], u.lo)
	return netip.AddrFrom16(b)
}

// lowBits returns the number whose n low bits are set, 0 <= n <= 128.
func lowBits(n int) uint128 {
	if n >= 64 {
		// A shift by 64 yields 0 in Go, so n == 128 gives all ones.
		return uint128{hi: 1<<uint(n-64) - 1, lo: ^uint64(0)}
	}
	return uint128{lo: 1<<uint(n) - 1}
}

func (u uint128) and(v uint128) uint128 { return uint128{u.hi & v.hi, u.lo & v.lo} }
func (u uint128) or(v uint128) uint128  { return uint128{u.hi | v.hi, u.lo | v.lo} }

func (u uint128) addOne() uint128 {
	lo, carry := bits.Add64(u.lo, 1, 0)
	return uint128{u.hi + carry, lo}
}

func (u uint128) sub(v uint128) uint128 {
	lo, borrow := bits.Sub64(u.lo, v.lo, 0)
	return uint128{u.hi - v.hi - borrow, lo}
}

// trailingZeros returns 128 for zero.
func (u uint128) trailingZeros() int {
	if u.lo != 0 {
		return bits.TrailingZeros64(u.lo)
	}
	return 64 + bits.TrailingZeros64(u.hi)
}

func (u uint128) bitLen() int {
	if u.hi != 0 {
		return 64 + bits.Len64(u.hi)
	}
	return bits.Len64(u.lo)
}
