package collector

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"regexp"
	"strings"

	"github.com/valyala/fasthttp"
)

// trackerSource is the tracker as written, with its documentation; the
// collector serves it stripped of comments and indentation, and gzipped
// to browsers that accept it.
//
//go:embed tracker/lf.js
var trackerSource string

var (
	blockComment    = regexp.MustCompile(`(?s)/\*[^!].*?\*/`)
	trailingComment = regexp.MustCompile(`\s+// .*$`)
)

// minify strips what a browser does not need: comments (but the /*! header's
// first line), indentation and blank lines. The tracker is written so that
// this is safe: no string or regular expression contains " // " or "/*".
func minify(src string) string {
	src = blockComment.ReplaceAllString(src, "")
	var out strings.Builder
	header := true
	for _, line := range strings.Split(src, "\n") {
		if header {
			if strings.HasPrefix(line, "/*!") {
				out.WriteString(strings.TrimSpace(line) + " */\n")
				continue
			}
			if !strings.HasPrefix(line, "(function") {
				continue // the rest of the documentation header
			}
			header = false
		}
		line = strings.TrimSpace(trailingComment.ReplaceAllString(line, ""))
		if line == "" || strings.HasPrefix(line, "// ") {
			continue
		}
		out.WriteString(line)
		out.WriteByte('\n')
	}
	return out.String()
}

// tracker is the served script, plain and gzipped, with its ETag.
type tracker struct {
	plain, gz []byte
	etag      string
}

func newTracker() *tracker {
	plain := []byte(minify(trackerSource))
	var gz bytes.Buffer
	w, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	w.Write(plain)
	w.Close()
	sum := sha256.Sum256(plain)
	return &tracker{plain: plain, gz: gz.Bytes(), etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
}

// serve answers GET /lf.js: cacheable for an hour, revalidated by ETag, so
// a tracker update reaches every site within the hour.
func (t *tracker) serve(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	h.Set("Content-Type", "application/javascript; charset=utf-8")
	h.Set("Cache-Control", "public, max-age=3600")
	h.Set("ETag", t.etag)
	h.Set("Vary", "Accept-Encoding")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Access-Control-Allow-Origin", "*")
	if string(ctx.Request.Header.Peek("If-None-Match")) == t.etag {
		ctx.SetStatusCode(fasthttp.StatusNotModified)
		return
	}
	if ctx.Request.Header.HasAcceptEncoding("gzip") {
		h.Set("Content-Encoding", "gzip")
		ctx.SetBody(t.gz)
		return
	}
	ctx.SetBody(t.plain)
}
