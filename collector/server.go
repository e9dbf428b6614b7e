package collector

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"golang.org/x/time/rate"

	"github.com/leadpipe/leadpipe/internal/bus"
	"github.com/leadpipe/leadpipe/internal/tenant"
	"github.com/leadpipe/leadpipe/internal/tlsfiles"
)

// Config is the collector's configuration.
type Config struct {
	// Addr is the listen address.
	Addr string
	// TrustedProxies is the raw --collector.trusted-proxies list.
	TrustedProxies string
	// MaxBodyBytes caps a hit's body; larger bodies get 413.
	MaxBodyBytes int
	// PublishTimeout bounds the wait for JetStream's acknowledgement.
	PublishTimeout time.Duration
	// SiteRate and SiteBurst bound each site's hits per second; over it a
	// hit gets 429 with Retry-After.
	SiteRate  float64
	SiteBurst int
	// ReadTimeout bounds reading a request, the first byte included
	// (zero: 10s).
	ReadTimeout time.Duration
	// TLSCert and TLSKey are PEM files; with them the collector speaks
	// HTTPS only.
	TLSCert, TLSKey string

	proxies []netip.Prefix
	tls     *tls.Config
}

// RegisterFlags registers the collector.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "collector.addr", "127.0.0.1:8080", "collector listen address")
	fs.StringVar(&c.TrustedProxies, "collector.trusted-proxies", "", "comma-separated CIDRs whose X-Forwarded-For is believed")
	fs.IntVar(&c.MaxBodyBytes, "collector.max-body-bytes", 16<<10, "largest accepted hit body in bytes")
	fs.DurationVar(&c.PublishTimeout, "collector.publish-timeout", 5*time.Second, "longest wait for JetStream to acknowledge a hit before answering 503")
	fs.Float64Var(&c.SiteRate, "collector.site-rate", 1000, "most hits per second per site (429 beyond)")
	fs.IntVar(&c.SiteBurst, "collector.site-burst", 2000, "hits a site may send at once above its rate")
	fs.StringVar(&c.TLSCert, "collector.tls-cert", "", "PEM certificate chain: serve HTTPS (with --collector.tls-key)")
	fs.StringVar(&c.TLSKey, "collector.tls-key", "", "PEM private key of --collector.tls-cert")
}

// Validate refuses values that cannot work, naming the flag.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("--collector.addr: %q is not host:port", c.Addr)
	}
	proxies, err := ParseTrustedProxies(c.TrustedProxies)
	if err != nil {
		return err
	}
	c.proxies = proxies
	if c.MaxBodyBytes < 1024 || c.MaxBodyBytes > 1<<20 {
		return fmt.Errorf("--collector.max-body-bytes: %d is not between 1024 and 1048576", c.MaxBodyBytes)
	}
	if c.PublishTimeout <= 0 {
		return fmt.Errorf("--collector.publish-timeout: must be positive")
	}
	if c.SiteRate <= 0 {
		return fmt.Errorf("--collector.site-rate: must be positive")
	}
	if c.SiteBurst < 1 {
		return fmt.Errorf("--collector.site-burst: must be at least 1")
	}
	c.tls, err = tlsfiles.Load("--collector.tls", c.TLSCert, c.TLSKey)
	return err
}

// TLS is the collector's TLS configuration (after Validate), nil for
// plain HTTP.
func (c *Config) TLS() *tls.Config { return c.tls }

// Sites tells whether a site exists, and whose a site secret is.
type Sites interface {
	Site(id string) (tenant.Site, bool)
	AuthenticateSite(token string) (tenant.Site, bool)
}

// Server is the collector.
type Server struct {
	cfg     Config
	js      jetstream.JetStream
	sites   Sites
	ready   func(context.Context) error
	log     *slog.Logger
	metrics *metrics
	srv     *fasthttp.Server
	tracker *tracker
	pub     *publisher
	limits  sync.Map // site id → *rate.Limiter
}

// Deps are what the collector stands on, given by the wiring.
type Deps struct {
	// JS is where accepted hits are published.
	JS jetstream.JetStream
	// Sites authenticates and looks up the sites hits are posted for.
	Sites Sites
	// Ready reports whether the whole pipeline can take hits; /readyz
	// answers from it.
	Ready func(context.Context) error
}

// New builds a collector; its own metrics are registered with reg.
func New(cfg Config, deps Deps, reg prometheus.Registerer, log *slog.Logger) *Server {
	s := &Server{cfg: cfg, js: deps.JS, sites: deps.Sites, ready: deps.Ready, log: log, metrics: newMetrics(reg), tracker: newTracker()}
	s.pub = newPublisher(deps.JS, s.metrics)
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 10 * time.Second
	}
	s.srv = &fasthttp.Server{
		Handler:      s.handle,
		Name:         "leadpipe",
		ReadTimeout:  cfg.ReadTimeout,
		WriteTimeout: 10 * time.Second,
		IdleTimeout:  60 * time.Second,
		// The batch endpoint's limit; /v1/hit checks its own smaller one.
		MaxRequestBodySize:    MaxBatchBytes,
		ReadBufferSize:        8 << 10, // also the limit on request line + headers
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		ErrorHandler:          s.handleReadError,
		Logger:                slogPrinter{log},
	}
	return s
}

// Run serves until ctx ends, then stops accepting and waits for requests in
// flight (each waits at most PublishTimeout for its ack).
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("collector: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), s.cfg.PublishTimeout+5*time.Second)
	defer cancel()
	return s.srv.ShutdownWithContext(shutdownCtx)
}

// Handler exposes the request handler (tests, benchmarks).
func (s *Server) Handler() fasthttp.RequestHandler { return s.handle }

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	switch string(ctx.Path()) {
	case "/v1/hit":
		switch {
		case ctx.IsPost():
			s.handleHit(ctx)
		case ctx.IsOptions():
			s.preflight(ctx)
		default:
			writeError(ctx, fasthttp.StatusMethodNotAllowed, "method: use POST")
		}
	case "/v1/batch":
		if !ctx.IsPost() {
			writeError(ctx, fasthttp.StatusMethodNotAllowed, "method: use POST")
			return
		}
		s.handleBatch(ctx)
	case "/lf.js":
		if !ctx.IsGet() && !ctx.IsHead() {
			writeError(ctx, fasthttp.StatusMethodNotAllowed, "method: use GET")
			return
		}
		s.tracker.serve(ctx)
	case "/readyz":
		if err := s.ready(ctx); err != nil {
			writeError(ctx, fasthttp.StatusServiceUnavailable, err.Error())
			return
		}
		ctx.SetContentType("text/plain")
		ctx.SetBodyString("ready\n")
	default:
		writeError(ctx, fasthttp.StatusNotFound, "path: not found")
	}
}

// preflight answers CORS preflights for tracker posts sent as
// application/json. Which origins may post is decided per site on the POST
// itself, where the site is known.
func (s *Server) preflight(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	if origin := ctx.Request.Header.Peek("Origin"); len(origin) > 0 {
		h.SetBytesV("Access-Control-Allow-Origin", origin)
		h.Set("Vary", "Origin")
	}
	h.Set("Access-Control-Allow-Methods", "POST")
	h.Set("Access-Control-Allow-Headers", "Content-Type")
	h.Set("Access-Control-Max-Age", "86400")
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

func (s *Server) handleHit(ctx *fasthttp.RequestCtx) {
	now := time.Now()
	// fasthttp reuses the request's buffers once the handler returns;
	// ParseHit copies every string it keeps.
	body := ctx.PostBody()
	if len(body) > s.cfg.MaxBodyBytes {
		s.metrics.rejected.WithLabelValues("too_large").Inc()
		writeError(ctx, fasthttp.StatusRequestEntityTooLarge, fmt.Sprintf("body: larger than %d bytes", s.cfg.MaxBodyBytes))
		return
	}
	hit, err := ParseHit(body, now)
	if err != nil {
		s.metrics.rejected.WithLabelValues("malformed").Inc()
		writeError(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	site, ok := s.sites.Site(hit.Site)
	if !ok {
		s.metrics.rejected.WithLabelValues("unknown_site").Inc()
		writeError(ctx, fasthttp.StatusForbidden, "site: unknown site")
		return
	}
	if origin := ctx.Request.Header.Peek("Origin"); len(origin) > 0 {
		if !originAllowed(string(origin), site.Domain) {
			s.metrics.rejected.WithLabelValues("origin").Inc()
			writeError(ctx, fasthttp.StatusForbidden, "origin: not allowed for this site")
			return
		}
		ctx.Response.Header.SetBytesV("Access-Control-Allow-Origin", origin)
		ctx.Response.Header.Set("Vary", "Origin")
	}
	if hit.Type == "identify" && hit.Domain == "" {
		// A free-mail address says nothing of an employer: nothing is
		// queued, and the answer says so.
		s.metrics.identifyFreeMail.Inc()
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return
	}
	if !s.limiter(site.ID).Allow() {
		s.metrics.rejected.WithLabelValues("rate_limited").Inc()
		ctx.Response.Header.Set("Retry-After", "1")
		writeError(ctx, fasthttp.StatusTooManyRequests, "site: over its rate of hits, retry later")
		return
	}
	peer, _ := netip.AddrFromSlice(ctx.RemoteIP())
	hit.IP = VisitorIP(peer, forwardedFor(&ctx.Request.Header), s.cfg.proxies).String()
	hit.UserAgent = truncate(string(ctx.UserAgent()), 512)
	hit.Lang = firstLanguage(ctx.Request.Header.Peek("Accept-Language"))

	// Not the request context: a shutdown must let in-flight publishes finish.
	if err := s.publish(context.Background(), &hit); err != nil {
		s.metrics.rejected.WithLabelValues(publishFailure(err)).Inc()
		s.log.Warn("publishing hit failed", "site", hit.Site, "err", err)
		ctx.Response.Header.Set("Retry-After", "5")
		writeError(ctx, fasthttp.StatusServiceUnavailable, "queue: unavailable, retry later")
		return
	}
	s.metrics.accepted.Inc()
	ctx.SetStatusCode(fasthttp.StatusAccepted)
	ctx.SetContentType("application/json")
	ctx.SetBodyString(`{"id":"` + hit.ID + `"}`)
}

func (s *Server) publish(parent context.Context, hit *bus.Hit) error {
	p, err := s.startPublish(hit)
	if err != nil {
		return err
	}
	return s.awaitAck(parent, p)
}

// pending is a publish awaiting its JetStream ack.
type pending struct {
	done  <-chan pubResult
	start time.Time
}

// startPublish hands a hit to the publisher without waiting (see
// publisher.go: hits published together share a JetStream message).
func (s *Server) startPublish(hit *bus.Hit) (pending, error) {
	data, err := hit.Encode()
	if err != nil {
		return pending{}, fmt.Errorf("encoding hit: %w", err)
	}
	return pending{s.pub.publish(hit.Site, hit.MsgID(), data), time.Now()}, nil
}

// awaitAck waits for a publish's ack: 202 means stored.
func (s *Server) awaitAck(parent context.Context, p pending) error {
	timer := time.NewTimer(max(s.cfg.PublishTimeout-time.Since(p.start), 0))
	defer timer.Stop()
	select {
	case res := <-p.done:
		if res.err != nil {
			return res.err
		}
		s.metrics.publishSeconds.Observe(time.Since(p.start).Seconds())
		if res.duplicate {
			s.metrics.duplicates.Inc()
		}
		return nil
	case <-timer.C:
		return errors.New("no acknowledgement within --collector.publish-timeout")
	case <-parent.Done():
		return parent.Err()
	}
}

// limiter returns the site's token bucket, making it on first use. Sites
// are few and known (unknown ones are refused before), so the map is bounded.
func (s *Server) limiter(site string) *rate.Limiter {
	if l, ok := s.limits.Load(site); ok {
		return l.(*rate.Limiter)
	}
	l, _ := s.limits.LoadOrStore(site, rate.NewLimiter(rate.Limit(s.cfg.SiteRate), s.cfg.SiteBurst))
	return l.(*rate.Limiter)
}

// forwardedFor joins every X-Forwarded-For header line in order: a proxy
// that adds a line of its own instead of appending to the client's must not
// leave the client-written line to be believed.
func forwardedFor(h *fasthttp.RequestHeader) []byte {
	lines := h.PeekAll("X-Forwarded-For")
	switch len(lines) {
	case 0:
		return nil
	case 1:
		return lines[0]
	}
	return bytes.Join(lines, []byte(","))
}

// firstLanguage returns the first language tag of an Accept-Language header
// ("de-CH" of "de-CH,de;q=0.9"), "und" for a header without a usable tag,
// and "" when there is no header at all.
func firstLanguage(h []byte) string {
	if len(h) == 0 {
		return ""
	}
	end := len(h)
	for i, c := range h {
		if c == ',' || c == ';' {
			end = i
			break
		}
	}
	tag := strings.TrimSpace(string(h[:end]))
	if tag == "" || len(tag) > 35 || !isToken(strings.ToLower(strings.ReplaceAll(tag, "-", "")), false) && tag != "*" {
		return "und"
	}
	return tag
}

// publishFailure names why JetStream refused a hit, as a metric reason: a
// full stream (discard policy new) is an operator's problem of another kind
// than an unreachable server.
func publishFailure(err error) string {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && strings.HasPrefix(apiErr.Description, "maximum ") {
		return "stream_full" // "maximum bytes/messages exceeded"
	}
	return "unavailable"
}

// originAllowed accepts the site's domain and its subdomains, over http or https.
func originAllowed(origin, domain string) bool {
	_, host, ok := strings.Cut(origin, "://")
	if !ok {
		return false
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(host)
	return host == domain || strings.HasSuffix(host, "."+domain)
}

func (s *Server) handleReadError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	if errors.As(err, &small) {
		s.metrics.rejected.WithLabelValues("too_large").Inc()
		writeError(ctx, fasthttp.StatusRequestHeaderFieldsTooLarge, "headers: request line and headers larger than 8 KiB")
		return
	}
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		s.metrics.rejected.WithLabelValues("too_large").Inc()
		writeError(ctx, fasthttp.StatusRequestEntityTooLarge, fmt.Sprintf("body: larger than %d bytes", MaxBatchBytes))
		return
	}
	// A connection that sent nothing within the read timeout (an HTTP
	// client's spare connection, say) gets a 408 and is closed, as fasthttp
	// would answer it; it is not a hit, so it is not counted as a bad one.
	var netErr net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout() {
		s.metrics.rejected.WithLabelValues("timeout").Inc()
		writeError(ctx, fasthttp.StatusRequestTimeout, "request: not received within the read timeout")
		return
	}
	s.metrics.rejected.WithLabelValues("bad_request").Inc()
	writeError(ctx, fasthttp.StatusBadRequest, "request: cannot be read")
}

func writeError(ctx *fasthttp.RequestCtx, status int, msg string) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(appendJSONError(nil, msg))
}

// appendJSONError writes {"error":"msg"} with msg escaped as a JSON string.
func appendJSONError(b []byte, msg string) []byte {
	b = append(b, `{"error":`...)
	b = appendQuoted(b, msg)
	return append(b, '}')
}

func appendQuoted(b []byte, s string) []byte {
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r < 0x20:
			b = fmt.Appendf(b, `\u%04x`, r)
		default:
			b = append(b, string(r)...)
		}
	}
	return append(b, '"')
}

type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Printf(format string, args ...any) {
	p.log.Debug(fmt.Sprintf(format, args...))
}

type metrics struct {
	accepted   prometheus.Counter
	duplicates prometheus.Counter
	rejected   *prometheus.CounterVec
	// identifyFreeMail counts identify hits with a free-mail address.
	identifyFreeMail prometheus.Counter
	publishSeconds   prometheus.Histogram
	hitsPerMessage   prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leadpipe_collector_hits_accepted_total", Help: "Hits durably queued (answered 202).",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leadpipe_collector_hits_duplicate_total", Help: "Accepted hits JetStream recognised as retries of an earlier hit.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leadpipe_collector_hits_rejected_total", Help: "Hits refused, by reason.",
		}, []string{"reason"}),
		publishSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "leadpipe_collector_publish_seconds", Help: "Time from publish to JetStream acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 14),
		}),
		hitsPerMessage: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "leadpipe_collector_hits_per_message", Help: "Hits per JetStream message (hits published together share one).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 9),
		}),
	}
	for _, r := range []string{"malformed", "unknown_site", "origin", "too_large", "bad_request", "unavailable", "stream_full", "rate_limited", "unauthorized"} {
		m.rejected.WithLabelValues(r)
	}
	m.identifyFreeMail = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "leadpipe_collector_identify_free_mail_total", Help: "Identify hits not queued: the address was a free or disposable mail provider's (answered 204).",
	})
	reg.MustRegister(m.accepted, m.duplicates, m.rejected, m.publishSeconds, m.hitsPerMessage, m.identifyFreeMail)
	return m
}
