package collector

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseHit(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	ok := func(body string) {
		t.Helper()
		h, err := ParseHit([]byte(body), now)
		if err != nil {
			t.Fatalf("ParseHit(%s): %v", body, err)
		}
		if h.ID == "" || h.ReceivedAt != now.UnixMilli() || h.Consent == "" {
			t.Errorf("ParseHit(%s) = %+v: id, received_at and consent must be filled", body, h)
		}
	}
	bad := func(body, field, msgPart string) {
		t.Helper()
		_, err := ParseHit([]byte(body), now)
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Fatalf("ParseHit(%s) = %v, want a FieldError on %s", body, err, field)
		}
		if fe.Field != field || !strings.Contains(fe.Msg, msgPart) {
			t.Errorf("ParseHit(%s) = %q, want field %s with %q", body, err, field, msgPart)
		}
	}
	ok(`{"site":"abc123","type":"pageview","url":"https://example.com/pricing"}`)
	ok(`{"site":"abc123","type":"engagement","url":"https://example.com/","engaged_ms":1200,"consent":"granted","cid":"1.2.abc","id":"h-1"}`)
	ok(`  {"site":"abc123","type":"pageview","url":"http://example.com","unknown_field":true}`)
	ok(`{"site":"abc123","type":"pageview","url":"https://example.com/","ts":` + itoa(now.Add(-time.Hour).UnixMilli()) + `}`)

	if h, err := ParseHit([]byte(`{"site":"abc","type":"pageview","url":"https://example.com/","held_ms":4500}`), now); err != nil ||
		h.TS != now.Add(-4500*time.Millisecond).UnixMilli() {
		t.Errorf("held_ms 4500: ts %d, %v; want 4.5 s before receipt", h.TS, err)
	}

	bad(``, "body", "JSON object")
	bad(`{"site":"abc","type":"pageview","url":"https://example.com/","held_ms":-1}`, "held_ms", "between")
	bad(`{"site":"abc","type":"pageview","url":"https://example.com/","held_ms":604800001}`, "held_ms", "between")
	bad(`[1,2]`, "body", "JSON object")
	bad(`{"site":`, "body", "invalid JSON")
	bad(`{"type":"pageview","url":"https://example.com/"}`, "site", "required")
	bad(`{"site":"ABC!","type":"pageview","url":"https://example.com/"}`, "site", "not a site id")
	bad(`{"site":123,"type":"pageview","url":"https://example.com/"}`, "site", "must be a string")
	bad(`{"site":"abc","url":"https://example.com/"}`, "type", "required")
	bad(`{"site":"abc","type":"click","url":"https://example.com/"}`, "type", "not pageview, engagement or identify")
	bad(`{"site":"abc","type":"pageview"}`, "url", "required")
	bad(`{"site":"abc","type":"pageview","url":"/relative"}`, "url", "absolute")
	bad(`{"site":"abc","type":"pageview","url":"javascript:alert(1)"}`, "url", "absolute")
	bad(`{"site":"abc","type":"pageview","url":"https://example.com/`+strings.Repeat("a", 3000)+`"}`, "url", "longer")
	bad(`{"site":"abc","type":"pageview","url":"https://example.com/","referrer":"`+strings.Repeat("r", 3000)+`"}`, "referrer", "longer")
	bad(`{"site":"abc","type":"pageview","url":"https://example.com/","cid":"has space"}`, "cid", "characters")
	bad(`{"site":"abc","type":"pageview","url":"https://example.com/","id":"`+strings.Repeat("x", 65)+`"}`, "id", "characters")
	bad(`{"site":"abc","type":"pageview","url":"https://example.com/","consent":"maybe"}`, "consent", "granted, denied or unknown")
	bad(`{"site":"abc","type":"pageview","url":"https://example.com/","ts":1}`, "ts", "last 7 days")
	bad(`{"site":"abc","type":"pageview","url":"https://example.com/","ts":"now"}`, "ts", "must be a number")
	bad(`{"site":"abc","type":"engagement","url":"https://example.com/"}`, "engaged_ms", "required")
	bad(`{"site":"abc","type":"engagement","url":"https://example.com/","engaged_ms":-5}`, "engaged_ms", "between")
}

func TestParseHitDeniedConsentDropsClientID(t *testing.T) {
	h, err := ParseHit([]byte(`{"site":"abc","type":"pageview","url":"https://example.com/","cid":"1.2.3","consent":"denied"}`), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if h.ClientID != "" {
		t.Errorf("consent=denied kept client id %q", h.ClientID)
	}
}

func TestParseHitTruncatesTitleOnRuneBoundary(t *testing.T) {
	title := strings.Repeat("é", 400) // 800 bytes
	h, err := ParseHit([]byte(`{"site":"abc","type":"pageview","url":"https://example.com/","title":"`+title+`"}`), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Title) > maxTitleLen || !strings.HasPrefix(title, h.Title) || len(h.Title)%2 != 0 {
		t.Errorf("title cut to %d bytes, not on a rune boundary within %d", len(h.Title), maxTitleLen)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// FuzzParseHit: whatever the body, ParseHit never panics; an accepted hit
// always satisfies the limits it promises (known type, absolute http(s) URL,
// bounded fields, id present, no client id after consent=denied).
func FuzzParseHit(f *testing.F) {
	for _, s := range []string{
		`{"site":"abc","type":"pageview","url":"https://example.com/"}`,
		`{"site":"abc","type":"engagement","url":"https://example.com/","engaged_ms":5,"consent":"denied","cid":"x"}`,
		`{"site":"abc","type":"pageview","url":"https://example.com/","title":"\u00e9\u00e9","ts":1764417600000}`,
		`{}`, `[]`, `null`, `{"site":null}`,
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		h, err := ParseHit(body, now)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field == "" {
				t.Fatalf("error %v does not name a field", err)
			}
			return
		}
		if h.Type != "pageview" && h.Type != "engagement" {
			t.Fatalf("accepted type %q", h.Type)
		}
		if h.ID == "" || len(h.ID) > maxIDLen || len(h.URL) > maxURLLen || len(h.Title) > maxTitleLen || len(h.Referrer) > maxURLLen {
			t.Fatalf("accepted hit breaks limits: %+v", h)
		}
		if h.Consent == "denied" && h.ClientID != "" {
			t.Fatalf("client id kept after consent=denied")
		}
	})
}
