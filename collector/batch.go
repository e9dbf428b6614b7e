package collector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// Limits of POST /v1/batch.
const (
	MaxBatchHits  = 1000
	MaxBatchBytes = 1 << 20
)

// batchExtra is what a server-side sender adds to each hit: the visitor's
// IP and headers, which it saw and the collector did not. All three are
// required: without a browser's headers the hit would be dropped as a bot.
type batchExtra struct {
	IP   string `json:"ip"`
	UA   string `json:"ua"`
	Lang string `json:"lang"`
}

// BatchResult is the outcome of one hit of a batch.
type BatchResult struct {
	Index  int    `json:"index"`
	ID     string `json:"id,omitempty"`
	Status int    `json:"status"`
	Error  string `json:"error,omitempty"`
}

// handleBatch serves POST /v1/batch for server-side senders: authenticated
// by the site secret (Authorization: Bearer lps_…), a JSON array or NDJSON
// of hits, each with the visitor's "ip" (and "ua", "lang"). It answers 200
// with a result per hit: 202 queued, 400 refused (with the field), 503 not
// queued (retry that hit).
func (s *Server) handleBatch(ctx *fasthttp.RequestCtx) {
	token, _ := strings.CutPrefix(string(ctx.Request.Header.Peek("Authorization")), "Bearer ")
	site, ok := s.sites.AuthenticateSite(strings.TrimSpace(token))
	if !ok {
		s.metrics.rejected.WithLabelValues("unauthorized").Inc()
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="leadpipe collector"`)
		writeError(ctx, fasthttp.StatusUnauthorized, "authorization: missing or invalid site secret")
		return
	}
	items, err := splitBatch(ctx.PostBody())
	if err != nil {
		s.metrics.rejected.WithLabelValues("malformed").Inc()
		writeError(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	if len(items) > MaxBatchHits {
		s.metrics.rejected.WithLabelValues("too_large").Inc()
		writeError(ctx, fasthttp.StatusRequestEntityTooLarge, fmt.Sprintf("body: more than %d hits", MaxBatchHits))
		return
	}
	// A batch larger than the burst can never fit the bucket at once: it
	// is charged the burst at most.
	if !s.limiter(site.ID).AllowN(time.Now(), min(len(items), s.cfg.SiteBurst)) {
		s.metrics.rejected.WithLabelValues("rate_limited").Add(float64(len(items)))
		ctx.Response.Header.Set("Retry-After", "1")
		writeError(ctx, fasthttp.StatusTooManyRequests, "site: over its rate of hits, retry later")
		return
	}
	now := time.Now()
	queueDown := false // after one failed publish the rest are not tried
	results := make([]BatchResult, len(items))
	waits := make([]pending, len(items))
	started := make([]bool, len(items))
	for i, raw := range items {
		results[i] = BatchResult{Index: i}
		hit, err := ParseHit(raw, now)
		if err == nil && hit.Site != site.ID {
			err = fieldErr("site", "is not the site of this secret")
		}
		if err == nil && hit.Type == "identify" {
			// Here the sender, not the visitor's connection, names the
			// address: identifications would teach any network as any
			// company. They come from the tracker only.
			err = fieldErr("type", "identify hits come from the tracker (POST /v1/hit), not from a batch")
		}
		var extra batchExtra
		if err == nil {
			_ = json.Unmarshal(raw, &extra) // ParseHit accepted it as JSON
			ip, perr := netip.ParseAddr(extra.IP)
			switch {
			case extra.IP == "":
				err = fieldErr("ip", "is required (the visitor's address)")
			case perr != nil || ip.Zone() != "":
				err = fieldErr("ip", "is not an IPv4 or IPv6 address")
			case extra.UA == "":
				// Without a browser's headers the processor would drop the
				// hit as a bot: say so now rather than accept it silently.
				err = fieldErr("ua", "is required (the visitor's User-Agent)")
			case extra.Lang == "":
				err = fieldErr("lang", "is required (the visitor's Accept-Language)")
			default:
				hit.IP = ip.Unmap().String()
			}
		}
		if err != nil {
			s.metrics.rejected.WithLabelValues("malformed").Inc()
			results[i].Status, results[i].Error = fasthttp.StatusBadRequest, err.Error()
			continue
		}
		hit.UserAgent = truncate(extra.UA, 512)
		hit.Lang = firstLanguage([]byte(extra.Lang))
		results[i].ID = hit.ID
		if queueDown {
			s.failPublish(&results[i], errQueueDown)
			continue
		}
		if waits[i], err = s.startPublish(&hit); err != nil {
			s.failPublish(&results[i], err)
			queueDown = true
			continue
		}
		started[i] = true
	}
	for i := range items {
		if !started[i] {
			continue
		}
		if err := s.awaitAck(context.Background(), waits[i]); err != nil {
			s.failPublish(&results[i], err)
			continue
		}
		s.metrics.accepted.Inc()
		results[i].Status = fasthttp.StatusAccepted
	}
	ctx.SetContentType("application/json")
	ctx.SetStatusCode(fasthttp.StatusOK)
	body, _ := json.Marshal(map[string]any{"results": results})
	ctx.SetBody(body)
}

var errQueueDown = errors.New("not tried: an earlier hit of the batch could not be queued")

func (s *Server) failPublish(r *BatchResult, err error) {
	s.metrics.rejected.WithLabelValues(publishFailure(err)).Inc()
	s.log.Warn("publishing hit failed", "err", err)
	r.Status, r.Error = fasthttp.StatusServiceUnavailable, "queue: unavailable, retry this hit"
}

// splitBatch cuts a batch body into hits: a JSON array, or one JSON object
// per line (NDJSON; blank lines are skipped).
func splitBatch(body []byte) ([][]byte, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, fieldErr("body", "is empty")
	}
	if body[0] == '[' {
		var items []json.RawMessage
		if err := json.Unmarshal(body, &items); err != nil {
			return nil, fieldErr("body", "is not a JSON array of hits: %v", err)
		}
		out := make([][]byte, len(items))
		for i, it := range items {
			out[i] = it
		}
		return out, nil
	}
	var out [][]byte
	for _, line := range bytes.Split(body, []byte("\n")) {
		if line = bytes.TrimSpace(line); len(line) > 0 {
			out = append(out, line)
		}
	}
	return out, nil
}
