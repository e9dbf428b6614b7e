package ipintel

import (
	"cmp"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
)

// EvalCase is one labelled address: what a person who looked the network
// up found it to be.
type EvalCase struct {
	IP     netip.Addr
	Type   string // expected network type
	Domain string // expected company domain, if known
	Line   int
}

// ReadEvalCases reads labelled cases: CSV with a header naming ip and
// expected_type (and optionally expected_domain); other columns (the
// label's source, a note) are kept for people and ignored here.
func ReadEvalCases(r io.Reader, name string) ([]EvalCase, error) {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: empty file (a header naming ip and expected_type is required)", name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.ToLower(strings.TrimSpace(h))] = i
	}
	ipCol, ok1 := col["ip"]
	typeCol, ok2 := col["expected_type"]
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("%s line 1: the header must name ip and expected_type (and optionally expected_domain)", name)
	}
	domainCol, hasDomain := col["expected_domain"]
	var out []EvalCase
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		line, _ := cr.FieldPos(0)
		get := func(i int) string {
			if i < len(rec) {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		ip, err := netip.ParseAddr(get(ipCol))
		if err != nil {
			return nil, fmt.Errorf("%s line %d: ip: %q is not an address", name, line, get(ipCol))
		}
		c := EvalCase{IP: ip, Type: strings.ToLower(get(typeCol)), Line: line}
		if !KnownType(c.Type) {
			return nil, fmt.Errorf("%s line %d: expected_type: %q is not one of %s", name, line, c.Type, strings.Join(Types, ", "))
		}
		if hasDomain {
			c.Domain = strings.ToLower(get(domainCol))
		}
		out = append(out, c)
	}
}

// EvalReport is how leadpipe's answers compare with labelled cases.
type EvalReport struct {
	Cases, Correct int
	// Organisations are the cases labelled business, education or
	// government; Identified those leadpipe shows as a company (of any of
	// the three types); Covered the organisations among them.
	Organisations, Identified, Covered int
	// Business verdicts, and those labelled business; of them, those the
	// feed shows by default (not candidates: Result.Candidate).
	BusinessVerdicts, BusinessRight         int
	FeedBusinessVerdicts, FeedBusinessRight int
	// FalseIdentifications are cases labelled residential, mobile, hosting
	// or unknown that leadpipe shows as a company; Others how many such
	// cases there are.
	FalseIdentifications, Others int
	// Domains: of the cases with an expected domain that leadpipe
	// identified, how many it gave that domain.
	DomainCases, DomainRight int
	// ByLayer counts cases and correct answers by the source that decided;
	// BusinessByLayer business verdicts and right ones; Named, by layer,
	// the cases shown as a company: how many, how many of them are
	// organisations (precision), how many are not (false identification).
	ByLayer, BusinessByLayer map[string][2]int
	Named                    map[string]LayerNamed
	Misses                   []EvalMiss
}

// LayerNamed counts one layer's named companies.
type LayerNamed struct{ Named, Organisations, Others int }

// EvalOptions change how an evaluation answers.
type EvalOptions struct {
	// Without leaves layers out, to measure what each adds: "override",
	// "companies", "registry", "rdap" (EvalLayers).
	Without string
	// RDAP, when set, asks the registries about every case an ISP's
	// space holds, waiting for each answer (RDAP.Ask).
	RDAP *RDAP
	Ctx  context.Context
}

// EvalLayers are the layers an evaluation can leave out: those of
// evidence beyond the ASN data, which an installation may or may not have.
var EvalLayers = []string{"override", "companies", SourceRegistry, SourceRDAP}

// skipOf is the layer mask an evaluation without layer uses.
func skipOf(layer string) layerMask {
	switch layer {
	case "override":
		return skipOverrides
	case "companies":
		return skipCompanies
	case SourceRegistry:
		return skipRegistry
	}
	return 0
}

// HasLayer reports whether db holds data for an evaluation layer (RDAP
// aside, which is not data of the DB).
func (db *DB) HasLayer(layer string) bool {
	switch layer {
	case "override":
		return db.overrides != nil
	case "companies":
		return db.companies != nil
	case SourceRegistry:
		return db.registry.Len() > 0
	}
	return false
}

// EvalMiss is a case leadpipe got wrong.
type EvalMiss struct {
	Case   EvalCase
	Answer Answer
}

// Ratio is n/d, 0 when d is 0.
func Ratio(n, d int) float64 {
	if d == 0 {
		return 0
	}
	return float64(n) / float64(d)
}

// Layers are the report's deciding layers, in order.
func (r *EvalReport) Layers() []string {
	var out []string
	for l := range r.ByLayer {
		out = append(out, l)
	}
	slices.Sort(out)
	return out
}

func isOrganisation(t string) bool {
	return t == TypeBusiness || t == TypeEducation || t == TypeGovernment
}

// Evaluate answers every case (without reverse DNS) and compares.
func (db *DB) Evaluate(cases []EvalCase, opt EvalOptions) EvalReport {
	rep := EvalReport{ByLayer: map[string][2]int{}, BusinessByLayer: map[string][2]int{}, Named: map[string]LayerNamed{}}
	skip := skipOf(opt.Without)
	ctx := cmp.Or(opt.Ctx, context.Background())
	for _, c := range cases {
		var sig Signals
		if opt.RDAP != nil && opt.Without != SourceRDAP {
			res := db.enrich(c.IP, skip)
			sig.RDAP = opt.RDAP.Ask(ctx, c.IP, &res)
		}
		a := db.explain(c.IP, sig, skip)
		rep.Cases++
		identified := a.Company != nil && isOrganisation(a.NetworkType)
		right := a.NetworkType == c.Type
		layer := a.Decided
		if layer == "" {
			layer = "none"
		}
		l := rep.ByLayer[layer]
		l[0]++
		if right {
			rep.Correct++
			l[1]++
		} else {
			rep.Misses = append(rep.Misses, EvalMiss{Case: c, Answer: a})
		}
		rep.ByLayer[layer] = l
		if isOrganisation(c.Type) {
			rep.Organisations++
			if identified {
				rep.Covered++
			}
		} else {
			rep.Others++
			if identified {
				rep.FalseIdentifications++
			}
		}
		if identified {
			rep.Identified++
			n := rep.Named[layer]
			n.Named++
			if isOrganisation(c.Type) {
				n.Organisations++
			} else {
				n.Others++
			}
			rep.Named[layer] = n
		}
		if a.NetworkType == TypeBusiness {
			b := rep.BusinessByLayer[layer]
			rep.BusinessVerdicts++
			b[0]++
			if c.Type == TypeBusiness {
				rep.BusinessRight++
				b[1]++
			}
			rep.BusinessByLayer[layer] = b
			if !isCandidate(a.NetworkType, a.Decided) {
				rep.FeedBusinessVerdicts++
				if c.Type == TypeBusiness {
					rep.FeedBusinessRight++
				}
			}
		}
		if c.Domain != "" && identified {
			rep.DomainCases++
			if a.Company.Domain == c.Domain {
				rep.DomainRight++
			}
		}
	}
	return rep
}
