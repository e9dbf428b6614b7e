package collector

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"time"
	"unicode/utf8"

	"github.com/leadpipe/leadpipe/internal/bus"
)

// Limits of a hit's fields. Over-long titles are cut (pages have long
// titles); anything else over its limit is refused.
const (
	maxSiteLen   = 32
	maxIDLen     = 64
	maxURLLen    = 2048
	maxTitleLen  = 512
	maxEngagedMS = 24 * 60 * 60 * 1000
	maxPastTS    = 7 * 24 * time.Hour
	maxFutureTS  = time.Hour
)

// FieldError is a hit refused because of one field; the collector answers
// 400 with it.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// hitInput is the JSON a tracker posts (see CONTRACT.md).
type hitInput struct {
	Site     string `json:"site"`
	Type     string `json:"type"`
	URL      string `json:"url"`
	Referrer string `json:"referrer"`
	Title    string `json:"title"`
	CID      string `json:"cid"`
	ID       string `json:"id"`
	TS       *int64 `json:"ts"`
	// HeldMS is how long the tracker held the hit before sending it (the
	// landing page's hits wait for a consent answer): the hit happened
	// that long before it was received. Unlike ts, it needs no clock of
	// the browser's to be right. Ignored with ts.
	HeldMS    *int64 `json:"held_ms"`
	EngagedMS *int64 `json:"engaged_ms"`
	Consent   string `json:"consent"`
	// Email is an identify hit's: the address the visitor gave. Only its
	// registrable domain goes further.
	Email string `json:"email"`
}

// ParseHit decodes and validates one hit body. It does not know the visitor
// IP or whether the site exists; the caller adds and checks those.
func ParseHit(body []byte, now time.Time) (bus.Hit, error) {
	var in hitInput
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return bus.Hit{}, fieldErr("body", "must be a JSON object")
	}
	if err := json.Unmarshal(body, &in); err != nil {
		if te, ok := err.(*json.UnmarshalTypeError); ok && te.Field != "" {
			return bus.Hit{}, fieldErr(te.Field, "must be a %s", jsonKind(te.Type))
		}
		return bus.Hit{}, fieldErr("body", "invalid JSON: %v", err)
	}
	h := bus.Hit{Site: in.Site, Type: in.Type, URL: in.URL, Referrer: in.Referrer, ClientID: in.CID, ID: in.ID, Consent: in.Consent}

	if h.Site == "" {
		return h, fieldErr("site", "is required")
	}
	if len(h.Site) > maxSiteLen || !isToken(h.Site, false) {
		return h, fieldErr("site", "is not a site id")
	}
	switch h.Type {
	case "pageview", "engagement", "identify":
	case "":
		return h, fieldErr("type", "is required (pageview, engagement or identify)")
	default:
		return h, fieldErr("type", "%q is not pageview, engagement or identify", truncate(h.Type, 32))
	}
	if h.URL == "" {
		return h, fieldErr("url", "is required")
	}
	if len(h.URL) > maxURLLen {
		return h, fieldErr("url", "is longer than %d bytes", maxURLLen)
	}
	if u, err := url.Parse(h.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return h, fieldErr("url", "is not an absolute http(s) URL")
	}
	if len(h.Referrer) > maxURLLen {
		return h, fieldErr("referrer", "is longer than %d bytes", maxURLLen)
	}
	h.Title = truncate(in.Title, maxTitleLen)
	if len(h.ClientID) > maxIDLen || !isToken(h.ClientID, true) {
		return h, fieldErr("cid", "must be at most %d characters of A-Z a-z 0-9 . _ -", maxIDLen)
	}
	if h.ID == "" {
		h.ID = NewHitID()
	} else if len(h.ID) > maxIDLen || !isToken(h.ID, true) {
		return h, fieldErr("id", "must be at most %d characters of A-Z a-z 0-9 . _ -", maxIDLen)
	}
	switch h.Consent {
	case "":
		h.Consent = "unknown"
	case "granted", "unknown":
	case "denied":
		// After 'denied' nothing that identifies the browser is kept.
		h.ClientID = ""
	default:
		return h, fieldErr("consent", "%q is not granted, denied or unknown", truncate(h.Consent, 32))
	}
	h.ReceivedAt = now.UnixMilli()
	h.TS = h.ReceivedAt
	if in.TS != nil {
		ts := time.UnixMilli(*in.TS)
		if ts.Before(now.Add(-maxPastTS)) || ts.After(now.Add(maxFutureTS)) {
			return h, fieldErr("ts", "must be epoch milliseconds within the last 7 days")
		}
		h.TS = *in.TS
	} else if in.HeldMS != nil {
		if *in.HeldMS < 0 || *in.HeldMS > maxPastTS.Milliseconds() {
			return h, fieldErr("held_ms", "must be between 0 and %d (7 days)", maxPastTS.Milliseconds())
		}
		h.TS = h.ReceivedAt - *in.HeldMS
	}
	if h.Type == "identify" {
		if h.Consent != "granted" || h.ClientID == "" {
			return h, fieldErr("consent", "identify needs consent granted and a client id (cid)")
		}
		d, free, ok := EmailDomain(in.Email)
		if !ok {
			return h, fieldErr("email", "is not an e-mail address")
		}
		if !free {
			h.Domain = d
		}
	} else if in.Email != "" {
		return h, fieldErr("email", "is for identify hits only")
	}
	switch {
	case h.Type == "engagement" && in.EngagedMS == nil:
		return h, fieldErr("engaged_ms", "is required for engagement hits")
	case in.EngagedMS != nil && (*in.EngagedMS < 0 || *in.EngagedMS > maxEngagedMS):
		return h, fieldErr("engaged_ms", "must be between 0 and %d", maxEngagedMS)
	case in.EngagedMS != nil:
		h.EngagedMS = uint32(*in.EngagedMS)
	}
	return h, nil
}

// jsonKind names a Go type as JSON calls it, for error messages.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return "number"
	}
	return t.String()
}

// isToken reports whether s is made of [a-z0-9], plus [A-Z._-] when wide.
func isToken(s string, wide bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case wide && (c >= 'A' && c <= 'Z' || c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

const hexDigits = "0123456789abcdef"

// NewHitID returns a random 128-bit hit id as 32 hex characters.
func NewHitID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	var out [32]byte
	for i, v := range b {
		out[2*i] = hexDigits[v>>4]
		out[2*i+1] = hexDigits[v&0x0f]
	}
	return string(out[:])
}
