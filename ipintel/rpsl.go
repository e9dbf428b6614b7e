package ipintel

import (
	"bufio"
	"bytes"
	"cmp"
	"compress/gzip"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
)

// This file reads the regional registries' WHOIS databases in RPSL (the
// split dumps RIPE, APNIC and AFRINIC publish: ripe.db.inetnum.gz,
// ripe.db.inet6num.gz, ripe.db.organisation.gz) and ARIN's bulk WHOIS in
// its text layout, and picks the assignments
// that are a company's own network: a /28 of an ISP assigned to a paper
// mill, which the ASN data can only call the ISP's. The operator obtains
// the files under the registry's terms; leadpipe never fetches them.

// RPSLObject is one object of an RPSL file: its attributes in order, keys
// lower-cased, continuation lines joined to their attribute's value.
type RPSLObject struct {
	Attrs [][2]string
}

// Class is the object's class: its first attribute's key (inetnum,
// inet6num, organisation…).
func (o *RPSLObject) Class() string {
	if len(o.Attrs) == 0 {
		return ""
	}
	return o.Attrs[0][0]
}

// Get is the value of the object's first attribute key, or "".
func (o *RPSLObject) Get(key string) string {
	for _, a := range o.Attrs {
		if a[0] == key {
			return a[1]
		}
	}
	return ""
}

// All is every value of the attribute key, in order.
func (o *RPSLObject) All(key string) []string {
	var out []string
	for _, a := range o.Attrs {
		if a[0] == key {
			out = append(out, a[1])
		}
	}
	return out
}

// ReadRPSL calls fn with each object of r, plain or gzip-compressed. Lines
// starting with % or # are comments; a blank line ends an object; a line
// starting with a space, a tab or + continues the attribute before it.
// Objects of any class may share a file. A line that is neither is an
// error naming the file and line. fn must not keep the object after it
// returns: the next one reuses it.
func ReadRPSL(r io.Reader, name string, fn func(*RPSLObject) error) error {
	return readRPSL(r, name, nil, fn)
}

// readRPSL is ReadRPSL keeping, of each object, its first attribute (the
// class) and the attributes keep names (all when keep is nil): a dump's
// objects are mostly contacts, maintainers and dates no reader needs, and
// not copying them saves most of a large import's allocations.
func readRPSL(r io.Reader, name string, keep map[string]bool, fn func(*RPSLObject) error) error {
	br := bufio.NewReaderSize(r, 1<<16)
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, 1<<16)
	}
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 0, 1<<16), 1<<20)
	var obj RPSLObject
	keys := map[string]string{} // interned lower-case keys
	var lower []byte
	kept := false // whether the last attribute was kept, for its continuations
	flush := func() error {
		if len(obj.Attrs) == 0 {
			return nil
		}
		err := fn(&obj)
		obj = RPSLObject{Attrs: obj.Attrs[:0]}
		return err
	}
	for line := 0; sc.Scan(); {
		line++
		b := sc.Bytes()
		switch {
		case len(bytes.TrimSpace(b)) == 0:
			if err := flush(); err != nil {
				return err
			}
		case b[0] == '%' || b[0] == '#':
		case b[0] == ' ' || b[0] == '\t' || b[0] == '+':
			if len(obj.Attrs) == 0 {
				return fmt.Errorf("%s line %d: a continuation line outside any object", name, line)
			}
			if !kept {
				continue
			}
			last := &obj.Attrs[len(obj.Attrs)-1]
			if v := strings.TrimSpace(string(b[1:])); v != "" {
				last[1] = strings.TrimSpace(last[1] + " " + v)
			}
		default:
			key, value, ok := bytes.Cut(b, []byte(":"))
			if !ok || len(key) == 0 || bytes.ContainsAny(key, " \t") {
				return fmt.Errorf("%s line %d: %q is not an attribute (key: value)", name, line, truncate(string(b), 60))
			}
			lower = append(lower[:0], key...)
			for i, c := range lower {
				if 'A' <= c && c <= 'Z' {
					lower[i] = c + 'a' - 'A'
				}
			}
			k, interned := keys[string(lower)]
			if !interned {
				k = string(lower)
				keys[k] = k
			}
			if kept = len(obj.Attrs) == 0 || keep == nil || keep[k]; kept {
				obj.Attrs = append(obj.Attrs, [2]string{k, string(bytes.TrimSpace(value))})
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return flush()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// RegistryAssignment is a registry network leadpipe counts as a company's
// own: an assignment, small, held by an organisation that is not its ISP.
type RegistryAssignment struct {
	First, Last netip.Addr // the range, inclusive
	NetName     string
	Descr       string // the network's description (descr lines joined)
	Status      string
	Country     string
	OrgID       string
	OrgName     string
	Source      string // the file it was read from
}

// Prefixes are the assignment's range as CIDR prefixes.
func (a *RegistryAssignment) Prefixes() []netip.Prefix { return appendPrefixes(nil, a.First, a.Last) }

// Why a registry network is not counted as a company's (RegistryStats).
const (
	SkipNotAssignment = "not-assignment" // an allocation, a sub-allocation, a reservation
	SkipTooLarge      = "too-large"      // larger than an IPv4 /22 or an IPv6 /40
	SkipNoOrg         = "no-organisation"
	SkipISP           = "isp"      // held by a registry member (LIR) or its parent allocation's holder
	SkipPool          = "pool"     // named like a dynamic, residential or customer pool
	SkipProvider      = "provider" // held by a carrier, hoster or mobile operator by its name
	SkipBadRange      = "bad-range"
	SkipCountry       = "other-country" // outside RegistryImport.Countries
)

// RegistryStats counts what an import read: networks (inetnum and inet6num
// objects), companies (the assignments kept) and the rest by reason.
type RegistryStats struct {
	Networks, Companies int
	Skipped             map[string]int
}

// SkippedTotal is how many networks were not kept.
func (s RegistryStats) SkippedTotal() int {
	n := 0
	for _, v := range s.Skipped {
		n += v
	}
	return n
}

// assignmentStatuses are the statuses of networks assigned to an end user
// (RIPE, APNIC and AFRINIC spellings).
var assignmentStatuses = map[string]bool{
	"ASSIGNED PA": true, "ASSIGNED PI": true, "ASSIGNED": true, "ASSIGNED PORTABLE": true, "ASSIGNED NON-PORTABLE": true,
	// ARIN's NetType, as its bulk WHOIS and RDAP spell it.
	"DIRECT ASSIGNMENT": true, "REASSIGNED": true, "REASSIGNMENT": true, "ASSIGNMENT": true,
}

// allocationStatuses are the statuses of the ISPs' own blocks, whose
// holder is the ISP every assignment inside them is made by.
var allocationStatuses = map[string]bool{
	"ALLOCATED PA": true, "ALLOCATED PI": true, "ALLOCATED UNSPECIFIED": true, "ALLOCATED-BY-RIR": true,
	"ALLOCATED PORTABLE": true, "ALLOCATED NON-PORTABLE": true, "SUB-ALLOCATED PA": true, "ALLOCATED-BY-LIR": true,
	"DIRECT ALLOCATION": true, "REALLOCATED": true, "REALLOCATION": true, "ALLOCATION": true,
}

// poolWords name an ISP's pools of customer addresses, not a company
// (whole words of the network's name, description and holder). Words that
// also name companies stay out: "private" (Indian companies are "Private
// Limited"), "home", "cable", "mobile", "wireless", a single "customer".
var poolWords = []string{"pool", "pools", "dynamic", "dyn", "dial", "dialup", "dsl", "adsl", "vdsl", "xdsl", "residential",
	"broadband", "customers", "subscriber", "subscribers", "ftth", "fttx", "fttb", "gpon", "cgnat", "ppp", "pppoe", "bras"}

// poolPhrases are pools named by two words.
var poolPhrases = []string{"private customer", "private customers", "home users", "end users"}

// RegistryImport reads RPSL files and keeps the assignments that are a
// company's own network. Feed it every file (inetnum, inet6num and
// organisation objects, in any order and any files), then call Result.
type RegistryImport struct {
	// Countries, when not empty, keeps only assignments registered in
	// these countries (two-letter codes, upper case): a full dump holds
	// millions of networks, most of them in markets the operator does not
	// sell to.
	Countries map[string]bool

	cls         *Classifier
	orgs        map[string]rpslOrg
	candidates  []RegistryAssignment
	allocations []allocation
	stats       RegistryStats
}

type rpslOrg struct{ name, typ, country string }

type allocation struct {
	first, last netip.Addr
	org         string
}

// NewRegistryImport starts an import whose holders' names the classifier
// judges (a hoster's or carrier's name is not a company's).
func NewRegistryImport(cls *Classifier) *RegistryImport {
	return &RegistryImport{cls: cls, orgs: map[string]rpslOrg{}, stats: RegistryStats{Skipped: map[string]int{}}}
}

// ReadFiles reads RPSL files by name.
func (ri *RegistryImport) ReadFiles(names ...string) error {
	for _, name := range names {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		err = ri.Read(f, name)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// importKeys are the attributes an import reads (RPSL, then ARIN's).
var importKeys = map[string]bool{
	"netname": true, "descr": true, "status": true, "country": true, "org": true, "org-name": true, "org-type": true,
	"orgid": true, "orgname": true, "custid": true, "customer": true, "custname": true, "netrange": true,
	"startaddress": true, "endaddress": true, "nettype": true, "comment": true,
}

// Read reads one RPSL file.
func (ri *RegistryImport) Read(r io.Reader, name string) error {
	return readRPSL(r, name, importKeys, func(o *RPSLObject) error {
		switch o.Class() {
		case "organisation":
			ri.orgs[o.Get("organisation")] = rpslOrg{name: o.Get("org-name"), typ: strings.ToUpper(o.Get("org-type"))}
		case "inetnum", "inet6num":
			ri.network(o, name)
		// ARIN's bulk WHOIS: networks (NetHandle), organisations (OrgID)
		// and the customers of simple reassignments (CustID).
		case "nethandle":
			ri.arinNetwork(o, name)
		case "orgid":
			ri.orgs[o.Get("orgid")] = rpslOrg{name: o.Get("orgname"), country: strings.ToUpper(o.Get("country"))}
		case "custid", "custhandle":
			ri.orgs[arinCustomer(o.Get(o.Class()))] = rpslOrg{name: o.Get("custname"), country: strings.ToUpper(o.Get("country"))}
		}
		return nil
	})
}

func (ri *RegistryImport) network(o *RPSLObject, file string) {
	first, last, ok := parseRPSLRange(o.Get(o.Class()))
	ri.consider(RegistryAssignment{First: first, Last: last, NetName: o.Get("netname"), Descr: strings.Join(o.All("descr"), " "),
		Status: strings.ToUpper(o.Get("status")), Country: strings.ToUpper(o.Get("country")), OrgID: o.Get("org"), Source: file}, ok)
}

// arinNetwork reads a network of ARIN's bulk WHOIS: its range (NetRange,
// or StartAddress and EndAddress), NetType, and its holder, an
// organisation (OrgID) or, for a simple reassignment, a customer (CustID).
// ARIN networks carry no country: the holder's is used.
func (ri *RegistryImport) arinNetwork(o *RPSLObject, file string) {
	r := o.Get("netrange")
	if r == "" {
		r = o.Get("startaddress") + " - " + o.Get("endaddress")
	}
	first, last, ok := parseRPSLRange(r)
	holder := o.Get("orgid")
	if c := cmp.Or(o.Get("custid"), o.Get("customer")); holder == "" && c != "" {
		holder = arinCustomer(c)
	}
	ri.consider(RegistryAssignment{First: first, Last: last, NetName: o.Get("netname"), Descr: strings.Join(o.All("comment"), " "),
		Status: strings.ToUpper(o.Get("nettype")), OrgID: holder, Source: file}, ok)
}

// arinCustomer keys a customer apart from organisations.
func arinCustomer(id string) string { return "cust:" + id }

// consider counts a network and keeps it as a candidate when it is an
// assignment small enough and held by an organisation; Result judges the
// holder.
func (ri *RegistryImport) consider(a RegistryAssignment, rangeOK bool) {
	ri.stats.Networks++
	if !rangeOK {
		ri.stats.Skipped[SkipBadRange]++
		return
	}
	if allocationStatuses[a.Status] {
		ri.allocations = append(ri.allocations, allocation{a.First, a.Last, a.OrgID})
	}
	switch {
	case !assignmentStatuses[a.Status]:
		ri.stats.Skipped[SkipNotAssignment]++
	case len(ri.Countries) > 0 && a.Country != "" && !ri.Countries[a.Country]:
		ri.stats.Skipped[SkipCountry]++
	case tooLarge(a.First, a.Last):
		ri.stats.Skipped[SkipTooLarge]++
	case a.OrgID == "":
		// Without an organisation object the holder is a person or
		// unnamed: nothing to show, and a person's name must not be.
		ri.stats.Skipped[SkipNoOrg]++
	default:
		ri.candidates = append(ri.candidates, a)
	}
}

// Result resolves the holders (organisation objects may come after the
// networks, or in another file) and returns the assignments kept, in
// address order, with the counts.
func (ri *RegistryImport) Result() ([]RegistryAssignment, RegistryStats) {
	slices.SortFunc(ri.allocations, func(a, b allocation) int { return a.first.Compare(b.first) })
	var out []RegistryAssignment
	for _, c := range ri.candidates {
		org, known := ri.orgs[c.OrgID]
		if !known || org.name == "" {
			ri.stats.Skipped[SkipNoOrg]++
			continue
		}
		c.OrgName = org.name
		if c.Country == "" {
			c.Country = org.country
		}
		switch {
		case len(ri.Countries) > 0 && !ri.Countries[c.Country]:
			ri.stats.Skipped[SkipCountry]++
		case org.typ == "LIR" || org.typ == "RIR" || org.typ == "NIR" || org.typ == "IANA" || ri.parentOrg(c.First) == c.OrgID:
			ri.stats.Skipped[SkipISP]++
		default:
			if skip := holderSkip(ri.cls, org.name, c.NetName, c.Descr); skip != "" {
				ri.stats.Skipped[skip]++
			} else {
				out = append(out, c)
			}
		}
	}
	slices.SortFunc(out, func(a, b RegistryAssignment) int { return a.First.Compare(b.First) })
	ri.stats.Companies = len(out)
	return out, ri.stats
}

// parentOrg is the holder of the allocation containing ip, or "".
func (ri *RegistryImport) parentOrg(ip netip.Addr) string {
	i, _ := slices.BinarySearchFunc(ri.allocations, ip, func(a allocation, ip netip.Addr) int {
		if a.first.Compare(ip) > 0 {
			return 1
		}
		return -1
	})
	// The allocations starting at or before ip, nearest first; the
	// innermost containing one is the assigning ISP.
	for j := i - 1; j >= 0 && j >= i-64; j-- {
		if a := ri.allocations[j]; a.last.Compare(ip) >= 0 && a.first.BitLen() == ip.BitLen() {
			return a.org
		}
	}
	return ""
}

// holderSkip is why a network held by holder, named netname and described
// by descr, is not a company's own, or "": it is named like a pool of an
// ISP's customers, or the name rules (cls, when set) say its holder is a
// carrier, hoster or mobile operator, whose customers' networks are not
// theirs. A registry import and an RDAP answer are judged by it alike.
func holderSkip(cls *Classifier, holder, netname, descr string) string {
	if hasPoolWord(netname) || hasPoolWord(descr) || hasPoolWord(holder) {
		return SkipPool
	}
	if cls != nil {
		switch cls.ClassifyName(holder).Type {
		case TypeResidential, TypeMobile, TypeHosting:
			return SkipProvider
		}
	}
	return ""
}

func hasPoolWord(s string) bool {
	words := strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !('a' <= r && r <= 'z' || '0' <= r && r <= '9')
	})
	for i, w := range words {
		if slices.Contains(poolWords, w) || i > 0 && slices.Contains(poolPhrases, words[i-1]+" "+w) {
			return true
		}
	}
	return false
}

// tooLarge reports whether a range is larger than an IPv4 /22 (1,024
// addresses) or an IPv6 /40: the size of a company's own assignment.
func tooLarge(first, last netip.Addr) bool {
	ps := appendPrefixes(nil, first, last)
	if first.Is4() {
		n := 0
		for _, p := range ps {
			n += 1 << (32 - p.Bits())
			if n > 1024 {
				return true
			}
		}
		return false
	}
	for _, p := range ps {
		if p.Bits() < 40 {
			return true
		}
	}
	return false
}

// parseRPSLRange reads an inetnum ("192.0.2.0 - 192.0.2.255") or an
// inet6num ("2001:db8::/48").
func parseRPSLRange(s string) (first, last netip.Addr, ok bool) {
	if lo, hi, found := strings.Cut(s, " - "); found || strings.Count(s, "-") == 1 {
		if !found {
			lo, hi, _ = strings.Cut(s, "-")
		}
		// parseRDAPAddr: ARIN writes some addresses zero-padded.
		a, err1 := parseRDAPAddr(lo)
		b, err2 := parseRDAPAddr(hi)
		if err1 != nil || err2 != nil || checkRange(a, b) != nil {
			return netip.Addr{}, netip.Addr{}, false
		}
		return a, b, true
	}
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil || checkRange(p.Addr(), p.Addr()) != nil {
		return netip.Addr{}, netip.Addr{}, false
	}
	p = p.Masked()
	return p.Addr(), prefixEnd(p), true
}
