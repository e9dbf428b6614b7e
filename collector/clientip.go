package collector

import (
	"fmt"
	"net/netip"
	"strings"
)

// ParseTrustedProxies parses the --collector.trusted-proxies list: CIDRs or
// single addresses, comma-separated.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("--collector.trusted-proxies: %q is not a CIDR or an IP address", f)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

func trusted(proxies []netip.Prefix, a netip.Addr) bool {
	for _, p := range proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// VisitorIP applies the trusted-proxy rule: the connection's peer, unless the
// peer is a trusted proxy, in which case the right-most X-Forwarded-For
// address that is not itself a trusted proxy. Addresses a client put further
// left are never believed, since anyone can write them.
func VisitorIP(peer netip.Addr, xff []byte, proxies []netip.Prefix) netip.Addr {
	peer = peer.Unmap()
	if len(proxies) == 0 || !trusted(proxies, peer) || len(xff) == 0 {
		return peer
	}
	rest := string(xff)
	for rest != "" {
		i := strings.LastIndexByte(rest, ',')
		field := strings.TrimSpace(rest[i+1:])
		rest = rest[:max(i, 0)]
		a, err := netip.ParseAddr(field)
		if err != nil {
			// A malformed entry ends the chain we can believe.
			return peer
		}
		a = a.Unmap()
		if !trusted(proxies, a) {
			return a
		}
		peer = a
		if i < 0 {
			break
		}
	}
	return peer
}
