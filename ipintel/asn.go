package ipintel

import (
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/gaissmai/bart"
)

// File names of the ASN database inside its directory, as published by
// @ip-location-db/asn.
const (
	ASNFileV4 = "asn-ipv4.csv"
	ASNFileV6 = "asn-ipv6.csv"
)

// Network is what the ASN database says about the holder of an address.
type Network struct {
	// ASN is the autonomous system number announcing the address.
	ASN uint32
	// Org is the organisation name exactly as the database spells it.
	Org string
	// CompanyID identifies the organisation across ASNs and data versions: it
	// is derived from the normalised name only (lowercased, whitespace
	// collapsed, trimmed), so stored hits keep pointing at the same company
	// after the database is refreshed, and an organisation with several ASNs
	// is one company. Form: "c" followed by 16 hex digits.
	CompanyID string
}

// Table answers longest-prefix-match lookups from IP address to [Network].
// Build one with [LoadASN] or [LoadASNDir]; a built Table is read-only and
// safe for concurrent use. The zero Table is empty.
type Table struct {
	// prefixes holds both families; each value indexes networks. Distinct
	// networks are far fewer than prefixes (~90k against ~730k), so prefixes
	// carry a 4-byte index rather than a copy of the strings.
	prefixes bart.Table[uint32]
	networks []Network

	overlaps4, overlaps6 int
}

// Lookup returns the network of the most specific prefix containing ip.
// IPv4-mapped IPv6 addresses are looked up as the IPv4 address they carry.
// It does not allocate.
func (t *Table) Lookup(ip netip.Addr) (Network, bool) {
	i, ok := t.prefixes.Lookup(ip.Unmap())
	if !ok {
		return Network{}, false
	}
	return t.networks[i], true
}

// Len returns the number of IPv4 and IPv6 prefixes in the table.
func (t *Table) Len() (v4, v6 int) {
	return t.prefixes.Size4(), t.prefixes.Size6()
}

// Overlaps returns how many rows of each file overlapped address space that
// an earlier row had already claimed. The published data has a few such rows
// (the release this package was written against has one, in the IPv4 file).
// Rather than refuse the whole database, the loader lets the earlier row keep
// the overlapping addresses and counts the later row here, so the conflict
// stays visible.
func (t *Table) Overlaps() (v4, v6 int) {
	return t.overlaps4, t.overlaps6
}

// PrefixesOf returns, in ascending order, the prefixes that resolve to asn.
// It walks the whole table (tens of milliseconds on the full database): it is
// meant for tests and the demo traffic generator, not for the hit path.
func (t *Table) PrefixesOf(asn uint32) []netip.Prefix {
	var out []netip.Prefix
	for p, i := range t.prefixes.AllSorted() {
		if t.networks[i].ASN == asn {
			out = append(out, p)
		}
	}
	return out
}

// All yields every prefix with its network, in ascending order (for the
// benchmark's comparison structure and traffic mix; not the hit path).
func (t *Table) All() iter.Seq2[netip.Prefix, Network] {
	return func(yield func(netip.Prefix, Network) bool) {
		for p, i := range t.prefixes.AllSorted() {
			if !yield(p, t.networks[i]) {
				return
			}
		}
	}
}

// LoadASNDir loads the ASN database from the files [ASNFileV4] and
// [ASNFileV6] in dir.
func LoadASNDir(dir string) (*Table, error) {
	v4, err := os.Open(filepath.Join(dir, ASNFileV4))
	if err != nil {
		return nil, fmt.Errorf("opening ASN database: %w", err)
	}
	defer v4.Close()
	v6, err := os.Open(filepath.Join(dir, ASNFileV6))
	if err != nil {
		return nil, fmt.Errorf("opening ASN database: %w", err)
	}
	defer v6.Close()
	t, err := LoadASN(v4, v6)
	if err != nil {
		return nil, fmt.Errorf("loading ASN database from %s: %w", dir, err)
	}
	return t, nil
}

// LoadASN builds a Table from the IPv4 and IPv6 files of the ASN database.
//
// Each file is CSV without a header, one inclusive range per row:
//
//	1.0.0.0,1.0.0.255,13335,"Cloudflare, Inc."
//
// Rows must be sorted by start address, and each file must hold only its own
// family. Any malformed row fails the load with an error naming the file, the
// line and what was wrong. A row that overlaps earlier rows keeps only the
// addresses past them, and is counted by [Table.Overlaps].
func LoadASN(v4, v6 io.Reader) (*Table, error) {
	l := loader{
		t:        &Table{},
		networks: make(map[networkKey]uint32),
		orgs:     make(map[string]organisation),
	}
	var err error
	if l.t.overlaps4, err = l.load(v4, ASNFileV4, true); err != nil {
		return nil, err
	}
	if l.t.overlaps6, err = l.load(v6, ASNFileV6, false); err != nil {
		return nil, err
	}
	return l.t, nil
}

// loader holds the state LoadASN shares across rows and files.
type loader struct {
	t *Table
	// networks indexes t.networks so that equal (ASN, org) rows share one
	// entry.
	networks map[networkKey]uint32
	// orgs interns organisation names: a name repeated over thousands of rows
	// is stored once, and its company id is hashed once.
	orgs map[string]organisation
	// buf is reused for each row's prefixes.
	buf []netip.Prefix
}

type networkKey struct {
	asn uint32
	org string
}

type organisation struct {
	name, companyID string
}

// load inserts the rows of one file and returns how many overlapped earlier
// rows.
func (l *loader) load(r io.Reader, name string, want4 bool) (overlaps int, err error) {
	family := "IPv6"
	if want4 {
		family = "IPv4"
	}
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1 // checked below, with a clearer message
	cr.ReuseRecord = true

	// prevStart enforces the order; covered is the highest address claimed
	// so far, against which overlaps are clipped.
	var prevStart, covered netip.Addr
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return overlaps, nil
		}
		if err != nil {
			if pe, ok := errors.AsType[*csv.ParseError](err); ok {
				return 0, fmt.Errorf("%s line %d, column %d: %w", name, pe.Line, pe.Column, pe.Err)
			}
			return 0, fmt.Errorf("reading %s: %w", name, err)
		}
		line, _ := cr.FieldPos(0)
		fail := func(format string, args ...any) (int, error) {
			return 0, fmt.Errorf("%s line %d: %s", name, line, fmt.Sprintf(format, args...))
		}

		if len(rec) != 4 {
			return fail("want 4 fields (start, end, ASN, organisation), got %d", len(rec))
		}
		first, err := netip.ParseAddr(rec[0])
		if err != nil {
			return fail("bad start address %q", rec[0])
		}
		last, err := netip.ParseAddr(rec[1])
		if err != nil {
			return fail("bad end address %q", rec[1])
		}
		if first.Is4() != want4 {
			return fail("start address %q is not %s", rec[0], family)
		}
		if err := checkRange(first, last); err != nil {
			return 0, fmt.Errorf("%s line %d: %w", name, line, err)
		}
		asn, err := strconv.ParseUint(rec[2], 10, 32)
		if err != nil {
			return fail("bad ASN %q", rec[2])
		}
		if strings.TrimSpace(rec[3]) == "" {
			return fail("empty organisation")
		}
		if prevStart.IsValid() && first.Less(prevStart) {
			return fail("start %s is before the previous row's start %s: rows must be sorted", first, prevStart)
		}
		prevStart = first

		if covered.IsValid() && !covered.Less(first) {
			overlaps++
			if !covered.Less(last) {
				continue // nothing left that earlier rows did not claim
			}
			first = covered.Next()
		}
		covered = last

		idx := l.network(uint32(asn), rec[3])
		l.buf = appendPrefixes(l.buf[:0], first, last)
		for _, p := range l.buf {
			l.t.prefixes.Insert(p, idx)
		}
	}
}

// network returns the index of (asn, org) in t.networks, adding it if new.
func (l *loader) network(asn uint32, org string) uint32 {
	if i, ok := l.networks[networkKey{asn, org}]; ok {
		return i
	}
	o, ok := l.orgs[org]
	if !ok {
		// The CSV reader cuts every field of a row out of one string; a copy
		// keeps the interned name from pinning the whole line in memory.
		o = organisation{name: strings.Clone(org), companyID: companyID(org)}
		l.orgs[o.name] = o
	}
	i := uint32(len(l.t.networks))
	l.t.networks = append(l.t.networks, Network{ASN: asn, Org: o.name, CompanyID: o.companyID})
	l.networks[networkKey{asn, o.name}] = i
	return i
}

// companyID derives the stable company id of an organisation name. Changing
// it re-keys every stored hit: don't.
func companyID(org string) string {
	norm := strings.ToLower(strings.Join(strings.Fields(org), " "))
	sum := sha256.Sum256([]byte(norm))
	return "c" + hex.EncodeToString(sum[:8])
}
