package chengine

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

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

// DefaultLibPath is where `make setup` leaves libchdb.so: a per-user cache
// outside the repository, because the library is 566 MB.
func DefaultLibPath() string {
	if p := os.Getenv("LEADPIPE_CHDB_LIB"); p != "" {
		return p
	}
	return filepath.Join(CacheDir(), "current", "libchdb.so")
}

// CacheDir is leadpipe's download cache: $LEADPIPE_CACHE, else the user cache dir.
func CacheDir() string {
	if d := os.Getenv("LEADPIPE_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "leadpipe")
	}
	return filepath.Join(os.TempDir(), "leadpipe-cache")
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
	mu      sync.Mutex
	child   *exec.Cmd
	stdin   io.WriteCloser
	exited  chan struct{}
	mode    string
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
	s := &Server{cfg: cfg, log: log, dir: filepath.Join(dataDir, "clickhouse"), backups: BackupDir(dataDir)}
	if cfg.Addr != "" {
		s.Addr = cfg.Addr
		if err := s.check(ctx, 10*time.Second); err != nil {
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
	if err := s.startChild(ctx, 0, 0); err != nil {
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

// Restart stops a managed engine and starts it again on the same ports and
// data; tests use it to take ClickHouse away and bring it back.
func (s *Server) Restart(ctx context.Context) error {
	if !s.Managed() {
		return errors.New("restart: ClickHouse is external")
	}
	if err := s.StopEngine(); err != nil {
		return err
	}
	return s.StartEngine(ctx)
}

// StartEngine starts a stopped managed engine on its previous ports.
func (s *Server) StartEngine(ctx context.Context) error {
	_, tp, _ := net.SplitHostPort(s.Addr)
	_, hp, _ := net.SplitHostPort(s.HTTPAddr)
	tcp, _ := strconv.Atoi(tp)
	http, _ := strconv.Atoi(hp)
	return s.startChild(ctx, tcp, http)
}

func (s *Server) startChild(ctx context.Context, tcpPort, httpPort int) error {
	var err error
	if tcpPort == 0 {
		if tcpPort, err = freePort(); err != nil {
			return err
		}
	}
	if httpPort == 0 {
		if httpPort, err = freePort(); err != nil {
			return err
		}
	}
	logPath := filepath.Join(s.dir, "engine.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("opening engine log: %w", err)
	}
	defer logFile.Close() // the child holds its own descriptor

	var cmd *exec.Cmd
	switch s.mode {
	case "chdb":
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding own executable to run the engine: %w", err)
		}
		spec, _ := json.Marshal(childSpec{Lib: s.cfg.EngineLib, Path: filepath.Join(s.dir, "data") + "/", TCPPort: tcpPort, HTTPPort: httpPort, Backups: s.backups + "/"})
		cmd = exec.Command(exe)
		cmd.Env = append(os.Environ(), childEnv+"="+string(spec))
	case "binary":
		conf, err := writeServerConfig(s.dir, s.backups, tcpPort, httpPort)
		if err != nil {
			return err
		}
		cmd = exec.Command("clickhouse", "server", "--config-file="+conf)
	default:
		return fmt.Errorf("BUG: unknown engine mode %q", s.mode)
	}
	cmd.Dir = s.dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// Its own process group keeps a terminal's Ctrl-C away from the engine:
	// the parent stops it in order, after the pipeline has drained. Pdeathsig
	// is the backstop that kills it if the parent dies without closing stdin.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := StartChild(cmd); err != nil {
		return fmt.Errorf("starting ClickHouse engine (%s): %w", s.mode, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()

	s.mu.Lock()
	s.child, s.stdin, s.exited = cmd, stdin, exited
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(tcpPort))
	s.HTTPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort))
	s.mu.Unlock()

	deadline := time.Now().Add(90 * time.Second)
	for {
		checkCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := s.check(checkCtx, 2*time.Second)
		cancel()
		if err == nil {
			break
		}
		select {
		case <-exited:
			return fmt.Errorf("ClickHouse engine (%s) exited during start: %s", s.mode, tail(logPath, 2000))
		case <-ctx.Done():
			s.StopEngine()
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.StopEngine()
			return fmt.Errorf("ClickHouse engine (%s) did not answer within 90s: %v; log: %s", s.mode, err, tail(logPath, 2000))
		}
	}
	ep, _ := json.Marshal(endpoint{Native: s.Addr, HTTP: s.HTTPAddr, PID: cmd.Process.Pid})
	if err := os.WriteFile(filepath.Join(s.dir, "endpoint.json"), ep, 0o600); err != nil {
		return fmt.Errorf("writing engine endpoint: %w", err)
	}
	s.log.Info("ClickHouse engine started", "mode", s.mode, "native", s.Addr, "http", s.HTTPAddr, "pid", cmd.Process.Pid, "log", logPath)
	return nil
}

// StopEngine stops a managed engine: it closes the engine's stdin (the chdb
// child exits at EOF) or sends SIGTERM (the binary), then waits, and kills it
// if it has not gone within 30 seconds. External servers are left alone.
func (s *Server) StopEngine() error {
	s.mu.Lock()
	cmd, stdin, exited := s.child, s.stdin, s.exited
	s.child = nil
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	os.Remove(filepath.Join(s.dir, "endpoint.json"))
	stdin.Close()
	if s.mode == "binary" {
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		return errors.New("ClickHouse engine did not stop within 30s and was killed")
	}
	s.log.Info("ClickHouse engine stopped", "mode", s.mode)
	return nil
}

// Close stops a managed engine; it is a no-op for an external server.
func (s *Server) Close() error { return s.StopEngine() }

// check connects, pings and refuses servers older than MinMajorVersion.
func (s *Server) check(ctx context.Context, timeout time.Duration) error {
	conn, err := s.open("default", timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	var version string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		return fmt.Errorf("cannot reach ClickHouse: %w", err)
	}
	major, _ := strconv.Atoi(strings.SplitN(version, ".", 2)[0])
	if major < MinMajorVersion {
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
	return clickhouse.Open(&clickhouse.Options{
		Addr: []string{s.Addr},
		Auth: clickhouse.Auth{Database: database, Username: s.cfg.User, Password: s.cfg.Password},
		TLS:  s.cfg.tls,
		// LZ4 costs little CPU and shrinks batches of repetitive hit rows.
		Compression:     &clickhouse.Compression{Method: clickhouse.CompressionLZ4},
		DialTimeout:     dialTimeout,
		MaxOpenConns:    8,
		ConnMaxLifetime: time.Hour,
	})
}

// Endpoint reads the native address of the engine a running `serve` manages
// under dataDir.
func Endpoint(dataDir string) (string, error) {
	raw, err := os.ReadFile(filepath.Join(dataDir, "clickhouse", "endpoint.json"))
	if err != nil {
		return "", fmt.Errorf("no running engine under --data-dir %s (is `leadpipe serve` running?): %w", dataDir, err)
	}
	var ep endpoint
	if err := json.Unmarshal(raw, &ep); err != nil {
		return "", fmt.Errorf("reading engine endpoint: %w", err)
	}
	return ep.Native, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port for the engine: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(bytes.TrimSpace(b))
}

// writeServerConfig writes the minimal config an official `clickhouse server`
// needs to serve loopback with its data under dir.
func writeServerConfig(dir, backups string, tcpPort, httpPort int) (string, error) {
	data := filepath.Join(dir, "server")
	conf := fmt.Sprintf(`<clickhouse>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>%d</tcp_port>
  <http_port>%d</http_port>
  <path>%s/</path>
  <tmp_path>%s/tmp/</tmp_path>
  <user_files_path>%s/user_files/</user_files_path>
  <backups><allowed_path>%s/</allowed_path></backups>
  <logger><level>warning</level><console>1</console></logger>
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
`, tcpPort, httpPort, data, data, data, backups)
	path := filepath.Join(dir, "server.xml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return "", fmt.Errorf("writing clickhouse server config: %w", err)
	}
	return path, nil
}
