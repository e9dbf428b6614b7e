package ipintel

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// ptrCases are PTR names as ISPs, carriers, clouds and organisations publish
// them, with what ClassifyPTR should make of them.
var ptrCases = []struct {
	name, typ, domain string
}{
	// Residential: the usual access-line naming of many countries' ISPs.
	{"c-73-15-2-1.hsd1.ca.comcast.net", TypeResidential, "comcast.net"},
	{"pool-100-2-3-4.nycmny.fios.verizon.net", TypeResidential, "verizon.net"},
	{"cpe-74-72-42-181.nyc.res.rr.com", TypeResidential, "rr.com"},
	{"108-220-33-12.lightspeed.sntcca.sbcglobal.net", TypeResidential, "sbcglobal.net"},
	{"d14-69-100-102.try.wideopenwest.com", TypeResidential, "wideopenwest.com"},
	{"dynamic-ip-adsl.example.net", TypeResidential, "example.net"},
	{"S0106a84e3fa1b2c3.vc.shawcable.net", TypeResidential, "shawcable.net"},
	{"bras-base-toroon1234w-grc-12-70-50-60-123.dsl.bell.ca", TypeResidential, "bell.ca"},
	{"p5B0A1C2D.dip0.t-ipconnect.de", TypeResidential, "t-ipconnect.de"},
	{"5ed2a3b4.cm-7-3c.dynamic.ziggo.nl", TypeResidential, "ziggo.nl"},
	{"host81-129-187-154.range81-129.btcentralplus.com", TypeResidential, "btcentralplus.com"},
	{"cpc123456-bagu10-2-0-cust123.1-3.cable.virginm.net", TypeResidential, "virginm.net"},
	{"lfbn-idf1-1-123-45.w90-2.abo.wanadoo.fr", TypeResidential, "wanadoo.fr"},
	{"82-64-12-34.subs.proxad.net", TypeResidential, "proxad.net"},
	{"95.red-83-45-67.dynamicip.rima-tde.net", TypeResidential, "rima-tde.net"},
	{"host-87-16-123-45.retail.telecomitalia.it", TypeResidential, "telecomitalia.it"},
	{"ppp-94-66-220-51.home.otenet.gr", TypeResidential, "otenet.gr"},
	{"78-0-123-45.adsl.net.t-com.hr", TypeResidential, "t-com.hr"},
	{"dsl-189-151-13-75-dyn.prod-infinitum.com.mx", TypeResidential, "prod-infinitum.com.mx"},
	{"201-13-45-67.dsl.telesp.net.br", TypeResidential, "telesp.net.br"},
	{"cpe-1-2-3-4.bpw1-r-961.woo.qld.bigpond.net.au", TypeResidential, "bigpond.net.au"},
	{"123-45-67-89.tpgi.com.au", TypeResidential, "tpgi.com.au"},
	{"softbank126012034056.bbtec.net", TypeResidential, "bbtec.net"},
	{"p1234567-ipngn1234.tokyo.ocn.ne.jp", TypeResidential, "ocn.ne.jp"},
	{"36-227-123-45.dynamic-ip.hinet.net", TypeResidential, "hinet.net"},
	{"123.45.67.89.broad.xm.fj.dynamic.163data.com.cn", TypeResidential, "163data.com.cn"},
	{"abts-north-dynamic-123.45.67.89.airtelbroadband.in", TypeResidential, "airtelbroadband.in"},
	{"user-5-173-12-34.play-internet.pl", TypeResidential, "play-internet.pl"},
	{"bb121-6-12-34.singnet.com.sg", TypeResidential, "singnet.com.sg"},
	{"2a02-8109-9b00-1234-5678-9abc-def0-1234.ip6.example.de", TypeResidential, "example.de"},
	{"ftth-185-12-34-56.fibre.example.se", TypeResidential, "example.se"},
	{"185-12-34-56.fiber.example.no", TypeResidential, "example.no"},

	// Mobile carriers.
	{"45.sub-174-205-17.myvzw.com", TypeMobile, "myvzw.com"},
	{"mobile-166-170-12-34.mycingular.net", TypeMobile, "mycingular.net"},
	{"188.29.12.34.threembb.co.uk", TypeMobile, "threembb.co.uk"},
	{"46-133-12-34.mobile.kyivstar.net", TypeMobile, "kyivstar.net"},
	{"ip-100-64-12-34.lte.example.net", TypeMobile, "example.net"},
	{"cust-185-12-34-56.4g.example.at", TypeMobile, "example.at"},

	// Clouds and hosting.
	{"ec2-3-4-5-6.compute-1.amazonaws.com", TypeHosting, "amazonaws.com"},
	{"ec2-54-12-34-56.eu-west-1.compute.amazonaws.com", TypeHosting, "amazonaws.com"},
	{"56.34.12.34.bc.googleusercontent.com", TypeHosting, "googleusercontent.com"},
	{"li1234-56.members.linode.com", TypeHosting, "linode.com"},
	{"static.12.34.56.78.clients.your-server.de", TypeHosting, "your-server.de"},
	{"vps-1a2b3c4d.vps.ovh.net", TypeHosting, "ovh.net"},
	{"vmi123456.contaboserver.net", TypeHosting, "contaboserver.net"},
	{"45.77.12.34.vultrusercontent.com", TypeHosting, "vultrusercontent.com"},
	{"ip-192-0-2-10.ip.secureserver.net", TypeHosting, "secureserver.net"},
	{"server-13-224-12-34.fra50.r.cloudfront.net", TypeHosting, "cloudfront.net"},
	{"srv-203-0-113-7.example-hosting.net", TypeHosting, "example-hosting.net"},
	{"vps12345.cloud.example.pl", TypeHosting, "example.pl"},

	// Businesses: named hosts, and static lines.
	{"mail.siemens.com", TypeBusiness, "siemens.com"},
	{"proxy.bbc.co.uk", TypeBusiness, "bbc.co.uk"},
	{"MAIL.SAP.COM.", TypeBusiness, "sap.com"},
	{"fw01.toyota.co.jp", TypeBusiness, "toyota.co.jp"},
	{"smtp-out.volkswagen.de", TypeBusiness, "volkswagen.de"},
	{"srv1.siemens.com", TypeBusiness, "siemens.com"},
	{"siemens.com", TypeBusiness, "siemens.com"},
	{"host-1-2-3-4.static.example.com", TypeBusiness, "example.com"},
	{"89-123-45-67.static.upcbusiness.at", TypeBusiness, "upcbusiness.at"},
	{"static-dsl-81-12-34-56.example.net", TypeBusiness, "example.net"},
	{"12-34-56-78.biz.example.ie", TypeBusiness, "example.ie"},

	// Education and government.
	{"vpn.cs.stanford.edu", TypeEducation, "stanford.edu"},
	{"eduroam-12-34.wlan.ox.ac.uk", TypeEducation, "ox.ac.uk"},
	{"dhcp-10-1-2-3.resnet.example.edu", TypeEducation, "example.edu"},
	{"pc12.u-tokyo.ac.jp", TypeEducation, "u-tokyo.ac.jp"},
	{"proxy.nih.gov", TypeGovernment, "nih.gov"},
	{"gateway.dwp.gov.uk", TypeGovernment, "dwp.gov.uk"},
	{"fw.army.mil", TypeGovernment, "army.mil"},
	{"proxy.finances.gouv.fr", TypeGovernment, "finances.gouv.fr"},

	// Garbage and names without a registrable domain.
	{"", TypeUnknown, ""},
	{".", TypeUnknown, ""},
	{"localhost", TypeUnknown, ""},
	{"desktop-1234.lan", TypeUnknown, ""},
	{"co.uk", TypeUnknown, ""},
	{"1.2.3.4", TypeUnknown, ""},
	{"foo..example.com", TypeUnknown, ""},
	{".example.com", TypeUnknown, ""},
	{"example.com..", TypeUnknown, ""},
	{"mail.example.com/", TypeUnknown, ""},
	{"bad label.example.com", TypeUnknown, ""},
	{"münchen.example.de", TypeUnknown, ""},
	{strings.Repeat("a", 64) + ".example.com", TypeUnknown, ""},
	{strings.Repeat("a.", 125) + "example.com", TypeUnknown, ""},
}

func TestClassifyPTR(t *testing.T) {
	for _, c := range ptrCases {
		got := ClassifyPTR(c.name)
		if got.Type != c.typ || got.Domain != c.domain {
			t.Errorf("ClassifyPTR(%q) = %s %q (%s); want %s %q", c.name, got.Type, got.Domain, got.Evidence.Says, c.typ, c.domain)
		}
		if got.Evidence.Source != ptrSource || got.Evidence.Says == "" {
			t.Errorf("ClassifyPTR(%q).Evidence = %+v; want a statement from %q", c.name, got.Evidence, ptrSource)
		}
		if (got.Type == TypeUnknown) != (got.Confidence == 0) {
			t.Errorf("ClassifyPTR(%q) = %s with confidence %v", c.name, got.Type, got.Confidence)
		}
	}
}

// TestClassifyPTRConfidence checks the order of strength the rules promise:
// an encoded address makes a line name surer, an encoded address alone is
// weak, and a name that encodes its own address is surer than one that
// merely looks encoded.
func TestClassifyPTRConfidence(t *testing.T) {
	conf := func(name string) float64 { t.Helper(); return ClassifyPTR(name).Confidence }
	less := func(a, b string) {
		t.Helper()
		if ca, cb := conf(a), conf(b); ca >= cb {
			t.Errorf("confidence of %q (%v) should be below %q (%v)", a, ca, b, cb)
		}
	}
	less("dynamic-ip-adsl.example.net", "dynamic-73-15-2-1.adsl.example.net")
	less("73-15-2-1.example.net", "dynamic-ip-adsl.example.net")
	less("host-1-2-3-4.static.example.com", "mail.siemens.com")
	less("vps.example.net", "vps-73-15-2-1.example.net")

	guess := ClassifyPTR("73-15-2-1.example.net")
	exact := classifyPTR("73-15-2-1.example.net", netip.MustParseAddr("73.15.2.1"))
	other := classifyPTR("73-15-2-1.example.net", netip.MustParseAddr("198.51.100.7"))
	if exact.Type != TypeResidential || exact.Confidence <= guess.Confidence || other != guess {
		t.Errorf("own address %+v, other address %+v, no address %+v", exact, other, guess)
	}
	// A name the heuristics cannot read as an address, confirmed by the
	// address it is the PTR of.
	if got := classifyPTR("x073015002001.example.net", netip.MustParseAddr("73.15.2.1")); got.Type != TypeResidential {
		t.Errorf("zero-padded own address: %+v", got)
	}
}

func TestClassifyPTREncodesAddr(t *testing.T) {
	ip := netip.MustParseAddr("91.10.28.45") // 5b0a1c2d
	for host, want := range map[string]bool{
		"p5b0a1c2d.dip0":      true,
		"91-10-28-45":         true,
		"45.28.10.91.pool":    true,
		"ip091010028045":      true,
		"dsl-091-010-028-045": true,
		"191-10-28-45":        false,
		"91-10-28-451":        false,
		"91-10-28":            false,
		"mail":                false,
	} {
		if got := encodesAddr(host, ip); got != want {
			t.Errorf("encodesAddr(%q, %s) = %v; want %v", host, ip, got, want)
		}
	}
	if encodesAddr("2001-db8--1", netip.MustParseAddr("2001:db8::1")) {
		t.Error("encodesAddr matched an IPv6 address; only IPv4 spellings are known")
	}
}

// FuzzClassifyPTR feeds arbitrary names to ClassifyPTR. Invariants:
//   - it never panics, and runs in time linear in the name (names over 253
//     bytes are refused before any scan);
//   - the type is one of the network type constants, the evidence comes from
//     "rdns", the confidence is in [0, 1] and 0 exactly when the type is
//     unknown;
//   - Domain, when set, is a suffix of the lower-cased name without its
//     trailing dot, starting at a label boundary; it is empty exactly when
//     the type is unknown;
//   - one trailing dot and ASCII case change nothing.
func FuzzClassifyPTR(f *testing.F) {
	for _, c := range ptrCases {
		f.Add(c.name)
	}
	f.Add("a")
	f.Add("-.-")
	f.Add("0-0-0-0.x.com")
	f.Add("xe-0-0-1-0.router.example.net")
	f.Add("ffffffff.example.net")
	f.Add("ſtatic.example.com")
	f.Add(strings.Repeat("1-", 126) + "a.com")
	f.Fuzz(func(t *testing.T, name string) {
		got := ClassifyPTR(name)
		known := []string{TypeBusiness, TypeEducation, TypeGovernment, TypeResidential, TypeMobile, TypeHosting, TypeUnknown}
		if !slices.Contains(known, got.Type) {
			t.Fatalf("ClassifyPTR(%q): unknown type %q", name, got.Type)
		}
		if got.Evidence.Source != ptrSource {
			t.Fatalf("ClassifyPTR(%q): evidence from %q", name, got.Evidence.Source)
		}
		if got.Confidence < 0 || got.Confidence > 1 || (got.Confidence == 0) != (got.Type == TypeUnknown) {
			t.Fatalf("ClassifyPTR(%q): %s with confidence %v", name, got.Type, got.Confidence)
		}
		if (got.Domain == "") != (got.Type == TypeUnknown) {
			t.Fatalf("ClassifyPTR(%q): %s with domain %q", name, got.Type, got.Domain)
		}
		lower := strings.ToLower(strings.TrimSuffix(name, "."))
		if got.Domain != "" && lower != got.Domain && !strings.HasSuffix(lower, "."+got.Domain) {
			t.Fatalf("ClassifyPTR(%q): domain %q is not a suffix of the name", name, got.Domain)
		}
		if !strings.HasSuffix(name, ".") {
			if dot := ClassifyPTR(name + "."); dot.Type != got.Type || dot.Domain != got.Domain {
				t.Fatalf("ClassifyPTR(%q) = %s %q but with a trailing dot %s %q", name, got.Type, got.Domain, dot.Type, dot.Domain)
			}
		}
		if asciiOnly(name) {
			if up := ClassifyPTR(strings.ToUpper(name)); up.Type != got.Type || up.Domain != got.Domain {
				t.Fatalf("ClassifyPTR(%q) = %s %q but upper-cased %s %q", name, got.Type, got.Domain, up.Type, up.Domain)
			}
		}
	})
}

func asciiOnly(s string) bool {
	for i := range len(s) {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
