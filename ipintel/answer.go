package ipintel

import (
	"fmt"
	"net/netip"
)

// Answer is everything leadpipe can say about one IP, with the evidence for
// it: the shape of GET /api/v1/ip/{ip} and `leadpipe ip lookup`.
type Answer struct {
	IP          string     `json:"ip"`
	NetworkType string     `json:"network_type"`
	Company     *Company   `json:"company"`
	ASN         uint32     `json:"asn"`
	ASOrg       string     `json:"as_org"`
	Country     string     `json:"country"`
	Evidence    []Evidence `json:"evidence"`
	Confidence  float64    `json:"confidence"`
}

// Company is the organisation an IP belongs to.
type Company struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Domain string `json:"domain"`
}

// Evidence is one source's statement about an IP.
type Evidence struct {
	Source string `json:"source"`
	Says   string `json:"says"`
}

// Network types.
const (
	TypeBusiness    = "business"
	TypeEducation   = "education"
	TypeGovernment  = "government"
	TypeResidential = "residential"
	TypeMobile      = "mobile"
	TypeHosting     = "hosting"
	TypeUnknown     = "unknown"
)

// Explain answers what the table knows about ip. Until networks are
// classified, the type is unknown and the company is the AS organisation.
func (t *Table) Explain(ip netip.Addr) Answer {
	a := Answer{IP: ip.String(), NetworkType: TypeUnknown, Evidence: []Evidence{}}
	nw, ok := t.Lookup(ip)
	if !ok {
		a.Evidence = append(a.Evidence, Evidence{Source: "asn", Says: "no announced network contains this address"})
		return a
	}
	a.ASN, a.ASOrg = nw.ASN, nw.Org
	a.Company = &Company{ID: nw.CompanyID, Name: nw.Org}
	a.Evidence = append(a.Evidence, Evidence{Source: "asn", Says: fmt.Sprintf("AS%d %s", nw.ASN, nw.Org)})
	a.Confidence = 0.5
	return a
}
