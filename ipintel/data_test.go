package ipintel

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// TestEmbeddedListsParse parses every embedded word and domain list the way
// package initialisation does, but reporting the error instead of
// panicking, and checks that none came out empty.
func TestEmbeddedListsParse(t *testing.T) {
	parse := func(name string, parse func(io.Reader) (int, error)) {
		t.Helper()
		n, err := parse(bytes.NewReader(embeddedDataFile(t, name)))
		if err != nil {
			t.Errorf("%s: %v", name, err)
		} else if n == 0 {
			t.Errorf("%s: no entries", name)
		}
		t.Logf("%s: %d entries", name, n)
	}
	parse(placeholderWordsFile, func(r io.Reader) (int, error) {
		m, err := parsePlaceholderWords(r)
		return len(m), err
	})
	parse(ptrTokensFile, func(r io.Reader) (int, error) {
		l, err := parsePTRTokens(r)
		if err == nil && (len(l.prefixes) == 0 || len(l.suffixes) == 0) {
			t.Errorf("%s: %d prefixes and %d suffixes, want some of each", ptrTokensFile, len(l.prefixes), len(l.suffixes))
		}
		return len(l.words) + len(l.prefixes) + len(l.suffixes), err
	})
	parse(ptrDomainsFile, func(r io.Reader) (int, error) {
		m, err := parsePTRDomains(r)
		kinds := make(map[string]int)
		for _, k := range m {
			kinds[k]++
		}
		for _, k := range []string{domainHosting, domainMobile, domainBroadband} {
			if err == nil && kinds[k] == 0 {
				t.Errorf("%s: no %s domains", ptrDomainsFile, k)
			}
		}
		return len(m), err
	})
	parse(ptrSuffixesFile, func(r io.Reader) (int, error) {
		l, err := parsePTRSuffixes(r)
		return len(l.whole) + len(l.label), err
	})
}

// TestListErrors checks that a malformed line of each list is reported with
// the file's name and the line's number.
func TestListErrors(t *testing.T) {
	parsers := map[string]func(io.Reader) error{
		placeholderWordsFile: func(r io.Reader) error { _, err := parsePlaceholderWords(r); return err },
		ptrTokensFile:        func(r io.Reader) error { _, err := parsePTRTokens(r); return err },
		ptrDomainsFile:       func(r io.Reader) error { _, err := parsePTRDomains(r); return err },
		ptrSuffixesFile:      func(r io.Reader) error { _, err := parsePTRSuffixes(r); return err },
	}
	for _, c := range []struct{ file, input, want string }{
		{placeholderWordsFile, "", "placeholder_words.csv: empty file"},
		{placeholderWordsFile, "word,note\n", "placeholder_words.csv: no words"},
		{placeholderWordsFile, "word\n", "placeholder_words.csv line 1: header"},
		{placeholderWordsFile, "word,note\n# comment\nReserved,x\n", `placeholder_words.csv line 3: word "Reserved": want lower-case`},
		{placeholderWordsFile, "word,note\nreserved,\n", `placeholder_words.csv line 2: "reserved": empty note`},
		{placeholderWordsFile, "word,note\nreserved,x\nas,x\nreserved,y\n", `placeholder_words.csv line 4: word "reserved" is already listed on line 2`},
		{placeholderWordsFile, "word,note\nreserved\n", "placeholder_words.csv line 2: want 2 fields"},
		{placeholderWordsFile, "word,note\nreserved,\"x\n", "placeholder_words.csv line 2, column"},

		{ptrTokensFile, "token,kind,note\n", "ptr_tokens.csv: no tokens"},
		{ptrTokensFile, "token,kind,note\ndsl,access,x\nlte,cellular,x\n", `ptr_tokens.csv line 3: token "lte": unknown kind "cellular"`},
		{ptrTokensFile, "token,kind,note\nDSL,access,x\n", `ptr_tokens.csv line 2: token "DSL": want lower-case`},
		{ptrTokensFile, "token,kind,note\nd*sl,access,x\n", `ptr_tokens.csv line 2: token "d*sl": want lower-case`},
		{ptrTokensFile, "token,kind,note\n*dsl*,access,x\n", `ptr_tokens.csv line 2: token "*dsl*": a * may start or end a token, not both`},
		{ptrTokensFile, "token,kind,note\nd*,access,x\n", `ptr_tokens.csv line 2: token "d*": a wildcard token needs at least 2 letters`},
		{ptrTokensFile, "token,kind,note\ndsl,access,x\ndsl*,access,x\ndsl,mobile,x\n", `ptr_tokens.csv line 4: token "dsl" is already listed on line 2`},
		{ptrTokensFile, "token,kind,note\ndsl,access\n", "ptr_tokens.csv line 2: want 3 fields"},

		{ptrDomainsFile, "domain,kind,note\n", "ptr_domains.csv: no domains"},
		{ptrDomainsFile, "domain,kind,note\nexample.com,cloud,x\n", `ptr_domains.csv line 2: domain "example.com": unknown kind "cloud"`},
		{ptrDomainsFile, "domain,kind,note\nExample.com,hosting,x\n", `ptr_domains.csv line 2: domain "Example.com": want a lower-case domain name`},
		{ptrDomainsFile, "domain,kind,note\ncompute.amazonaws.com,hosting,x\n", `ptr_domains.csv line 2: domain "compute.amazonaws.com" is not a registrable domain (its own is "amazonaws.com")`},
		{ptrDomainsFile, "domain,kind,note\nco.uk,hosting,x\n", `ptr_domains.csv line 2: domain "co.uk" is not a registrable domain`},
		{ptrDomainsFile, "domain,kind,note\nexample.com,hosting,x\nexample.com,mobile,x\n", `ptr_domains.csv line 3: domain "example.com" is already listed on line 2`},

		{ptrSuffixesFile, "name,match,type,note\n", "ptr_suffixes.csv: no suffixes"},
		{ptrSuffixesFile, "name,match,type,note\nedu,whole,school,x\n", `ptr_suffixes.csv line 2: "edu": unknown type "school"`},
		{ptrSuffixesFile, "name,match,type,note\nedu,tld,education,x\n", `ptr_suffixes.csv line 2: "edu": unknown match "tld"`},
		{ptrSuffixesFile, "name,match,type,note\nac.uk,label,education,x\n", `ptr_suffixes.csv line 2: "ac.uk": a label has no dots`},
		{ptrSuffixesFile, "name,match,type,note\nAC,label,education,x\n", `ptr_suffixes.csv line 2: "AC": want lower-case labels`},
		{ptrSuffixesFile, "name,match,type,note\nedu,whole,education,x\nedu,label,education,x\nedu,whole,government,x\n", `ptr_suffixes.csv line 4: "edu" (whole) is already listed on line 2`},
	} {
		err := parsers[c.file](strings.NewReader(c.input))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parsing %s from %q: %v, want an error containing %q", c.file, c.input, err, c.want)
		}
	}
}

// TestMustParseEmbeddedPanics checks that a broken embedded file stops the
// program with a message naming the file and the line.
func TestMustParseEmbeddedPanics(t *testing.T) {
	defer func() {
		msg, _ := recover().(string)
		if want := "BUG: embedded data file: ptr_suffixes.csv line 1: header"; !strings.HasPrefix(msg, want) {
			t.Errorf("panic %q, want one starting %q", msg, want)
		}
	}()
	// ptr_tokens.csv read as if it were ptr_suffixes.csv: the header is wrong.
	mustParseEmbedded(ptrTokensFile, parsePTRSuffixes)
}
