package ipintel

import (
	"embed"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// The package's own data: which networks are what, which words of an
// organisation name and of a reverse-DNS name say so, and which domains and
// public suffixes are whose. All of it is CSV under data/; data/README.md
// explains each file and how to add entries.
//
//go:embed data/*.csv
var dataFiles embed.FS

// File names of the data, as errors name them.
const (
	ASNTypesFile         = "asn_types.csv"
	NameRulesFile        = "name_rules.csv"
	placeholderWordsFile = "placeholder_words.csv"
	ptrTokensFile        = "ptr_tokens.csv"
	ptrDomainsFile       = "ptr_domains.csv"
	ptrSuffixesFile      = "ptr_suffixes.csv"
	CompanyProfilesFile  = "company_profiles.csv"
)

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

// readList reads a headed CSV list whose last column is a note saying what
// an entry is and why it is there. entry checks and records one line and
// returns the key that makes it unique; a line without a note, or repeating
// the key of an earlier line, is an error.
func readList(r io.Reader, name string, header []string, entry func(rec []string) (key string, err error)) error {
	lines := make(map[string]int)
	return readCSV(r, name, header, func(line int, rec []string) error {
		if strings.TrimSpace(rec[len(rec)-1]) == "" {
			return fmt.Errorf("%q: empty note: say what it is and why it is listed", rec[0])
		}
		key, err := entry(rec)
		if err != nil {
			return err
		}
		if prev, dup := lines[key]; dup {
			return fmt.Errorf("%s is already listed on line %d", key, prev)
		}
		lines[key] = line
		return nil
	})
}

// mustParseEmbedded parses one of the embedded data files. The files are
// built into the binary and a test parses every one of them, so a malformed
// line here is a bug in the build, not something an operator can fix.
func mustParseEmbedded[T any](name string, parse func(io.Reader) (T, error)) T {
	f, err := dataFiles.Open("data/" + name)
	if err != nil {
		panic(fmt.Sprintf("BUG: embedded data file %s: %v", name, err))
	}
	defer f.Close()
	v, err := parse(f)
	if err != nil {
		panic(fmt.Sprintf("BUG: embedded data file: %v", err))
	}
	return v
}

// isWord reports whether s is one word as the names are split into: lower
// case ASCII letters and digits only.
func isWord(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		if c := s[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}
