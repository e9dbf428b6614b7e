package main

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"
)

// The load generator. Open loop: hits are scheduled at the target rate,
// and each one's latency is measured from when it was scheduled, not from
// when a sender got to it, so a slow collector shows as latency instead of
// quietly lowering the offered rate (coordinated omission).

// sender posts hits to one address over a fasthttp client.
type sender struct {
	client *fasthttp.HostClient
	path   string
	load   *workload
	run    string         // prefix of the hit ids of this benchmark run
	next   *atomic.Uint64 // the next hit number, shared by every phase
	// accepted counts hits answered 202 (the collector) or 204 (the null
	// handler); the lag monitor reads it.
	accepted *atomic.Int64
}

func newSender(addr, path string, load *workload, run string, next *atomic.Uint64, accepted *atomic.Int64, conns int) *sender {
	return &sender{
		client: &fasthttp.HostClient{Addr: addr, MaxConns: conns, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
			MaxIdleConnDuration: time.Minute, NoDefaultUserAgentHeader: true},
		path: path, load: load, run: run, next: next, accepted: accepted,
	}
}

// result is what one load phase measured.
type result struct {
	rate            int // offered per second (0: closed loop)
	duration        time.Duration
	offered, sent   int64
	accepted        int64
	rejected        map[int]int64 // by status
	errors          int64
	lat             *hdrhistogram.Histogram // µs, from the scheduled time
	acceptedPerSec  []int64
	behindAtEnd     int64 // hits still queued when the schedule ended
	generatorBehind bool  // the generator could not keep the schedule
}

func (r *result) achieved() float64 { return float64(r.accepted) / r.duration.Seconds() }

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, 60_000_000, 3) }

// post sends one hit and reports its status (0 for a transport error).
func (s *sender) post(req *fasthttp.Request, resp *fasthttp.Response, buf []byte) ([]byte, int) {
	i := s.next.Add(1) - 1
	body, t := s.load.body(buf, s.run, i)
	req.Reset()
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI(s.path)
	req.Header.SetHost(s.client.Addr)
	req.Header.SetContentType("text/plain")
	req.Header.Set("X-Forwarded-For", t.ip)
	req.Header.Set("User-Agent", t.ua)
	req.Header.Set("Accept-Language", t.lang)
	req.SetBody(body)
	resp.Reset()
	if err := s.client.Do(req, resp); err != nil {
		return body, 0
	}
	code := resp.StatusCode()
	if code == fasthttp.StatusAccepted || code == fasthttp.StatusNoContent {
		s.accepted.Add(1)
	}
	return body, code
}

// openLoop offers rate hits per second for d over at most conns
// connections.
func (s *sender) openLoop(rate int, d time.Duration, conns int) *result {
	res := &result{rate: rate, duration: d, rejected: map[int]int64{}, lat: newHist(),
		acceptedPerSec: make([]int64, int(d/time.Second)+1)}
	total := int64(float64(rate) * d.Seconds())
	slots := make(chan time.Time, min(total, 1<<20))
	start := time.Now()
	go func() {
		defer close(slots)
		interval := time.Second / time.Duration(rate)
		// Scheduled in 1 ms ticks: the hits due by now go out together.
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		var i int64
		for now := range tick.C {
			for ; i < total && !start.Add(time.Duration(i)*interval).After(now); i++ {
				select {
				case slots <- start.Add(time.Duration(i) * interval):
				default:
					// The queue is full: the senders are far behind.
					res.generatorBehind = true
					slots <- start.Add(time.Duration(i) * interval)
				}
			}
			if i >= total {
				res.behindAtEnd = int64(len(slots))
				return
			}
		}
	}()
	s.drive(res, conns, start, func() (time.Time, bool) {
		due, ok := <-slots
		return due, ok
	})
	res.offered = total
	if elapsed := time.Since(start); elapsed > d {
		res.duration = elapsed
	}
	return res
}

// closedLoop sends as fast as answers come back, over conns connections,
// for d: the most the server takes, with the load generator on the same
// machine.
func (s *sender) closedLoop(d time.Duration, conns int) *result {
	res := &result{duration: d, rejected: map[int]int64{}, lat: newHist()}
	start := time.Now()
	deadline := start.Add(d)
	s.drive(res, conns, start, func() (time.Time, bool) {
		now := time.Now()
		return now, now.Before(deadline)
	})
	res.offered = res.sent
	return res
}

// drive sends hits over conns connections, each when next says it is due,
// until next says stop, and adds what happened to res: latency from the
// due time, statuses, and hits accepted per second since start.
func (s *sender) drive(res *result, conns int, start time.Time, next func() (due time.Time, ok bool)) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			// Tallied apart, merged once: no lock per hit.
			mine := &result{rejected: map[int]int64{}, lat: newHist(), acceptedPerSec: make([]int64, len(res.acceptedPerSec))}
			buf := make([]byte, 0, 1024)
			for due, ok := next(); ok; due, ok = next() {
				var code int
				buf, code = s.post(req, resp, buf)
				done := time.Now()
				mine.sent++
				switch {
				case code == 0:
					mine.errors++
				case code == fasthttp.StatusAccepted || code == fasthttp.StatusNoContent:
					mine.accepted++
					_ = mine.lat.RecordValue(max(done.Sub(due).Microseconds(), 1))
					if sec := int(done.Sub(start) / time.Second); sec < len(mine.acceptedPerSec) {
						mine.acceptedPerSec[sec]++
					}
				default:
					mine.rejected[code]++
				}
			}
			mu.Lock()
			defer mu.Unlock()
			res.lat.Merge(mine.lat)
			res.sent += mine.sent
			res.errors += mine.errors
			res.accepted += mine.accepted
			for c, n := range mine.rejected {
				res.rejected[c] += n
			}
			for i, n := range mine.acceptedPerSec {
				res.acceptedPerSec[i] += n
			}
		}()
	}
	wg.Wait()
}
