package ipintel

// Answer is everything leadpipe can say about one IP, with the evidence for
// it: the shape of GET /api/v1/ip/{ip} and `leadpipe ip lookup`.
type Answer struct {
	IP          string     `json:"ip"`
	NetworkType string     `json:"network_type"`
	Company     *Company   `json:"company"`
	ASN         uint32     `json:"asn"`
	ASOrg       string     `json:"as_org"`
	Country     string     `json:"country"`
	City        string     `json:"city,omitempty"`
	Evidence    []Evidence `json:"evidence"`
	Confidence  float64    `json:"confidence"`
	// Decided names the source that decided the network type: override,
	// companies, asn-list, name-rule, rdns or default.
	Decided string `json:"decided_by"`
}

// Company is the organisation an IP belongs to, with its profile: Name is
// the brand, Country and City its headquarters'. Sources names where each
// profile field came from.
type Company struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	LegalName string            `json:"legal_name"`
	Domain    string            `json:"domain"`
	Industry  string            `json:"industry"`
	Size      string            `json:"size"`
	Country   string            `json:"country"`
	City      string            `json:"city"`
	LinkedIn  string            `json:"linkedin"`
	Sources   map[string]string `json:"sources,omitempty"`
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
