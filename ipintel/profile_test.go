package ipintel

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestCompanyProfilesMatchData: every ASN of company_profiles.csv is in
// the ASN database, registered to the organisation the line profiles (a
// word of its registered name is in the profile's name or legal name), so
// that a mistyped ASN does not give a stranger's network a company.
func TestCompanyProfilesMatchData(t *testing.T) {
	orgs := realOrgsByASN(t)
	if len(curatedProfiles) < 100 {
		t.Errorf("%d profiled ASNs; the file lost lines", len(curatedProfiles))
	}
	generic := map[string]bool{"inc": true, "ltd": true, "llc": true, "company": true, "corporation": true, "group": true,
		"the": true, "and": true, "of": true, "services": true, "limited": true, "technology": true, "information": true,
		"international": true, "systems": true, "bank": true, "national": true, "association": true, "network": true,
		"global": true, "ag": true, "se": true, "sa": true, "plc": true, "co": true, "nv": true, "lp": true, "spa": true, "s": true, "p": true, "a": true}
	// Organisations renamed or bought since they registered their networks,
	// or registered under an abbreviation.
	renamed := map[string]string{"GlaxoSmithKline": "GSK", "West Publishing Corporation": "Thomson Reuters", "IBRD": "World Bank",
		"LVHN": "Lehigh Valley Health Network", "C I C E S E": "CICESE"}
	for asn, p := range curatedProfiles {
		names, ok := orgs[asn]
		if !ok {
			t.Errorf("%s: AS%d (%s) is not in the ASN database", CompanyProfilesFile, asn, p.Name)
			continue
		}
		words := tokens(p.Name+" "+p.LegalName, false)
		joined := strings.Join(words, "")
		match := false
		for _, org := range names {
			match = match || renamed[org] == p.Name
			for _, w := range tokens(org, false) {
				match = match || !generic[w] && (slices.Contains(words, w) || len(w) >= 4 && strings.Contains(joined, w))
			}
		}
		if !match {
			t.Errorf("%s: AS%d is registered to %q, which shares no word with %q / %q", CompanyProfilesFile, asn, names, p.Name, p.LegalName)
		}
	}
}

// TestProfiledNetworksAnswerWithTheirProfile is the acceptance check of the
// profiles: for an address of each profiled network that leadpipe counts
// as an organisation's, /api/v1/ip's answer (Explain) names the company by
// its profile: brand, domain, industry, headquarters. At least 90% must.
func TestProfiledNetworksAnswerWithTheirProfile(t *testing.T) {
	db := loadRealDB(t, realSources(t))
	tab := loadReal(t)
	// The first address of each profiled network, in one walk of the table.
	first := make(map[uint32]netip.Addr, len(curatedProfiles))
	for p, nw := range tab.All() {
		if _, profiled := curatedProfiles[nw.ASN]; profiled && !first[nw.ASN].IsValid() {
			first[nw.ASN] = p.Addr().Next()
		}
	}
	networks, answered := 0, 0
	var misses []string
	for asn, p := range curatedProfiles {
		addr, ok := first[asn]
		if !ok {
			continue
		}
		networks++
		a := db.Explain(addr, Signals{})
		c := a.Company
		if c != nil && c.Name == p.Name && c.Domain == p.Domain && c.Industry == p.Industry && c.Country == p.Country && c.City == p.City &&
			c.Sources["name"] != "" {
			answered++
		} else {
			misses = append(misses, a.ASOrg+" ("+a.NetworkType+")")
		}
	}
	t.Logf("%d of %d profiled networks answer with their profile; not: %s", answered, networks, strings.Join(misses, "; "))
	if networks < 100 || answered*10 < networks*9 {
		t.Errorf("%d of %d profiled networks answer with their profile, want 90%%", answered, networks)
	}
}

// bigPictureSample is a few companies in the layout of the BigPicture Free
// Company Dataset (its columns, its ways of writing a country and a
// size), written for this test.
const bigPictureSample = `name,domain,year_founded,industry,size,locality,country,linkedin_url,current_employee_estimate
Example Maschinenbau GmbH,www.example-maschinen.de,1921,machinery manufacturing,201-500,stuttgart,germany,linkedin.com/company/example-maschinen,310
Acme Widgets Ltd,https://acme-widgets.co.uk/about,1999,retail,11-50,leeds,united kingdom,linkedin.com/company/acme-widgets,24
No Domain Inc,,2001,software development,1-10,austin,united states,,3
Acme Duplicate,acme-widgets.co.uk,2010,banking,1-10,york,united kingdom,,2
SAP Somewhere,sap.com,1972,software development,10001+,walldorf,germany,linkedin.com/company/sap,100000
`

func TestDatasetReader(t *testing.T) {
	dir := t.TempDir()
	csvPath := filepath.Join(dir, "companies.csv")
	os.WriteFile(csvPath, []byte(bigPictureSample), 0o600)
	d, err := LoadDataset(csvPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() != 3 || d.Skipped() != 1 {
		t.Errorf("%d companies, %d skipped; want 3 and 1 (no domain)", d.Len(), d.Skipped())
	}
	p, ok := d.Lookup("example-maschinen.de")
	if !ok || p.Name != "Example Maschinenbau GmbH" || p.Country != "DE" || p.City != "stuttgart" || p.Size != "201-500" ||
		p.Founded != "1921" || p.LinkedIn != "https://linkedin.com/company/example-maschinen" || p.Sources["country"] != "dataset companies.csv" {
		t.Errorf("example-maschinen.de: %+v", p)
	}
	if p, _ := d.Lookup("acme-widgets.co.uk"); p == nil || p.Country != "GB" || p.Industry != "retail" {
		t.Errorf("acme-widgets.co.uk (a URL in the file; the first of two lines wins): %+v", p)
	}

	// The same companies as JSON Lines, with the domain in a column of
	// another name, mapped.
	jsonPath := filepath.Join(dir, "companies.jsonl")
	os.WriteFile(jsonPath, []byte(`{"name":"Example Maschinenbau GmbH","website_url":"example-maschinen.de","country":"DE","size":"201-500"}
{"name":"Broken","website_url":"not a domain"}
`), 0o600)
	cols, err := ParseColumnMap("domain=website_url")
	if err != nil {
		t.Fatal(err)
	}
	d, err = LoadDataset(jsonPath, cols)
	if err != nil || d.Len() != 1 || d.Skipped() != 1 {
		t.Fatalf("JSON Lines with a mapped column: %v, %d companies, %d skipped", err, d.Len(), d.Skipped())
	}
	for _, bad := range []string{"domain", "colour=x", "domain="} {
		if _, err := ParseColumnMap(bad); err == nil {
			t.Errorf("ParseColumnMap(%q) accepted", bad)
		}
	}
	if _, err := LoadDataset(csvPath, map[string][]string{"domain": {"website"}}); err == nil || !strings.Contains(err.Error(), "no domain column") {
		t.Errorf("a dataset without its domain column: %v", err)
	}
}

// TestProfilePrecedence: the company ranges file's record wins, and the
// dataset fills what it lacks; the curated profile of SAP keeps its own
// fields and takes the dataset's LinkedIn page; each field says where it
// came from.
func TestProfilePrecedence(t *testing.T) {
	src := realSources(t)
	dir := t.TempDir()
	src.Profiles = filepath.Join(dir, "bigpicture.csv")
	os.WriteFile(src.Profiles, []byte(bigPictureSample), 0o600)
	comcast := loadReal(t).PrefixesOf(7922)[0].Addr()
	src.Companies = filepath.Join(dir, "companies.csv")
	os.WriteFile(src.Companies, []byte("cidr,name,domain,city\n"+
		netip.PrefixFrom(comcast, 32).String()+",Example Maschinen (Werk 2),example-maschinen.de,Esslingen\n"), 0o600)
	db := loadRealDB(t, src)

	c := db.Explain(comcast, Signals{}).Company
	if c == nil || c.Name != "Example Maschinen (Werk 2)" || c.City != "Esslingen" || c.Country != "DE" || c.Size != "201-500" ||
		c.Sources["name"] != "company ranges file" || c.Sources["size"] != "dataset bigpicture.csv" {
		t.Errorf("company ranges record completed by the dataset: %+v", c)
	}
	sap := db.Explain(loadReal(t).PrefixesOf(212794)[0].Addr(), Signals{}).Company
	if sap == nil || sap.Name != "SAP" || sap.City != "Walldorf" || sap.LinkedIn != "https://linkedin.com/company/sap" ||
		!strings.HasPrefix(sap.Sources["name"], "leadpipe curated: ") || sap.Sources["linkedin"] != "dataset bigpicture.csv" {
		t.Errorf("curated SAP completed by the dataset: %+v", sap)
	}
	if p := db.ProfileOf(CompanyIDFor("", "SAP SE"), ""); p == nil || p.Logo != "https://sap.com/favicon.ico" || p.Sources["logo"] == "" {
		t.Errorf("SAP's logo, from its domain: %+v", p)
	}
	if p := db.ProfileOf("no-such-id", "acme-widgets.co.uk"); p == nil || p.Name != "Acme Widgets Ltd" {
		t.Errorf("ProfileOf by a domain the dataset knows: %+v", p)
	}
	r := Result{Type: TypeBusiness, CompanyID: "x", CompanyName: "ACME-WIDGETS-NET", CompanyDomain: "acme-widgets.co.uk"}
	db.AttachProfile(&r)
	if r.CompanyName != "Acme Widgets Ltd" || r.CompanyCountry != "GB" {
		t.Errorf("a reverse-DNS domain's profile: %+v", r)
	}
}

func TestRegistrableDomainAndCountry(t *testing.T) {
	for in, want := range map[string]string{"www.BMW.de": "bmw.de", "https://shop.example.co.uk/x?y": "example.co.uk", "sap.com.": "sap.com"} {
		if got, ok := RegistrableDomain(in); !ok || got != want {
			t.Errorf("RegistrableDomain(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, bad := range []string{"", "localhost", "not a domain", "co.uk"} {
		if got, ok := RegistrableDomain(bad); ok {
			t.Errorf("RegistrableDomain(%q) = %q, want refused", bad, got)
		}
	}
	for in, want := range map[string]string{"de": "DE", "germany": "DE", "United States": "US", "united kingdom": "GB", "czechia": "CZ"} {
		if got, ok := CountryCode(in); !ok || got != want {
			t.Errorf("CountryCode(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	if _, ok := CountryCode("atlantis"); ok {
		t.Error("CountryCode(atlantis) accepted")
	}
}

// loadRealDB builds a DB of src with the default classifier.
func loadRealDB(t *testing.T, src Sources) *DB {
	t.Helper()
	cls, err := DefaultClassifier()
	if err != nil {
		t.Fatal(err)
	}
	db, err := Load(src, cls)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// TestFallBackByAddressSpace: a network no curated entry and no name rule
// claims is a business candidate only when most of its space is legacy
// class B space in a few /8 blocks; else it is unknown, with the evidence
// saying why. Xerox (AS26662) holds legacy space in one block; Cogeco, a
// cable ISP named by its brand (AS7992), holds registry space; Radware, a
// security service (AS198949), holds legacy space scattered over 40 blocks.
func TestFallBackByAddressSpace(t *testing.T) {
	db := loadRealDB(t, realSources(t))
	for _, c := range []struct {
		asn  uint32
		want string
		says string
	}{{26662, TypeBusiness, "legacy space"}, {7992, TypeUnknown, "legacy space"}, {198949, TypeUnknown, "/8 blocks"}} {
		a := db.Explain(loadReal(t).PrefixesOf(c.asn)[0].Addr().Next(), Signals{})
		if a.NetworkType != c.want || a.Decided != SourceAddressSpace || !strings.Contains(a.Evidence[1].Says, c.says) {
			t.Errorf("AS%d %s: %s by %s, evidence %v; want %s by %s", c.asn, a.ASOrg, a.NetworkType, a.Decided, a.Evidence, c.want, SourceAddressSpace)
		}
		if (a.Company != nil) != (c.want == TypeBusiness) {
			t.Errorf("AS%d: company %v", c.asn, a.Company)
		}
		// The fall-back's business answer is a candidate the feed shows
		// only when asked.
		if r := db.Enrich(loadReal(t).PrefixesOf(c.asn)[0].Addr().Next()); r.Candidate() != (c.want == TypeBusiness) {
			t.Errorf("AS%d: candidate %v", c.asn, r.Candidate())
		}
	}
	// A profiled company's network is no candidate.
	if r := db.Enrich(loadReal(t).PrefixesOf(22390)[0].Addr().Next()); r.Type != TypeBusiness || r.Candidate() {
		t.Errorf("Xerox AS22390: %s, candidate %v; want business, no candidate", r.Type, r.Candidate())
	}
}

// TestLongTailSetStaysOutsideTheCuratedLists: the labelled long-tail set
// measures the name rules and the fall-back, so none of its networks may
// be in the curated type list or the curated profiles.
func TestLongTailSetStaysOutsideTheCuratedLists(t *testing.T) {
	f, err := os.Open("testdata/longtail.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cases, err := ReadEvalCases(f, "longtail.csv")
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 150 {
		t.Errorf("%d labelled cases, want 150 at least", len(cases))
	}
	c := mustDefaultClassifier(t)
	tab := loadReal(t)
	for _, lc := range cases {
		nw, ok := tab.Lookup(lc.IP)
		if !ok {
			t.Errorf("line %d: %s is in no announced network", lc.Line, lc.IP)
			continue
		}
		if _, listed := c.asns[nw.ASN]; listed {
			t.Errorf("line %d: AS%d is in %s", lc.Line, nw.ASN, ASNTypesFile)
		}
		if _, profiled := curatedProfiles[nw.ASN]; profiled {
			t.Errorf("line %d: AS%d is in %s", lc.Line, nw.ASN, CompanyProfilesFile)
		}
	}
}

// TestProfiledNetworkTypeFollowsIndustry: a profiled network is its
// organisation's own, of the kind its industry says, even where the name
// rules and the address space would have answered business.
func TestProfiledNetworkTypeFollowsIndustry(t *testing.T) {
	db := loadRealDB(t, realSources(t))
	tab := loadReal(t)
	for _, c := range []struct {
		asn  uint32
		want string
	}{{3923, TypeGovernment}, {62600, TypeEducation}, {22390, TypeBusiness}} {
		a := db.Explain(tab.PrefixesOf(c.asn)[0].Addr().Next(), Signals{})
		if a.NetworkType != c.want || a.Decided != "profiles" || a.Company == nil {
			t.Errorf("AS%d %s: %s by %s, company %v; want %s by profiles", c.asn, a.ASOrg, a.NetworkType, a.Decided, a.Company, c.want)
		}
	}
}
