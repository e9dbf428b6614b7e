package ipintel

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/net/publicsuffix"
)

// PTRSignal is what the reverse-DNS name of an address says about the network
// behind it. It is one hint among several: an ISP names its access lines
// after the address and the kind of line, a cloud after the instance, and a
// company that runs its own mail or proxy servers after itself.
type PTRSignal struct {
	// Type is one of the network type constants; TypeUnknown when the name
	// (or the lack of one) says nothing.
	Type string `json:"type"`
	// Domain is the registrable domain of the name (ICANN eTLD+1, such as
	// siemens.com, bbc.co.uk or comcast.net), set whenever the name has one.
	// It names the company only for business names; for access lines and
	// hosting it names the ISP or the provider.
	Domain string `json:"domain"`
	// Confidence is how far the name alone can be trusted, from 0 (not at
	// all) to 1; combine it with the other signals rather than act on it
	// alone.
	Confidence float64 `json:"confidence"`
	// Evidence quotes the name and says which part of it decided.
	Evidence Evidence `json:"evidence"`
}

// ptrSource is the Evidence.Source of reverse-DNS signals.
const ptrSource = "rdns"

// ClassifyPTR reads a PTR name (such as c-73-15-2-1.hsd1.ca.comcast.net) and
// says what kind of network it probably belongs to. The name is untrusted
// input: case and one trailing dot are ignored, and anything that is not a
// host name under a public suffix (empty, longer than 253 bytes, empty or
// overlong labels, characters other than letters, digits, '-' and '_', a
// top-level domain outside the ICANN list) gets TypeUnknown.
//
// The rules, strongest first:
//   - the domain of a known cloud or hosting provider → hosting;
//   - the domain of a known mobile carrier → mobile;
//   - an education (edu, ac.uk, ac.jp, k12…) or government (gov, gov.uk,
//     gouv.fr, mil…) public suffix → education or government;
//   - a mobile token (mobile, lte, 4g, gprs…) → mobile;
//   - a hosting token (compute, ec2, cloud, vps…), or server/srv next to an
//     address encoded in the name → hosting;
//   - "static", "fixed" or "biz" → a weak business signal: static addresses
//     are mostly sold with business lines, even on DSL or cable;
//   - an access-line token (dyn, dsl, pool, dhcp, cable, cpe, ppp, fios, hsd,
//     cust, home, res, user…), or an address encoded in the name under a
//     known broadband ISP → residential, more confidently when the name
//     also encodes an address;
//   - an encoded address alone (73-15-2-1, 5B0A1C2D, 126012034056…) → weak
//     residential: access networks name lines after the address, companies
//     name hosts after what they do;
//   - any other name (mail.siemens.com) → business, Domain naming the
//     company.
//
// Tokens are looked for only left of the registrable domain, so that
// cablelabs.com or liverpool.ac.uk are not read as cable or pool lines.
func ClassifyPTR(name string) PTRSignal {
	return classifyPTR(name, netip.Addr{})
}

// classifyPTR is ClassifyPTR for the name of a known address: when ip is
// valid, a name that encodes exactly that address (in any common spelling)
// counts as address-encoded even where the heuristic scan would miss it, and
// a little more confidently.
func classifyPTR(raw string, ip netip.Addr) PTRSignal {
	name, ok := normalizePTR(raw)
	if !ok {
		if strings.TrimSuffix(raw, ".") == "" {
			return unknownPTR("no PTR name")
		}
		return unknownPTR("PTR name is not a valid host name")
	}
	domain, suffix, ok := registrableDomain(name)
	if !ok {
		return unknownPTR(fmt.Sprintf("PTR %s has no registrable domain", name))
	}
	host := strings.TrimSuffix(name[:len(name)-len(domain)], ".")
	f := scanPTRHost(host)
	if ip.IsValid() && encodesAddr(host, ip) {
		f.encoded, f.exact = true, true
	}

	says := func(format string, args ...any) Evidence {
		return Evidence{Source: ptrSource, Says: "PTR " + name + ": " + fmt.Sprintf(format, args...)}
	}
	sig := func(typ string, confidence float64, ev Evidence) PTRSignal {
		return PTRSignal{Type: typ, Domain: domain, Confidence: confidence, Evidence: ev}
	}
	enc := ""
	if f.encoded {
		enc = ", address encoded in the name"
	}

	switch {
	case hostingDomains[domain]:
		return sig(TypeHosting, 0.9, says("hosting provider %s", domain))
	case mobileDomains[domain]:
		return sig(TypeMobile, 0.85, says("mobile carrier %s", domain))
	}
	if typ := suffixType(suffix); typ != "" {
		return sig(typ, 0.8, says("%s suffix %s", typ, suffix))
	}
	switch {
	case f.mobile != "":
		return sig(TypeMobile, f.byEncoding(0.75, 0.6), says("mobile token %q%s", f.mobile, enc))
	case f.hosting != "":
		return sig(TypeHosting, f.byEncoding(0.8, 0.6), says("hosting token %q%s", f.hosting, enc))
	case f.server != "" && f.encoded:
		return sig(TypeHosting, 0.6, says("server token %q%s", f.server, enc))
	case f.static != "":
		if f.access != "" {
			return sig(TypeBusiness, 0.3, says("%q on an access line (%q)%s: static addresses are mostly business lines", f.static, f.access, enc))
		}
		return sig(TypeBusiness, 0.4, says("%q%s: static addresses are mostly business lines", f.static, enc))
	}

	broadband := broadbandDomains[domain]
	switch {
	case f.access != "":
		c := 0.6
		if f.encoded {
			c += 0.2
		}
		if broadband {
			c += 0.1
		}
		return sig(TypeResidential, c, says("access-line token %q%s", f.access, enc))
	case f.fibre != "" && f.encoded:
		return sig(TypeResidential, 0.75, says("access-line token %q%s", f.fibre, enc))
	case broadband && f.encoded:
		return sig(TypeResidential, 0.75, says("broadband ISP %s%s", domain, enc))
	case broadband && f.numbered:
		return sig(TypeResidential, 0.5, says("numbered host of broadband ISP %s", domain))
	case f.exact:
		return sig(TypeResidential, 0.4, says("the name encodes the address and nothing else"))
	case f.encoded:
		return sig(TypeResidential, 0.3, says("the name encodes an address and nothing else"))
	}
	return sig(TypeBusiness, 0.6, says("a named host of %s", domain))
}

// unknownPTR is the signal of a name that says nothing.
func unknownPTR(why string) PTRSignal {
	return PTRSignal{Type: TypeUnknown, Evidence: Evidence{Source: ptrSource, Says: why}}
}

// byEncoding returns yes for a name that encodes an address, no otherwise.
func (f ptrFeatures) byEncoding(yes, no float64) float64 {
	if f.encoded {
		return yes
	}
	return no
}

// normalizePTR lower-cases name and drops one trailing dot, or reports that
// it is not a host name: at most 253 bytes, labels of 1 to 63 letters,
// digits, '-' or '_' (which real PTR names do use, though hostnames may not).
// It looks at bytes, not runes, so that no Unicode case folding can turn a
// rejected name into an accepted one.
func normalizePTR(name string) (string, bool) {
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > 253 {
		return "", false
	}
	b := []byte(name)
	label := 0
	for i, c := range b {
		switch {
		case c == '.':
			if label == 0 {
				return "", false
			}
			label = 0
			continue
		case 'A' <= c && c <= 'Z':
			b[i] = c + 'a' - 'A'
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return "", false
		}
		if label++; label > 63 {
			return "", false
		}
	}
	if label == 0 {
		return "", false
	}
	return string(b), true
}

// registrableDomain returns the ICANN eTLD+1 of a normalized name and the
// ICANN public suffix under it. Private-section suffixes of the public suffix
// list are skipped: they would make compute-1.amazonaws.com or
// members.linode.com a "public suffix" and every cloud instance its own
// registrable domain, where what PTR classification needs is the provider.
// A name under a top-level domain the list does not know (lan, internal,
// a number) has none.
func registrableDomain(name string) (domain, suffix string, ok bool) {
	s := name
	for {
		ps, icann := publicsuffix.PublicSuffix(s)
		if icann {
			suffix = ps
			break
		}
		dot := strings.IndexByte(ps, '.')
		if dot < 0 {
			return "", "", false // the default rule: an unlisted TLD
		}
		s = ps[dot+1:]
	}
	if len(suffix) >= len(name) {
		return "", "", false // the name is itself a public suffix
	}
	rest := name[:len(name)-len(suffix)-1]
	return name[strings.LastIndexByte(rest, '.')+1:], suffix, true
}

// suffixType says whether an ICANN public suffix is reserved to education or
// government: edu, ac.uk, k12.ca.us, gov, gov.uk, gouv.fr, go.jp, mil…
func suffixType(suffix string) string {
	switch suffix {
	case "edu":
		return TypeEducation
	case "gov", "mil":
		return TypeGovernment
	}
	labels := strings.Split(suffix, ".")
	for _, l := range labels[:len(labels)-1] {
		switch l {
		case "edu", "ac", "k12", "sch":
			return TypeEducation
		case "gov", "govt", "gouv", "gob", "go", "gv", "gc", "mil":
			return TypeGovernment
		}
	}
	return ""
}

// ptrFeatures is what scanPTRHost found left of the registrable domain: the
// first token of each kind (for the evidence) and whether an address is
// encoded.
type ptrFeatures struct {
	access, fibre, mobile, hosting, server, static string
	// encoded: the name spells out an address; exact: the very address it
	// is the PTR of.
	encoded, exact bool
	// numbered: the host part holds four digits or more, the way line names
	// do (p1234567-ipngn1234, s0106a84e3fa1b2c3) and ns1 or smtp2 do not.
	numbered bool
}

// Token kinds.
const (
	tokAccess = iota + 1
	tokFibre
	tokMobile
	tokHosting
	tokServer
	tokStatic
)

// ptrTokens maps whole words (between '.', '-' and '_') and the letter runs
// inside them (hsd1 → hsd, cpc123 → cpc) to their kind.
var ptrTokens = map[string]int{
	// Access lines: dynamic pools, DSL, cable, fibre to the home, dial-up and
	// the customer/home words ISPs use for them.
	"dyn": tokAccess, "dynamic": tokAccess, "dynip": tokAccess, "dynamicip": tokAccess,
	"dsl": tokAccess, "adsl": tokAccess, "vdsl": tokAccess, "xdsl": tokAccess,
	"pool": tokAccess, "ippool": tokAccess, "dhcp": tokAccess,
	"cable": tokAccess, "cablemodem": tokAccess, "cm": tokAccess, "catv": tokAccess,
	"hfc": tokAccess, "docsis": tokAccess, "kabel": tokAccess,
	"cpe": tokAccess, "ppp": tokAccess, "pppoe": tokAccess, "pppoa": tokAccess,
	"dial": tokAccess, "dialin": tokAccess, "dialup": tokAccess, "dip": tokAccess,
	"broadband": tokAccess, "bband": tokAccess, "bb": tokAccess, "bredband": tokAccess,
	"fios": tokAccess, "hsd": tokAccess, "hsi": tokAccess,
	"ftth": tokAccess, "fttp": tokAccess, "fttb": tokAccess, "fttx": tokAccess,
	"cust": tokAccess, "customer": tokAccess, "customers": tokAccess,
	"subs": tokAccess, "subscriber": tokAccess, "subscribers": tokAccess, "abo": tokAccess,
	"home": tokAccess, "res": tokAccess, "resi": tokAccess, "resnet": tokAccess, "residential": tokAccess,
	"user": tokAccess, "users": tokAccess, "client": tokAccess, "clients": tokAccess,
	"bras": tokAccess, "bng": tokAccess, "lns": tokAccess, "cgn": tokAccess, "cgnat": tokAccess,
	// Fibre also names backbone and business links: it counts only next to
	// an encoded address.
	"fibre": tokFibre, "fiber": tokFibre, "glasfaser": tokFibre,
	"mobile": tokMobile, "mobil": tokMobile, "mobi": tokMobile, "mob": tokMobile,
	"wireless": tokMobile, "cell": tokMobile, "cellular": tokMobile,
	"lte": tokMobile, "3g": tokMobile, "4g": tokMobile, "5g": tokMobile,
	"gprs": tokMobile, "umts": tokMobile, "hsdpa": tokMobile, "hspa": tokMobile,
	"gsm": tokMobile, "cdma": tokMobile, "wap": tokMobile, "mbb": tokMobile,
	"ggsn": tokMobile, "pgw": tokMobile,
	"compute": tokHosting, "ec2": tokHosting, "cloud": tokHosting, "cloudapp": tokHosting,
	"vps": tokHosting, "vds": tokHosting, "vm": tokHosting, "kvm": tokHosting,
	"dedicated": tokHosting, "dedi": tokHosting, "hosting": tokHosting, "hosted": tokHosting,
	"colo": tokHosting, "colocation": tokHosting, "datacenter": tokHosting, "openstack": tokHosting,
	// A company's own "server" is a business host; only next to an
	// encoded address is it a rented one.
	"server": tokServer, "servers": tokServer, "srv": tokServer,
	"static": tokStatic, "staticip": tokStatic, "fixed": tokStatic, "fixip": tokStatic,
	"biz": tokStatic, "business": tokStatic,
}

// ptrTokenPrefixes catch the compounds ISPs build from the usual words
// (dynamicip, adsl2plus, ippool, pppoe0, cloudserver).
var ptrTokenPrefixes = []struct {
	prefix string
	kind   int
}{
	{"dyn", tokAccess}, {"dsl", tokAccess}, {"dhcp", tokAccess}, {"cable", tokAccess},
	{"ppp", tokAccess}, {"broadband", tokAccess}, {"customer", tokAccess},
	{"mobile", tokMobile}, {"cloud", tokHosting}, {"vps", tokHosting}, {"static", tokStatic},
}

// ptrTokenSuffixes: adsl, vdsl, sdsl…; ippool, dialpool.
var ptrTokenSuffixes = []struct {
	suffix string
	kind   int
}{
	{"dsl", tokAccess}, {"pool", tokAccess}, {"dhcp", tokAccess},
}

// scanPTRHost reads the labels left of the registrable domain once: words,
// letter and digit runs within them, and encoded addresses.
func scanPTRHost(host string) ptrFeatures {
	var f ptrFeatures
	var octets [4]int // the last numeric runs, for dotted/dashed IPv4
	run := 0          // how many consecutive numeric runs octets holds
	digits := 0
	for _, word := range strings.FieldsFunc(host, isPTRSeparator) {
		f.note(word)
		hex := hexEncodesIPv4(word)
		if hex {
			f.encoded = true
		}
		// Letter and digit runs inside the word: hsd1, host81, d14,
		// softbank126012034056.
		for i := 0; i < len(word); {
			j := i + 1
			digit := asciiDigit(word[i])
			for j < len(word) && asciiDigit(word[j]) == digit {
				j++
			}
			part := word[i:j]
			i = j
			if !digit {
				if part != word && !hex { // p5bb0a1c2 holds no "bb" line
					f.note(part)
				}
				run = 0
				continue
			}
			digits += len(part)
			switch {
			case len(part) <= 3:
				v, _ := strconv.Atoi(part)
				if v > 255 {
					run = 0
					continue
				}
				copy(octets[:], octets[1:])
				octets[3] = v
				if run++; run >= 4 && (octets[0] != 0 || octets[3] != 0) {
					// In order or reversed, an IPv4 address does not start
					// with 0: xe-0-0-1-0 is a router port, not an address.
					f.encoded = true
				}
			case len(part) == 12 && zeroPaddedIPv4(part):
				f.encoded = true
				run = 0
			default:
				run = 0
			}
		}
	}
	f.numbered = digits >= 4
	if !f.encoded {
		for label := range strings.SplitSeq(host, ".") {
			if dashedIPv6(label) {
				f.encoded = true
				break
			}
		}
	}
	return f
}

// note records the kind of one word or letter run, first of each kind only.
func (f *ptrFeatures) note(tok string) {
	kind := ptrTokens[tok]
	if kind == 0 {
		for _, p := range ptrTokenPrefixes {
			if len(tok) > len(p.prefix) && strings.HasPrefix(tok, p.prefix) {
				kind = p.kind
				break
			}
		}
	}
	if kind == 0 {
		for _, s := range ptrTokenSuffixes {
			if len(tok) > len(s.suffix) && strings.HasSuffix(tok, s.suffix) {
				kind = s.kind
				break
			}
		}
	}
	var slot *string
	switch kind {
	case tokAccess:
		slot = &f.access
	case tokFibre:
		slot = &f.fibre
	case tokMobile:
		slot = &f.mobile
	case tokHosting:
		slot = &f.hosting
	case tokServer:
		slot = &f.server
	case tokStatic:
		slot = &f.static
	default:
		return
	}
	if *slot == "" {
		*slot = tok
	}
}

func isPTRSeparator(r rune) bool { return r == '.' || r == '-' || r == '_' }

func asciiDigit(c byte) bool { return '0' <= c && c <= '9' }

func asciiHex(c byte) bool { return asciiDigit(c) || 'a' <= c && c <= 'f' }

// hexEncodesIPv4 reports whether word is an IPv4 address in hex behind a
// short letter prefix, the way Deutsche Telekom (p5B0A1C2D) or Ziggo
// (5ed2a3b4) name lines. The hex must mix digits and letters (so neither a
// word nor a plain number qualifies) and decode to a unicast address.
func hexEncodesIPv4(word string) bool {
	n := len(word)
	if n < 8 || n > 11 {
		return false
	}
	hex, prefix := word[n-8:], word[:n-8]
	for i := range len(prefix) {
		if c := prefix[i]; c < 'a' || c > 'z' {
			return false
		}
	}
	digits := 0
	for i := range len(hex) {
		if !asciiHex(hex[i]) {
			return false
		}
		if asciiDigit(hex[i]) {
			digits++
		}
	}
	if digits < 2 || digits == 8 {
		return false
	}
	first, _ := strconv.ParseUint(hex[:2], 16, 8)
	return first >= 1 && first < 224
}

// zeroPaddedIPv4 reports whether a 12-digit run is four zero-padded octets,
// as in softbank126012034056.
func zeroPaddedIPv4(digits string) bool {
	for i := 0; i < 12; i += 3 {
		v, _ := strconv.Atoi(digits[i : i+3])
		if v > 255 || i == 0 && v == 0 {
			return false
		}
	}
	return true
}

// dashedIPv6 reports whether a label is an IPv6 address with '-' for ':'
// (2a02-8109-9b00-1234-…): at least five groups of one to four hex digits,
// the first a full global-unicast group (2000::/3).
func dashedIPv6(label string) bool {
	groups := strings.Split(label, "-")
	if len(groups) < 5 || len(groups[0]) != 4 || (groups[0][0] != '2' && groups[0][0] != '3') {
		return false
	}
	for _, g := range groups {
		if g == "" || len(g) > 4 {
			return false
		}
		for i := range len(g) {
			if !asciiHex(g[i]) {
				return false
			}
		}
	}
	return true
}

// encodesAddr reports whether host spells out ip (IPv4 only): its octets in
// order or reversed, joined by '-', '.' or nothing, plain or zero-padded, or
// its eight hex digits.
func encodesAddr(host string, ip netip.Addr) bool {
	if !ip.Is4() {
		return false
	}
	a := ip.As4()
	if strings.Contains(host, fmt.Sprintf("%02x%02x%02x%02x", a[0], a[1], a[2], a[3])) {
		return true
	}
	for _, o := range [][4]byte{a, {a[3], a[2], a[1], a[0]}} {
		for _, format := range []string{"%d-%d-%d-%d", "%d.%d.%d.%d", "%03d-%03d-%03d-%03d", "%03d.%03d.%03d.%03d", "%03d%03d%03d%03d"} {
			if containsNumber(host, fmt.Sprintf(format, o[0], o[1], o[2], o[3])) {
				return true
			}
		}
	}
	return false
}

// containsNumber reports whether s contains sub with no digit right before or
// after it, so that 1-2-3-4 is not found in 11-2-3-45.
func containsNumber(s, sub string) bool {
	for off := 0; ; {
		i := strings.Index(s[off:], sub)
		if i < 0 {
			return false
		}
		start, end := off+i, off+i+len(sub)
		if (start == 0 || !asciiDigit(s[start-1])) && (end == len(s) || !asciiDigit(s[end])) {
			return true
		}
		off = start + 1
	}
}

// hostingDomains are registrable domains under which PTR names are cloud
// instances or rented servers.
var hostingDomains = domainSet(
	"amazonaws.com", "googleusercontent.com", "1e100.net", "cloudapp.net", "azure.com",
	"linode.com", "linodeusercontent.com", "akamaitechnologies.com",
	"vultr.com", "vultrusercontent.com", "choopa.net",
	"ovh.net", "ovh.ca", "ovh.us", "kimsufi.com",
	"your-server.de", "hetzner.com", "hetzner.cloud", "contaboserver.net",
	"leaseweb.net", "leaseweb.com", "digitalocean.com", "scaleway.com", "poneytelecom.eu",
	"secureserver.net", "oraclecloud.com", "oraclevcn.com", "softlayer.com",
	"unifiedlayer.com", "websitewelcome.com", "dreamhost.com", "hostwindsdns.com",
	"colocrossing.com", "m247.com", "datapacket.com", "upcloud.host", "cloudfront.net",
)

// mobileDomains are registrable domains of mobile carriers' PTR names.
var mobileDomains = domainSet(
	"myvzw.com", "tmodns.net", "mycingular.net", "spcsdns.net", "threembb.co.uk",
)

// broadbandDomains are registrable domains of consumer ISPs whose numbered
// names are access lines (their business lines mostly live elsewhere, such
// as comcastbusiness.net).
var broadbandDomains = domainSet(
	"comcast.net", "rr.com", "verizon.net", "cox.net", "charter.com", "sbcglobal.net",
	"frontiernet.net", "optonline.net", "wideopenwest.com",
	"shawcable.net", "rogers.com", "videotron.ca", "sympatico.ca",
	"btcentralplus.com", "virginm.net", "talktalk.net", "skybroadband.com",
	"t-ipconnect.de", "wanadoo.fr", "proxad.net", "sfr.net", "numericable.fr",
	"rima-tde.net", "telecomitalia.it", "fastwebnet.it", "ziggo.nl", "chello.nl", "otenet.gr",
	"bigpond.net.au", "optusnet.com.au", "tpgi.com.au",
	"ocn.ne.jp", "bbtec.net", "hinet.net", "163data.com.cn",
	"telesp.net.br", "virtua.com.br", "prod-infinitum.com.mx", "airtelbroadband.in",
)

func domainSet(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}
