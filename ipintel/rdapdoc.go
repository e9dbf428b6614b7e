package ipintel

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
)

// RDAPNetwork is what an RDAP server (RFC 9083) says of the network
// containing an address: the parts of an "ip network" object leadpipe
// reads.
type RDAPNetwork struct {
	First, Last netip.Addr
	Handle      string
	NetName     string // the object's name: RIPE's netname, ARIN's NetName
	Status      string // the object's type: ASSIGNED PA, REASSIGNMENT, assigned…
	Country     string
	Remarks     string // the remarks' descriptions, joined
	// Registrant is the organisation the network is registered to, when
	// the answer names one; Person is set instead when the only registrant
	// is an individual.
	Registrant, RegistrantHandle string
	Person                       bool
}

// rdapObject is the JSON of an RDAP ip network object, as far as read.
type rdapObject struct {
	ObjectClassName string       `json:"objectClassName"`
	Handle          string       `json:"handle"`
	StartAddress    string       `json:"startAddress"`
	EndAddress      string       `json:"endAddress"`
	Name            string       `json:"name"`
	Type            string       `json:"type"`
	Country         string       `json:"country"`
	Remarks         []rdapRemark `json:"remarks"`
	Entities        []rdapEntity `json:"entities"`
	ErrorCode       int          `json:"errorCode"`
}

type rdapRemark struct {
	Title       string   `json:"title"`
	Description []string `json:"description"`
}

type rdapEntity struct {
	Handle     string            `json:"handle"`
	Roles      []string          `json:"roles"`
	VCardArray []json.RawMessage `json:"vcardArray"`
}

// vcard reads the properties leadpipe uses from a jCard (RFC 7095):
// ["vcard", [[name, params, type, value], …]].
func (e *rdapEntity) vcard() (fn, kind string) {
	if len(e.VCardArray) != 2 {
		return "", ""
	}
	var props [][]json.RawMessage
	if json.Unmarshal(e.VCardArray[1], &props) != nil {
		return "", ""
	}
	for _, p := range props {
		if len(p) < 4 {
			continue
		}
		var name, value string
		if json.Unmarshal(p[0], &name) != nil || json.Unmarshal(p[3], &value) != nil {
			continue
		}
		switch strings.ToLower(name) {
		case "fn":
			fn = strings.TrimSpace(value)
		case "kind":
			kind = strings.ToLower(strings.TrimSpace(value))
		}
	}
	return fn, kind
}

// rdapHandleLike matches a registry handle used where a name should be
// (AFRINIC answers "ORG-TA38-AFRINIC" as the organisation's fn).
var rdapHandleLike = regexp.MustCompile(`^(ORG-)?[A-Z0-9]+(-[A-Z0-9]+)*-(RIPE|AFRINIC|APNIC|ARIN|LACNIC|AP)$`)

// ParseRDAPNetwork reads an RDAP ip network object.
func ParseRDAPNetwork(body []byte) (RDAPNetwork, error) {
	var o rdapObject
	if err := json.Unmarshal(body, &o); err != nil {
		return RDAPNetwork{}, fmt.Errorf("not an RDAP response: %w", err)
	}
	if o.ErrorCode != 0 {
		return RDAPNetwork{}, fmt.Errorf("RDAP error %d", o.ErrorCode)
	}
	if o.ObjectClassName != "" && o.ObjectClassName != "ip network" {
		return RDAPNetwork{}, fmt.Errorf("RDAP object is a %q, not an ip network", o.ObjectClassName)
	}
	first, err1 := parseRDAPAddr(o.StartAddress)
	last, err2 := parseRDAPAddr(o.EndAddress)
	if err1 != nil || err2 != nil || checkRange(first, last) != nil {
		return RDAPNetwork{}, fmt.Errorf("RDAP network has no valid range (%q - %q)", o.StartAddress, o.EndAddress)
	}
	n := RDAPNetwork{First: first, Last: last, Handle: o.Handle, NetName: o.Name,
		Status: strings.ToUpper(strings.TrimSpace(o.Type)), Country: strings.ToUpper(o.Country)}
	var remarks []string
	for _, r := range o.Remarks {
		remarks = append(remarks, r.Description...)
	}
	n.Remarks = strings.Join(remarks, " ")
	for _, e := range o.Entities {
		if !slices.Contains(e.Roles, "registrant") || strings.HasSuffix(strings.ToUpper(e.Handle), "-MNT") {
			// RIPE lists the maintainer among the registrants; it holds
			// the object, not the network.
			continue
		}
		fn, kind := e.vcard()
		switch {
		case kind == "individual":
			n.Person = true
		case fn == "" || rdapHandleLike.MatchString(fn) || strings.EqualFold(fn, e.Handle):
			// An organisation without a name to show.
		case n.Registrant == "":
			n.Registrant, n.RegistrantHandle = fn, e.Handle
		}
	}
	if n.Registrant != "" {
		n.Person = false
	}
	return n, nil
}

// parseRDAPAddr reads an RDAP start or end address. Registries differ:
// RIPE once wrote "62.239.237.0/32", ARIN "074.125.000.000".
func parseRDAPAddr(s string) (netip.Addr, error) {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s = s[:i]
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a, nil
	}
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return netip.ParseAddr(s)
	}
	for i, p := range parts {
		if t := strings.TrimLeft(p, "0"); t != "" {
			parts[i] = t
		} else {
			parts[i] = "0"
		}
	}
	return netip.ParseAddr(strings.Join(parts, "."))
}

// RDAPVerdict is what leadpipe makes of an RDAP network for one address:
// the company it is assigned to, or why it is not counted as one (the
// Skip* reasons of a registry import).
type RDAPVerdict struct {
	Company string
	Skip    string
}

// JudgeRDAP applies the rules of `leadpipe rir import` to an RDAP answer:
// a company's network is an assignment, an IPv4 /22 or an IPv6 /40 or
// smaller, registered to an organisation (not a person) named unlike the
// network's ISP (isp, the announcing network's organisation) and unlike a
// pool, and not a carrier, hoster or mobile operator by the name rules.
func JudgeRDAP(n RDAPNetwork, isp string, cls *Classifier) RDAPVerdict {
	switch {
	case !assignmentStatuses[n.Status]:
		return RDAPVerdict{Skip: SkipNotAssignment}
	case tooLarge(n.First, n.Last):
		return RDAPVerdict{Skip: SkipTooLarge}
	case n.Registrant == "":
		return RDAPVerdict{Skip: SkipNoOrg}
	case isp != "" && sameOrganisation(n.Registrant, isp):
		return RDAPVerdict{Skip: SkipISP}
	}
	if skip := holderSkip(cls, n.Registrant, n.NetName, n.Remarks); skip != "" {
		return RDAPVerdict{Skip: skip}
	}
	return RDAPVerdict{Company: n.Registrant}
}

// legalWords are the words of a name that say what kind of legal person
// it is, not which one.
var legalWords = map[string]bool{
	"ltd": true, "limited": true, "inc": true, "incorporated": true, "llc": true, "plc": true, "gmbh": true, "ag": true,
	"sa": true, "sas": true, "sarl": true, "bv": true, "nv": true, "ab": true, "as": true, "asa": true, "oy": true,
	"oyj": true, "spa": true, "srl": true, "sro": true, "kft": true, "co": true, "corp": true, "corporation": true,
	"company": true, "group": true, "holding": true, "the": true, "de": true, "cv": true, "pte": true, "pty": true,
}

// sameOrganisation reports whether two organisation names are one
// organisation's: equal once legal forms are dropped, or sharing their
// first distinctive word ("British Telecommunications PLC" and "British
// Telecommunications Enterprise").
func sameOrganisation(a, b string) bool {
	wa, wb := nameWords(a), nameWords(b)
	if len(wa) == 0 || len(wb) == 0 {
		return false
	}
	if slices.Equal(wa, wb) {
		return true
	}
	return len(wa[0]) >= 4 && wa[0] == wb[0] && !commonFirstWords[wa[0]]
}

// commonFirstWords begin the names of many unrelated organisations.
var commonFirstWords = map[string]bool{
	"british": true, "national": true, "american": true, "united": true, "general": true, "international": true,
	"global": true, "first": true, "china": true, "deutsche": true, "city": true, "state": true, "university": true,
	"universidad": true, "new": true, "north": true, "south": true, "east": true, "west": true, "central": true,
}

func nameWords(s string) []string {
	var out []string
	for _, w := range strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r > 0x7f)
	}) {
		if !legalWords[w] {
			out = append(out, w)
		}
	}
	return out
}
