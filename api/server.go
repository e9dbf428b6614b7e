package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leadpipe/leadpipe/internal/tenant"
	"github.com/leadpipe/leadpipe/internal/tlsfiles"
	"github.com/leadpipe/leadpipe/internal/visitorid"
	"github.com/leadpipe/leadpipe/ipintel"
	"github.com/leadpipe/leadpipe/store"
)

// Config is the query API's configuration.
type Config struct {
	// Addr is the listen address.
	Addr string
	// CollectorURL is the collector's public URL, shown in the dashboard's
	// tracking snippet.
	CollectorURL string
	// TLSCert and TLSKey are PEM files; with them the API and dashboard
	// speak HTTPS only, and send HSTS.
	TLSCert, TLSKey string
	// PublicURL is where browsers reach the dashboard; identity providers
	// send them back to <PublicURL>/login/<provider>/callback.
	PublicURL string
	// OIDC names the identity providers of the dashboard's sign-in.
	OIDC OIDCConfig
	// Logos lets the dashboard show companies' favicons, fetched by the
	// reader's browser from each company's own site (off: the dashboard
	// loads nothing from a third party).
	Logos bool

	tls       *tls.Config
	providers []*provider
}

// TLS is the API's TLS configuration (after Validate), nil for plain HTTP.
func (c *Config) TLS() *tls.Config { return c.tls }

// RegisterFlags registers the api.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "api.addr", "127.0.0.1:8090", "query API and dashboard listen address")
	fs.BoolVar(&c.Logos, "api.logos", false, "show companies' logos in the dashboard: the reader's browser fetches each company's favicon from its own site")
	fs.StringVar(&c.TLSCert, "api.tls-cert", "", "PEM certificate chain: serve HTTPS (with --api.tls-key)")
	fs.StringVar(&c.TLSKey, "api.tls-key", "", "PEM private key of --api.tls-cert")
	fs.StringVar(&c.PublicURL, "api.public-url", "", "the dashboard's public URL, for sign-in redirects (default: http(s)://<api.addr>)")
	c.OIDC.registerFlags(fs)
	fs.StringVar(&c.CollectorURL, "api.collector-url", "", "the collector's public URL, for the dashboard's tracking snippet (default: http://<collector.addr> under serve)")
}

// Validate refuses values that cannot work, naming the flag.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("--api.addr: %q is not host:port", c.Addr)
	}
	var err error
	if c.tls, err = tlsfiles.Load("--api.tls", c.TLSCert, c.TLSKey); err != nil {
		return err
	}
	if c.PublicURL == "" {
		scheme := "http"
		if c.tls != nil {
			scheme = "https"
		}
		c.PublicURL = scheme + "://" + c.Addr
	}
	if u, err := url.Parse(c.PublicURL); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("--api.public-url: %q is not an http(s) URL", c.PublicURL)
	}
	c.providers, err = c.OIDC.providers(c.PublicURL)
	return err
}

// IPData is the current IP intelligence snapshot; *ipintel.Store is one.
type IPData interface {
	DB() *ipintel.DB
}

// LearnedNetworks are the networks learned from identifications;
// *ipintel.Learner is one.
type LearnedNetworks interface {
	Lookup(ip netip.Addr) (*ipintel.LearnedNetwork, bool)
	Networks() []*ipintel.LearnedNetwork
	Remove(ctx context.Context, network netip.Prefix, by string) (bool, error)
	Forget(ctx context.Context, site, visitor string) (int, error)
	Identifications(ctx context.Context, site, visitor string) ([]ipintel.VisitorIdentification, error)
}

// RDAPAnswers gives the RDAP answer known for an IP's network, without
// asking a registry; *ipintel.RDAP is one.
type RDAPAnswers interface {
	Lookup(ip netip.Addr) (*ipintel.RDAPAnswer, bool)
}

// PTR gives what reverse DNS says of an IP without waiting; *ipintel.RDNS
// is one.
type PTR interface {
	Peek(ip netip.Addr) (ipintel.PTRSignal, bool)
}

// Server is the query API.
type Server struct {
	cfg      Config
	db       *store.DB
	tenants  *tenant.Store
	ipdata   IPData
	ptr      PTR
	rdap     RDAPAnswers
	learned  LearnedNetworks
	visitors *visitorid.Keys
	erased   *visitorid.Erased
	audit    *auditLog
	// authLimit refuses addresses that failed to authenticate too often.
	authLimit *authLimiter
	ready     func(context.Context) error
	log       *slog.Logger
	handler   http.Handler
	routes    []Route
	reqs      *prometheus.CounterVec
	// siteCopies are the copies of the sites in ClickHouse (sites.go).
	siteCopies siteCopies
}

// Deps are what the API stands on, given by the wiring.
type Deps struct {
	ClickHouse driver.Conn
	Tenants    *tenant.Store
	Visitors   *visitorid.Keys
	Erased     *visitorid.Erased
	IPData     IPData
	// PTR may be nil: reverse DNS off.
	PTR PTR
	// RDAP may be nil: RDAP off.
	RDAP RDAPAnswers
	// Learned may be nil: no learned networks.
	Learned LearnedNetworks
	// Ready reports whether the whole pipeline can take and serve hits;
	// /readyz answers from it.
	Ready func(context.Context) error
}

// New builds the API; its own metrics are registered with reg.
func New(cfg Config, deps Deps, reg prometheus.Registerer, log *slog.Logger) *Server {
	s := &Server{cfg: cfg, db: store.New(deps.ClickHouse), tenants: deps.Tenants, visitors: deps.Visitors, erased: deps.Erased,
		ipdata: deps.IPData, ptr: deps.PTR, rdap: deps.RDAP, learned: deps.Learned, ready: deps.Ready, log: log}
	s.reqs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "leadpipe_api_requests_total", Help: "API requests by route and status class.",
	}, []string{"route", "code"})
	reg.MustRegister(s.reqs)
	s.audit = newAuditLog(s.db, reg, log)
	s.authLimit = newAuthLimiter()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := s.ready(r.Context()); err != nil {
			writeError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		w.Write([]byte("ready\n"))
	})
	s.route(mux, "POST /api/v1/accounts", tenant.RoleAdmin, s.createAccount)
	s.route(mux, "GET /api/v1/accounts", tenant.RoleViewer, s.listAccounts)
	s.route(mux, "POST /api/v1/sites", tenant.RoleAdmin, s.createSite)
	s.route(mux, "GET /api/v1/sites", tenant.RoleViewer, s.listSites)
	s.route(mux, "PATCH /api/v1/sites/{site}", tenant.RoleAdmin, s.updateSite)
	s.route(mux, "DELETE /api/v1/sites/{site}", tenant.RoleAdmin, s.deleteSite)
	s.route(mux, "DELETE /api/v1/accounts/{account}", tenant.RoleAdmin, s.deleteAccount)
	s.route(mux, "POST /api/v1/sites/{site}/secret", tenant.RoleAdmin, s.rotateSiteSecret)
	s.route(mux, "POST /api/v1/keys", tenant.RoleAdmin, s.createKey)
	s.route(mux, "GET /api/v1/keys", tenant.RoleAdmin, s.listKeys)
	s.route(mux, "DELETE /api/v1/keys/{id}", tenant.RoleAdmin, s.revokeKey)
	s.route(mux, "POST /api/v1/users", tenant.RoleAdmin, s.createUser)
	s.route(mux, "GET /api/v1/users", tenant.RoleAdmin, s.listUsers)
	s.route(mux, "DELETE /api/v1/users/{id}", tenant.RoleAdmin, s.deleteUser)
	s.route(mux, "GET /api/v1/sites/{site}/companies", tenant.RoleViewer, s.companies)
	s.route(mux, "GET /api/v1/sites/{site}/companies/{id}", tenant.RoleViewer, s.company)
	s.route(mux, "GET /api/v1/sites/{site}/feeds", tenant.RoleViewer, s.listFeeds)
	s.route(mux, "POST /api/v1/sites/{site}/feeds", tenant.RoleAnalyst, s.saveFeed)
	s.route(mux, "DELETE /api/v1/sites/{site}/feeds/{id}", tenant.RoleAnalyst, s.deleteFeed)
	s.route(mux, "GET /api/v1/sites/{site}/filtered", tenant.RoleViewer, s.filtered)
	s.route(mux, "GET /api/v1/sites/{site}/status", tenant.RoleViewer, s.status)
	s.route(mux, "GET /api/v1/sites/{site}/export", tenant.RoleAnalyst, s.export)
	s.route(mux, "GET /api/v1/ip/{ip}", tenant.RoleViewer, s.ip)
	s.route(mux, "GET /api/v1/audit", tenant.RoleAdmin, s.auditEntries)
	s.route(mux, "GET /api/v1/learned", tenant.RoleAdmin, s.listLearned)
	s.route(mux, "DELETE /api/v1/learned/{network...}", tenant.RoleAdmin, s.removeLearned)
	s.route(mux, "GET /api/v1/sites/{site}/visitors/{cid}/export", tenant.RoleAdmin, s.exportVisitor)
	s.route(mux, "DELETE /api/v1/sites/{site}/visitors/{cid}", tenant.RoleAdmin, s.eraseVisitor)
	s.dashboardRoutes(mux)
	s.oidcRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "path: not found")
	})
	s.handler = hsts(http.MaxBytesHandler(mux, 1<<20))
	return s
}

// hsts tells browsers that came over HTTPS to use nothing else for a year.
func hsts(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			w.Header().Set("Strict-Transport-Security", "max-age=31536000")
		}
		h.ServeHTTP(w, r)
	})
}

// Handler is the API's HTTP handler (tests mount it on httptest servers).
func (s *Server) Handler() http.Handler { return s.handler }

// Run serves until ctx ends, then finishes requests in flight.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      5 * time.Minute, // exports stream for a while
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	go s.maintain(ctx)
	select {
	case err := <-errc:
		return fmt.Errorf("api: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	s.audit.close()
	return err
}

// Route is an authenticated endpoint and the least role it needs.
type Route struct {
	Pattern string
	Min     tenant.Role
}

// Routes lists the authenticated endpoints (tests probe every one).
func (s *Server) Routes() []Route { return s.routes }

// route registers an authenticated handler that needs at least role min.
func (s *Server) route(mux *http.ServeMux, pattern string, min tenant.Role, h func(http.ResponseWriter, *http.Request, tenant.Key)) {
	s.routes = append(s.routes, Route{pattern, min})
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		key, valid := s.tenants.Authenticate(strings.TrimSpace(token))
		defer func() {
			s.reqs.WithLabelValues(pattern, fmt.Sprintf("%dxx", sw.code/100)).Inc()
			// Every request is audited, refused ones too.
			s.audit.record(auditEntry{TS: time.Now(), KeyID: key.ID, Role: string(key.Role), Method: r.Method,
				Route: pattern, SiteID: r.PathValue("site"), Status: uint16(sw.code), Rows: uint64(sw.rows), Remote: remoteIP(r)})
		}()
		if s.authLimit.blocked(remoteIP(r)) {
			refuseAuth(sw)
			return
		}
		if !ok || !valid {
			s.authLimit.failed(remoteIP(r))
			sw.Header().Set("WWW-Authenticate", `Bearer realm="leadpipe"`)
			writeError(sw, http.StatusUnauthorized, "authorization: missing or invalid API key")
			return
		}
		if !key.AtLeast(min) {
			writeError(sw, http.StatusForbidden, fmt.Sprintf("role: this needs the %s role", min))
			return
		}
		h(sw, r, key)
	})
}

type statusWriter struct {
	http.ResponseWriter
	code int
	rows int // rows of customer data the answer carried, for the audit log
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// site resolves the {site} path value for a key: a site the key was not
// granted is indistinguishable from one that does not exist.
func (s *Server) site(w http.ResponseWriter, r *http.Request, key tenant.Key) (tenant.Site, bool) {
	id := r.PathValue("site")
	site, ok := s.tenants.Site(id)
	if !ok || !key.CanRead(site) {
		writeError(w, http.StatusNotFound, "site: not found")
		return tenant.Site{}, false
	}
	return site, true
}

// dbUnavailable logs what failed and answers 503: ClickHouse could not be
// read or written now; the client may retry.
func (s *Server) dbUnavailable(w http.ResponseWriter, what string, err error) {
	s.log.Error(what, "err", err)
	writeError(w, http.StatusServiceUnavailable, "database: unavailable, retry")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// decodeBody reads a JSON request body into v, refusing unknown fields.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "body: too large")
			return false
		}
		writeError(w, http.StatusBadRequest, "body: "+err.Error())
		return false
	}
	return true
}
