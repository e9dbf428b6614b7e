package ipintel

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/net/publicsuffix"
	"golang.org/x/text/language"
	"golang.org/x/text/language/display"
)

// Profile is what leadpipe knows of a company beyond its network: the
// record a salesperson reads in the feed. Country and City are its
// headquarters'. Sources says, for each field set, where it came from; a
// field no source gives stays empty, never guessed.
type Profile struct {
	Name      string `json:"name"` // the brand: "BMW", not the registrant's name
	LegalName string `json:"legal_name,omitempty"`
	Domain    string `json:"domain,omitempty"`
	Industry  string `json:"industry,omitempty"`
	Size      string `json:"size,omitempty"` // employees, as a band: "10001+"
	Country   string `json:"country,omitempty"`
	City      string `json:"city,omitempty"`
	LinkedIn  string `json:"linkedin,omitempty"`
	Founded   string `json:"founded,omitempty"`
	// Logo is the company's own favicon, from its domain; the dashboard
	// shows it only when the operator allows it (--api.logos).
	Logo    string            `json:"logo,omitempty"`
	Sources map[string]string `json:"sources,omitempty"`
}

// orgType is the network type of an organisation's own network by its
// industry: a public administration's is government, a school's or
// university's education, any other business.
func (p *Profile) orgType() string {
	switch p.Industry {
	case "Government Administration", "Armed Forces", "Law Enforcement", "International Affairs":
		return TypeGovernment
	case "Higher Education", "Primary and Secondary Education", "Education Administration Programs":
		return TypeEducation
	}
	return TypeBusiness
}

// profileFields are a profile's fields by the names files and Sources use.
func (p *Profile) fields() []struct {
	name string
	v    *string
} {
	return []struct {
		name string
		v    *string
	}{{"name", &p.Name}, {"legal_name", &p.LegalName}, {"domain", &p.Domain}, {"industry", &p.Industry}, {"size", &p.Size},
		{"country", &p.Country}, {"city", &p.City}, {"linkedin", &p.LinkedIn}, {"founded", &p.Founded}, {"logo", &p.Logo}}
}

// merged is p with the fields it lacks taken from q (each keeping q's
// source); p wins where both have a field. Either may be nil.
func merged(p, q *Profile) *Profile {
	if p == nil {
		return q
	}
	if q == nil {
		return p
	}
	out := &Profile{Sources: map[string]string{}}
	of, pf, qf := out.fields(), p.fields(), q.fields()
	for i := range of {
		switch {
		case *pf[i].v != "":
			*of[i].v, out.Sources[of[i].name] = *pf[i].v, p.Sources[pf[i].name]
		case *qf[i].v != "":
			*of[i].v, out.Sources[of[i].name] = *qf[i].v, q.Sources[qf[i].name]
		}
	}
	return out
}

// sourced stamps every field p has with source, and gives a profile with
// a domain its logo: the favicon of the company's own site.
func (p *Profile) sourced(source string) *Profile {
	p.Sources = map[string]string{}
	for _, f := range p.fields() {
		if *f.v != "" {
			p.Sources[f.name] = source
		}
	}
	if p.Logo == "" && p.Domain != "" {
		p.Logo, p.Sources["logo"] = "https://"+p.Domain+"/favicon.ico", "the company's own site, from its domain"
	}
	return p
}

// normalise cleans a profile read from a file: a bare registrable domain,
// a two-letter country code, trimmed text. It returns an error naming the
// field that cannot be made right.
func (p *Profile) normalise() error {
	for _, f := range p.fields() {
		*f.v = strings.TrimSpace(*f.v)
	}
	if p.Domain != "" {
		d, ok := RegistrableDomain(p.Domain)
		if !ok {
			return fmt.Errorf("domain: %q is not a domain like example.com", p.Domain)
		}
		p.Domain = d
	}
	if p.Country != "" {
		c, ok := CountryCode(p.Country)
		if !ok {
			return fmt.Errorf("country: %q is neither a two-letter code nor a country's English name", p.Country)
		}
		p.Country = c
	}
	if p.LinkedIn != "" && !strings.Contains(p.LinkedIn, "://") {
		p.LinkedIn = "https://" + p.LinkedIn
	}
	return nil
}

// RegistrableDomain reduces a domain, host or URL ("https://www.bmw.de/x")
// to the domain a company registered ("bmw.de"), by the public suffix list.
func RegistrableDomain(s string) (string, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return "", false
		}
		s = u.Hostname()
	}
	s, _, _ = strings.Cut(s, "/")
	s = strings.TrimSuffix(s, ".")
	if s == "" || strings.ContainsAny(s, " :@,;") || !strings.Contains(s, ".") {
		return "", false
	}
	d, err := publicsuffix.EffectiveTLDPlusOne(s)
	if err != nil {
		return "", false
	}
	return d, true
}

// countryCodes maps English country names, lower case, to their ISO
// 3166 codes (open company datasets write "germany", not "DE"). Built on
// first use: only reading a dataset needs it.
var countryCodes = sync.OnceValue(func() map[string]string {
	m := map[string]string{}
	names := display.English.Regions()
	for a := 'A'; a <= 'Z'; a++ {
		for b := 'A'; b <= 'Z'; b++ {
			code := string([]rune{a, b})
			r, err := language.ParseRegion(code)
			if err != nil || !r.IsCountry() || r.Canonicalize().String() != code {
				continue
			}
			if n := strings.ToLower(names.Name(r)); n != "" && m[n] == "" {
				m[n] = code
			}
		}
	}
	// The names open datasets use where CLDR's differ.
	for name, code := range map[string]string{"united states of america": "US", "usa": "US", "uk": "GB",
		"great britain": "GB", "england": "GB", "russian federation": "RU", "korea": "KR", "south korea": "KR",
		"czechia": "CZ", "czech republic": "CZ", "the netherlands": "NL", "viet nam": "VN", "turkey": "TR"} {
		m[name] = code
	}
	return m
})

// CountryCode reads a country as a two-letter code, or its English name.
func CountryCode(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if len(s) == 2 {
		r, err := language.ParseRegion(s)
		if err == nil && r.IsCountry() {
			return r.Canonicalize().String(), true
		}
		return "", false
	}
	c, ok := countryCodes()[strings.ToLower(s)]
	return c, ok
}

// DatasetColumns are the column names an open company dataset may use for
// each profile field, tried in order: the BigPicture Free Company Dataset's
// (name, domain, industry, size, locality, country, linkedin_url,
// year_founded), People Data Labs' free dataset's (website, founded) and
// the plain field names. An operator maps others with ParseColumnMap.
var DatasetColumns = map[string][]string{
	"name":       {"name"},
	"legal_name": {"legal_name"},
	"domain":     {"domain", "website"},
	"industry":   {"industry"},
	"size":       {"size", "size_range"},
	"country":    {"country"},
	"city":       {"locality", "city"},
	"linkedin":   {"linkedin_url", "linkedin"},
	"founded":    {"year_founded", "founded"},
}

// ParseColumnMap reads "field=column,…" (for example
// "domain=website_url,city=hq_city"): which column of a dataset holds which
// profile field, in addition to DatasetColumns.
func ParseColumnMap(s string) (map[string][]string, error) {
	out := map[string][]string{}
	for field, cols := range DatasetColumns {
		out[field] = cols
	}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, pair := range strings.Split(s, ",") {
		field, col, ok := strings.Cut(pair, "=")
		field, col = strings.TrimSpace(field), strings.ToLower(strings.TrimSpace(col))
		if _, known := DatasetColumns[field]; !ok || !known || col == "" {
			return nil, fmt.Errorf("%q is not field=column with a field of %s", pair, strings.Join(profileFieldNames(), ", "))
		}
		out[field] = append([]string{col}, out[field]...)
	}
	return out, nil
}

func profileFieldNames() []string {
	var p Profile
	var out []string
	for _, f := range p.fields() {
		if _, ok := DatasetColumns[f.name]; ok {
			out = append(out, f.name)
		}
	}
	return out
}

// Dataset is an open company dataset an operator downloaded, by domain:
// every domain leadpipe learns (from the curated profiles, the company
// ranges file or reverse DNS) gets its profile from here.
type Dataset struct {
	byDomain map[string]*Profile
	skipped  int
}

// Lookup returns the profile of a registrable domain.
func (d *Dataset) Lookup(domain string) (*Profile, bool) {
	if d == nil || domain == "" {
		return nil, false
	}
	p, ok := d.byDomain[domain]
	return p, ok
}

// Len is the number of companies; Skipped the records without a usable
// domain.
func (d *Dataset) Len() int     { return len(d.byDomain) }
func (d *Dataset) Skipped() int { return d.skipped }

// LoadDataset reads an open company dataset: CSV with a header, or JSON
// Lines (one object per line; .json, .jsonl, .ndjson), in its own column
// layout (columns maps profile fields to column names; nil is
// DatasetColumns). Other columns are ignored. A record without a usable
// domain is skipped and counted; the first of two records of a domain is
// kept. It holds every company in memory (about 1.1 KB each, measured on
// 200,000 rows): for a dataset of millions, keep the countries or
// industries you sell to.
func LoadDataset(path string, columns map[string][]string) (*Dataset, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if columns == nil {
		columns = DatasetColumns
	}
	name := filepath.Base(path)
	source := "dataset " + name
	d := &Dataset{byDomain: map[string]*Profile{}}
	add := func(get func(string) string) {
		var p Profile
		for _, f := range p.fields() {
			for _, col := range columns[f.name] {
				if v := get(col); v != "" {
					*f.v = v
					break
				}
			}
		}
		if p.normalise() != nil || p.Domain == "" {
			d.skipped++
			return
		}
		if _, dup := d.byDomain[p.Domain]; !dup {
			d.byDomain[p.Domain] = p.sourced(source)
		}
	}
	lower := strings.ToLower(name)
	if strings.HasSuffix(lower, ".json") || strings.HasSuffix(lower, ".jsonl") || strings.HasSuffix(lower, ".ndjson") {
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
		line := 0
		for sc.Scan() {
			line++
			b := bytes.TrimSpace(sc.Bytes())
			if len(b) == 0 {
				continue
			}
			var rec map[string]any
			if err := json.Unmarshal(b, &rec); err != nil {
				return nil, fmt.Errorf("%s line %d: not a JSON object: %w", name, line, err)
			}
			add(func(col string) string {
				switch v := rec[col].(type) {
				case string:
					return v
				case float64:
					return strconv.FormatFloat(v, 'f', -1, 64)
				}
				return ""
			})
		}
		return d, sc.Err()
	}
	cr := csv.NewReader(bufio.NewReaderSize(f, 1<<20))
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: empty file (a header line is required)", name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	index := map[string]int{}
	for i, h := range header {
		index[strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))] = i
	}
	if !hasAny(index, columns["domain"]) {
		return nil, fmt.Errorf("%s line 1: no domain column (looked for %s; map one with domain=COLUMN)", name, strings.Join(columns["domain"], ", "))
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return d, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		add(func(col string) string {
			if i, ok := index[col]; ok && i < len(rec) {
				return strings.Clone(rec[i])
			}
			return ""
		})
	}
}

func hasAny(index map[string]int, cols []string) bool {
	for _, c := range cols {
		if _, ok := index[c]; ok {
			return true
		}
	}
	return false
}

// curatedProfiles are the package's own company profiles, by ASN
// (data/company_profiles.csv).
var curatedProfiles = mustParseEmbedded(CompanyProfilesFile, ParseCuratedProfiles)

// profileHeader is company_profiles.csv's header.
var profileHeader = []string{"asns", "name", "legal_name", "domain", "industry", "size", "country", "city", "source"}

// ParseCuratedProfiles reads company_profiles.csv: for each organisation,
// its ASNs (space-separated), profile fields, and the source they were
// taken from (the company's own site, a public register, an annual
// report), which every field of the line cites.
func ParseCuratedProfiles(r io.Reader) (map[uint32]*Profile, error) {
	out := map[uint32]*Profile{}
	err := readList(r, CompanyProfilesFile, profileHeader, func(rec []string) (string, error) {
		p := &Profile{Name: rec[1], LegalName: rec[2], Domain: rec[3], Industry: rec[4], Size: rec[5], Country: rec[6], City: rec[7]}
		if strings.TrimSpace(p.Name) == "" {
			return "", errors.New("name: is empty")
		}
		if err := p.normalise(); err != nil {
			return "", err
		}
		if p.Domain != strings.ToLower(strings.TrimSpace(rec[3])) {
			return "", fmt.Errorf("domain: write %q as the registrable domain %q", rec[3], p.Domain)
		}
		p.sourced("leadpipe curated: " + strings.TrimSpace(rec[8]))
		asns := strings.Fields(rec[0])
		if len(asns) == 0 {
			return "", errors.New("asns: is empty")
		}
		for _, a := range asns {
			asn, err := strconv.ParseUint(a, 10, 32)
			if err != nil || asn == 0 {
				return "", fmt.Errorf("asns: %q is not an AS number", a)
			}
			if _, dup := out[uint32(asn)]; dup {
				return "", fmt.Errorf("asns: AS%d has a profile already", asn)
			}
			out[uint32(asn)] = p
		}
		return p.Name, nil
	})
	return out, err
}
