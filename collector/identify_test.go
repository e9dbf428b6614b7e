package collector

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestEmailDomain(t *testing.T) {
	for _, tc := range []struct {
		email, domain string
		free, ok      bool
	}{
		{"Jane.Doe@Mail.Paper-Mill.co.uk", "paper-mill.co.uk", false, true},
		{"j@sales.example.com.", "example.com", false, true},
		{"someone@gmail.com", "gmail.com", true, true},
		{"someone@GMX.de", "gmx.de", true, true},
		{"a@mailinator.com", "mailinator.com", true, true}, // disposable
		{"no-at-sign", "", false, false},
		{"@example.com", "", false, false},
		{"a@localhost", "", false, false},
		{"a@exa mple.com", "", false, false},
		{"a@co.uk", "", false, false}, // a public suffix, not a domain
	} {
		d, free, ok := EmailDomain(tc.email)
		if d != tc.domain || free != tc.free || ok != tc.ok {
			t.Errorf("EmailDomain(%q) = %q, free %v, ok %v; want %q, %v, %v", tc.email, d, free, ok, tc.domain, tc.free, tc.ok)
		}
	}
}

// TestParseHitIdentify: an identify hit needs consent and a client id, and
// what goes on the queue holds the address's domain, never the address.
func TestParseHitIdentify(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	body := `{"site":"abc123","type":"identify","url":"https://example.com/contact","consent":"granted","cid":"c1","email":"jane.doe@sales.paper-mill.fi"}`
	h, err := ParseHit([]byte(body), now)
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := h.Encode()
	if h.Domain != "paper-mill.fi" || strings.Contains(string(enc), "jane") || strings.Contains(string(enc), "@") {
		t.Errorf("queued %s: want the domain paper-mill.fi and no trace of the address", enc)
	}
	free, err := ParseHit([]byte(strings.Replace(body, "sales.paper-mill.fi", "gmail.com", 1)), now)
	if err != nil || free.Domain != "" {
		t.Errorf("a free-mail address: %+v, %v; want no domain", free, err)
	}
	for _, tc := range []struct{ body, field string }{
		{strings.Replace(body, `"consent":"granted"`, `"consent":"unknown"`, 1), "consent"},
		{strings.Replace(body, `"cid":"c1"`, `"cid":""`, 1), "consent"},
		{strings.Replace(body, "jane.doe@sales.paper-mill.fi", "not an address", 1), "email"},
		{`{"site":"abc123","type":"pageview","url":"https://example.com/","email":"a@b.example"}`, "email"},
	} {
		var fe *FieldError
		if _, err := ParseHit([]byte(tc.body), now); !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("ParseHit(%s) = %v, want an error on %s", tc.body, err, tc.field)
		}
	}
}
