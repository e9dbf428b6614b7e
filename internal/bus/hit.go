package bus

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// Hit is one accepted page hit as it travels from the collector to the
// processors. It carries the visitor IP, which the processor turns into a
// company and then discards: the IP never reaches ClickHouse.
type Hit struct {
	ID         string `json:"id"`
	Site       string `json:"site"`
	Type       string `json:"type"`
	URL        string `json:"url"`
	Referrer   string `json:"referrer,omitempty"`
	Title      string `json:"title,omitempty"`
	ClientID   string `json:"cid,omitempty"`
	Consent    string `json:"consent"`
	TS         int64  `json:"ts"`          // event time, epoch ms
	ReceivedAt int64  `json:"received_at"` // collector time, epoch ms
	EngagedMS  uint32 `json:"engaged_ms,omitempty"`
	IP         string `json:"ip"`
	UserAgent  string `json:"ua,omitempty"`
	// Lang is the first language of Accept-Language; empty when the
	// request had none (which no real browser does).
	Lang string `json:"lang,omitempty"`
	// Domain is an identify hit's: the registrable domain of the e-mail
	// address the visitor gave (the address itself is never kept).
	Domain string `json:"domain,omitempty"`
}

// MsgID is the JetStream deduplication id: a retried hit has the same one.
func (h *Hit) MsgID() string { return h.Site + ":" + h.ID }

// Encode serialises a hit for the stream.
func (h *Hit) Encode() ([]byte, error) { return json.Marshal(h) }

// SplitHits returns the hits a stream message holds: a collector sends
// hits that arrive together as one message, one encoded hit per line (an
// encoded hit holds no newline). A message of one hit is that hit.
func SplitHits(data []byte) [][]byte {
	if bytes.IndexByte(data, '\n') < 0 {
		return [][]byte{data}
	}
	var out [][]byte
	for line := range bytes.SplitSeq(data, []byte{'\n'}) {
		if len(line) > 0 {
			out = append(out, line)
		}
	}
	return out
}

// DecodeHit parses an encoded hit; an error means the message can never be
// processed (a poison message).
func DecodeHit(data []byte) (Hit, error) {
	var h Hit
	if err := json.Unmarshal(data, &h); err != nil {
		return h, fmt.Errorf("decoding hit: %w", err)
	}
	if h.Site == "" || h.ID == "" {
		return h, fmt.Errorf("decoding hit: missing site or id")
	}
	// What the collector guarantees, checked again: a message that breaks
	// it did not come from a collector and cannot be stored as a hit.
	switch {
	case h.Type == "identify" && h.Domain == "":
		return h, fmt.Errorf("hit schema: an identify hit without a domain")
	case h.Type != "pageview" && h.Type != "engagement" && h.Type != "identify":
		return h, fmt.Errorf("hit schema: type %q is not pageview, engagement or identify", h.Type)
	}
	if h.ReceivedAt <= 0 || h.TS < h.ReceivedAt-MaxHitAge.Milliseconds() || h.TS > h.ReceivedAt+MaxHitLead.Milliseconds() {
		return h, fmt.Errorf("hit schema: ts %d is not within %v before and %v after received_at %d", h.TS, MaxHitAge, MaxHitLead, h.ReceivedAt)
	}
	return h, nil
}

// How far a hit's own time may lie before and after the time the collector
// received it (the collector allows 7 days and 1 hour; this leaves slack
// for clocks).
const (
	MaxHitAge  = 8 * 24 * time.Hour
	MaxHitLead = 2 * time.Hour
)
