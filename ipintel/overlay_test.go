package ipintel

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

func TestParseCompanies(t *testing.T) {
	csv := "cidr,name,domain,industry,size,country\n" +
		"# a comment\n" +
		"198.51.100.0/24,Acme Corp,ACME.example,Manufacturing,1000-5000,de\n" +
		"198.51.100.128/25,Acme Labs,labs.acme.example,Research,50-200,DE\n" +
		"2001:db8:1::/48,Example GmbH,,,,\n" +
		"203.0.113.7,Single Host Ltd,single.example,,,\n"
	c, err := ParseCompanies("companies.csv", []byte(csv))
	if err != nil {
		t.Fatal(err)
	}
	check := func(ip, wantName string) {
		t.Helper()
		rec, ok := c.Lookup(netip.MustParseAddr(ip))
		if wantName == "" {
			if ok {
				t.Errorf("%s matched %q, want nothing", ip, rec.Name)
			}
			return
		}
		if !ok || rec.Name != wantName {
			t.Errorf("%s → %v %v, want %s", ip, rec, ok, wantName)
		}
	}
	check("198.51.100.1", "Acme Corp")
	check("198.51.100.200", "Acme Labs") // the more specific range
	check("::ffff:198.51.100.2", "Acme Corp")
	check("2001:db8:1:2::3", "Example GmbH")
	check("203.0.113.7", "Single Host Ltd")
	check("203.0.113.8", "")
	rec, _ := c.Lookup(netip.MustParseAddr("198.51.100.1"))
	if rec.Domain != "acme.example" || rec.Country != "DE" || rec.ID != CompanyIDFor("acme.example", "") {
		t.Errorf("record not normalised: %+v", rec)
	}

	json := `[{"cidr":"198.51.100.0/24","name":"Acme Corp","domain":"acme.example"},{"cidr":"2001:db8::/32","name":"V6 Co"}]`
	cj, err := ParseCompanies("companies.json", []byte(json))
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := cj.Lookup(netip.MustParseAddr("198.51.100.9")); !ok || r.ID != rec.ID {
		t.Errorf("the same company from JSON has id %v, from CSV %s: ids must be stable across formats", r, rec.ID)
	}
}

func TestCompanyIDIsStable(t *testing.T) {
	if CompanyIDFor("Acme.Example ", "Acme Corp") != CompanyIDFor("acme.example", "ACME Corporation") {
		t.Error("the domain alone must decide the id")
	}
	if CompanyIDFor("", "SAP SE") != companyID("SAP  SE") {
		t.Error("without a domain the id must be the ASN data's id for that name")
	}
}

func TestParseOverlayErrors(t *testing.T) {
	for _, tc := range []struct{ file, data, want string }{
		{"c.csv", "", "c.csv: empty file"},
		{"c.csv", "name,domain\nAcme,acme.example\n", `c.csv line 1: column "cidr" is required`},
		{"c.csv", "cidr,name,colour\n1.2.3.0/24,Acme,red\n", `c.csv line 1: unknown column "colour"`},
		{"c.csv", "cidr,name\nnot-a-cidr,Acme\n", `c.csv line 2: cidr: "not-a-cidr" is not a CIDR`},
		{"c.csv", "cidr,name\n1.2.3.0/24,\n", "c.csv line 2: name: is empty"},
		{"c.csv", "cidr,name\n1.2.3.0/24,A\n1.2.3.0/24,B\n", "c.csv line 3: cidr: 1.2.3.0/24 is listed twice"},
		{"c.csv", "cidr,name,country\n1.2.3.0/24,A,Germany\n", `c.csv line 2: country: "GERMANY" is not a two-letter code`},
		{"c.csv", "cidr,name,domain\n1.2.3.0/24,A,https://a.example/\n", "c.csv line 2: domain:"},
		{"c.csv", "cidr,name\n::ffff:1.2.3.0/120,A\n", "IPv4-mapped"},
		{"c.json", `{"cidr":"1.2.3.0/24"}`, "c.json: not a JSON array of objects"},
		{"c.json", `[{"cidr":"1.2.3.0/24"}]`, "c.json entry 1: name: is required"},
		{"c.json", `[{"cidr":"1.2.3.0/24","name":"A","ceo":"x"}]`, `c.json entry 1: unknown key "ceo"`},
		{"c.json", `[{"cidr":"1.2.3.0/24","name":["A"]}]`, "c.json entry 1: name: must be a string or number"},
	} {
		_, err := ParseCompanies(tc.file, []byte(tc.data))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseCompanies(%s, %q) = %v, want %q", tc.file, tc.data, err, tc.want)
		}
	}
	for _, tc := range []struct{ file, data, want string }{
		{"o.csv", "match,type\nAS7922,residential\nAS7922,business\n", "o.csv line 3: match: AS7922 is listed twice"},
		{"o.csv", "match,type\nASX,residential\n", `o.csv line 2: match: "ASX" is not AS<number>`},
		{"o.csv", "match,type\n10.0.0.0/8,cable\n", `o.csv line 2: type: "cable" is not one of`},
		{"o.csv", "match,type\n10.0.0.0/8,\n", "o.csv line 2: an override needs a type or a company"},
		{"o.json", `[{"asn":"x","type":"business"}]`, `o.json entry 1: match: "ASx" is not AS<number>`},
	} {
		_, err := ParseOverrides(tc.file, []byte(tc.data))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseOverrides(%s, %q) = %v, want %q", tc.file, tc.data, err, tc.want)
		}
	}
}

func TestParseOverrides(t *testing.T) {
	o, err := ParseOverrides("o.json", []byte(`[
		{"asn":7922,"type":"business","note":"we sell to Comcast"},
		{"cidr":"192.0.2.0/24","type":"residential"},
		{"cidr":"198.51.100.0/24","company":"Acme Corp","domain":"acme.example"}]`))
	if err != nil {
		t.Fatal(err)
	}
	if ov, ok := o.ForASN(7922); !ok || ov.Type != TypeBusiness || ov.Match != "AS7922" {
		t.Errorf("ForASN(7922) = %+v %v", ov, ok)
	}
	if ov, ok := o.ForIP(netip.MustParseAddr("192.0.2.55")); !ok || ov.Type != TypeResidential {
		t.Errorf("ForIP = %+v %v", ov, ok)
	}
	if _, ok := o.ForIP(netip.MustParseAddr("192.0.3.1")); ok {
		t.Error("ForIP outside every override matched")
	}
}

// writeMMDB builds a small country database in MaxMind's or
// ip-location-db's layout.
func writeMMDB(t testing.TB, maxmindLayout bool, networks map[string]string) string {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "test-country", RecordSize: 24, IncludeReservedNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	for cidr, cc := range networks {
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		var v mmdbtype.Map
		if maxmindLayout {
			v = mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String(cc)}}
		} else {
			v = mmdbtype.Map{"country_code": mmdbtype.String(cc)}
		}
		if err := tree.Insert(n, v); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "country.mmdb")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := tree.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadGeo(t *testing.T) {
	for _, maxmind := range []bool{false, true} {
		path := writeMMDB(t, maxmind, map[string]string{"198.51.100.0/24": "DE", "2001:db8::/32": "FR", "203.0.113.0/25": "JP"})
		g, err := LoadGeo(path)
		if err != nil {
			t.Fatal(err)
		}
		for ip, want := range map[string]string{"198.51.100.7": "DE", "::ffff:198.51.100.7": "DE", "2001:db8::1": "FR", "203.0.113.1": "JP", "203.0.113.200": "", "8.8.8.8": ""} {
			if got := g.Country(netip.MustParseAddr(ip)); got != want {
				t.Errorf("layout maxmind=%v: Country(%s) = %q, want %q", maxmind, ip, got, want)
			}
		}
	}
	if _, err := LoadGeo(filepath.Join(t.TempDir(), "missing.mmdb")); err == nil {
		t.Error("LoadGeo of a missing file succeeded")
	}
	garbage := filepath.Join(t.TempDir(), "garbage.mmdb")
	os.WriteFile(garbage, []byte("this is not an mmdb file"), 0o600)
	if _, err := LoadGeo(garbage); err == nil || !strings.Contains(err.Error(), "garbage.mmdb") {
		t.Errorf("LoadGeo(garbage) = %v, want an error naming the file", err)
	}
	var nilGeo *Geo
	if nilGeo.Country(netip.MustParseAddr("1.1.1.1")) != "" {
		t.Error("a nil Geo must answer nothing")
	}
}

// FuzzParseCompanies: never panics; an accepted file's every range looks
// up to a record with a non-empty name and id.
func FuzzParseCompanies(f *testing.F) {
	f.Add("c.csv", "cidr,name,domain\n198.51.100.0/24,Acme,acme.example\n")
	f.Add("c.json", `[{"cidr":"2001:db8::/32","name":"V6","country":"FR"}]`)
	f.Add("c.csv", "cidr,name\n\"1.2.3.4\",\"A, B\"\n")
	f.Fuzz(func(t *testing.T, name, data string) {
		c, err := ParseCompanies(name, []byte(data))
		if err != nil {
			return
		}
		for _, r := range c.records {
			if r.Name == "" || r.ID == "" {
				t.Fatalf("accepted record without name or id: %+v", r)
			}
		}
	})
}

// FuzzParseOverrides: never panics; accepted overrides have a known type
// or a company.
func FuzzParseOverrides(f *testing.F) {
	f.Add("o.csv", "match,type,company\nAS7922,business,\n10.0.0.0/8,,Acme\n")
	f.Add("o.json", `[{"asn":1,"type":"hosting"},{"cidr":"::1/128","company":"X"}]`)
	f.Fuzz(func(t *testing.T, name, data string) {
		o, err := ParseOverrides(name, []byte(data))
		if err != nil {
			return
		}
		for _, ov := range o.list {
			if ov.Type == "" && ov.Company == "" || ov.Type != "" && !KnownType(ov.Type) {
				t.Fatalf("accepted override %+v", ov)
			}
		}
	})
}

// FuzzLoadGeo: whatever bytes an MMDB path holds, LoadGeo returns an error
// or a usable Geo, never panics.
func FuzzLoadGeo(f *testing.F) {
	good, _ := os.ReadFile(writeMMDB(f, false, map[string]string{"198.51.100.0/24": "DE"}))
	f.Add(good)
	f.Add([]byte("\xab\xcd\xefMaxMind.com"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "f.mmdb")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		g, err := LoadGeo(path)
		if err != nil {
			return
		}
		_ = g.Country(netip.MustParseAddr("198.51.100.1"))
	})
}

func TestLoadCities(t *testing.T) {
	for _, maxmind := range []bool{false, true} {
		tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "test-city", RecordSize: 24, IncludeReservedNetworks: true})
		if err != nil {
			t.Fatal(err)
		}
		_, n, _ := net.ParseCIDR("198.51.100.0/24")
		v := mmdbtype.Map{"city": mmdbtype.String("Walldorf"), "country_code": mmdbtype.String("DE")}
		if maxmind {
			v = mmdbtype.Map{"city": mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String("Walldorf"), "de": mmdbtype.String("Walldorf (Baden)")}}}
		}
		if err := tree.Insert(n, v); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "city.mmdb")
		f, _ := os.Create(path)
		tree.WriteTo(f)
		f.Close()
		c, err := LoadCities(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.City(netip.MustParseAddr("198.51.100.9")); got != "Walldorf" {
			t.Errorf("maxmind layout %v: City = %q, want Walldorf", maxmind, got)
		}
		if got := c.City(netip.MustParseAddr("203.0.113.1")); got != "" {
			t.Errorf("City outside every network = %q", got)
		}
		c.Close()
	}
	// A country database is not a city database.
	if _, err := LoadCities(writeMMDB(t, false, map[string]string{"198.51.100.0/24": "DE"})); err == nil || !strings.Contains(err.Error(), "no network with a city") {
		t.Errorf("LoadCities(country db) = %v", err)
	}
}
