package ipintel

import (
	"embed"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The classifier's data: which networks are what, and which words in an
// organisation name say so. data/README.md explains both formats and how to
// add entries.
//
//go:embed data/asn_types.csv data/name_rules.csv
var classifierData embed.FS

// File names of the classifier's data, as errors name them.
const (
	ASNTypesFile  = "asn_types.csv"
	NameRulesFile = "name_rules.csv"
)

// Evidence sources of a [Classification].
const (
	SourceASNList  = "asn-list"
	SourceNameRule = "name-rule"
	SourceDefault  = "default"
)

// RuleAllow is the type of a name rule that says nothing: the words it
// matches are removed before the other rules look at the name, so a narrow
// phrase ("exxon mobil") cancels a broad word ("mobil") inside it.
const RuleAllow = "allow"

// Confidence of each kind of answer. A curated entry was checked by a person;
// a name rule is a good guess whose strength depends on its weight and on
// whether other rules disagree; the default is a coin tilted by the fact that
// most organisations holding an ASN that are not carriers, hosters, schools or
// states are companies.
const (
	confASNList      = 0.95
	confASNListStale = 0.8
	confASNListOrg   = 0.85
	confDefault      = 0.5
	confNameRuleMin  = 0.35
	confNameRuleMax  = 0.85
)

// Classification is what kind of network an ASN is, with the evidence.
type Classification struct {
	// Type is one of the Type constants (TypeBusiness … TypeUnknown).
	Type string
	// Confidence is between 0 and 1: 0.95 for a curated entry (0.8 if the
	// data's name for the ASN has changed since), 0.85 for another ASN of a
	// curated organisation, 0.35–0.85 for a name rule, 0.5–0.55 for the
	// business default, 0 for unknown.
	Confidence float64
	// Evidence says which sources said what, the deciding source first.
	Evidence []Evidence
}

// Classifier tells business networks from residential broadband, mobile
// carriers, hosting (clouds, CDNs, VPNs), education and government, from the
// ASN and the organisation name the ASN database gives.
//
// Precedence, highest first:
//
//  1. The curated ASN list (asn_types.csv): a person decided, with a reason.
//     It is the only way to get right the networks whose names mislead
//     (Verizon Wireless is "Verizon Business" in the data) or say nothing
//     ("Free SAS"). An unlisted ASN of a listed organisation takes the
//     organisation's type, when all its listed ASNs agree on one (Comcast's
//     regional ASNs; not Orange S.A., listed residential and business).
//  2. Name rules (name_rules.csv), matched on whole words of the normalised
//     name. Overlapping matches are resolved first: the match covering more
//     words wins, then the higher weight, then the earlier rule; allow rules
//     take part and silence what they cover. The surviving matches of each
//     type combine as a noisy-or of their weights, and the type with the
//     highest score wins (ties: government, education, hosting, mobile,
//     residential, business). Business rules compete like the others: a
//     strong one ("bank", "airlines") can beat a weak carrier word, a weak
//     one ("gmbh", "inc") only tilts the default.
//  3. Default: a name none of the non-business rules claims is a company,
//     business. A name with no information (empty, or only "AS1234") is
//     unknown.
//
// A built Classifier is read-only and safe for concurrent use.
type Classifier struct {
	asns map[uint32]asnType
	// orgs maps a normalised organisation name of the curated list to the
	// ASN that decides for the organisation's other ASNs; absent when the
	// organisation's listed ASNs disagree (Orange S.A. is residential in
	// France and business on its backbone).
	orgs map[string]uint32
	// rules in file order; a rule's index is its precedence among equals.
	rules []nameRule
	// Rules indexed by their first word, so that a token is tried only
	// against rules that can match it: exact by the whole word, prefix3 by
	// the first three letters of "abc…*", suffix3 by the last three of
	// "*…abc". The few others (infix, short wildcards) are tried on every
	// token.
	exact, prefix3, suffix3 map[string][]int
	others                  []int
}

type asnType struct {
	typ, org, source string
}

type nameRule struct {
	pattern string // as written in the file
	words   []wordPattern
	typ     string // a Type constant or RuleAllow
	weight  float64
	note    string
}

// wordPattern matches one token: "text" exactly, "text*" as a prefix,
// "*text" as a suffix, "*text*" anywhere inside.
type wordPattern struct {
	text           string
	prefix, suffix bool // text* and *text; both for *text*
}

func (w wordPattern) match(tok string) bool {
	switch {
	case w.prefix && w.suffix:
		return strings.Contains(tok, w.text)
	case w.prefix:
		return strings.HasPrefix(tok, w.text)
	case w.suffix:
		return strings.HasSuffix(tok, w.text)
	}
	return tok == w.text
}

// DefaultClassifier builds the classifier from the data embedded in the
// binary.
func DefaultClassifier() (*Classifier, error) {
	asnTypes, err := classifierData.Open("data/" + ASNTypesFile)
	if err != nil {
		return nil, fmt.Errorf("opening embedded %s: %w", ASNTypesFile, err)
	}
	defer asnTypes.Close()
	nameRules, err := classifierData.Open("data/" + NameRulesFile)
	if err != nil {
		return nil, fmt.Errorf("opening embedded %s: %w", NameRulesFile, err)
	}
	defer nameRules.Close()
	return NewClassifier(asnTypes, nameRules)
}

// NewClassifier builds a classifier from the curated ASN list and the name
// rules, in the formats of asn_types.csv and name_rules.csv. Any malformed
// line fails the build with an error naming the file and the line.
func NewClassifier(asnTypes, nameRules io.Reader) (*Classifier, error) {
	c := &Classifier{
		asns:    make(map[uint32]asnType),
		orgs:    make(map[string]uint32),
		exact:   make(map[string][]int),
		prefix3: make(map[string][]int),
		suffix3: make(map[string][]int),
	}
	if err := c.loadASNTypes(asnTypes); err != nil {
		return nil, err
	}
	if err := c.loadNameRules(nameRules); err != nil {
		return nil, err
	}
	c.indexOrgs()
	return c, nil
}

// networkTypes are the types a curated entry or a name rule may give.
var networkTypes = []string{TypeBusiness, TypeEducation, TypeGovernment, TypeResidential, TypeMobile, TypeHosting}

// typeOrder breaks ties between equal scores: the rarer, more specific kinds
// first, business (the default) last.
var typeOrder = [...]string{TypeGovernment, TypeEducation, TypeHosting, TypeMobile, TypeResidential, TypeBusiness}

// readCSV calls row for each record of a headed CSV file, with the record's
// line, after checking the header. Lines starting with # are comments.
func readCSV(r io.Reader, name string, header []string, row func(line int, rec []string) error) error {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.FieldsPerRecord = -1 // checked below, with a clearer message
	first := true
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			if first {
				return fmt.Errorf("%s: empty file, want the header %q", name, strings.Join(header, ","))
			}
			return nil
		}
		if err != nil {
			if pe, ok := errors.AsType[*csv.ParseError](err); ok {
				return fmt.Errorf("%s line %d, column %d: %w", name, pe.Line, pe.Column, pe.Err)
			}
			return fmt.Errorf("reading %s: %w", name, err)
		}
		line, _ := cr.FieldPos(0)
		if first {
			first = false
			if !slices.Equal(rec, header) {
				return fmt.Errorf("%s line %d: header is %q, want %q", name, line, strings.Join(rec, ","), strings.Join(header, ","))
			}
			continue
		}
		if len(rec) != len(header) {
			return fmt.Errorf("%s line %d: want %d fields (%s), got %d", name, line, len(header), strings.Join(header, ", "), len(rec))
		}
		if err := row(line, rec); err != nil {
			return fmt.Errorf("%s line %d: %w", name, line, err)
		}
	}
}

func (c *Classifier) loadASNTypes(r io.Reader) error {
	lines := make(map[uint32]int)
	return readCSV(r, ASNTypesFile, []string{"asn", "type", "org", "source"}, func(line int, rec []string) error {
		asn, err := strconv.ParseUint(rec[0], 10, 32)
		if err != nil || asn == 0 {
			return fmt.Errorf("bad ASN %q", rec[0])
		}
		if !slices.Contains(networkTypes, rec[1]) {
			return fmt.Errorf("AS%d: unknown type %q, want one of %s", asn, rec[1], strings.Join(networkTypes, ", "))
		}
		if strings.TrimSpace(rec[2]) == "" {
			return fmt.Errorf("AS%d: empty org", asn)
		}
		if strings.TrimSpace(rec[3]) == "" {
			return fmt.Errorf("AS%d: empty source: say why it is %s", asn, rec[1])
		}
		if prev, dup := lines[uint32(asn)]; dup {
			return fmt.Errorf("AS%d is already listed on line %d", asn, prev)
		}
		lines[uint32(asn)] = line
		c.asns[uint32(asn)] = asnType{typ: rec[1], org: rec[2], source: rec[3]}
		return nil
	})
}

func (c *Classifier) loadNameRules(r io.Reader) error {
	lines := make(map[string]int)
	return readCSV(r, NameRulesFile, []string{"pattern", "type", "weight", "note"}, func(line int, rec []string) error {
		words, err := parsePattern(rec[0])
		if err != nil {
			return err
		}
		if rec[1] != RuleAllow && !slices.Contains(networkTypes, rec[1]) {
			return fmt.Errorf("pattern %q: unknown type %q, want %s or one of %s", rec[0], rec[1], RuleAllow, strings.Join(networkTypes, ", "))
		}
		weight, err := strconv.ParseFloat(rec[2], 64)
		if err != nil || !(weight > 0 && weight <= 1) {
			return fmt.Errorf("pattern %q: weight %q is not a number in (0, 1]", rec[0], rec[2])
		}
		key := canonicalPattern(words)
		if prev, dup := lines[key]; dup {
			return fmt.Errorf("pattern %q repeats the pattern of line %d", rec[0], prev)
		}
		lines[key] = line

		i := len(c.rules)
		c.rules = append(c.rules, nameRule{pattern: rec[0], words: words, typ: rec[1], weight: weight, note: rec[3]})
		switch w := words[0]; {
		case !w.prefix && !w.suffix:
			c.exact[w.text] = append(c.exact[w.text], i)
		case w.prefix && !w.suffix && len(w.text) >= 3:
			c.prefix3[w.text[:3]] = append(c.prefix3[w.text[:3]], i)
		case w.suffix && !w.prefix && len(w.text) >= 3:
			k := w.text[len(w.text)-3:]
			c.suffix3[k] = append(c.suffix3[k], i)
		default:
			c.others = append(c.others, i)
		}
		return nil
	})
}

// indexOrgs fills c.orgs: an organisation whose listed ASNs all have one
// type lends it to its unlisted ASNs.
func (c *Classifier) indexOrgs() {
	conflict := make(map[string]bool)
	// Lowest ASN first, so the evidence names the same ASN every time.
	for _, asn := range slices.Sorted(maps.Keys(c.asns)) {
		e := c.asns[asn]
		key := normOrg(e.org)
		if prev, ok := c.orgs[key]; ok && c.asns[prev].typ != e.typ {
			conflict[key] = true
		} else if !ok {
			c.orgs[key] = asn
		}
	}
	for key := range conflict {
		delete(c.orgs, key)
	}
}

// parsePattern splits a rule's pattern into word patterns, normalised as
// names are. A * may start or end a word, nowhere else.
func parsePattern(p string) ([]wordPattern, error) {
	var words []wordPattern
	for _, raw := range tokens(p, true) {
		w := wordPattern{text: strings.Trim(raw, "*")}
		w.suffix = strings.HasPrefix(raw, "*")
		w.prefix = strings.HasSuffix(raw, "*")
		if strings.Contains(w.text, "*") {
			return nil, fmt.Errorf("pattern %q: a * may only start or end a word", p)
		}
		if (w.prefix || w.suffix) && len(w.text) < 2 {
			return nil, fmt.Errorf("pattern %q: a wildcard word needs at least 2 letters", p)
		}
		words = append(words, w)
	}
	if len(words) == 0 {
		return nil, fmt.Errorf("pattern %q has no words", p)
	}
	return words, nil
}

func canonicalPattern(words []wordPattern) string {
	var b strings.Builder
	for i, w := range words {
		if i > 0 {
			b.WriteByte(' ')
		}
		if w.suffix {
			b.WriteByte('*')
		}
		b.WriteString(w.text)
		if w.prefix {
			b.WriteByte('*')
		}
	}
	return b.String()
}

// foldRunes maps the accented letters of the Latin alphabets leadpipe's data
// is written in to ASCII, so that a rule written "universität" and a name
// written "Universitat" meet. (The ASN database is almost pure ASCII; the
// rules are where the accents are.)
var foldRunes = func() map[rune]string {
	m := make(map[rune]string)
	for _, pair := range []string{
		"aàáâãäåāăą", "cçćčĉċ", "dďđ", "eèéêëēĕėęě", "gĝğġģ", "hĥħ",
		"iìíîïĩīĭįı", "jĵ", "kķ", "lĺļľŀł", "nñńņňŉ", "oòóôõöøōŏő",
		"rŕŗř", "sśŝşšș", "tţťŧț", "uùúûüũūŭůűų", "wŵ", "yýÿŷ", "zźżž",
	} {
		for _, r := range pair[1:] {
			m[r] = pair[:1]
		}
	}
	m['ß'], m['æ'], m['œ'], m['þ'], m['ð'] = "ss", "ae", "oe", "th", "d"
	return m
}()

// tokens splits s into lowercase words of letters and digits, folding
// accents; every other character separates words ("T-Mobile" is "t",
// "mobile"; "AT&T" is "at", "t"). With keepStar, * counts as a letter, for
// patterns.
func tokens(s string, keepStar bool) []string {
	var out []string
	var b strings.Builder
	flush := func() {
		if b.Len() > 0 {
			out = append(out, b.String())
			b.Reset()
		}
	}
	for _, r := range s {
		r = unicode.ToLower(r)
		switch {
		case r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= '0' && r <= '9'):
			b.WriteRune(r)
		case r == '*' && keepStar:
			b.WriteRune(r)
		case r >= utf8.RuneSelf && foldRunes[r] != "":
			b.WriteString(foldRunes[r])
		case r >= utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r)):
			b.WriteRune(r)
		default:
			flush()
		}
	}
	flush()
	return out
}

// ruleMatch is one rule matching tokens [start, end) of a name.
type ruleMatch struct {
	rule, start, end int
}

// Classify says what kind of network asn, held by the organisation named
// org in the ASN database, is. It is meant for load time, once per distinct
// network, and allocates.
//
// The name rules run even for a listed ASN: their opinion is kept in the
// evidence, so that an answer overriding the name ("Verizon Business" is
// mobile) shows that it does.
func (c *Classifier) Classify(asn uint32, org string) Classification {
	byName := c.ClassifyName(org)
	var ev []Evidence
	var e asnType
	var conf float64
	if listed, ok := c.asns[asn]; ok {
		e, conf = listed, confASNList
		ev = append(ev, Evidence{Source: SourceASNList, Says: fmt.Sprintf("%s: AS%d %s", e.typ, asn, e.source)})
		if normOrg(e.org) != normOrg(org) {
			// The ASN changed hands or names since the entry was written:
			// the entry is still the best guess, but say so.
			conf = confASNListStale
			ev[0].Says += fmt.Sprintf(" (listed as %q, the data now says %q)", e.org, org)
		}
	} else if sibling, ok := c.orgs[normOrg(org)]; ok {
		e, conf = c.asns[sibling], confASNListOrg
		ev = append(ev, Evidence{Source: SourceASNList, Says: fmt.Sprintf("%s: same organisation as AS%d, %s", e.typ, sibling, e.source)})
	} else {
		return byName
	}
	for _, n := range byName.Evidence {
		if n.Source == SourceNameRule {
			ev = append(ev, n)
		}
	}
	return Classification{Type: e.typ, Confidence: conf, Evidence: ev}
}

// normOrg normalises an organisation name as company ids do (lowercased,
// white space collapsed), so that names equal for [Network.CompanyID] are
// equal here.
func normOrg(org string) string {
	return strings.ToLower(strings.Join(strings.Fields(org), " "))
}

// ClassifyName classifies by the organisation name alone: the name rules,
// then the default. [Classifier.Classify] uses it for every ASN the curated
// list does not hold; tests use it to measure how well the rules generalise.
//
// Long: the rules are one cascade whose order is their priority; split
// into pieces, the order would no longer be visible in one place.
func (c *Classifier) ClassifyName(org string) Classification {
	toks := tokens(org, false)
	if !informative(toks) {
		return Classification{
			Type:     TypeUnknown,
			Evidence: []Evidence{{Source: SourceDefault, Says: fmt.Sprintf("unknown: the name %q says nothing about the organisation", org)}},
		}
	}

	// Collect every match, keep the most specific where they overlap.
	var ms []ruleMatch
	try := func(ri, start int) {
		r := &c.rules[ri]
		if start+len(r.words) > len(toks) {
			return
		}
		for k, w := range r.words {
			if !w.match(toks[start+k]) {
				return
			}
		}
		ms = append(ms, ruleMatch{rule: ri, start: start, end: start + len(r.words)})
	}
	for i, t := range toks {
		for _, ri := range c.exact[t] {
			try(ri, i)
		}
		if len(t) >= 3 {
			for _, ri := range c.prefix3[t[:3]] {
				try(ri, i)
			}
			for _, ri := range c.suffix3[t[len(t)-3:]] {
				try(ri, i)
			}
		}
		for _, ri := range c.others {
			try(ri, i)
		}
	}
	slices.SortFunc(ms, func(a, b ruleMatch) int {
		if d := (b.end - b.start) - (a.end - a.start); d != 0 {
			return d
		}
		if wa, wb := c.rules[a.rule].weight, c.rules[b.rule].weight; wa != wb {
			if wa > wb {
				return -1
			}
			return 1
		}
		return a.rule - b.rule
	})
	taken := make([]bool, len(toks))
	var scores [len(typeOrder)]float64
	var kept []ruleMatch
	for _, m := range ms {
		if slices.Contains(taken[m.start:m.end], true) {
			continue
		}
		for k := m.start; k < m.end; k++ {
			taken[k] = true
		}
		kept = append(kept, m)
		if r := &c.rules[m.rule]; r.typ != RuleAllow {
			// Noisy-or: agreeing rules strengthen each other, never past 1.
			i := typeIndex(r.typ)
			scores[i] = 1 - (1-scores[i])*(1-r.weight)
		}
	}

	// The highest score wins; typeOrder breaks ties.
	best := -1
	for i, s := range scores {
		if s > 0 && (best < 0 || s > scores[best]) {
			best = i
		}
	}
	second := 0.0
	for i, s := range scores {
		if i != best {
			second = max(second, s)
		}
	}

	// Evidence: the deciding rules first, each group most specific first.
	var ev []Evidence
	var typ string
	var conf float64
	business := typeIndex(TypeBusiness)
	if best < 0 || best == business && second == 0 && scores[business] < weakBusiness {
		// Nothing but (at most) weak business hints: the default speaks, a
		// little surer when the name carries a company form.
		typ, conf = TypeBusiness, confDefault+0.1*scores[business]
		ev = append(ev, Evidence{Source: SourceDefault, Says: "business: no carrier, hosting, education or government word in the name"})
	} else {
		typ = typeOrder[best]
		conf = min(max(0.5+0.35*scores[best]-0.3*second, confNameRuleMin), confNameRuleMax)
	}
	for _, deciding := range []bool{true, false} {
		for _, m := range kept {
			r := &c.rules[m.rule]
			if (r.typ == typ) != deciding {
				continue
			}
			says := fmt.Sprintf("%s: %q matches %q (weight %.2f)", r.typ, r.pattern, strings.Join(toks[m.start:m.end], " "), r.weight)
			if r.typ == RuleAllow {
				says = fmt.Sprintf("allow: %q matches %q and silences broader rules", r.pattern, strings.Join(toks[m.start:m.end], " "))
			}
			ev = append(ev, Evidence{Source: SourceNameRule, Says: says})
		}
	}
	return Classification{Type: typ, Confidence: round2(conf), Evidence: ev}
}

func typeIndex(t string) int { return slices.Index(typeOrder[:], t) }

// weakBusiness is the score below which business rules only tilt the
// default: company forms (gmbh, inc, ltd) and vague words (group, holding).
const weakBusiness = 0.5

// informative reports whether a name's tokens say anything: a name that is
// empty, only an AS number ("AS44477") or a registry's placeholder
// ("-Reserved AS-") does not.
func informative(toks []string) bool {
	for _, t := range toks {
		switch {
		case len(t) > 2 && t[:2] == "as" && strings.Trim(t[2:], "0123456789") == "":
		case strings.Trim(t, "0123456789") == "":
		case slices.Contains(placeholderWords, t):
		default:
			return true
		}
	}
	return false
}

// placeholderWords make up the names registries give ASNs they have not
// assigned to anyone.
var placeholderWords = []string{"as", "reserved", "private", "use", "unallocated", "unassigned", "not", "allocated"}

func round2(f float64) float64 { return math.Round(f*100) / 100 }
