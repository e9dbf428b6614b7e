package ipintel

import (
	"fmt"
	"net/netip"
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

// Confidence of each reading of a PTR name, in the order ClassifyPTR tries
// them. A name is one hint among several: even the strongest reading stays
// below a curated ASN entry (0.95), and the weak ones only speak when
// nothing better does.
const (
	confPTRHostingDomain = 0.9  // a host under a known cloud or hosting provider's domain
	confPTRMobileDomain  = 0.85 // a host under a known mobile carrier's domain
	confPTRSuffix        = 0.8  // under an education or government public suffix (edu, ac.uk, gov, gouv.fr)

	confPTRMobileTokenEncoded  = 0.75 // a mobile word (lte, 4g, gprs) next to an encoded address
	confPTRMobileToken         = 0.6  // a mobile word, no encoded address
	confPTRHostingTokenEncoded = 0.8  // a hosting word (vps, ec2, cloud) next to an encoded address
	confPTRHostingToken        = 0.6  // a hosting word, no encoded address
	confPTRServerEncoded       = 0.6  // server or srv next to an encoded address: a rented server

	confPTRStatic       = 0.4 // static or biz: static addresses are mostly sold with business lines
	confPTRStaticAccess = 0.3 // static or biz on an access line (static-dsl): the access word says residential

	confPTRAccess               = 0.6 // an access-line word (dyn, dsl, pool, cable, cust)
	confPTRAccessEncodedBonus   = 0.2 // added when the name also encodes an address, as line names do
	confPTRAccessBroadbandBonus = 0.1 // added when the domain is a known consumer ISP's

	confPTRFibreEncoded      = 0.75 // fibre next to an encoded address; fibre alone also names backbone links
	confPTRBroadbandEncoded  = 0.75 // an encoded address under a known consumer ISP's domain
	confPTRBroadbandNumbered = 0.5  // a numbered name (four digits or more) under a known consumer ISP's domain
	confPTROwnAddress        = 0.4  // the name spells out the very address it is the PTR of, and says nothing else
	confPTREncodedAddress    = 0.3  // the name seems to spell out an address, and says nothing else

	confPTRNamedHost = 0.6 // any other name (mail.siemens.com): a company names hosts after what they do
)

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
// cablelabs.com or liverpool.ac.uk are not read as cable or pool lines. The
// tokens, the providers' and carriers' domains and the education and
// government suffixes are data/ptr_tokens.csv, data/ptr_domains.csv and
// data/ptr_suffixes.csv.
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

	switch ptrDomains[domain] {
	case domainHosting:
		return sig(TypeHosting, confPTRHostingDomain, says("hosting provider %s", domain))
	case domainMobile:
		return sig(TypeMobile, confPTRMobileDomain, says("mobile carrier %s", domain))
	}
	if typ := suffixType(suffix); typ != "" {
		return sig(typ, confPTRSuffix, says("%s suffix %s", typ, suffix))
	}
	switch {
	case f.mobile != "":
		return sig(TypeMobile, f.byEncoding(confPTRMobileTokenEncoded, confPTRMobileToken), says("mobile token %q%s", f.mobile, enc))
	case f.hosting != "":
		return sig(TypeHosting, f.byEncoding(confPTRHostingTokenEncoded, confPTRHostingToken), says("hosting token %q%s", f.hosting, enc))
	case f.server != "" && f.encoded:
		return sig(TypeHosting, confPTRServerEncoded, says("server token %q%s", f.server, enc))
	case f.static != "":
		if f.access != "" {
			return sig(TypeBusiness, confPTRStaticAccess, says("%q on an access line (%q)%s: static addresses are mostly business lines", f.static, f.access, enc))
		}
		return sig(TypeBusiness, confPTRStatic, says("%q%s: static addresses are mostly business lines", f.static, enc))
	}

	broadband := ptrDomains[domain] == domainBroadband
	switch {
	case f.access != "":
		c := confPTRAccess
		if f.encoded {
			c += confPTRAccessEncodedBonus
		}
		if broadband {
			c += confPTRAccessBroadbandBonus
		}
		return sig(TypeResidential, c, says("access-line token %q%s", f.access, enc))
	case f.fibre != "" && f.encoded:
		return sig(TypeResidential, confPTRFibreEncoded, says("access-line token %q%s", f.fibre, enc))
	case broadband && f.encoded:
		return sig(TypeResidential, confPTRBroadbandEncoded, says("broadband ISP %s%s", domain, enc))
	case broadband && f.numbered:
		return sig(TypeResidential, confPTRBroadbandNumbered, says("numbered host of broadband ISP %s", domain))
	case f.exact:
		return sig(TypeResidential, confPTROwnAddress, says("the name encodes the address and nothing else"))
	case f.encoded:
		return sig(TypeResidential, confPTREncodedAddress, says("the name encodes an address and nothing else"))
	}
	return sig(TypeBusiness, confPTRNamedHost, says("a named host of %s", domain))
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
