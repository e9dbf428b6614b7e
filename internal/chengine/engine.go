package chengine

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/leadpipe/leadpipe/internal/cache"
	"github.com/leadpipe/leadpipe/internal/tlsfiles"
)

// Config selects the ClickHouse server and how to reach it.
type Config struct {
	// Addr is an external server's native-protocol address (host:port);
	// empty means a managed local engine under the data dir.
	Addr string
	// Database holds every leadpipe table.
	Database string
	// User and Password authenticate to an external server.
	User     string
	Password string
	// Engine picks the managed engine: auto (a clickhouse binary on PATH,
	// else libchdb), binary or chdb.
	Engine string
	// EngineLib is the path of libchdb.so for the chdb engine.
	EngineLib string
	// NativeAddr and HTTPAddr fix where a managed engine takes clients
	// (a BI tool's connection survives restarts of serve); empty is a free
	// loopback port. Loopback only: the engine has no credentials of its
	// own.
	NativeAddr, HTTPAddr string
	// MaxFailedStarts is how many starts of a managed engine in a row may
	// fail (not answer, or exit again within a minute) before leadpipe
	// gives up restarting it; 0 means the default, 5.
	MaxFailedStarts int
	// TLS speaks TLS to an external server (its tcp_port_secure, 9440 by
	// default): TLSCA is the CA that signed its certificate (empty: the
	// system's roots); TLSCert and TLSKey a client certificate, when the
	// server asks for one.
	TLS                    bool
	TLSCA, TLSCert, TLSKey string

	tls *tls.Config
}

// RegisterFlags registers the clickhouse.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "clickhouse.addr", "", "external ClickHouse native-protocol address host:port (empty = managed local engine)")
	fs.StringVar(&c.Database, "clickhouse.database", "leadpipe", "ClickHouse database holding leadpipe's tables")
	fs.StringVar(&c.User, "clickhouse.user", "default", "ClickHouse user")
	fs.StringVar(&c.Password, "clickhouse.password", "", "ClickHouse password")
	fs.StringVar(&c.Engine, "clickhouse.engine", "auto", "managed engine when --clickhouse.addr is empty: auto, binary (clickhouse on PATH) or chdb")
	fs.StringVar(&c.EngineLib, "clickhouse.engine-lib", DefaultLibPath(), "path of libchdb.so for the chdb engine (fetched by make setup)")
	fs.StringVar(&c.NativeAddr, "clickhouse.engine-native-addr", "", "loopback host:port where the managed engine takes native-protocol clients, e.g. a BI tool (empty: any free port)")
	fs.StringVar(&c.HTTPAddr, "clickhouse.engine-http-addr", "", "loopback host:port of the managed engine's HTTP interface (empty: any free port)")
	fs.IntVar(&c.MaxFailedStarts, "clickhouse.engine-max-failed-starts", defaultMaxFailedStarts, "a managed engine that exits is restarted (backoff 1s doubling to 30s); after this many failed starts in a row, serve stops")
	fs.BoolVar(&c.TLS, "clickhouse.tls", false, "speak TLS to --clickhouse.addr (its secure native port, usually 9440)")
	fs.StringVar(&c.TLSCA, "clickhouse.tls-ca", "", "PEM CA of the ClickHouse server's certificate (empty: the system's roots)")
	fs.StringVar(&c.TLSCert, "clickhouse.tls-cert", "", "PEM client certificate, when the server requires one (with --clickhouse.tls-key)")
	fs.StringVar(&c.TLSKey, "clickhouse.tls-key", "", "PEM private key of --clickhouse.tls-cert")
}

// Validate refuses values that cannot work, naming the flag.
func (c *Config) Validate() error {
	if c.Addr != "" {
		if _, port, err := net.SplitHostPort(c.Addr); err != nil || port == "" {
			return fmt.Errorf("--clickhouse.addr: %q is not host:port", c.Addr)
		}
	}
	if !validIdent(c.Database) {
		return fmt.Errorf("--clickhouse.database: %q is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*)", c.Database)
	}
	switch c.Engine {
	case "auto", "binary", "chdb":
	default:
		return fmt.Errorf("--clickhouse.engine: %q is not one of auto, binary, chdb", c.Engine)
	}
	for _, a := range []struct{ flag, addr string }{{"--clickhouse.engine-native-addr", c.NativeAddr}, {"--clickhouse.engine-http-addr", c.HTTPAddr}} {
		if a.addr == "" {
			continue
		}
		if c.Addr != "" {
			return fmt.Errorf("%s: only for the managed engine (without --clickhouse.addr)", a.flag)
		}
		host, _, err := net.SplitHostPort(a.addr)
		if err != nil {
			return fmt.Errorf("%s: %q is not host:port", a.flag, a.addr)
		}
		if ip, err := netip.ParseAddr(host); host != "localhost" && (err != nil || !ip.IsLoopback()) {
			return fmt.Errorf("%s: %q is not a loopback address; the managed engine has no credentials, so it only listens on this machine", a.flag, a.addr)
		}
	}
	if c.MaxFailedStarts < 0 {
		return fmt.Errorf("--clickhouse.engine-max-failed-starts: %d is negative", c.MaxFailedStarts)
	}
	if !c.TLS && (c.TLSCA != "" || c.TLSCert != "" || c.TLSKey != "") {
		return errors.New("--clickhouse.tls: needed with --clickhouse.tls-ca, -cert or -key")
	}
	if c.TLS {
		if c.Addr == "" {
			return errors.New("--clickhouse.tls: only for an external ClickHouse (--clickhouse.addr); the managed engine listens on loopback")
		}
		var err error
		if c.tls, err = tlsfiles.Client("--clickhouse.tls", c.TLSCA, c.TLSCert, c.TLSKey); err != nil {
			return err
		}
		c.tls.ServerName, _, _ = net.SplitHostPort(c.Addr)
	}
	return nil
}

func validIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// DefaultLibPath is where `make setup` leaves libchdb.so: the download
// cache outside the repository, because the library is 566 MB.
func DefaultLibPath() string {
	if p := os.Getenv("LEADPIPE_CHDB_LIB"); p != "" {
		return p
	}
	return filepath.Join(cache.Current(), "libchdb.so")
}

// Server is a reachable ClickHouse server: external, or a managed child.
type Server struct {
	// Addr is the native-protocol address.
	Addr string
	// HTTPAddr is the HTTP interface of a managed engine (empty if external).
	HTTPAddr string

	cfg     Config
	dir     string
	backups string
	log     *slog.Logger
	mode    string // chdb or binary for a managed engine; empty for an external server

	// engineNative and engineHTTP are where the child listens; clients of
	// a chdb engine reach them through the relays (see relay.go), whose
	// addresses are Addr and HTTPAddr.
	engineNative, engineHTTP string
	nativeRelay, httpRelay   *relay

	// runMu serialises starting and stopping the child, so that a restart
	// by the supervisor and one asked for never run two engines on one
	// data dir.
	runMu sync.Mutex
	// closed is closed by Close: no start after it.
	closed    chan struct{}
	closeOnce sync.Once
	// gaveUp is closed when the supervisor stops restarting; failure says why.
	gaveUp     chan struct{}
	giveUpOnce sync.Once
	restarts   atomic.Int64

	mu         sync.Mutex // guards the fields below
	child      *exec.Cmd
	stdin      io.WriteCloser
	exited     chan struct{}
	want       bool      // the engine should run: set by a start, cleared by a stop
	down       error     // why a wanted engine is not serving; nil while it is
	downSince  time.Time // when down was set
	failedRuns int       // starts in a row that failed or did not last
	failure    error
}

// BackupDir is where a managed engine under dataDir writes backups
// (leadpipe backup), the only place its BACKUP … TO File(…) may write.
func BackupDir(dataDir string) string { return filepath.Join(dataDir, "backups") }

// endpoint is written next to a managed engine's data so that other commands
// (leadpipe sql --data-dir) can reach the engine a running serve manages.
type endpoint struct {
	Native string `json:"native"`
	HTTP   string `json:"http"`
	PID    int    `json:"pid"`
}

// MinMajorVersion is the oldest ClickHouse release leadpipe accepts.
const MinMajorVersion = 23

// Start returns the server to use: the external one after checking that it
// answers, or a managed engine under dataDir, started and health-checked.
func Start(ctx context.Context, cfg Config, dataDir string, log *slog.Logger) (*Server, error) {
	s := &Server{cfg: cfg, log: log, dir: filepath.Join(dataDir, "clickhouse"), backups: BackupDir(dataDir),
		closed: make(chan struct{}), gaveUp: make(chan struct{})}
	if cfg.Addr != "" {
		s.Addr = cfg.Addr
		if err := s.checkReachable(ctx); err != nil {
			return nil, fmt.Errorf("--clickhouse.addr=%s: %w", cfg.Addr, err)
		}
		return s, nil
	}
	s.mode = cfg.Engine
	if s.mode == "auto" {
		s.mode = "chdb"
		if _, err := exec.LookPath("clickhouse"); err == nil {
			s.mode = "binary"
		}
	}
	// The engine silently keeps its data in a temporary place when --path
	// does not exist yet: create it first.
	if err := os.MkdirAll(filepath.Join(s.dir, "data"), 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", s.dir, err)
	}
	if s.mode == "chdb" {
		if _, err := os.Stat(cfg.EngineLib); err != nil {
			return nil, fmt.Errorf("--clickhouse.engine-lib: ClickHouse engine library not found at %s (run `make setup`, or give --clickhouse.addr): %w", cfg.EngineLib, err)
		}
	}
	if s.mode == "chdb" {
		s.newRelays()
	} else {
		// The official server needs no relay: it takes clients itself.
		s.engineNative, s.engineHTTP = s.cfg.NativeAddr, s.cfg.HTTPAddr
	}
	if err := s.StartEngine(ctx); err != nil {
		s.closeRelays()
		return nil, err
	}
	return s, nil
}

// Managed reports whether leadpipe runs this server as its child.
func (s *Server) Managed() bool { return s.mode != "" }

// PID is the managed engine's process id (0 for an external server).
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.child == nil || s.child.Process == nil {
		return 0
	}
	return s.child.Process.Pid
}

// Backups is where a managed engine writes BACKUP … TO File(name): name is
// relative to it, and nothing outside it is allowed.
func (s *Server) Backups() string { return s.backups }

// reachTimeout bounds how long a start waits for an external ClickHouse
// that refuses or drops connections: long enough for a server being
// restarted (a managed engine comes back in about 2 s), short enough that
// a wrong address fails fast.
const reachTimeout = 10 * time.Second

// checkReachable is check, tried again while the server refuses or drops
// connections, for up to reachTimeout.
func (s *Server) checkReachable(ctx context.Context) error {
	deadline := time.Now().Add(reachTimeout)
	for {
		err := s.check(ctx, s.Addr, 5*time.Second)
		if err == nil || !transient(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// transient tells a server that is not (yet) there from one that answered
// and refused.
func transient(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// check connects to addr, pings and refuses servers older than
// MinMajorVersion.
func (s *Server) check(ctx context.Context, addr string, timeout time.Duration) error {
	conn, err := s.openAt(addr, "default", timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	// The handshake tells the version; the ping proves the server answers.
	if err := conn.Ping(ctx); err != nil {
		return fmt.Errorf("cannot reach ClickHouse: %w", err)
	}
	sv, err := conn.ServerVersion()
	if err != nil {
		return fmt.Errorf("cannot reach ClickHouse: %w", err)
	}
	version := sv.Version.String()
	if int(sv.Version.Major) < MinMajorVersion {
		return fmt.Errorf("ClickHouse %s is too old: leadpipe needs %d.x or newer (Debian's clickhouse-server 18.16 lacks TTLs, query parameters and insert deduplication)", version, MinMajorVersion)
	}
	return nil
}

// Open connects to leadpipe's database on this server.
func (s *Server) Open() (driver.Conn, error) { return s.open(s.cfg.Database, 10*time.Second) }

// OpenDB connects to another database of this server (tests give each test
// its own database on one shared engine).
func (s *Server) OpenDB(database string) (driver.Conn, error) {
	return s.open(database, 10*time.Second)
}

// OpenDefault connects to the server's default database (to create leadpipe's).
func (s *Server) OpenDefault() (driver.Conn, error) { return s.open("default", 10*time.Second) }

// Database is the database leadpipe's tables live in.
func (s *Server) Database() string { return s.cfg.Database }

func (s *Server) open(database string, dialTimeout time.Duration) (driver.Conn, error) {
	return s.openAt(s.Addr, database, dialTimeout)
}

func (s *Server) openAt(addr, database string, dialTimeout time.Duration) (driver.Conn, error) {
	return clickhouse.Open(&clickhouse.Options{
		Addr: []string{addr},
		Auth: clickhouse.Auth{Database: database, Username: s.cfg.User, Password: s.cfg.Password},
		TLS:  s.cfg.tls,
		// LZ4 costs little CPU and shrinks batches of repetitive hit rows.
		Compression:     &clickhouse.Compression{Method: clickhouse.CompressionLZ4},
		DialTimeout:     dialTimeout,
		MaxOpenConns:    8,
		ConnMaxLifetime: time.Hour,
	})
}

// Endpoint reads the native address of the engine a running `serve`
// manages under dataDir.
func Endpoint(dataDir string) (string, error) {
	ep, err := readEndpoint(dataDir)
	return ep.Native, err
}

// HTTPEndpoint reads the HTTP address of the engine a running `serve`
// manages under dataDir.
func HTTPEndpoint(dataDir string) (string, error) {
	ep, err := readEndpoint(dataDir)
	return ep.HTTP, err
}

func readEndpoint(dataDir string) (endpoint, error) {
	var ep endpoint
	raw, err := os.ReadFile(filepath.Join(dataDir, "clickhouse", "endpoint.json"))
	if err != nil {
		return ep, fmt.Errorf("no running engine under --data-dir %s (is `leadpipe serve` running?): %w", dataDir, err)
	}
	if err := json.Unmarshal(raw, &ep); err != nil {
		return ep, fmt.Errorf("reading engine endpoint: %w", err)
	}
	return ep, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port for the engine: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// writeServerConfig writes the minimal config an official `clickhouse server`
// needs to serve loopback with its data under dir.
func writeServerConfig(dir, backups string, tcpPort, httpPort int) (string, error) {
	logPath, errPath := serverLogPaths(dir)
	data := filepath.Join(dir, "server")
	conf := fmt.Sprintf(`<clickhouse>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>%d</tcp_port>
  <http_port>%d</http_port>
  <path>%s/</path>
  <tmp_path>%s/tmp/</tmp_path>
  <user_files_path>%s/user_files/</user_files_path>
  <backups><allowed_path>%s/</allowed_path></backups>
  <logger><level>warning</level><log>%s</log><errorlog>%s</errorlog><size>10M</size><count>3</count></logger>
  <mark_cache_size>268435456</mark_cache_size>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
      <access_management>1</access_management>
    </default>
  </users>
  <profiles><default/></profiles>
  <quotas><default/></quotas>
</clickhouse>
`, tcpPort, httpPort, data, data, data, backups, logPath, errPath)
	path := filepath.Join(dir, "server.xml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return "", fmt.Errorf("writing clickhouse server config: %w", err)
	}
	return path, nil
}
