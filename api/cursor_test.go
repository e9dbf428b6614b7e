package api

import "testing"

// FuzzDecodeCursor: a feed cursor comes from the client; decoding never
// panics, accepts only offsets within the feed's bound, and what it
// accepts encodes back to a cursor that decodes to the same offset.
func FuzzDecodeCursor(f *testing.F) {
	for _, s := range []string{encodeCursor(0), encodeCursor(100), encodeCursor(1_000_000), "", "bzo", "o:5", "b246LTE", "%%%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, c string) {
		n, err := decodeCursor(c)
		if err != nil {
			return
		}
		if n < 0 || n > 1_000_000 {
			t.Fatalf("cursor %q accepted with offset %d", c, n)
		}
		if m, err := decodeCursor(encodeCursor(n)); err != nil || m != n {
			t.Fatalf("offset %d: round trip gave %d, %v", n, m, err)
		}
	})
}
