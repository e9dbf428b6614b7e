package ipintel

import (
	"bytes"
	"compress/gzip"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
)

// TestRegistryImportKeepsCompanyAssignments reads networks and their
// holders from two files (holders after networks, one file gzipped) and
// keeps only the assignments that are a company's own: the paper mill's
// IPv4 /28 and IPv6 /48; not the ISP's own customer block, a dynamic pool,
// a person's assignment, a hoster's, one larger than a /22, an allocation
// or a malformed range — each counted by its reason.
func TestRegistryImportKeepsCompanyAssignments(t *testing.T) {
	networks, err := os.ReadFile("testdata/rpsl/networks.db")
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(networks)
	zw.Close()
	orgs, err := os.Open("testdata/rpsl/organisations.db")
	if err != nil {
		t.Fatal(err)
	}
	defer orgs.Close()

	ri := NewRegistryImport(mustDefaultClassifier(t))
	if err := ri.Read(&gz, "networks.db.gz"); err != nil {
		t.Fatal(err)
	}
	if err := ri.Read(orgs, "organisations.db"); err != nil {
		t.Fatal(err)
	}
	kept, stats := ri.Result()
	var got []string
	for _, a := range kept {
		for _, p := range a.Prefixes() {
			got = append(got, p.String()+" "+a.OrgName+" "+a.NetName+" "+a.Country)
		}
	}
	want := []string{"198.51.100.0/28 Example Paper Mill Oy PAPERMILL-NET FI", "2001:db8:1234::/48 Example Paper Mill Oy PAPERMILL-V6 FI"}
	if !slices.Equal(got, want) {
		t.Errorf("kept:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if kept[0].Descr != "Example Paper Mill Oy head office, Kotka" || kept[0].Source != "networks.db.gz" {
		t.Errorf("first assignment: descr %q, source %q", kept[0].Descr, kept[0].Source)
	}
	wantSkipped := map[string]int{SkipNotAssignment: 2, SkipISP: 1, SkipPool: 1, SkipNoOrg: 1, SkipProvider: 1, SkipTooLarge: 1, SkipBadRange: 1}
	if stats.Networks != 10 || stats.Companies != 2 || !maps.Equal(stats.Skipped, wantSkipped) {
		t.Errorf("stats %+v; want 10 networks, 2 companies, skipped %v", stats, wantSkipped)
	}
	if stats.Networks != stats.Companies+stats.SkippedTotal() {
		t.Errorf("networks %d != companies %d + skipped %d", stats.Networks, stats.Companies, stats.SkippedTotal())
	}
}

// TestReadRPSLRejectsNonsense: a line that is no attribute, or a
// continuation outside an object, is an error naming the file and line.
func TestReadRPSLRejectsNonsense(t *testing.T) {
	for in, want := range map[string]string{
		"inetnum: 192.0.2.0 - 192.0.2.255\nthis is not rpsl\n": "x.db line 2",
		"\n  continued\n":                        "x.db line 2",
		"inetnum 192.0.2.0\n":                    "x.db line 1",
		"organisation: ORG-1\norg-name: A\n\n\n": "",
	} {
		err := ReadRPSL(strings.NewReader(in), "x.db", func(*RPSLObject) error { return nil })
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%q: error %v, want %q", in, err, want)
		}
	}
}

// TestPoolWords: pools are named so; companies whose names share a word
// with a pool are not.
func TestPoolWords(t *testing.T) {
	for s, want := range map[string]bool{
		"DYN-POOL-12": true, "Dynamic pool for business DSL lines": true, "EXAMPLE-FTTH-CUSTOMERS": true,
		"Private customers, Kotka": true, "Example Private Limited": false, "Home Depot": false,
		"Example Cable Works Oy": false, "CUSTOMER-NET": false, "PAPERMILL-NET": false,
	} {
		if got := hasPoolWord(s); got != want {
			t.Errorf("hasPoolWord(%q) = %v, want %v", s, got, want)
		}
	}
}

// TestRegistryImportByCountry keeps only the assignments of the countries
// asked for, counting the others.
func TestRegistryImportByCountry(t *testing.T) {
	ri := NewRegistryImport(nil)
	ri.Countries = map[string]bool{"DE": true}
	if err := ri.ReadFiles("testdata/rpsl/networks.db", "testdata/rpsl/organisations.db"); err != nil {
		t.Fatal(err)
	}
	kept, stats := ri.Result()
	// Of the Finnish paper mill's two assignments and the other Finnish
	// ones, none is kept; the German /21 is too large.
	if len(kept) != 0 || stats.Skipped[SkipCountry] != 6 || stats.Networks != stats.Companies+stats.SkippedTotal() {
		t.Errorf("kept %v, stats %+v; want none kept, 6 of another country", kept, stats)
	}
}

// TestRegistryImportReadsARINBulk reads ARIN's bulk WHOIS layout: the
// paper company's reassignment and direct assignment and a business
// customer's simple reassignment are kept; the ISP's allocation and a
// reallocation are not assignments, a "Private Customer" is a pool, the
// ISP's reassignment to itself is the ISP's. ARIN networks take their
// holder's country.
func TestRegistryImportReadsARINBulk(t *testing.T) {
	ri := NewRegistryImport(nil)
	if err := ri.ReadFiles("testdata/rpsl/arin.txt"); err != nil {
		t.Fatal(err)
	}
	kept, stats := ri.Result()
	var got []string
	for _, a := range kept {
		got = append(got, a.Prefixes()[0].String()+" "+a.OrgName+" "+a.Country)
	}
	want := []string{"203.0.113.0/28 Example Paper Company US", "203.0.113.128/26 Harbour Logistics LLC US",
		"2001:db8:abcd::/48 Example Paper Company US"}
	if !slices.Equal(got, want) {
		t.Errorf("kept %q, want %q", got, want)
	}
	if stats.Networks != 7 || stats.Skipped[SkipNotAssignment] != 2 || stats.Skipped[SkipPool] != 1 || stats.Skipped[SkipISP] != 1 {
		t.Errorf("stats %+v", stats)
	}
	ri = NewRegistryImport(nil)
	ri.Countries = map[string]bool{"FI": true}
	if err := ri.ReadFiles("testdata/rpsl/arin.txt"); err != nil {
		t.Fatal(err)
	}
	if kept, stats := ri.Result(); len(kept) != 0 || stats.Skipped[SkipCountry] != 5 {
		t.Errorf("--countries FI: kept %d, skipped %v; want none kept, the five assignments with holders elsewhere", len(kept), stats.Skipped)
	}
}
