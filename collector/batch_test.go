package collector

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// FuzzSplitBatch: a /v1/batch body — a JSON array of hits or one hit per
// line — is cut without panicking; a refusal names the body field; every
// piece of an array is valid JSON, and no NDJSON piece is blank or holds
// a newline or surrounding space.
func FuzzSplitBatch(f *testing.F) {
	for _, s := range []string{
		`[{"site":"s","type":"pageview","url":"https://x.example/"},{"site":"s","type":"engagement"}]`,
		"{\"site\":\"s\"}\n\n{\"site\":\"t\"}\r\n",
		`[]`, `[`, ``, "  \n ", `[1,"a",null]`, `{"unterminated`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		items, err := splitBatch(body)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != "body" {
				t.Fatalf("refusal %v does not name the body", err)
			}
			return
		}
		array := len(bytes.TrimSpace(body)) > 0 && bytes.TrimSpace(body)[0] == '['
		for _, it := range items {
			if array {
				if !json.Valid(it) {
					t.Fatalf("array item is not JSON: %q", it)
				}
				continue
			}
			if len(it) == 0 || bytes.IndexByte(it, '\n') >= 0 || !bytes.Equal(it, bytes.TrimSpace(it)) {
				t.Fatalf("NDJSON piece %q is blank, holds a newline or surrounding space", it)
			}
		}
	})
}
