package collector

import (
	"net/netip"
	"testing"
)

func TestVisitorIP(t *testing.T) {
	proxies, err := ParseTrustedProxies("10.0.0.0/8, 192.168.1.1 ,2001:db8::/32")
	if err != nil {
		t.Fatal(err)
	}
	check := func(peer, xff string, px []netip.Prefix, want string) {
		t.Helper()
		got := VisitorIP(netip.MustParseAddr(peer), []byte(xff), px)
		if got.String() != want {
			t.Errorf("VisitorIP(%s, %q) = %s, want %s", peer, xff, got, want)
		}
	}
	// No trusted proxies: the peer, whatever the header says.
	check("203.0.113.9", "198.51.100.1", nil, "203.0.113.9")
	// An untrusted peer's header is ignored.
	check("203.0.113.9", "198.51.100.1", proxies, "203.0.113.9")
	// A trusted peer: the right-most untrusted address.
	check("10.1.2.3", "198.51.100.1", proxies, "198.51.100.1")
	check("10.1.2.3", "6.6.6.6, 198.51.100.1, 10.9.9.9", proxies, "198.51.100.1")
	check("192.168.1.1", "198.51.100.1,192.168.1.1", proxies, "198.51.100.1")
	// Only proxies in the chain: the left-most proxy is the best we know.
	check("10.1.2.3", "10.0.0.5", proxies, "10.0.0.5")
	// A malformed entry stops the walk at the last trusted hop.
	check("10.1.2.3", "198.51.100.1, garbage", proxies, "10.1.2.3")
	// No header from a trusted peer: the peer.
	check("10.1.2.3", "", proxies, "10.1.2.3")
	// IPv6 and IPv4-mapped peers.
	check("2001:db8::1", "2a00:1450::1", proxies, "2a00:1450::1")
	check("::ffff:10.1.2.3", "198.51.100.7", proxies, "198.51.100.7")
}

func TestParseTrustedProxiesErrors(t *testing.T) {
	if _, err := ParseTrustedProxies("10.0.0.0/8,not-an-ip"); err == nil || err.Error() != `--collector.trusted-proxies: "not-an-ip" is not a CIDR or an IP address` {
		t.Errorf("got %v", err)
	}
}

func TestFirstLanguage(t *testing.T) {
	for in, want := range map[string]string{
		"":                        "",
		"de-CH,de;q=0.9,en;q=0.8": "de-CH",
		"en":                      "en",
		"*":                       "*",
		" fr-FR ; q=1":            "fr-FR",
		",":                       "und",
		"<script>":                "und",
	} {
		if got := firstLanguage([]byte(in)); got != want {
			t.Errorf("firstLanguage(%q) = %q, want %q", in, got, want)
		}
	}
}
