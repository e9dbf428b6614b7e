package bus

import (
	"bytes"
	"reflect"
	"testing"
)

// FuzzSplitDecodeHits: what `dlq replay` and the processors feed back
// into a message is split and decoded without panicking, in bounded time;
// no split line holds a newline; a hit that decodes satisfies the hit
// schema, encodes again on one line and decodes to itself; and hits joined
// one per line, as a collector packs them, split back into the same hits.
func FuzzSplitDecodeHits(f *testing.F) {
	for _, s := range []string{
		`{"site":"s","id":"a","type":"pageview","url":"https://x.example/","ts":1764417600000,"received_at":1764417600000,"ip":"192.0.2.1"}`,
		`{"site":"s","id":"a","type":"engagement","engaged_ms":5000,"ts":1764417600000,"received_at":1764417600000}` + "\n" +
			`{"site":"s","id":"b","type":"pageview","ts":1764417600001,"received_at":1764417600001}`,
		"\n\n", `{}`, `{"site":"s","id":"a","type":"click"}`, `not json`, "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var decoded []Hit
		for _, line := range SplitHits(data) {
			if bytes.IndexByte(line, '\n') >= 0 {
				t.Fatalf("split line holds a newline: %q", line)
			}
			h, err := DecodeHit(line)
			if err != nil {
				continue
			}
			if h.Site == "" || h.ID == "" || (h.Type != "pageview" && h.Type != "engagement") {
				t.Fatalf("decoded hit breaks the schema: %+v", h)
			}
			enc, err := h.Encode()
			if err != nil {
				t.Fatalf("encoding a decoded hit: %v", err)
			}
			if bytes.IndexByte(enc, '\n') >= 0 {
				t.Fatalf("an encoded hit holds a newline: %q", enc)
			}
			again, err := DecodeHit(enc)
			if err != nil || !reflect.DeepEqual(again, h) {
				t.Fatalf("round trip: %+v, %v; want %+v", again, err, h)
			}
			decoded = append(decoded, h)
		}
		if len(decoded) == 0 {
			return
		}
		var packed [][]byte
		for _, h := range decoded {
			enc, _ := h.Encode()
			packed = append(packed, enc)
		}
		lines := SplitHits(bytes.Join(packed, []byte{'\n'}))
		if len(lines) != len(decoded) {
			t.Fatalf("%d hits packed, %d split back", len(decoded), len(lines))
		}
		for i, line := range lines {
			if h, err := DecodeHit(line); err != nil || !reflect.DeepEqual(h, decoded[i]) {
				t.Fatalf("hit %d after packing: %+v, %v; want %+v", i, h, err, decoded[i])
			}
		}
	})
}
