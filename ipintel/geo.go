package ipintel

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/gaissmai/bart"
	"github.com/oschwald/maxminddb-golang/v2"
)

// Geo answers the country of an address. It is read once from a
// MaxMind-format database into a radix tree of two-letter codes, so the hot
// path costs one longest-prefix match and no allocation, instead of an MMDB
// walk that decodes a string per lookup.
type Geo struct {
	countries bart.Table[uint16] // index into codes
	codes     []string
	networks  int
}

// geoRecord reads both layouts in use: ip-location-db's {country_code} and
// MaxMind's GeoLite2/GeoIP2 {country:{iso_code}}.
type geoRecord struct {
	CountryCode string `maxminddb:"country_code"`
	Country     struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
}

// LoadGeo reads a country (or city) MMDB file.
func LoadGeo(path string) (*Geo, error) {
	r, err := maxminddb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	defer r.Close()
	g := &Geo{}
	index := map[string]uint16{}
	for res := range r.Networks() {
		var rec geoRecord
		if err := res.Err(); err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		if err := res.Decode(&rec); err != nil {
			return nil, fmt.Errorf("reading %s at %s: %w", path, res.Prefix(), err)
		}
		code := rec.CountryCode
		if code == "" {
			code = rec.Country.ISOCode
		}
		if code == "" {
			continue
		}
		if len(code) != 2 {
			return nil, fmt.Errorf("reading %s at %s: country %q is not a two-letter code", path, res.Prefix(), code)
		}
		i, ok := index[code]
		if !ok {
			if len(g.codes) == 1<<16-1 {
				return nil, fmt.Errorf("reading %s: too many distinct countries", path)
			}
			i = uint16(len(g.codes))
			g.codes = append(g.codes, code)
			index[code] = i
		}
		p := res.Prefix()
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		g.countries.Insert(p.Masked(), i)
		g.networks++
	}
	if g.networks == 0 {
		return nil, fmt.Errorf("reading %s: %w", path, errNoCountries)
	}
	return g, nil
}

var errNoCountries = errors.New("no network with a country code (is this a country or city database?)")

// Country returns the ISO 3166-1 alpha-2 code of ip's country, or "".
func (g *Geo) Country(ip netip.Addr) string {
	if g == nil {
		return ""
	}
	i, ok := g.countries.Lookup(ip.Unmap())
	if !ok {
		return ""
	}
	return g.codes[i]
}

// Networks is how many networks the database assigned a country.
func (g *Geo) Networks() int { return g.networks }

// Cities answers the city of an address from a MaxMind-format city
// database (GeoLite2-City layout, or ip-location-db's dbip-city). Unlike
// countries, cities are looked up in the file on demand: there are too many
// to preload, and only the hits that are kept need one.
type Cities struct {
	r *maxminddb.Reader
}

// cityRecord reads both layouts: MaxMind's {city:{names:{en}}} and
// ip-location-db's {city:"name"}.
type cityRecord struct {
	City any `maxminddb:"city"`
}

func (r *cityRecord) name() string {
	switch c := r.City.(type) {
	case string:
		return c
	case map[string]any:
		if names, ok := c["names"].(map[string]any); ok {
			if en, ok := names["en"].(string); ok {
				return en
			}
		}
	}
	return ""
}

// LoadCities opens a city database and checks that it has cities.
func LoadCities(path string) (*Cities, error) {
	r, err := maxminddb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	for res := range r.Networks() {
		var rec cityRecord
		if err := res.Err(); err != nil {
			r.Close()
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		if res.Decode(&rec) == nil && rec.name() != "" {
			return &Cities{r: r}, nil
		}
	}
	r.Close()
	return nil, fmt.Errorf("reading %s: no network with a city (is this a city database?)", path)
}

// City returns the English name of ip's city, or "".
func (c *Cities) City(ip netip.Addr) string {
	if c == nil {
		return ""
	}
	var rec cityRecord
	if err := c.r.Lookup(ip.Unmap()).Decode(&rec); err != nil {
		return ""
	}
	return rec.name()
}

// Close releases the database file.
func (c *Cities) Close() error {
	if c == nil {
		return nil
	}
	return c.r.Close()
}
