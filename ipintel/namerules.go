package ipintel

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Name rules: whole words of an organisation name that say what kind of
// network it holds (data/name_rules.csv), and the placeholder names that say
// nothing (data/placeholder_words.csv).

// nameRule is one line of name_rules.csv.
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

// ClassifyName classifies by the organisation name alone: the name rules,
// then the default. [Classifier.Classify] uses it for every ASN the curated
// list does not hold; tests use it to measure how well the rules generalise.
func (c *Classifier) ClassifyName(org string) Classification {
	toks := tokens(org, false)
	if !informative(toks) {
		return Classification{
			Type:     TypeUnknown,
			Evidence: []Evidence{{Source: SourceDefault, Says: fmt.Sprintf("unknown: the name %q says nothing about the organisation", org)}},
		}
	}
	kept, scores := c.resolve(c.matchRules(toks), len(toks))
	typ, conf, ev := decide(scores)
	ev = c.ruleEvidence(ev, kept, toks, typ)
	return Classification{Type: typ, Confidence: round2(conf), Evidence: ev}
}

// ruleMatch is one rule matching tokens [start, end) of a name.
type ruleMatch struct {
	rule, start, end int
}

// typeScores holds a score per type, in the order of typeOrder.
type typeScores [len(typeOrder)]float64

// matchRules returns every match of every rule in a name's tokens.
func (c *Classifier) matchRules(toks []string) []ruleMatch {
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
	return ms
}

// resolve keeps, of matches that overlap, the one covering more words, then
// the higher weight, then the earlier rule, and scores each type by its kept
// matches. It returns the kept matches, most specific first.
func (c *Classifier) resolve(ms []ruleMatch, ntoks int) ([]ruleMatch, typeScores) {
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
	taken := make([]bool, ntoks)
	var scores typeScores
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
	return kept, scores
}

// decide picks the type with the highest score (typeOrder breaking ties)
// and its confidence, or the business default when at most weak business
// hints scored, with the default's evidence.
func decide(scores typeScores) (typ string, conf float64, ev []Evidence) {
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
	business := typeIndex(TypeBusiness)
	if best < 0 || best == business && second == 0 && scores[business] < weakBusiness {
		// Nothing but (at most) weak business hints: the default speaks, a
		// little surer when the name carries a company form.
		ev = append(ev, Evidence{Source: SourceDefault, Says: "business: no carrier, hosting, education or government word in the name"})
		return TypeBusiness, confDefault + confDefaultCompanyForm*scores[business], ev
	}
	conf = confNameRuleBase + confNameRuleWinner*scores[best] - confNameRuleRunnerUp*second
	return typeOrder[best], min(max(conf, confNameRuleMin), confNameRuleMax), nil
}

// ruleEvidence appends to ev what the kept matches say: the rules of the
// deciding type first, then the others, each group most specific first.
func (c *Classifier) ruleEvidence(ev []Evidence, kept []ruleMatch, toks []string, typ string) []Evidence {
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
	return ev
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
		case placeholderWords[t]:
		default:
			return true
		}
	}
	return false
}

// placeholderWords make up the names registries give ASNs they have not
// assigned to anyone: data/placeholder_words.csv.
var placeholderWords = mustParseEmbedded(placeholderWordsFile, parsePlaceholderWords)

// parsePlaceholderWords reads placeholder_words.csv: word,note. A word is
// one token as names are split into: lower-case letters and digits.
func parsePlaceholderWords(r io.Reader) (map[string]bool, error) {
	words := make(map[string]bool)
	err := readList(r, placeholderWordsFile, []string{"word", "note"}, func(rec []string) (string, error) {
		if !isWord(rec[0]) {
			return "", fmt.Errorf("word %q: want lower-case letters and digits", rec[0])
		}
		words[rec[0]] = true
		return fmt.Sprintf("word %q", rec[0]), nil
	})
	if err == nil && len(words) == 0 {
		err = fmt.Errorf("%s: no words", placeholderWordsFile)
	}
	return words, err
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }
