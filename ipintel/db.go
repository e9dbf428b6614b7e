package ipintel

import (
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gaissmai/bart"
)

// Sources names the data files a DB is built from. Only ASNDir is required.
type Sources struct {
	// ASNDir holds asn-ipv4.csv and asn-ipv6.csv.
	ASNDir string
	// CountryMMDB is a MaxMind-format country (or city) database.
	CountryMMDB string
	// CityMMDB is a MaxMind-format city database (optional).
	CityMMDB string
	// Companies is the operator's company ranges file (CSV or JSON).
	Companies string
	// Overrides is the operator's corrections file (CSV or JSON).
	Overrides string
	// Profiles is an open company dataset, joined by domain, read with
	// ProfileColumns (see LoadDataset, ParseColumnMap).
	Profiles, ProfileColumns string
	// Registry is the file `leadpipe rir import` writes (RegistryFile);
	// absent until something was imported.
	Registry string
}

// Result is what the hot path needs to know about an IP. Enrich fills it
// without allocating.
type Result struct {
	// Known is false when no source knows the address at all.
	Known bool
	// Type is the network type; Confidence (0–1) how sure the deciding
	// Source is: override, companies, asn-list, name-rule, default, ptr.
	Type       string
	Confidence float64
	Source     string

	ASN   uint32
	ASOrg string

	CompanyID, CompanyName, CompanyDomain string
	Industry, Size                        string
	// Country is where the address is; CompanyCountry the company's
	// headquarters, when its profile says.
	Country, CompanyCountry string
	// Profile is the company's profile, when one is known.
	Profile *Profile
}

// Candidate reports whether the answer is a company candidate: a business
// only the address-space fall-back says it is (no curated entry, no name
// rule, no reverse DNS, no operator file). Measured on the held-out long
// tail, about half of those are companies (README, "On the long tail"), so
// the feed shows them only when asked.
func (r *Result) Candidate() bool { return isCandidate(r.Type, r.Source) }

// isCandidate: a business answer decided by the address-space fall-back.
func isCandidate(typ, decidedBy string) bool {
	return typ == TypeBusiness && decidedBy == SourceAddressSpace
}

// Identified reports whether the network is an organisation leadpipe shows
// as a company visit (not a carrier's customer, not a data centre).
func (r *Result) Identified() bool {
	switch r.Type {
	case TypeBusiness, TypeEducation, TypeGovernment:
		return r.CompanyID != ""
	}
	return false
}

// DB is one immutable snapshot of all IP data. Lookups on a DB are safe for
// concurrent use; a Store swaps whole DBs on reload.
type DB struct {
	asn     *Table
	classes []netClass // by network index of asn
	// cells answers network and country in one longest-prefix match: it
	// holds every prefix of the ASN table and the country prefixes that
	// change the answer, each with the network and country of its own
	// longest match in each source. The most specific cell containing an
	// address is at least as specific as the address's matches in either
	// source, so its values are those matches.
	// Value: (network index+1)<<16 | (country index+1); 0 = none.
	cells     bart.Table[uint64]
	geo       *Geo
	cities    *Cities
	companies *Companies
	overrides *Overrides
	registry  *Registry
	// profiles are the curated profiles by ASN, completed from the dataset;
	// byCompany the profiles by company id (curated and the company ranges
	// file's); dataset the open company dataset by domain.
	profiles  map[uint32]*Profile
	byCompany map[string]*Profile
	dataset   *Dataset
	// Loaded is when the snapshot was built; Sources what from.
	Loaded  time.Time
	Sources Sources
}

// netClass is a network's classification, computed once at load.
type netClass struct {
	Classification
	source string
}

// Load builds a DB from its sources. Any unreadable or malformed file is an
// error naming the file: nothing is loaded half.
func Load(src Sources, cls *Classifier) (*DB, error) {
	db := &DB{Sources: src, Loaded: time.Now()}
	var err error
	// The operator's small files first: a mistake in them fails at once.
	if src.Overrides != "" {
		if db.overrides, err = LoadOverrides(src.Overrides); err != nil {
			return nil, fmt.Errorf("overrides: %w", err)
		}
	}
	if src.Profiles != "" {
		cols, err := ParseColumnMap(src.ProfileColumns)
		if err != nil {
			return nil, fmt.Errorf("profile dataset columns: %w", err)
		}
		if db.dataset, err = LoadDataset(src.Profiles, cols); err != nil {
			return nil, fmt.Errorf("profile dataset: %w", err)
		}
	}
	if src.Companies != "" {
		if db.companies, err = LoadCompanies(src.Companies); err != nil {
			return nil, fmt.Errorf("company ranges: %w", err)
		}
	}
	if src.Registry != "" {
		if db.registry, err = LoadRegistry(src.Registry); err != nil {
			return nil, fmt.Errorf("registry assignments: %w", err)
		}
	}
	if db.asn, err = LoadASNDir(src.ASNDir); err != nil {
		return nil, fmt.Errorf("ASN data: %w", err)
	}
	db.classes = make([]netClass, len(db.asn.networks))
	space := spaceStatsOf(db.asn)
	for i, nw := range db.asn.networks {
		c := cls.Classify(nw.ASN, nw.Org)
		src := "default"
		if len(c.Evidence) > 0 {
			src = c.Evidence[0].Source
		}
		prof, profiled := curatedProfiles[nw.ASN]
		switch {
		case profiled && src != "asn-list" && c.Type != TypeEducation && c.Type != TypeGovernment:
			// A network the curated profiles name is its organisation's
			// own, whatever words its registered name uses ("FedEx Internet
			// Technologies"), of the kind its industry says; only the
			// curated type list says otherwise.
			typ := prof.orgType()
			c, src = Classification{Type: typ, Confidence: 0.9, Evidence: []Evidence{{Source: "profiles",
				Says: fmt.Sprintf("%s: AS%d is an organisation's own network (%s, industry %q)", typ, nw.ASN, CompanyProfilesFile, prof.Industry)}}}, "profiles"
		case src == SourceDefault && c.Type == TypeBusiness:
			c, src = fallBack(c, space[nw.ASN]), SourceAddressSpace
		}
		db.classes[i] = netClass{Classification: c, source: src}
	}
	if src.CountryMMDB != "" {
		if db.geo, err = LoadGeo(src.CountryMMDB); err != nil {
			return nil, fmt.Errorf("country database: %w", err)
		}
	}
	if src.CityMMDB != "" {
		if db.cities, err = LoadCities(src.CityMMDB); err != nil {
			return nil, fmt.Errorf("city database: %w", err)
		}
		// A replaced snapshot may still serve a batch in hand: its file is
		// closed only when nothing holds the snapshot any more.
		runtime.AddCleanup(db, func(c *Cities) { c.Close() }, db.cities)
	}
	db.combine()
	db.joinProfiles()
	return db, nil
}

// joinProfiles completes every profile from the dataset (by its domain)
// and indexes them by company id. The curated profiles are the package's
// own (data/company_profiles.csv), keyed by ASN; a company ranges record's
// profile is the record itself.
func (db *DB) joinProfiles() {
	db.profiles, db.byCompany = map[uint32]*Profile{}, map[string]*Profile{}
	complete := func(p *Profile) *Profile {
		if d, ok := db.dataset.Lookup(p.Domain); ok {
			return merged(p, d)
		}
		return p
	}
	for asn, p := range curatedProfiles {
		db.profiles[asn] = complete(p)
	}
	for _, nw := range db.asn.networks {
		if p, ok := db.profiles[nw.ASN]; ok {
			db.byCompany[nw.CompanyID] = p
		}
	}
	if db.companies != nil {
		for i := range db.companies.records {
			rec := &db.companies.records[i]
			rec.profile = complete(rec.Profile())
			db.byCompany[rec.ID] = rec.profile
		}
	}
}

// ProfileOf is the profile of a company the feed shows: by its id (the
// curated profiles and the company ranges file), else by its domain from
// the dataset; nil when none is known.
func (db *DB) ProfileOf(companyID, domain string) *Profile {
	if p, ok := db.byCompany[companyID]; ok {
		return p
	}
	if p, ok := db.dataset.Lookup(domain); ok {
		return p
	}
	return nil
}

// AttachProfile gives a result whose company has a domain but no profile
// (a domain reverse DNS found, say) the dataset's profile of that domain.
func (db *DB) AttachProfile(r *Result) {
	if r.Profile != nil || r.CompanyDomain == "" || db.dataset == nil {
		return
	}
	if p, ok := db.dataset.Lookup(r.CompanyDomain); ok {
		r.applyProfile(p)
	}
}

// applyProfile shows the company by its profile: its brand name, domain,
// industry, size and headquarters, where the profile has them.
func (r *Result) applyProfile(p *Profile) {
	r.Profile = p
	if p.Name != "" {
		r.CompanyName = p.Name
	}
	if p.Domain != "" {
		r.CompanyDomain = p.Domain
	}
	if p.Industry != "" {
		r.Industry = p.Industry
	}
	if p.Size != "" {
		r.Size = p.Size
	}
	r.CompanyCountry = p.Country
}

// combine builds cells from the ASN table and the country database.
func (db *DB) combine() {
	value := func(p netip.Prefix) uint64 {
		var v uint64
		if i, ok := db.asn.prefixes.LookupPrefix(p); ok {
			v |= uint64(i+1) << 16
		}
		if db.geo != nil {
			if c, ok := db.geo.countries.LookupPrefix(p); ok {
				v |= uint64(c + 1)
			}
		}
		return v
	}
	for p := range db.asn.prefixes.All() {
		db.cells.Insert(p, value(p))
	}
	// A country prefix needs a cell only where it says something its
	// enclosing cell does not: most countries are uniform across a network.
	// Sorted order visits enclosing prefixes first, so the enclosing cell is
	// final when a prefix is considered.
	if db.geo != nil {
		for p := range db.geo.countries.AllSorted() {
			v := value(p)
			if cur, ok := db.cells.LookupPrefix(p); !ok || cur != v {
				db.cells.Insert(p, v)
			}
		}
	}
}

// City returns the city of ip when a city database is loaded. It reads the
// database file and allocates, so the processor asks it only for hits it
// keeps; Enrich stays allocation-free.
func (db *DB) City(ip netip.Addr) string {
	// The city file is closed by a cleanup when db is unreachable: db must
	// stay reachable until the lookup has finished reading the file.
	defer runtime.KeepAlive(db)
	return db.cities.City(ip)
}

// Stats describes a DB for logs and /readyz.
func (db *DB) Stats() []any {
	v4, v6 := db.asn.Len()
	out := []any{"ipv4_prefixes", v4, "ipv6_prefixes", v6, "networks", len(db.asn.networks)}
	if db.geo != nil {
		out = append(out, "geo_networks", db.geo.Networks())
	}
	if db.companies != nil {
		out = append(out, "company_ranges", db.companies.Len())
	}
	if db.registry != nil {
		out = append(out, "registry_assignments", db.registry.Len())
	}
	if db.overrides != nil {
		out = append(out, "overrides", db.overrides.Len())
	}
	return out
}

// ASN is the underlying ASN table.
func (db *DB) ASN() *Table { return db.asn }

// Enrich answers type, company and country for ip. Precedence, strongest
// first: an operator override (CIDR, then ASN); the operator's company
// ranges; a registry assignment (`leadpipe rir import`); the network's
// classification (curated ASN list, then name rules, then the default).
// It does not allocate.
func (db *DB) Enrich(ip netip.Addr) Result { return db.enrich(ip, 0) }

// layerMask names layers an evaluation leaves out (EvalOptions.Without).
type layerMask uint8

const (
	skipOverrides layerMask = 1 << iota
	skipCompanies
	skipRegistry
)

// enrich is Enrich without the layers of skip.
func (db *DB) enrich(ip netip.Addr, skip layerMask) Result {
	ip = ip.Unmap()
	r := Result{Type: TypeUnknown}
	cell, _ := db.cells.Lookup(ip)
	if n := cell >> 16; n > 0 {
		nw, cl := &db.asn.networks[n-1], &db.classes[n-1]
		r = Result{Known: true, Type: cl.Type, Confidence: cl.Confidence, Source: cl.source,
			ASN: nw.ASN, ASOrg: nw.Org, CompanyID: nw.CompanyID, CompanyName: nw.Org}
		if p, ok := db.profiles[nw.ASN]; ok {
			r.applyProfile(p)
		}
	}
	if a, ok := db.registry.Lookup(ip); ok && skip&skipRegistry == 0 {
		// A registry assigned this range to an organisation (not a
		// person, not its ISP): the company is that organisation.
		r.Known = true
		r.CompanyID, r.CompanyName, r.CompanyDomain = a.CompanyID, a.Name, ""
		r.Industry, r.Size, r.CompanyCountry, r.Profile = "", "", "", nil
		r.Type, r.Confidence, r.Source = TypeBusiness, confRegistry, SourceRegistry
	}
	if c, ok := db.companies.Lookup(ip); ok && skip&skipCompanies == 0 {
		r.Known = true
		r.CompanyID, r.CompanyName, r.CompanyDomain = c.ID, c.Name, c.Domain
		r.Industry, r.Size, r.Profile = c.Industry, c.Size, nil
		r.applyProfile(c.profile)
		// The operator says this range is an organisation's own.
		r.Type, r.Confidence, r.Source = TypeBusiness, 0.9, "companies"
	}
	if ov, ok := db.overrides.ForASN(r.ASN); ok && r.ASN != 0 && skip&skipOverrides == 0 {
		applyOverride(&r, ov)
	}
	if ov, ok := db.overrides.ForIP(ip); ok && skip&skipOverrides == 0 {
		applyOverride(&r, ov)
	}
	if c := cell & 0xffff; c > 0 && r.Country == "" {
		r.Country = db.geo.codes[c-1]
	}
	return r
}

func applyOverride(r *Result, ov *Override) {
	r.Known = true
	if ov.Type != "" {
		r.Type, r.Confidence, r.Source = ov.Type, 1, "override"
	}
	if ov.Company != "" {
		r.CompanyName, r.CompanyDomain = ov.Company, ov.Domain
		r.CompanyID = CompanyIDFor(ov.Domain, ov.Company)
		r.Industry, r.Size, r.CompanyCountry, r.Profile = "", "", "", nil
	}
}

// ApplyPTR folds a reverse-DNS signal into a result: it decides the type
// only when it is more confident than what decided it so far, and never
// against the operator's own data.
func ApplyPTR(r *Result, sig PTRSignal) {
	if sig.Type == "" || sig.Type == TypeUnknown || r.Source == "override" || r.Source == "companies" || r.Source == SourceLearned {
		return
	}
	if r.Source == SourceRegistry {
		// A registry assignment outranks a PTR name; the name may still
		// give the company's domain.
		if sig.Type == TypeBusiness && r.CompanyDomain == "" {
			r.CompanyDomain = sig.Domain
		}
		return
	}
	if sig.Confidence > r.Confidence {
		r.Type, r.Confidence, r.Source = sig.Type, sig.Confidence, "rdns"
	}
	if r.Type == TypeBusiness && sig.Type == TypeBusiness && r.CompanyDomain == "" {
		r.CompanyDomain = sig.Domain
	}
}

// Signals are what the layers outside the IP data files know of an
// address: each nil when its layer is off or knows nothing yet.
type Signals struct {
	PTR     *PTRSignal      // reverse DNS
	RDAP    *RDAPAnswer     // the registry's answer for the network
	Learned *LearnedNetwork // the network learned from identifications
}

// Explain answers what leadpipe knows about ip with the evidence of every
// source: the shape of GET /api/v1/ip/{ip}. It decides as the processor
// does.
func (db *DB) Explain(ip netip.Addr, sig Signals) Answer { return db.explain(ip, sig, 0) }

// explain is Explain without the layers of skip.
func (db *DB) explain(ip netip.Addr, sig Signals, skip layerMask) Answer {
	ip = ip.Unmap()
	ptr, rdap := sig.PTR, sig.RDAP
	r := db.enrich(ip, skip)
	if sig.Learned != nil && !db.LearnedApplies(ip, sig.Learned) {
		sig.Learned = nil
	}
	if sig.Learned != nil {
		ApplyLearned(&r, sig.Learned)
	}
	// As the processor does: RDAP is asked only about what the layers
	// above leave open, and outranks reverse DNS.
	if rdap != nil && !worthAsking(&r) {
		rdap = nil
	}
	if ptr != nil {
		ApplyPTR(&r, *ptr)
	}
	if rdap != nil {
		ApplyRDAP(&r, rdap)
	}
	a := Answer{IP: ip.String(), NetworkType: r.Type, ASN: r.ASN, ASOrg: r.ASOrg, Country: r.Country,
		Confidence: r.Confidence, Evidence: []Evidence{}, Decided: r.Source}
	if i, ok := db.asn.prefixes.Lookup(ip); ok {
		nw := &db.asn.networks[i]
		a.Evidence = append(a.Evidence, Evidence{Source: "asn", Says: fmt.Sprintf("AS%d %s", nw.ASN, nw.Org)})
		a.Evidence = append(a.Evidence, db.classes[i].Evidence...)
	} else {
		a.Evidence = append(a.Evidence, Evidence{Source: "asn", Says: "no announced network contains this address"})
	}
	if rec, ok := db.registry.Lookup(ip); ok && skip&skipRegistry == 0 {
		a.Evidence = append(a.Evidence, Evidence{Source: SourceRegistry, Says: fmt.Sprintf("%s holds %s (%s, netname %s, %s) per %s",
			rec.Name, rec.Prefix, rec.Status, rec.NetName, rec.Country, rec.Source)})
	}
	if c, ok := db.companies.Lookup(ip); ok && skip&skipCompanies == 0 {
		a.Evidence = append(a.Evidence, Evidence{Source: "companies", Says: fmt.Sprintf("%s (%s) per the company ranges file", c.Name, c.Domain)})
	}
	if ov, ok := db.overrides.ForASN(r.ASN); ok && r.ASN != 0 && skip&skipOverrides == 0 {
		a.Evidence = append(a.Evidence, Evidence{Source: "override", Says: overrideSays(ov)})
	}
	if ov, ok := db.overrides.ForIP(ip); ok && skip&skipOverrides == 0 {
		a.Evidence = append(a.Evidence, Evidence{Source: "override", Says: overrideSays(ov)})
	}
	if sig.Learned != nil {
		a.Evidence = append(a.Evidence, Evidence{Source: SourceLearned, Says: sig.Learned.Says()})
	}
	if rdap != nil {
		a.Evidence = append(a.Evidence, Evidence{Source: SourceRDAP, Says: rdap.Says()})
	}
	if ptr != nil && ptr.Evidence.Source != "" {
		a.Evidence = append(a.Evidence, ptr.Evidence)
	}
	if c := db.geo.Country(ip); c != "" {
		a.Evidence = append(a.Evidence, Evidence{Source: "geo", Says: "country " + c})
	}
	if c := db.City(ip); c != "" {
		a.City = c
		a.Evidence = append(a.Evidence, Evidence{Source: "geo", Says: "city " + c})
	}
	db.AttachProfile(&r)
	if r.Identified() {
		a.Company = &Company{ID: r.CompanyID, Name: r.CompanyName, Domain: r.CompanyDomain,
			Industry: r.Industry, Size: r.Size, Country: r.CompanyCountry}
		if p := r.Profile; p != nil {
			a.Company.LegalName, a.Company.City, a.Company.LinkedIn, a.Company.Sources = p.LegalName, p.City, p.LinkedIn, p.Sources
		}
	}
	return a
}

func overrideSays(ov *Override) string {
	s := "operator override for " + ov.Match
	if ov.Type != "" {
		s += ": type " + ov.Type
	}
	if ov.Company != "" {
		s += ": company " + ov.Company
	}
	if ov.Note != "" {
		s += " (" + ov.Note + ")"
	}
	return s
}

// Store holds the current DB and replaces it on Reload: lookups go on
// against the old snapshot while a new one is built, and never see a mix.
type Store struct {
	cur    atomic.Pointer[DB]
	src    Sources
	cls    *Classifier
	log    *slog.Logger
	mu     sync.Mutex // one reload at a time
	loads  atomic.Int64
	failed atomic.Int64
}

// OpenStore loads the first DB; an error here stops the process.
func OpenStore(src Sources, log *slog.Logger) (*Store, error) {
	cls, err := DefaultClassifier()
	if err != nil {
		return nil, fmt.Errorf("BUG: embedded classification data: %w", err)
	}
	s := &Store{src: src, cls: cls, log: log}
	start := time.Now()
	db, err := Load(src, cls)
	if err != nil {
		return nil, err
	}
	s.cur.Store(db)
	s.loads.Add(1)
	log.Info("IP data loaded", append(db.Stats(), "took", time.Since(start).Round(time.Millisecond))...)
	return s, nil
}

// Classifier is the classifier the snapshots are built with.
func (s *Store) Classifier() *Classifier { return s.cls }

// DB returns the current snapshot. Callers hold it for one lookup or one
// batch, not longer.
func (s *Store) DB() *DB { return s.cur.Load() }

// Reload builds a new DB from the same sources and swaps it in. If any file
// is broken the error names it and the current DB stays.
func (s *Store) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	start := time.Now()
	db, err := Load(s.src, s.cls)
	if err != nil {
		s.failed.Add(1)
		s.log.Error("IP data reload failed; keeping the current data", "err", err)
		return err
	}
	s.cur.Store(db)
	s.loads.Add(1)
	s.log.Info("IP data reloaded", append(db.Stats(), "took", time.Since(start).Round(time.Millisecond))...)
	return nil
}

// Reloads counts successful and failed loads.
func (s *Store) Reloads() (ok, failed int64) { return s.loads.Load(), s.failed.Load() }
