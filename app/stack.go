package app

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
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/leadpipe/leadpipe/api"
	"github.com/leadpipe/leadpipe/collector"
	"github.com/leadpipe/leadpipe/internal/bus"
	"github.com/leadpipe/leadpipe/internal/chengine"
	"github.com/leadpipe/leadpipe/internal/tenant"
	"github.com/leadpipe/leadpipe/internal/visitorid"
	"github.com/leadpipe/leadpipe/ipintel"
	"github.com/leadpipe/leadpipe/processor"
	"github.com/leadpipe/leadpipe/store"
)

// Stages picks what a process runs.
type Stages struct {
	Collector, Processor, API bool
}

// All is every stage: `leadpipe serve`.
var All = Stages{Collector: true, Processor: true, API: true}

// Config is the whole process's configuration.
type Config struct {
	// DataDir holds all local state: JetStream store, managed ClickHouse
	// data, the owner key.
	DataDir string
	// Demo creates a demo site and feeds it synthetic traffic.
	Demo bool
	// IPData is where the IP intelligence comes from.
	IPData ipintel.Config

	// MetricsAddr serves /metrics (and /readyz) for every role, apart from
	// the public collector and API ports; empty: no metrics listener.
	MetricsAddr string
	// PprofAddr, when set, serves Go's profiler (net/http/pprof) there:
	// for measuring, never on a public address.
	PprofAddr string

	Stages     Stages
	NATS       bus.Config
	ClickHouse chengine.Config
	Collector  collector.Config
	Processor  processor.Config
	API        api.Config
}

// RegisterFlags registers every flag of the stages in c.Stages.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.DataDir, "data-dir", "./data", "all local state: JetStream store, managed ClickHouse data, keys")
	if c.Stages.Processor || c.Stages.API {
		c.IPData.RegisterFlags(fs)
	}
	c.NATS.RegisterFlags(fs)
	if c.Stages.Processor || c.Stages.API {
		c.ClickHouse.RegisterFlags(fs)
	}
	if c.Stages.Collector {
		c.Collector.RegisterFlags(fs)
	}
	if c.Stages.Processor {
		c.Processor.RegisterFlags(fs)
	}
	if c.Stages.API {
		c.API.RegisterFlags(fs)
	}
	fs.StringVar(&c.MetricsAddr, "metrics.addr", "127.0.0.1:9464", "address serving Prometheus /metrics (and /readyz); keep it private (empty: off)")
	fs.StringVar(&c.PprofAddr, "debug.pprof-addr", "", "serve Go's profiler (/debug/pprof/) on this address; keep it private (empty: off)")
	if c.Stages == All {
		fs.BoolVar(&c.Demo, "demo", false, "create a demo site and feed it synthetic traffic")
	}
}

// Validate checks every stage's flags; the error names the flag.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("--data-dir: must not be empty")
	}
	if c.Demo {
		// The demo traffic comes from loopback with X-Forwarded-For set to
		// addresses of real networks.
		c.Collector.TrustedProxies = joinList(c.Collector.TrustedProxies, "127.0.0.1/32,::1/128")
	}
	if err := c.NATS.Validate(); err != nil {
		return err
	}
	if c.Stages != All && c.NATS.URL == "" {
		return errors.New("--nats.url: required when a stage runs on its own (use `leadpipe serve` for the embedded server)")
	}
	if c.Stages.Processor || c.Stages.API {
		if err := c.IPData.Validate(); err != nil {
			return err
		}
		if err := c.ClickHouse.Validate(); err != nil {
			return err
		}
		if c.Stages != All && c.ClickHouse.Addr == "" {
			return errors.New("--clickhouse.addr: required when a stage runs on its own (use `leadpipe serve` for the managed engine)")
		}
	}
	if c.Stages.Collector {
		if err := c.Collector.Validate(); err != nil {
			return err
		}
	}
	if c.Stages.Processor {
		if err := c.Processor.Validate(); err != nil {
			return err
		}
	}
	if c.Stages.API {
		if err := c.API.Validate(); err != nil {
			return err
		}
	}
	if c.PprofAddr != "" {
		if _, _, err := net.SplitHostPort(c.PprofAddr); err != nil {
			return fmt.Errorf("--debug.pprof-addr: %q is not host:port", c.PprofAddr)
		}
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			return fmt.Errorf("--metrics.addr: %q is not host:port", c.MetricsAddr)
		}
	}
	if c.Stages.Collector && c.Stages.API && c.Collector.Addr == c.API.Addr && !strings.HasSuffix(c.API.Addr, ":0") {
		return fmt.Errorf("--api.addr: %s is also --collector.addr", c.API.Addr)
	}
	return nil
}

func joinList(a, b string) string {
	if a == "" {
		return b
	}
	return a + "," + b
}

// Stack is a running process of one or more stages.
type Stack struct {
	cfg Config
	log *slog.Logger

	// CollectorAddr, APIAddr and MetricsAddr are the bound listen addresses.
	CollectorAddr, APIAddr, MetricsAddr string
	// DemoSite is the demo site's id under --demo.
	DemoSite string
	// OwnerKeyPath is where the owner key is, when the API runs.
	OwnerKeyPath string

	Bus        *bus.Bus
	ClickHouse *chengine.Server
	Tenants    *tenant.Store
	Registry   *prometheus.Registry

	// IPData is the reloadable IP intelligence, when a stage uses it.
	IPData *ipintel.Store

	conn      driver.Conn
	proc      *processor.Processor
	rdns      *ipintel.RDNS
	rdap      *ipintel.RDAP
	learner   *ipintel.Learner
	reloadSub *nats.Subscription
	pprofLn   net.Listener
	lock      *os.File
	cancel    context.CancelFunc
	group     *errgroup.Group
	stopOnce  sync.Once
	stopErr   error
}

// Start brings up the configured stages and returns once they all serve.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (_ *Stack, err error) {
	s := &Stack{cfg: cfg, log: log, Registry: prometheus.NewRegistry()}
	s.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ln := &listeners{}
	defer func() {
		if err != nil {
			ln.close()
			s.closeResources()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("--data-dir: creating %s: %w", cfg.DataDir, err)
	}
	if s.lock, err = LockDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	// Listeners first: a taken port fails before anything heavy starts.
	if err := s.listen(ln); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	b, err := s.open(ctx, runCtx)
	if err != nil {
		return nil, err
	}
	s.run(runCtx, ln, b)
	return s, nil
}

// listeners are the process's own addresses, opened before anything else.
type listeners struct {
	collector, api, metrics net.Listener
}

func (l *listeners) close() {
	for _, ln := range []net.Listener{l.collector, l.api, l.metrics} {
		if ln != nil {
			ln.Close()
		}
	}
}

// listen opens the listeners of the configured stages (and the profiler's).
func (s *Stack) listen(l *listeners) error {
	cfg := s.cfg
	var err error
	if cfg.Stages.Collector {
		if l.collector, err = net.Listen("tcp", cfg.Collector.Addr); err != nil {
			return fmt.Errorf("--collector.addr: %w", err)
		}
		s.CollectorAddr = l.collector.Addr().String()
		if t := cfg.Collector.TLS(); t != nil {
			l.collector = tls.NewListener(l.collector, t)
		}
	}
	if cfg.Stages.API {
		if l.api, err = net.Listen("tcp", cfg.API.Addr); err != nil {
			return fmt.Errorf("--api.addr: %w", err)
		}
		s.APIAddr = l.api.Addr().String()
		if t := cfg.API.TLS(); t != nil {
			l.api = tls.NewListener(l.api, t)
		}
	}
	if cfg.MetricsAddr != "" {
		if l.metrics, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			return fmt.Errorf("--metrics.addr: %w", err)
		}
		s.MetricsAddr = l.metrics.Addr().String()
	}
	if cfg.PprofAddr != "" {
		ln, err := net.Listen("tcp", cfg.PprofAddr)
		if err != nil {
			return fmt.Errorf("--debug.pprof-addr: %w", err)
		}
		s.pprofLn = ln
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		go func() { _ = http.Serve(ln, mux) }()
		s.log.Info("serving the Go profiler", "addr", ln.Addr().String())
	}
	return nil
}

// backends are what open built for the stages beyond the Stack's own
// fields.
type backends struct {
	erased *visitorid.Erased
	demo   *demoTraffic
}

// open loads the IP data and reaches NATS, the tenant store and
// ClickHouse (migrating it), as the configured stages need them.
func (s *Stack) open(ctx, runCtx context.Context) (backends, error) {
	cfg, log := s.cfg, s.log
	var b backends
	var err error
	needsData := cfg.Stages.Processor || cfg.Stages.API
	if needsData {
		src := cfg.IPData.Sources()
		src.Registry = ipintel.RegistryFile(cfg.DataDir)
		if s.IPData, err = ipintel.OpenStore(src, log.With("component", "ipdb")); err != nil {
			return b, fmt.Errorf("IP data: %w (run `make setup` to fetch it)", err)
		}
		if cfg.IPData.RDNS {
			s.rdns = ipintel.NewRDNS(cfg.IPData.RDNSConfig())
		}
	}
	if s.Bus, err = bus.Open(ctx, cfg.NATS, cfg.DataDir, log); err != nil {
		return b, err
	}
	if s.Tenants, err = tenant.Open(runCtx, s.Bus.JS, log); err != nil {
		return b, err
	}
	if needsData {
		if err := s.openLayers(ctx); err != nil {
			return b, err
		}
	}
	if needsData {
		if s.ClickHouse, err = chengine.Start(ctx, cfg.ClickHouse, cfg.DataDir, log); err != nil {
			return b, err
		}
		if err := s.ClickHouse.RegisterMetrics(s.Registry); err != nil {
			return b, err
		}
		if err := migrate(ctx, s.ClickHouse, log); err != nil {
			return b, err
		}
		if s.conn, err = s.ClickHouse.Open(); err != nil {
			return b, fmt.Errorf("connecting to ClickHouse: %w", err)
		}
		if b.erased, err = visitorid.OpenErased(runCtx, s.Bus.JS, cfg.NATS.HitsMaxAge); err != nil {
			return b, err
		}
	}
	if cfg.Stages.API {
		s.OwnerKeyPath = filepath.Join(cfg.DataDir, "owner.key")
		created, err := s.Tenants.EnsureOwnerKey(ctx, s.OwnerKeyPath)
		if err != nil {
			return b, err
		}
		if created {
			log.Info("created the owner API key", "path", s.OwnerKeyPath)
		}
	}
	if cfg.Demo {
		if b.demo, err = prepareDemo(ctx, s); err != nil {
			return b, err
		}
	}
	if s.IPData != nil {
		if s.reloadSub, err = s.Bus.Conn.Subscribe(bus.IPDBReloadSubject, s.answerReload); err != nil {
			return b, fmt.Errorf("subscribing to %s: %w", bus.IPDBReloadSubject, err)
		}
	}
	return b, nil
}

// run starts every built stage. Nothing here fails: a stage that stops
// with an error stops the others, so the process exits rather than serve
// half a pipeline.
func (s *Stack) run(runCtx context.Context, ln *listeners, b backends) {
	cfg, log := s.cfg, s.log
	s.group = &errgroup.Group{}
	stage := func(name string, run func() error) {
		s.group.Go(func() error {
			err := run()
			if err != nil {
				log.Error("stage failed; stopping", "stage", name, "err", err)
				s.cancel()
			}
			return err
		})
	}
	// One /metrics handler over the process's registry, on the metrics
	// listener only: never on the public collector or API ports.
	metrics := promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{})
	// The collector and API stop on runCtx; the processor on its own context,
	// cancelled only after the collector has stopped, so it drains last.
	procCtx, cancelProc := context.WithCancel(context.Background())
	collectorDone := make(chan struct{})
	go func() {
		<-runCtx.Done()
		<-collectorDone
		cancelProc()
	}()
	if s.rdns != nil {
		stage("rdns", func() error { return s.rdns.Run(runCtx) })
	}
	if s.rdap != nil {
		stage("rdap", func() error { return s.rdap.Run(runCtx) })
	}
	if s.learner != nil && cfg.IPData.Learn {
		stage("learner", func() error { return s.learner.Run(runCtx) })
	}
	if s.ClickHouse != nil && s.ClickHouse.Managed() {
		// A managed engine that exits is restarted; one that cannot be
		// brought back stops the process rather than leave it half up.
		stage("clickhouse-engine", func() error { return s.ClickHouse.Wait(runCtx) })
	}
	if cfg.Stages.Processor {
		deps := processor.Deps{JS: s.Bus.JS, ClickHouse: s.conn, IPData: s.IPData, Sites: s.Tenants, Erased: b.erased}
		if s.rdns != nil {
			deps.PTR = s.rdns
		}
		if s.rdap != nil {
			deps.RDAP = s.rdap
		}
		if s.learner != nil && cfg.IPData.Learn {
			deps.Learned = s.learner
		}
		s.proc = processor.New(cfg.Processor, deps, s.Registry, log.With("component", "processor"))
		stage("processor", func() error { return s.proc.Run(procCtx) })
	}
	if cfg.Stages.Collector {
		col := collector.New(cfg.Collector, collector.Deps{JS: s.Bus.JS, Sites: s.Tenants, Ready: s.Ready},
			s.Registry, log.With("component", "collector"))
		stage("collector", func() error {
			defer close(collectorDone)
			return col.Run(runCtx, ln.collector)
		})
	} else {
		close(collectorDone)
	}
	if cfg.Stages.API {
		var ptr api.PTR
		if s.rdns != nil {
			ptr = s.rdns
		}
		var rdap api.RDAPAnswers
		if s.rdap != nil {
			rdap = s.rdap
		}
		var learned api.LearnedNetworks
		if s.learner != nil {
			learned = s.learner
		}
		apiCfg := cfg.API
		if apiCfg.CollectorURL == "" && s.CollectorAddr != "" {
			apiCfg.CollectorURL = "http://" + s.CollectorAddr
			if cfg.Collector.TLS() != nil {
				apiCfg.CollectorURL = "https://" + s.CollectorAddr
			}
		}
		api := api.New(apiCfg, api.Deps{ClickHouse: s.conn, Tenants: s.Tenants, Visitors: visitorid.NewKeys(s.Bus.JS), Erased: b.erased,
			IPData: s.IPData, PTR: ptr, RDAP: rdap, Learned: learned, Ready: s.Ready}, s.Registry, log.With("component", "api"))
		stage("api", func() error { return api.Run(runCtx, ln.api) })
	}
	if ln.metrics != nil {
		stage("metrics", func() error { return s.serveMetrics(runCtx, ln.metrics, metrics) })
	}
	if b.demo != nil {
		stage("demo", func() error { b.demo.run(runCtx, s.log); return nil })
	}
}

// ReloadIPData rebuilds the IP data from its files and swaps it in; on any
// error the current data stays. SIGHUP and `leadpipe ipdb reload` call it.
func (s *Stack) ReloadIPData() error {
	if s.IPData == nil {
		return errors.New("this process holds no IP data")
	}
	return s.IPData.Reload()
}

// answerReload serves a `leadpipe ipdb reload` request.
func (s *Stack) answerReload(msg *nats.Msg) {
	start := time.Now()
	err := s.ReloadIPData()
	host, _ := os.Hostname()
	reply := bus.IPDBReloadReply{Process: fmt.Sprintf("%s pid %d", host, os.Getpid()), OK: err == nil, Took: time.Since(start).Round(time.Millisecond).String()}
	if err != nil {
		reply.Error = err.Error()
	}
	data, _ := json.Marshal(reply)
	_ = msg.Respond(data)
}

func migrate(ctx context.Context, ch *chengine.Server, log *slog.Logger) error {
	def, err := ch.OpenDefault()
	if err != nil {
		return fmt.Errorf("connecting to ClickHouse: %w", err)
	}
	defer def.Close()
	if err := store.CreateDatabase(ctx, def, ch.Database()); err != nil {
		return err
	}
	conn, err := ch.Open()
	if err != nil {
		return fmt.Errorf("connecting to ClickHouse: %w", err)
	}
	defer conn.Close()
	if _, err := store.Migrate(ctx, conn, log); err != nil {
		return err
	}
	return nil
}

// serveMetrics serves /metrics and /readyz on the metrics address.
func (s *Stack) serveMetrics(ctx context.Context, ln net.Listener, metrics http.Handler) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := s.Ready(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics server: %w", err)
	}
	return nil
}

// Ready reports whether the stages of this process can take and serve hits.
func (s *Stack) Ready(ctx context.Context) error {
	if err := s.Bus.Ready(ctx); err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	if s.ClickHouse != nil {
		if err := s.ClickHouse.Down(); err != nil {
			return fmt.Errorf("clickhouse: %w", err)
		}
	}
	if s.conn != nil {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := s.conn.Ping(pctx); err != nil {
			return fmt.Errorf("clickhouse: %w", err)
		}
	}
	if s.proc != nil {
		if err := s.proc.Healthy(); err != nil {
			return err
		}
	}
	return nil
}

// Wait blocks until a stage fails or the stack is stopped.
func (s *Stack) Wait() error { return s.group.Wait() }

// Stop shuts down in order: stop accepting hits, let the processor drain
// what it holds, then close NATS and stop the managed ClickHouse.
func (s *Stack) Stop() error {
	s.stopOnce.Do(func() {
		s.cancel()
		s.stopErr = s.group.Wait()
		s.closeResources()
		s.log.Info("stopped")
	})
	return s.stopErr
}

func (s *Stack) closeResources() {
	if s.cancel != nil {
		s.cancel()
	}
	if s.reloadSub != nil {
		_ = s.reloadSub.Unsubscribe()
	}
	if s.pprofLn != nil {
		s.pprofLn.Close()
	}
	if s.conn != nil {
		s.conn.Close()
	}
	if s.Bus != nil {
		s.Bus.Close()
	}
	if s.ClickHouse != nil {
		if err := s.ClickHouse.Close(); err != nil {
			s.log.Warn("stopping ClickHouse", "err", err)
		}
	}
	if s.lock != nil {
		s.lock.Close()
	}
}

// LockDataDir keeps two processes from sharing one data dir: it fails while
// another holds the lock (a running serve). Close the file to release it.
func LockDataDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "leadpipe.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("--data-dir: %s is in use by another leadpipe process", dir)
	}
	return f, nil
}
