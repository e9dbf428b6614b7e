package ipintel

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// The word and domain lists ClassifyPTR reads names with, parsed from the
// embedded data/ptr_*.csv when the package is initialised.
var (
	ptrTokens   = mustParseEmbedded(ptrTokensFile, parsePTRTokens)
	ptrDomains  = mustParseEmbedded(ptrDomainsFile, parsePTRDomains)
	ptrSuffixes = mustParseEmbedded(ptrSuffixesFile, parsePTRSuffixes)
)

// Token kinds.
const (
	tokAccess = iota + 1
	tokFibre
	tokMobile
	tokHosting
	tokServer
	tokStatic
)

// tokenKinds are the kinds of ptr_tokens.csv, by the name the file uses.
var tokenKinds = map[string]int{
	"access":  tokAccess,
	"fibre":   tokFibre,
	"mobile":  tokMobile,
	"hosting": tokHosting,
	"server":  tokServer,
	"static":  tokStatic,
}

// ptrTokenList is ptr_tokens.csv: whole words (between '.', '-' and '_')
// and the letter runs inside them (hsd1 → hsd, cpc123 → cpc) by their kind,
// and the stems that catch the compounds ISPs build from the usual words
// (dynamicip, adsl2plus, ippool, pppoe0, cloudserver).
type ptrTokenList struct {
	words map[string]int
	// prefixes and suffixes in file order, the first match deciding; each
	// matches only a longer word (the word itself is in words).
	prefixes, suffixes []ptrAffix
}

type ptrAffix struct {
	text string
	kind int
}

// kind returns the kind of one word or letter run, 0 for none.
func (l *ptrTokenList) kind(tok string) int {
	if kind := l.words[tok]; kind != 0 {
		return kind
	}
	for _, p := range l.prefixes {
		if len(tok) > len(p.text) && strings.HasPrefix(tok, p.text) {
			return p.kind
		}
	}
	for _, s := range l.suffixes {
		if len(tok) > len(s.text) && strings.HasSuffix(tok, s.text) {
			return s.kind
		}
	}
	return 0
}

// parsePTRTokens reads ptr_tokens.csv: token,kind,note. A token is a word
// of lower-case letters and digits; "word*" is a prefix, "*word" a suffix.
func parsePTRTokens(r io.Reader) (*ptrTokenList, error) {
	l := &ptrTokenList{words: make(map[string]int)}
	err := readList(r, ptrTokensFile, []string{"token", "kind", "note"}, func(rec []string) (string, error) {
		tok := rec[0]
		kind, ok := tokenKinds[rec[1]]
		if !ok {
			return "", fmt.Errorf("token %q: unknown kind %q, want one of %s", tok, rec[1], strings.Join(slices.Sorted(maps.Keys(tokenKinds)), ", "))
		}
		stem := strings.TrimSuffix(strings.TrimPrefix(tok, "*"), "*")
		prefix, suffix := strings.HasSuffix(tok, "*"), strings.HasPrefix(tok, "*")
		switch {
		case !isWord(stem):
			return "", fmt.Errorf("token %q: want lower-case letters and digits, with at most a * before or after", tok)
		case prefix && suffix:
			return "", fmt.Errorf("token %q: a * may start or end a token, not both", tok)
		case (prefix || suffix) && len(stem) < 2:
			return "", fmt.Errorf("token %q: a wildcard token needs at least 2 letters", tok)
		case prefix:
			l.prefixes = append(l.prefixes, ptrAffix{stem, kind})
		case suffix:
			l.suffixes = append(l.suffixes, ptrAffix{stem, kind})
		default:
			l.words[stem] = kind
		}
		return fmt.Sprintf("token %q", tok), nil
	})
	if err == nil && len(l.words) == 0 {
		err = fmt.Errorf("%s: no tokens", ptrTokensFile)
	}
	return l, err
}

// Kinds of ptr_domains.csv.
const (
	domainHosting   = "hosting"   // cloud instances or rented servers
	domainMobile    = "mobile"    // a mobile carrier's data network
	domainBroadband = "broadband" // a consumer ISP's access lines
)

// parsePTRDomains reads ptr_domains.csv: domain,kind,note. A domain must be
// a registrable domain (ICANN eTLD+1) as ClassifyPTR derives it from a name,
// or no name could ever match it; it has one kind.
func parsePTRDomains(r io.Reader) (map[string]string, error) {
	m := make(map[string]string)
	kinds := []string{domainHosting, domainMobile, domainBroadband}
	err := readList(r, ptrDomainsFile, []string{"domain", "kind", "note"}, func(rec []string) (string, error) {
		d := rec[0]
		if !slices.Contains(kinds, rec[1]) {
			return "", fmt.Errorf("domain %q: unknown kind %q, want one of %s", d, rec[1], strings.Join(kinds, ", "))
		}
		if norm, ok := normalizePTR(d); !ok || norm != d {
			return "", fmt.Errorf("domain %q: want a lower-case domain name", d)
		}
		if reg, _, ok := registrableDomain(d); !ok || reg != d {
			return "", fmt.Errorf("domain %q is not a registrable domain (its own is %q): names are matched by theirs", d, reg)
		}
		m[d] = rec[1]
		return fmt.Sprintf("domain %q", d), nil
	})
	if err == nil && len(m) == 0 {
		err = fmt.Errorf("%s: no domains", ptrDomainsFile)
	}
	return m, err
}

// ptrSuffixList is ptr_suffixes.csv: the ICANN public suffixes, and the
// labels of longer ones, that are reserved to education or government.
type ptrSuffixList struct {
	whole, label map[string]string // → TypeEducation or TypeGovernment
}

// parsePTRSuffixes reads ptr_suffixes.csv: name,match,type,note. match is
// "whole" (the public suffix is name) or "label" (name is one of its labels
// but the last).
func parsePTRSuffixes(r io.Reader) (*ptrSuffixList, error) {
	l := &ptrSuffixList{whole: make(map[string]string), label: make(map[string]string)}
	types := []string{TypeEducation, TypeGovernment}
	err := readList(r, ptrSuffixesFile, []string{"name", "match", "type", "note"}, func(rec []string) (string, error) {
		name, match, typ := rec[0], rec[1], rec[2]
		if !slices.Contains(types, typ) {
			return "", fmt.Errorf("%q: unknown type %q, want one of %s", name, typ, strings.Join(types, ", "))
		}
		labels := strings.Split(name, ".")
		if slices.ContainsFunc(labels, func(label string) bool { return !isWord(strings.ReplaceAll(label, "-", "")) }) {
			return "", fmt.Errorf("%q: want lower-case labels of letters, digits and '-'", name)
		}
		switch {
		case match == "whole":
			l.whole[name] = typ
		case match == "label" && len(labels) == 1:
			l.label[name] = typ
		case match == "label":
			return "", fmt.Errorf("%q: a label has no dots", name)
		default:
			return "", fmt.Errorf("%q: unknown match %q, want whole or label", name, match)
		}
		return fmt.Sprintf("%q (%s)", name, match), nil
	})
	if err == nil && len(l.whole)+len(l.label) == 0 {
		err = fmt.Errorf("%s: no suffixes", ptrSuffixesFile)
	}
	return l, err
}

// suffixType says whether an ICANN public suffix is reserved to education or
// government: edu, ac.uk, k12.ca.us, gov, gov.uk, gouv.fr, go.jp, mil…
func suffixType(suffix string) string {
	if typ := ptrSuffixes.whole[suffix]; typ != "" {
		return typ
	}
	labels := strings.Split(suffix, ".")
	for _, l := range labels[:len(labels)-1] {
		if typ := ptrSuffixes.label[l]; typ != "" {
			return typ
		}
	}
	return ""
}
