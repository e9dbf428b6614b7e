package ipintel

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ptrFeatures is what scanPTRHost found left of the registrable domain: the
// first token of each kind (for the evidence) and whether an address is
// encoded.
type ptrFeatures struct {
	access, fibre, mobile, hosting, server, static string
	// encoded: the name spells out an address; exact: the very address it
	// is the PTR of.
	encoded, exact bool
	// numbered: the host part holds four digits or more, the way line names
	// do (p1234567-ipngn1234, s0106a84e3fa1b2c3) and ns1 or smtp2 do not.
	numbered bool
}

// scanPTRHost reads the labels left of the registrable domain once: words,
// letter and digit runs within them, and encoded addresses.
func scanPTRHost(host string) ptrFeatures {
	var f ptrFeatures
	var octets [4]int // the last numeric runs, for dotted/dashed IPv4
	run := 0          // how many consecutive numeric runs octets holds
	digits := 0
	for _, word := range strings.FieldsFunc(host, isPTRSeparator) {
		f.note(word)
		hex := hexEncodesIPv4(word)
		if hex {
			f.encoded = true
		}
		// Letter and digit runs inside the word: hsd1, host81, d14,
		// softbank126012034056.
		for i := 0; i < len(word); {
			j := i + 1
			digit := asciiDigit(word[i])
			for j < len(word) && asciiDigit(word[j]) == digit {
				j++
			}
			part := word[i:j]
			i = j
			if !digit {
				if part != word && !hex { // p5bb0a1c2 holds no "bb" line
					f.note(part)
				}
				run = 0
				continue
			}
			digits += len(part)
			switch {
			case len(part) <= 3:
				v, _ := strconv.Atoi(part)
				if v > 255 {
					run = 0
					continue
				}
				copy(octets[:], octets[1:])
				octets[3] = v
				if run++; run >= 4 && (octets[0] != 0 || octets[3] != 0) {
					// In order or reversed, an IPv4 address does not start
					// with 0: xe-0-0-1-0 is a router port, not an address.
					f.encoded = true
				}
			case len(part) == 12 && zeroPaddedIPv4(part):
				f.encoded = true
				run = 0
			default:
				run = 0
			}
		}
	}
	f.numbered = digits >= 4
	if !f.encoded {
		for label := range strings.SplitSeq(host, ".") {
			if dashedIPv6(label) {
				f.encoded = true
				break
			}
		}
	}
	return f
}

// note records the kind of one word or letter run, first of each kind only.
func (f *ptrFeatures) note(tok string) {
	var slot *string
	switch ptrTokens.kind(tok) {
	case tokAccess:
		slot = &f.access
	case tokFibre:
		slot = &f.fibre
	case tokMobile:
		slot = &f.mobile
	case tokHosting:
		slot = &f.hosting
	case tokServer:
		slot = &f.server
	case tokStatic:
		slot = &f.static
	default:
		return
	}
	if *slot == "" {
		*slot = tok
	}
}

func isPTRSeparator(r rune) bool { return r == '.' || r == '-' || r == '_' }

func asciiDigit(c byte) bool { return '0' <= c && c <= '9' }

func asciiHex(c byte) bool { return asciiDigit(c) || 'a' <= c && c <= 'f' }

// hexEncodesIPv4 reports whether word is an IPv4 address in hex behind a
// short letter prefix, the way Deutsche Telekom (p5B0A1C2D) or Ziggo
// (5ed2a3b4) name lines. The hex must mix digits and letters (so neither a
// word nor a plain number qualifies) and decode to a unicast address.
func hexEncodesIPv4(word string) bool {
	n := len(word)
	if n < 8 || n > 11 {
		return false
	}
	hex, prefix := word[n-8:], word[:n-8]
	for i := range len(prefix) {
		if c := prefix[i]; c < 'a' || c > 'z' {
			return false
		}
	}
	digits := 0
	for i := range len(hex) {
		if !asciiHex(hex[i]) {
			return false
		}
		if asciiDigit(hex[i]) {
			digits++
		}
	}
	if digits < 2 || digits == 8 {
		return false
	}
	first, _ := strconv.ParseUint(hex[:2], 16, 8)
	return first >= 1 && first < 224
}

// zeroPaddedIPv4 reports whether a 12-digit run is four zero-padded octets,
// as in softbank126012034056.
func zeroPaddedIPv4(digits string) bool {
	for i := 0; i < 12; i += 3 {
		v, _ := strconv.Atoi(digits[i : i+3])
		if v > 255 || i == 0 && v == 0 {
			return false
		}
	}
	return true
}

// dashedIPv6 reports whether a label is an IPv6 address with '-' for ':'
// (2a02-8109-9b00-1234-…): at least five groups of one to four hex digits,
// the first a full global-unicast group (2000::/3).
func dashedIPv6(label string) bool {
	groups := strings.Split(label, "-")
	if len(groups) < 5 || len(groups[0]) != 4 || (groups[0][0] != '2' && groups[0][0] != '3') {
		return false
	}
	for _, g := range groups {
		if g == "" || len(g) > 4 {
			return false
		}
		for i := range len(g) {
			if !asciiHex(g[i]) {
				return false
			}
		}
	}
	return true
}

// encodesAddr reports whether host spells out ip (IPv4 only): its octets in
// order or reversed, joined by '-', '.' or nothing, plain or zero-padded, or
// its eight hex digits.
func encodesAddr(host string, ip netip.Addr) bool {
	if !ip.Is4() {
		return false
	}
	a := ip.As4()
	if strings.Contains(host, fmt.Sprintf("%02x%02x%02x%02x", a[0], a[1], a[2], a[3])) {
		return true
	}
	for _, o := range [][4]byte{a, {a[3], a[2], a[1], a[0]}} {
		for _, format := range []string{"%d-%d-%d-%d", "%d.%d.%d.%d", "%03d-%03d-%03d-%03d", "%03d.%03d.%03d.%03d", "%03d%03d%03d%03d"} {
			if containsNumber(host, fmt.Sprintf(format, o[0], o[1], o[2], o[3])) {
				return true
			}
		}
	}
	return false
}

// containsNumber reports whether s contains sub with no digit right before or
// after it, so that 1-2-3-4 is not found in 11-2-3-45.
func containsNumber(s, sub string) bool {
	for off := 0; ; {
		i := strings.Index(s[off:], sub)
		if i < 0 {
			return false
		}
		start, end := off+i, off+i+len(sub)
		if (start == 0 || !asciiDigit(s[start-1])) && (end == len(s) || !asciiDigit(s[end])) {
			return true
		}
		off = start + 1
	}
}
