package ipintel

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"

	"github.com/gaissmai/bart"
)

// The file `leadpipe rir import` writes and every stage reads: the kept
// assignments, one line per prefix.

// SourceRegistry names the registry assignments' evidence and decisions.
const SourceRegistry = "registry"

// confRegistry is the confidence of a registry assignment's answer: below
// the operator's own files, above the name rules.
const confRegistry = 0.85

// RegistryFile is where `leadpipe rir import` writes the assignments it
// keeps, under a data dir; every stage on that data dir reads it.
func RegistryFile(dataDir string) string { return filepath.Join(dataDir, "ipdb", "registry.csv") }

// registryHeader is the registry file's header.
var registryHeader = []string{"cidr", "name", "country", "netname", "status", "org_id", "source"}

// WriteRegistry writes the kept assignments to path, one line per prefix,
// atomically: a stage loading the file meanwhile reads the old one whole.
func WriteRegistry(path string, kept []RegistryAssignment) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".registry-*.csv")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	w := csv.NewWriter(bufio.NewWriter(f))
	w.Write(registryHeader)
	for _, a := range kept {
		for _, p := range a.Prefixes() {
			w.Write([]string{p.String(), a.OrgName, a.Country, a.NetName, a.Status, a.OrgID, a.Source})
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// RegistryRecord is one imported assignment: the organisation a registry
// says holds the range.
type RegistryRecord struct {
	Prefix                         netip.Prefix
	Name, Country, NetName, Status string
	OrgID, Source                  string
	CompanyID                      string // companyID(Name), as the ASN data would give it
}

// Registry is the imported assignments, by longest prefix match.
type Registry struct {
	table bart.Table[*RegistryRecord]
	n     int
}

// Lookup returns the assignment containing ip.
func (r *Registry) Lookup(ip netip.Addr) (*RegistryRecord, bool) {
	if r == nil {
		return nil, false
	}
	return r.table.Lookup(ip)
}

// Len is the number of prefixes imported.
func (r *Registry) Len() int {
	if r == nil {
		return 0
	}
	return r.n
}

// LoadRegistry reads a file WriteRegistry wrote. A missing file is no
// registry, not an error: nothing was imported yet.
func LoadRegistry(path string) (*Registry, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cr := csv.NewReader(bufio.NewReader(f))
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err != nil || !slices.Equal(head, registryHeader) {
		return nil, fmt.Errorf("%s: not a registry file written by leadpipe rir import (header %v)", path, head)
	}
	reg := &Registry{}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			return reg, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		p, err := netip.ParsePrefix(rec[0])
		if err != nil || rec[1] == "" {
			return nil, fmt.Errorf("%s line %d: want a CIDR and a name", path, line)
		}
		reg.table.Insert(p, &RegistryRecord{Prefix: p, Name: rec[1], Country: rec[2], NetName: rec[3], Status: rec[4],
			OrgID: rec[5], Source: rec[6], CompanyID: companyID(rec[1])})
		reg.n++
	}
}
