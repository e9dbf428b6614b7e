package collector_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leadpipe/leadpipe/collector"
	"github.com/leadpipe/leadpipe/internal/bus"
	"github.com/leadpipe/leadpipe/internal/tenant"
	"github.com/leadpipe/leadpipe/internal/testenv"
)

type testCollector struct {
	url  string
	bus  *bus.Bus
	site tenant.Site
	reg  *prometheus.Registry
}

// rejected reads leadpipe_collector_hits_rejected_total{reason}.
func (c *testCollector) rejected(t *testing.T, reason string) float64 {
	t.Helper()
	mfs, err := c.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "leadpipe_collector_hits_rejected_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no rejected counter for reason %q", reason)
	return 0
}

// startCollector runs a collector on a real embedded JetStream, with one site.
func startCollector(t *testing.T, mutate func(*collector.Config)) *testCollector {
	t.Helper()
	return startCollectorOn(t, testenv.Bus(t), mutate)
}

func startCollectorOn(t *testing.T, b *bus.Bus, mutate func(*collector.Config)) *testCollector {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tenants, err := tenant.Open(ctx, b.JS, testenv.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	site, err := tenants.CreateSite(ctx, "", "Example", "example.com")
	if err != nil {
		t.Fatal(err)
	}
	cfg := collector.Config{Addr: "127.0.0.1:0", TrustedProxies: "127.0.0.1", MaxBodyBytes: 4096, PublishTimeout: 2 * time.Second, SiteRate: 1000, SiteBurst: 5000}
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	srv := collector.New(cfg, collector.Deps{JS: b.JS, Sites: tenants, Ready: b.Ready}, reg, testenv.Quiet())
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return &testCollector{url: "http://" + ln.Addr().String(), bus: b, site: site, reg: reg}
}

func (c *testCollector) post(t *testing.T, body string, headers ...string) (int, map[string]string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, c.url+"/v1/hit", strings.NewReader(body))
	req.Header.Set("Content-Type", "text/plain")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil && resp.StatusCode != http.StatusNoContent {
		t.Fatalf("status %d: body is not JSON: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, out, resp.Header
}

func (c *testCollector) streamMsgs(t *testing.T) uint64 {
	t.Helper()
	st, err := c.bus.JS.Stream(context.Background(), bus.HitsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestCollectorStatusCodes(t *testing.T) {
	c := startCollector(t, nil)
	hit := func(extra string) string {
		return `{"site":"` + c.site.ID + `","type":"pageview","url":"https://example.com/a"` + extra + `}`
	}
	check := func(body string, wantStatus int, wantErr string, headers ...string) {
		t.Helper()
		got, out, _ := c.post(t, body, headers...)
		if got != wantStatus {
			t.Errorf("POST %s: status %d, want %d (%v)", body, got, wantStatus, out)
		}
		if wantErr != "" && !strings.Contains(out["error"], wantErr) {
			t.Errorf("POST %s: error %q, want it to mention %q", body, out["error"], wantErr)
		}
	}
	check(hit(""), http.StatusAccepted, "")
	check(hit(""), http.StatusAccepted, "", "Origin", "https://www.example.com")
	check(`{"site":"`+c.site.ID+`","type":"pageview"}`, http.StatusBadRequest, "url: is required")
	check(`not json`, http.StatusBadRequest, "body:")
	check(`{"site":"nosuchsite","type":"pageview","url":"https://example.com/"}`, http.StatusForbidden, "site: unknown")
	check(hit(""), http.StatusForbidden, "origin:", "Origin", "https://evil.test")
	check(hit(""), http.StatusForbidden, "origin:", "Origin", "https://notexample.com")
	check(hit(`,"title":"`+strings.Repeat("x", 5000)+`"`), http.StatusRequestEntityTooLarge, "body: larger than 4096 bytes")

	resp, err := http.Get(c.url + "/v1/hit")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /v1/hit: %d, want 405", resp.StatusCode)
	}
	identify := `{"site":"` + c.site.ID + `","type":"identify","url":"https://example.com/a","consent":"granted","cid":"c1","email":"jane@`
	check(identify+`gmail.com"}`, http.StatusNoContent, "") // free mail: nothing queued
	check(identify+`paper-mill.fi"}`, http.StatusAccepted, "")
	check(`{"site":"`+c.site.ID+`","type":"identify","url":"https://example.com/a","email":"jane@paper-mill.fi"}`, http.StatusBadRequest, "consent:")
	if n := c.streamMsgs(t); n != 3 {
		t.Errorf("stream holds %d hits, want exactly the 3 accepted", n)
	}
	for reason, want := range map[string]float64{"malformed": 3, "unknown_site": 1, "origin": 2, "too_large": 1} {
		if got := c.rejected(t, reason); got != want {
			t.Errorf("rejected{reason=%s} = %v, want %v", reason, got, want)
		}
	}
}

func TestCollectorRetriedHitIsQueuedOnce(t *testing.T) {
	c := startCollector(t, nil)
	body := `{"site":"` + c.site.ID + `","type":"pageview","url":"https://example.com/","id":"retry-1"}`
	for range 3 {
		if got, out, _ := c.post(t, body); got != http.StatusAccepted || out["id"] != "retry-1" {
			t.Fatalf("status %d %v, want 202 with the hit id", got, out)
		}
	}
	if n := c.streamMsgs(t); n != 1 {
		t.Errorf("three posts of one hit id left %d messages, want 1", n)
	}
}

func TestCollectorVisitorIPFromTrustedProxy(t *testing.T) {
	c := startCollector(t, nil)
	if got, _, _ := c.post(t, `{"site":"`+c.site.ID+`","type":"pageview","url":"https://example.com/"}`, "X-Forwarded-For", "6.6.6.6, 198.51.100.23"); got != http.StatusAccepted {
		t.Fatalf("status %d", got)
	}
	st, _ := c.bus.JS.Stream(context.Background(), bus.HitsStream)
	msg, err := st.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	h, err := bus.DecodeHit(msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	if h.IP != "198.51.100.23" {
		t.Errorf("visitor IP %q, want the right-most untrusted X-Forwarded-For entry", h.IP)
	}
	if msg.Header.Get(jetstream.MsgIDHeader) != c.site.ID+":"+h.ID {
		t.Errorf("Nats-Msg-Id %q does not carry the hit id", msg.Header.Get(jetstream.MsgIDHeader))
	}

	// A proxy that adds its own header line: the client's line is not believed.
	req, _ := http.NewRequest(http.MethodPost, c.url+"/v1/hit", strings.NewReader(`{"site":"`+c.site.ID+`","type":"pageview","url":"https://example.com/"}`))
	req.Header.Add("X-Forwarded-For", "6.6.6.6")
	req.Header.Add("X-Forwarded-For", "198.51.100.99")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	msg, err = st.GetMsg(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := bus.DecodeHit(msg.Data); h.IP != "198.51.100.99" {
		t.Errorf("with two X-Forwarded-For lines the visitor IP is %q, want the proxy-added 198.51.100.99", h.IP)
	}
}

// TestCollectorJetStreamDown: with JetStream gone, a hit gets 503 with
// Retry-After and /readyz turns unready — never a 202 for a hit not queued.
func TestCollectorJetStreamDown(t *testing.T) {
	c := startCollector(t, func(cfg *collector.Config) { cfg.PublishTimeout = 500 * time.Millisecond })
	c.bus.Server.Shutdown()
	c.bus.Server.WaitForShutdown()
	got, out, h := c.post(t, `{"site":"`+c.site.ID+`","type":"pageview","url":"https://example.com/"}`)
	if got != http.StatusServiceUnavailable || h.Get("Retry-After") == "" || !strings.Contains(out["error"], "queue") {
		t.Errorf("JetStream down: status %d, Retry-After %q, error %q; want 503 with Retry-After", got, h.Get("Retry-After"), out["error"])
	}
	if n := c.rejected(t, "unavailable"); n != 1 {
		t.Errorf("rejected{reason=unavailable} = %v, want 1", n)
	}
	resp, err := http.Get(c.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz with JetStream down: %d, want 503", resp.StatusCode)
	}
}

func TestCollectorPreflight(t *testing.T) {
	c := startCollector(t, nil)
	req, _ := http.NewRequest(http.MethodOptions, c.url+"/v1/hit", nil)
	req.Header.Set("Origin", "https://example.com")
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "https://example.com" {
		t.Errorf("preflight: %d, allow-origin %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
}

// TestCollectorStreamFull: when the HITS stream reaches its byte limit, new
// hits get 503 (discard policy "new" keeps the queued ones) and every 202
// the collector gave is a message in the stream.
func TestCollectorStreamFull(t *testing.T) {
	cfg := testenv.BusConfig()
	cfg.HitsMaxBytes = 1 << 20
	c := startCollectorOn(t, testenv.BusWith(t, cfg), func(cfg *collector.Config) { cfg.MaxBodyBytes = 16 << 10 })
	title := strings.Repeat("t", 500)
	referrer := "https://example.com/" + strings.Repeat("r", 2000)
	accepted := 0
	for i := range 2000 {
		body := `{"site":"` + c.site.ID + `","type":"pageview","url":"https://example.com/","title":"` + title + `","referrer":"` + referrer + `","id":"full-` + strconv.Itoa(i) + `"}`
		code, out, h := c.post(t, body)
		if code == http.StatusServiceUnavailable {
			if h.Get("Retry-After") == "" || !strings.Contains(out["error"], "queue") {
				t.Errorf("503 without Retry-After or queue error: %v", out)
			}
			break
		}
		if code != http.StatusAccepted {
			t.Fatalf("hit %d: status %d %v", i, code, out)
		}
		accepted++
	}
	if accepted == 2000 {
		t.Fatal("a 1 MiB stream took 2000 hits of ~3 KB: the limit is not enforced")
	}
	if n := c.streamMsgs(t); n != uint64(accepted) {
		t.Errorf("stream holds %d hits, collector accepted %d", n, accepted)
	}
	if got := c.rejected(t, "stream_full"); got != 1 {
		t.Errorf("rejected{reason=stream_full} = %v, want 1", got)
	}
}

func TestCollectorServesTracker(t *testing.T) {
	c := startCollector(t, nil)
	get := func(headers ...string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, c.url+"/lf.js", nil)
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		tr := &http.Transport{DisableCompression: true}
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, body
	}
	resp, plain := get()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/javascript") || !bytes.Contains(plain, []byte("_lfa_test_cookie_stored")) {
		t.Fatalf("/lf.js: %d %s, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(plain))
	}
	if bytes.Contains(plain, []byte("Options (attributes of the tag)")) {
		t.Error("the served tracker still carries its documentation comments")
	}
	resp, gz := get("Accept-Encoding", "gzip")
	if resp.Header.Get("Content-Encoding") != "gzip" || len(gz) >= 4096 {
		t.Errorf("gzipped tracker: encoding %q, %d bytes; want gzip under 4 KiB", resp.Header.Get("Content-Encoding"), len(gz))
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	if unz, _ := io.ReadAll(zr); !bytes.Equal(unz, plain) {
		t.Error("gzipped and plain trackers differ")
	}
	if resp, _ := get("If-None-Match", resp.Header.Get("ETag")); resp.StatusCode != http.StatusNotModified {
		t.Errorf("revalidation with the ETag: %d, want 304", resp.StatusCode)
	}
}

func TestCollectorRateLimitsSites(t *testing.T) {
	c := startCollector(t, func(cfg *collector.Config) { cfg.SiteRate, cfg.SiteBurst = 1, 3 })
	body := `{"site":"` + c.site.ID + `","type":"pageview","url":"https://example.com/"}`
	codes := map[int]int{}
	for range 6 {
		code, out, h := c.post(t, body)
		codes[code]++
		if code == http.StatusTooManyRequests && (h.Get("Retry-After") == "" || !strings.Contains(out["error"], "rate")) {
			t.Errorf("429 without Retry-After or a clear error: %v", out)
		}
	}
	if codes[http.StatusAccepted] != 3 || codes[http.StatusTooManyRequests] != 3 {
		t.Errorf("statuses %v, want 3×202 (the burst) then 3×429", codes)
	}
	if n := c.rejected(t, "rate_limited"); n != 3 {
		t.Errorf("rejected{reason=rate_limited} = %v, want 3", n)
	}
}

func TestCollectorHeadersTooLarge(t *testing.T) {
	c := startCollector(t, nil)
	code, out, _ := c.post(t, `{}`, "X-Padding", strings.Repeat("p", 10000))
	if code != http.StatusRequestHeaderFieldsTooLarge || !strings.Contains(out["error"], "headers") {
		t.Errorf("10 KB header: %d %v, want 431 naming the headers", code, out)
	}
}

// TestCollectorIdleConnection: a connection that sends nothing within the
// read timeout (an HTTP client's spare one) gets a 408 and is closed, and
// is counted as a timeout, not as a bad hit.
func TestCollectorIdleConnection(t *testing.T) {
	c := startCollector(t, func(cfg *collector.Config) { cfg.ReadTimeout = 300 * time.Millisecond })
	conn, err := net.Dial("tcp", strings.TrimPrefix(c.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(got), "HTTP/1.1 408") {
		t.Errorf("an idle connection got %q, want a 408", got)
	}
	if n := c.rejected(t, "timeout"); n != 1 {
		t.Errorf("rejected{reason=timeout} = %v, want 1", n)
	}
	if n := c.rejected(t, "bad_request"); n != 0 {
		t.Errorf("rejected{reason=bad_request} = %v, want 0", n)
	}
}

// TestCollectorConcurrentHits: hits posted at once, from many connections,
// are each queued once, whether alone or sharing a message with others.
func TestCollectorConcurrentHits(t *testing.T) {
	c := startCollector(t, nil)
	const n = 2000
	var wg sync.WaitGroup
	var accepted atomic.Int64
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	sem := make(chan struct{}, 64)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			body := fmt.Sprintf(`{"site":%q,"type":"pageview","url":"https://example.com/%d","id":"c-%d"}`, c.site.ID, i, i)
			resp, err := client.Post(c.url+"/v1/hit", "text/plain", strings.NewReader(body))
			if err != nil {
				return
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusAccepted {
				accepted.Add(1)
			}
		}()
	}
	wg.Wait()
	if accepted.Load() != n {
		t.Fatalf("%d of %d accepted", accepted.Load(), n)
	}
	seen := map[string]int{}
	for _, h := range testenv.QueuedHits(t, c.bus) {
		seen[h.ID]++
	}
	for i := range n {
		if id := fmt.Sprintf("c-%d", i); seen[id] != 1 {
			t.Errorf("hit %s queued %d times", id, seen[id])
		}
	}
	t.Logf("%d hits in %d messages", n, c.streamMsgs(t))
}

func TestCollectorBatch(t *testing.T) {
	c := startCollector(t, nil)
	ctx := context.Background()
	tenants, err := tenant.Open(ctx, c.bus.JS, testenv.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	secret, err := tenants.RotateSiteSecret(ctx, c.site.ID)
	if err != nil {
		t.Fatal(err)
	}
	post := func(auth, contentType, body string) (int, map[string]any) {
		t.Helper()
		var code int
		var out map[string]any
		// The collector's own store learns of the secret through the KV
		// watch within milliseconds.
		testenv.Eventually(t, 5*time.Second, func() error {
			req, _ := http.NewRequest(http.MethodPost, c.url+"/v1/batch", strings.NewReader(body))
			req.Header.Set("Content-Type", contentType)
			if auth != "" {
				req.Header.Set("Authorization", "Bearer "+auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			code = resp.StatusCode
			out = nil
			json.NewDecoder(resp.Body).Decode(&out)
			if code == http.StatusUnauthorized && auth == secret {
				return fmt.Errorf("secret not known yet")
			}
			return nil
		})
		return code, out
	}
	hit := func(id, ip string) string {
		return `{"site":"` + c.site.ID + `","type":"pageview","url":"https://example.com/","id":"` + id + `","ip":"` + ip + `","ua":"Mozilla/5.0 Chrome/131","lang":"fr-FR,fr"}`
	}
	ndjson := hit("b1", "198.51.100.1") + "\n\n" + hit("b2", "2001:db8::7") + "\n" +
		`{"site":"` + c.site.ID + `","type":"pageview","url":"https://example.com/","id":"b3"}` + "\n" +
		`{"site":"othersite","type":"pageview","url":"https://example.com/","ip":"198.51.100.1"}` + "\n" +
		// A sender naming the address could teach any network as any
		// company: identifications come from the tracker only.
		`{"site":"` + c.site.ID + `","type":"identify","url":"https://example.com/","consent":"granted","cid":"c1","email":"a@paper-mill.example","ip":"198.51.100.1","ua":"Mozilla/5.0 Chrome/131","lang":"fr"}`
	code, out := post(secret, "application/x-ndjson", ndjson)
	if code != http.StatusOK {
		t.Fatalf("batch: %d %v", code, out)
	}
	results := out["results"].([]any)
	want := []struct {
		status float64
		err    string
	}{{202, ""}, {202, ""}, {400, "ip: is required"}, {400, "site: is not the site of this secret"}, {400, "type: identify hits come from the tracker"}}
	for i, w := range want {
		r := results[i].(map[string]any)
		if r["status"] != w.status || (w.err != "" && !strings.Contains(fmt.Sprint(r["error"]), w.err)) {
			t.Errorf("result %d = %v, want %v %q", i, r, w.status, w.err)
		}
	}
	// The same hits as a JSON array: retries. Hits published together
	// share a message, which JetStream does not deduplicate by hit;
	// processors recognise the ids (TestRetriedHitsAreStoredOnce).
	code, out = post(secret, "application/json", "["+hit("b1", "198.51.100.1")+","+hit("b2", "2001:db8::7")+"]")
	if code != http.StatusOK || len(out["results"].([]any)) != 2 {
		t.Errorf("array batch: %d %v", code, out)
	}
	ids := map[string]bus.Hit{}
	for _, h := range testenv.QueuedHits(t, c.bus) {
		ids[h.ID] = h
	}
	if len(ids) != 2 {
		t.Errorf("queued hit ids %v, want b1 and b2", ids)
	}
	if h := ids["b2"]; h.IP != "2001:db8::7" || h.Lang != "fr-FR" || h.UserAgent != "Mozilla/5.0 Chrome/131" {
		t.Errorf("batch hit carries %+v, want the sender's visitor IP, UA and language", h)
	}
	if code, _ := post("lps_"+c.site.ID+"_wrong", "application/json", "[]"); code != http.StatusUnauthorized {
		t.Errorf("wrong secret: %d, want 401", code)
	}
	if code, _ := post("", "application/json", "[]"); code != http.StatusUnauthorized {
		t.Errorf("no secret: %d, want 401", code)
	}
	if code, out := post(secret, "application/json", "[1,"); code != http.StatusBadRequest {
		t.Errorf("malformed batch: %d %v, want 400", code, out)
	}
	many := "[" + strings.TrimSuffix(strings.Repeat(hit("x", "198.51.100.1")+",", collector.MaxBatchHits+1), ",") + "]"
	if code, _ := post(secret, "application/json", many); code != http.StatusRequestEntityTooLarge {
		t.Errorf("%d hits: %d, want 413", collector.MaxBatchHits+1, code)
	}
}
