package ipintel

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
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
	confASNList      = 0.95 // the ASN is in the curated list
	confASNListStale = 0.8  // listed, but the data's name for the ASN has changed since
	confASNListOrg   = 0.85 // unlisted, but another ASN of the same organisation is listed

	confDefault            = 0.5 // no rule claims the name: probably a company
	confDefaultCompanyForm = 0.1 // times the business score: a company form (gmbh, inc) makes the default surer

	// A name rule's answer is confNameRuleBase + confNameRuleWinner × the
	// winning type's score − confNameRuleRunnerUp × the runner-up's, kept
	// within confNameRuleMin and confNameRuleMax: surer the stronger the
	// winning words, less sure the more another type's words disagree.
	confNameRuleBase     = 0.5
	confNameRuleWinner   = 0.35
	confNameRuleRunnerUp = 0.3
	confNameRuleMin      = 0.35
	confNameRuleMax      = 0.85
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

// DefaultClassifier builds the classifier from the data embedded in the
// binary.
func DefaultClassifier() (*Classifier, error) {
	asnTypes, err := dataFiles.Open("data/" + ASNTypesFile)
	if err != nil {
		return nil, fmt.Errorf("opening embedded %s: %w", ASNTypesFile, err)
	}
	defer asnTypes.Close()
	nameRules, err := dataFiles.Open("data/" + NameRulesFile)
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
