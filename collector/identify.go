package collector

import (
	"bufio"
	_ "embed"
	"strings"
	"sync"

	"golang.org/x/net/publicsuffix"
)

// freeMailFile is npm free-email-domains' list of free and disposable
// e-mail providers (scripts/update-free-email-domains.sh).
//
//go:embed data/free_email_domains.txt
var freeMailFile string

// freeMail is the list as a set, built on first use.
var freeMail = sync.OnceValue(func() map[string]bool {
	set := make(map[string]bool, 16384)
	sc := bufio.NewScanner(strings.NewReader(freeMailFile))
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			set[line] = true
		}
	}
	return set
})

// EmailDomain returns the registrable domain of an e-mail address, by the
// public suffix list ("jane@mail.paper-mill.co.uk" → "paper-mill.co.uk"),
// and whether it is a free or disposable mail provider's, which says
// nothing about where the visitor works. ok is false for what is not an
// address.
func EmailDomain(email string) (domain string, free, ok bool) {
	at := strings.LastIndexByte(email, '@')
	if at < 1 || len(email) > 254 {
		return "", false, false
	}
	host := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(email[at+1:])), ".")
	if !hostname(host) {
		return "", false, false
	}
	d, err := publicsuffix.EffectiveTLDPlusOne(host)
	if err != nil {
		return "", false, false
	}
	return d, freeMail()[host] || freeMail()[d], true
}

// hostname reports whether s is an ASCII host name with at least two
// labels (an internationalised one in its xn-- form).
func hostname(s string) bool {
	if len(s) == 0 || len(s) > 253 || !strings.Contains(s, ".") {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
