package ipintel

import (
	"fmt"
	"net/netip"
)

// The fall-back for a name no rule claims. Measured on the labelled long
// tail (testdata/longtail.csv), neither the size of a network nor the
// number of its ranges tells a company's own network from a consumer ISP's
// (both announce tens of ranges and hundreds of thousands of addresses),
// but where the addresses came from does: legacy space — the class B range
// (128.0.0.0–172.255.255.255) and the class A /8s IANA gave organisations
// — was assigned directly, from the mid-1980s until the regional
// registries took over in the 1990s, and the companies, universities and
// public bodies of that time still hold it; consumer ISPs, hosters and
// mobile operators grew later, from the registries' pools. So a network
// mostly in legacy space is a business candidate, and any other is
// unknown: leadpipe does not make a company of a network it knows nothing
// about.
var legacySpace = func() []netip.Prefix {
	out := []netip.Prefix{
		netip.MustParsePrefix("128.0.0.0/3"), // 128–159
		netip.MustParsePrefix("160.0.0.0/5"), // 160–167
		netip.MustParsePrefix("168.0.0.0/6"), // 168–171
		netip.MustParsePrefix("172.0.0.0/8"),
	}
	// The organisations' class A /8s (IANA's IPv4 address space registry:
	// GE, IBM, Xerox, HP, DEC, Apple, MIT, Ford, CSC, the US DoD and its
	// agencies, the UK MoD, Halliburton, Prudential, Daimler, USPS, SITA).
	// 3/8, 12/8, 38/8 and 44/8 are left out: today they are a cloud's, a
	// carrier's, a transit ISP's and partly a cloud's.
	for _, a := range []byte{6, 7, 9, 11, 13, 15, 16, 17, 18, 19, 20, 21, 22, 25, 26, 28, 29, 30, 33, 34, 48, 53, 55, 56, 57} {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{a}), 8))
	}
	return out
}()

// legacyShareBusiness is the share of a network's IPv4 space in legacy
// space from which the fall-back answers business.
const legacyShareBusiness = 0.5

// scatteredBlocks is the number of distinct /8 blocks from which a
// network's IPv4 space counts as scattered. A company's own network is the
// space it was assigned once or twice (a /16 and a few more); a provider's
// grew as it bought, leased and was assigned space over decades, block by
// block. Of the ASNs the ASN data holds that the fall-back would make
// companies (no rule claims the name, legacy space), 61 announce space in 12
// or more /8s; read by name, about 45 of them are providers (SaaS, security
// clouds, hosters, carriers' business arms) and 14 companies' own networks
// (large conglomerates and banks). Measured on batches 1–3 of the labelled long tail, where it
// took 7 providers out of the business answers and 2 companies.
const scatteredBlocks = 12

// Confidence of the fall-back's business answer: above the old default's
// coin (0.5), below any name rule's strong answer.
const confLegacy = 0.6

// SourceAddressSpace names the fall-back's evidence.
const SourceAddressSpace = "address-space"

// spaceStats is what the fall-back knows of a network's IPv4 space.
type spaceStats struct {
	legacy float64 // share in legacy space
	blocks int     // distinct /8 blocks announced in
}

// spaceStatsOf returns, per ASN, the share of its announced IPv4 space that
// is legacy space and the number of /8 blocks it is announced in.
func spaceStatsOf(t *Table) map[uint32]spaceStats {
	total, legacy := map[uint32]float64{}, map[uint32]float64{}
	blocks := map[uint32]*[256]bool{}
	for p, i := range t.prefixes.All() {
		if !p.Addr().Is4() {
			continue
		}
		asn := t.networks[i].ASN
		size := float64(uint64(1) << (32 - p.Bits()))
		total[asn] += size
		for _, l := range legacySpace {
			if l.Contains(p.Addr()) {
				legacy[asn] += size
				break
			}
		}
		b := blocks[asn]
		if b == nil {
			b = new([256]bool)
			blocks[asn] = b
		}
		b[p.Addr().As4()[0]] = true
	}
	out := make(map[uint32]spaceStats, len(total))
	for asn, n := range total {
		st := spaceStats{legacy: legacy[asn] / n}
		for _, in := range blocks[asn] {
			if in {
				st.blocks++
			}
		}
		out[asn] = st
	}
	return out
}

// fallBack decides a network no curated entry and no name rule claims, by
// where its addresses came from (see legacySpace) and how scattered they
// are (see scatteredBlocks).
func fallBack(c Classification, st spaceStats) Classification {
	var says string
	switch {
	case st.legacy < legacyShareBusiness:
		says = fmt.Sprintf("unknown: no rule claims the name, and only %.0f%% of its IPv4 space is legacy space; the rest came from a regional registry, as consumer ISPs', hosters' and mobile operators' does", 100*st.legacy)
	case st.blocks >= scatteredBlocks:
		says = fmt.Sprintf("unknown: no rule claims the name; %.0f%% of its IPv4 space is legacy space, but it is scattered over %d /8 blocks, as a provider's that gathered space over the years is, where a company's own network holds a few", 100*st.legacy, st.blocks)
	default:
		ev := append([]Evidence{{Source: SourceAddressSpace, Says: fmt.Sprintf(
			"business: no rule claims the name, and %.0f%% of its IPv4 space is legacy space, assigned to organisations before the regional registries, in %d /8 blocks", 100*st.legacy, st.blocks)}}, c.Evidence...)
		return Classification{Type: TypeBusiness, Confidence: confLegacy, Evidence: ev}
	}
	ev := append([]Evidence{{Source: SourceAddressSpace, Says: says}}, c.Evidence...)
	return Classification{Type: TypeUnknown, Evidence: ev}
}
