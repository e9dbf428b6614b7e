package collector_test

import (
	"context"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/leadpipe/leadpipe/collector"
	"github.com/leadpipe/leadpipe/internal/tenant"
	"github.com/leadpipe/leadpipe/internal/testenv"
)

// BenchmarkHandler measures the collector end to end on one machine: a
// fasthttp client posts a 330-byte hit over an in-memory connection, the
// handler validates it and publishes it to an embedded JetStream (file
// store), and answers 202 after the ack. Concurrency comes from
// RunParallel (-cpu sets GOMAXPROCS; SetParallelism multiplies it).
//
//	go test -run='^$' -bench=Handler -count=6 ./collector/ | tee handler.txt
//	benchstat handler.txt
func BenchmarkHandler(b *testing.B) {
	cfg := testenv.BusConfig()
	cfg.HitsMaxBytes = 8 << 30
	bs := testenv.BusWith(b, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tenants, err := tenant.Open(ctx, bs.JS, testenv.Quiet())
	if err != nil {
		b.Fatal(err)
	}
	site, err := tenants.CreateSite(ctx, "", "Bench", "example.com")
	if err != nil {
		b.Fatal(err)
	}
	ccfg := collector.Config{Addr: "127.0.0.1:0", MaxBodyBytes: 16 << 10, PublishTimeout: 10 * time.Second, SiteRate: 1e9, SiteBurst: 1 << 30}
	if err := ccfg.Validate(); err != nil {
		b.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	srv := collector.New(ccfg, collector.Deps{JS: bs.JS, Sites: tenants, Ready: bs.Ready}, reg, testenv.Quiet())
	ln := fasthttputil.NewInmemoryListener()
	go srv.Run(ctx, ln)
	client := &fasthttp.Client{Dial: func(string) (net.Conn, error) { return ln.Dial() }, MaxConnsPerHost: 512}
	prefix := `{"site":"` + site.ID + `","type":"pageview","url":"https://example.com/pricing?utm_source=newsletter&utm_medium=email","referrer":"https://www.google.com/","title":"Pricing – Example","cid":"LF1.1.0123456789abcdef.1764417600000","consent":"granted","id":"`
	var n atomic.Int64
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://collector/v1/hit")
		req.Header.SetMethod(fasthttp.MethodPost)
		req.Header.SetContentType("text/plain")
		req.Header.Set("User-Agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36")
		req.Header.Set("Accept-Language", "en")
		for pb.Next() {
			req.SetBodyString(prefix + strconv.FormatInt(n.Add(1), 10) + `"}`)
			if err := client.Do(req, resp); err != nil {
				b.Error(err)
				return
			}
			if resp.StatusCode() != fasthttp.StatusAccepted {
				b.Errorf("status %d: %s", resp.StatusCode(), resp.Body())
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "hits/s")
}
