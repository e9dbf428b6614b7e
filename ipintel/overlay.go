package ipintel

import (
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/gaissmai/bart"
)

// This file loads the operator's own data: a company ranges file that
// overlays the ASN organisation (so a deployment can plug in a commercial or
// home-grown IP→company database), and an overrides file that corrects a
// classification and wins over every other source.

// CompanyRecord is one organisation of the company ranges file: its
// profile, which wins over every other (Country and City are its
// headquarters').
type CompanyRecord struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	LegalName string `json:"legal_name,omitempty"`
	Domain    string `json:"domain"`
	Industry  string `json:"industry,omitempty"`
	Size      string `json:"size,omitempty"`
	Country   string `json:"country,omitempty"`
	City      string `json:"city,omitempty"`
	LinkedIn  string `json:"linkedin,omitempty"`
	// profile is the record's profile completed from the dataset.
	profile *Profile
}

// Profile is the record as a profile, sourced "company ranges file".
func (c *CompanyRecord) Profile() *Profile {
	p := &Profile{Name: c.Name, LegalName: c.LegalName, Domain: c.Domain, Industry: c.Industry, Size: c.Size,
		Country: c.Country, City: c.City, LinkedIn: c.LinkedIn}
	return p.sourced("company ranges file")
}

// CompanyIDFor is the stable company id: from the domain when one is known
// (domains outlive name spellings), else from the normalised name — the same
// id the ASN data gives an organisation of that name.
func CompanyIDFor(domain, name string) string {
	if d := strings.ToLower(strings.TrimSpace(domain)); d != "" {
		sum := sha256.Sum256([]byte("domain:" + d))
		return "d" + hex.EncodeToString(sum[:8])
	}
	return companyID(name)
}

// Companies maps CIDRs to company records.
type Companies struct {
	table   bart.Table[uint32]
	records []CompanyRecord
}

// Lookup returns the company of the most specific range containing ip.
func (c *Companies) Lookup(ip netip.Addr) (*CompanyRecord, bool) {
	if c == nil {
		return nil, false
	}
	i, ok := c.table.Lookup(ip.Unmap())
	if !ok {
		return nil, false
	}
	return &c.records[i], true
}

// Len is the number of ranges.
func (c *Companies) Len() int { return len(c.records) }

// Override corrects what leadpipe says about a network. Type, when set,
// replaces the classification; Company and Domain, when set, the company.
type Override struct {
	Type    string `json:"type"`
	Company string `json:"company"`
	Domain  string `json:"domain"`
	Note    string `json:"note"`
	// Match is the CIDR or "AS<n>" the override was written for.
	Match string `json:"-"`
}

// Overrides holds CIDR and ASN overrides.
type Overrides struct {
	cidrs bart.Table[uint32]
	byASN map[uint32]uint32
	list  []Override
}

// ForIP returns the override of the most specific CIDR containing ip.
func (o *Overrides) ForIP(ip netip.Addr) (*Override, bool) {
	if o == nil {
		return nil, false
	}
	i, ok := o.cidrs.Lookup(ip.Unmap())
	if !ok {
		return nil, false
	}
	return &o.list[i], true
}

// ForASN returns the override written for a whole ASN.
func (o *Overrides) ForASN(asn uint32) (*Override, bool) {
	if o == nil {
		return nil, false
	}
	i, ok := o.byASN[asn]
	if !ok {
		return nil, false
	}
	return &o.list[i], true
}

// Len is the number of overrides.
func (o *Overrides) Len() int { return len(o.list) }

// LoadCompanies reads a company ranges file: CSV with a header naming at
// least cidr and name (and any of domain, industry, size, country), or JSON:
// an array of objects with those keys. The format follows the extension.
func LoadCompanies(path string) (*Companies, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseCompanies(filepath.Base(path), data)
}

// ParseCompanies parses a company ranges file's content; name (the file
// name) picks the format and prefixes errors.
func ParseCompanies(name string, data []byte) (*Companies, error) {
	rows, err := readRows(name, data, []string{"cidr", "name"}, []string{"legal_name", "domain", "industry", "size", "country", "city", "linkedin"})
	if err != nil {
		return nil, err
	}
	c := &Companies{}
	for _, r := range rows {
		p, err := parsePrefix(r.get("cidr"))
		if err != nil {
			return nil, fmt.Errorf("%s %s: cidr: %v", name, r.where, err)
		}
		rec := CompanyRecord{
			Name: strings.TrimSpace(r.get("name")), Domain: strings.ToLower(strings.TrimSpace(r.get("domain"))),
			Industry: strings.TrimSpace(r.get("industry")), Size: strings.TrimSpace(r.get("size")),
			Country: strings.ToUpper(strings.TrimSpace(r.get("country"))), LegalName: strings.TrimSpace(r.get("legal_name")),
			City: strings.TrimSpace(r.get("city")), LinkedIn: strings.TrimSpace(r.get("linkedin")),
		}
		if rec.Name == "" {
			return nil, fmt.Errorf("%s %s: name: is empty", name, r.where)
		}
		if rec.Country != "" && len(rec.Country) != 2 {
			return nil, fmt.Errorf("%s %s: country: %q is not a two-letter code", name, r.where, rec.Country)
		}
		if rec.Domain != "" && (strings.ContainsAny(rec.Domain, "/:@ ") || !strings.Contains(rec.Domain, ".")) {
			return nil, fmt.Errorf("%s %s: domain: %q is not a bare domain like example.com", name, r.where, rec.Domain)
		}
		rec.ID = CompanyIDFor(rec.Domain, rec.Name)
		if _, dup := c.table.Get(p); dup {
			return nil, fmt.Errorf("%s %s: cidr: %s is listed twice", name, r.where, p)
		}
		c.table.Insert(p, uint32(len(c.records)))
		c.records = append(c.records, rec)
	}
	return c, nil
}

// LoadOverrides reads an overrides file: CSV with a header naming match and
// type (and any of company, domain, note), where match is a CIDR, an IP or
// AS<n>; or JSON: an array of objects with cidr or asn, type, company,
// domain, note.
func LoadOverrides(path string) (*Overrides, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseOverrides(filepath.Base(path), data)
}

// ParseOverrides parses an overrides file's content.
func ParseOverrides(name string, data []byte) (*Overrides, error) {
	rows, err := readRows(name, data, nil, []string{"match", "cidr", "asn", "type", "company", "domain", "note"})
	if err != nil {
		return nil, err
	}
	o := &Overrides{byASN: map[uint32]uint32{}}
	for _, r := range rows {
		ov := Override{Type: strings.ToLower(strings.TrimSpace(r.get("type"))), Company: strings.TrimSpace(r.get("company")),
			Domain: strings.ToLower(strings.TrimSpace(r.get("domain"))), Note: r.get("note")}
		if ov.Type != "" && !KnownType(ov.Type) {
			return nil, fmt.Errorf("%s %s: type: %q is not one of %s", name, r.where, ov.Type, strings.Join(Types, ", "))
		}
		if ov.Type == "" && ov.Company == "" {
			return nil, fmt.Errorf("%s %s: an override needs a type or a company", name, r.where)
		}
		match := strings.TrimSpace(r.get("match"))
		if match == "" {
			match = strings.TrimSpace(r.get("cidr"))
		}
		if match == "" && r.get("asn") != "" {
			match = "AS" + strings.TrimSpace(r.get("asn"))
		}
		ov.Match = match
		i := uint32(len(o.list))
		if rest, ok := strings.CutPrefix(strings.ToUpper(match), "AS"); ok {
			asn, err := strconv.ParseUint(rest, 10, 32)
			if err != nil || asn == 0 {
				return nil, fmt.Errorf("%s %s: match: %q is not AS<number>", name, r.where, match)
			}
			if _, dup := o.byASN[uint32(asn)]; dup {
				return nil, fmt.Errorf("%s %s: match: AS%d is listed twice", name, r.where, asn)
			}
			o.byASN[uint32(asn)] = i
		} else {
			p, err := parsePrefix(match)
			if err != nil {
				return nil, fmt.Errorf("%s %s: match: %v", name, r.where, err)
			}
			if _, dup := o.cidrs.Get(p); dup {
				return nil, fmt.Errorf("%s %s: match: %s is listed twice", name, r.where, p)
			}
			o.cidrs.Insert(p, i)
		}
		o.list = append(o.list, ov)
	}
	return o, nil
}

// Types lists the network types, most specific use first.
var Types = []string{TypeBusiness, TypeEducation, TypeGovernment, TypeResidential, TypeMobile, TypeHosting, TypeUnknown}

// KnownType reports whether t is one of Types.
func KnownType(t string) bool {
	for _, k := range Types {
		if t == k {
			return true
		}
	}
	return false
}

func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Prefix{}, errors.New("is empty")
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		if p.Addr().Is4In6() || p.Addr().Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q: IPv4-mapped and zoned prefixes are not accepted", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR or an IP address", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// row is one record of a CSV or JSON data file, by column name.
type row struct {
	where  string // "line 3" or "entry 2"
	fields map[string]string
}

func (r row) get(k string) string { return r.fields[k] }

// readRows reads CSV (by header) or JSON (array of objects) into rows,
// checking that required columns exist and refusing unknown ones in JSON.
func readRows(name string, data []byte, required, optional []string) ([]row, error) {
	known := map[string]bool{}
	for _, k := range append(append([]string{}, required...), optional...) {
		known[k] = true
	}
	if strings.HasSuffix(strings.ToLower(name), ".json") {
		var entries []map[string]any
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		if err := dec.Decode(&entries); err != nil {
			return nil, fmt.Errorf("%s: not a JSON array of objects: %w", name, err)
		}
		rows := make([]row, 0, len(entries))
		for i, e := range entries {
			r := row{where: fmt.Sprintf("entry %d", i+1), fields: map[string]string{}}
			for k, v := range e {
				if !known[k] {
					return nil, fmt.Errorf("%s %s: unknown key %q", name, r.where, k)
				}
				switch x := v.(type) {
				case string:
					r.fields[k] = x
				case json.Number:
					r.fields[k] = x.String()
				case nil:
				default:
					return nil, fmt.Errorf("%s %s: %s: must be a string or number", name, r.where, k)
				}
			}
			for _, k := range required {
				if r.fields[k] == "" {
					return nil, fmt.Errorf("%s %s: %s: is required", name, r.where, k)
				}
			}
			rows = append(rows, r)
		}
		return rows, nil
	}
	cr := csv.NewReader(bytes.NewReader(data))
	cr.Comment = '#'
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err == io.EOF {
		return nil, fmt.Errorf("%s: empty file (a header line is required)", name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	cols := make([]string, len(header))
	for i, h := range header {
		cols[i] = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		if !known[cols[i]] {
			return nil, fmt.Errorf("%s line 1: unknown column %q (known: %s)", name, h, strings.Join(append(append([]string{}, required...), optional...), ", "))
		}
	}
	for _, k := range required {
		found := false
		for _, c := range cols {
			found = found || c == k
		}
		if !found {
			return nil, fmt.Errorf("%s line 1: column %q is required", name, k)
		}
	}
	var rows []row
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		line, _ := cr.FieldPos(0)
		r := row{where: fmt.Sprintf("line %d", line), fields: map[string]string{}}
		if len(rec) != len(cols) {
			return nil, fmt.Errorf("%s %s: %d fields, the header has %d", name, r.where, len(rec), len(cols))
		}
		for i, v := range rec {
			r.fields[cols[i]] = v
		}
		rows = append(rows, r)
	}
	return rows, nil
}
