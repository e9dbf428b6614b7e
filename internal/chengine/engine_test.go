package chengine_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leadpipe/leadpipe/internal/chengine"
	"github.com/leadpipe/leadpipe/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestManagedEngineKeepsDataAcrossRestarts starts the real engine as a
// child, writes, stops it, starts it again on the same data dir, reads.
func TestManagedEngineKeepsDataAcrossRestarts(t *testing.T) {
	testenv.Slow(t, "starts the ClickHouse engine")
	dir := t.TempDir()
	ctx := context.Background()
	e, err := chengine.Start(ctx, testenv.ClickHouseConfig(), dir, testenv.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	conn, err := e.OpenDefault()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"CREATE TABLE kept (n UInt32) ENGINE = MergeTree ORDER BY n",
		"INSERT INTO kept SELECT number FROM numbers(1000)",
	} {
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	conn.Close()
	if addr, err := chengine.Endpoint(dir); err != nil || addr != e.Addr {
		t.Errorf("Endpoint(%s) = %q, %v; want %q", dir, addr, err, e.Addr)
	}
	if err := e.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err = e.OpenDefault()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT sum(n) FROM kept").Scan(&n); err != nil {
		t.Fatalf("reading after restart: %v", err)
	}
	if n != 999*1000/2 {
		t.Errorf("sum after restart = %d, want %d", n, 999*1000/2)
	}
	if _, err := os.Stat(filepath.Join(dir, "clickhouse", "data", "metadata")); err != nil {
		t.Errorf("engine data not under the data dir: %v", err)
	}
}

func TestEngineStopsWhenStopped(t *testing.T) {
	testenv.Slow(t, "starts the ClickHouse engine")
	e, err := chengine.Start(context.Background(), testenv.ClickHouseConfig(), t.TempDir(), testenv.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	addr := e.Addr
	if err := e.StopEngine(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("engine still listening on %s after stop", addr)
	}
}

func TestWrongExternalAddressFailsAtStart(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	cfg := testenv.ClickHouseConfig()
	cfg.Addr = addr
	start := time.Now()
	_, err = chengine.Start(context.Background(), cfg, t.TempDir(), testenv.Quiet())
	if err == nil {
		t.Fatal("Start with a dead --clickhouse.addr succeeded")
	}
	if !strings.HasPrefix(err.Error(), "--clickhouse.addr="+addr+": ") || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("error %q should name the flag and say why", err)
	}
	if time.Since(start) > 15*time.Second {
		t.Errorf("failing took %v; it should fail fast", time.Since(start))
	}
}

func TestMissingEngineLibrary(t *testing.T) {
	cfg := testenv.ClickHouseConfig()
	cfg.EngineLib = "/nonexistent/libchdb.so"
	_, err := chengine.Start(context.Background(), cfg, t.TempDir(), testenv.Quiet())
	if err == nil || !strings.Contains(err.Error(), "--clickhouse.engine-lib") || !strings.Contains(err.Error(), "make setup") {
		t.Errorf("error %v should name --clickhouse.engine-lib and `make setup`", err)
	}
}

// TestEngineDiesWithItsParent kills -9 a process that manages an engine
// and checks that the engine goes too: it must never be left orphaned.
func TestEngineDiesWithItsParent(t *testing.T) {
	testenv.Slow(t, "starts the ClickHouse engine")
	if dir := os.Getenv("LEADPIPE_TEST_ENGINE_PARENT"); dir != "" {
		// This is the parent: start an engine and wait to be killed.
		if _, err := chengine.Start(context.Background(), testenv.ClickHouseConfig(), dir, testenv.Quiet()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		return
	}
	dir := t.TempDir()
	parent := exec.Command(os.Args[0], "-test.run=^TestEngineDiesWithItsParent$")
	parent.Env = append(os.Environ(), "LEADPIPE_TEST_ENGINE_PARENT="+dir)
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	defer parent.Process.Kill()
	var pid int
	testenv.Eventually(t, 60*time.Second, func() error {
		raw, err := os.ReadFile(filepath.Join(dir, "clickhouse", "endpoint.json"))
		if err != nil {
			return err
		}
		var ep struct{ PID int }
		if err := json.Unmarshal(raw, &ep); err != nil {
			return err
		}
		pid = ep.PID
		return nil
	})
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("engine pid %d not running: %v", pid, err)
	}
	parent.Process.Signal(syscall.SIGKILL)
	parent.Wait()
	testenv.Eventually(t, 30*time.Second, func() error {
		// A zombie still answers kill(0); read its state instead.
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || strings.Contains(string(stat), ") Z ") {
			return nil
		}
		return fmt.Errorf("engine %d still running after its parent was killed", pid)
	})
}

// TestTLSToClickHouse: with --clickhouse.tls and the server's CA leadpipe
// reaches a ClickHouse behind TLS; without TLS, or trusting another CA, it
// does not. The managed engine (clickhouse-local) cannot listen with TLS,
// so the test puts it behind a TLS-terminating relay, as a load balancer
// in front of ClickHouse would be.
func TestTLSToClickHouse(t *testing.T) {
	cert, key, _ := testenv.SelfSignedCert(t)
	otherCA, _, _ := testenv.SelfSignedCert(t)
	ctx := context.Background()
	secureAddr := tlsRelay(t, testenv.Engine(t).Addr, cert, key)
	connect := func(cfg chengine.Config) error {
		t.Helper()
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		ext, err := chengine.Start(ctx, cfg, t.TempDir(), testenv.Quiet())
		if err != nil {
			return err
		}
		defer ext.Close()
		conn, err := ext.OpenDefault()
		if err != nil {
			return err
		}
		defer conn.Close()
		var one uint8
		return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
	}
	cfg := testenv.ClickHouseConfig()
	cfg.Addr, cfg.TLS, cfg.TLSCA = secureAddr, true, cert
	if err := connect(cfg); err != nil {
		t.Fatalf("TLS with the server's CA: %v", err)
	}
	cfg.TLSCA = otherCA
	if err := connect(cfg); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("TLS trusting another CA: %v, want a certificate error", err)
	}
	cfg.TLS, cfg.TLSCA = false, ""
	if err := connect(cfg); err == nil {
		t.Error("plain TCP to the TLS port worked")
	}
}

// tlsRelay accepts TLS connections with cert and relays their bytes to
// the plain address to.
func tlsRelay(t *testing.T, to, cert, key string) string {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				// A client that does not speak TLS is dropped at once.
				hctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				if err := c.(*tls.Conn).HandshakeContext(hctx); err != nil {
					return
				}
				up, err := net.Dial("tcp", to)
				if err != nil {
					return
				}
				defer up.Close()
				go io.Copy(up, c)
				io.Copy(c, up)
			}()
		}
	}()
	return ln.Addr().String()
}

// TestTLSConfigErrors name the flag.
func TestTLSConfigErrors(t *testing.T) {
	for _, c := range []struct {
		cfg  chengine.Config
		want string
	}{
		{chengine.Config{TLSCA: "ca.pem"}, "--clickhouse.tls:"},
		{chengine.Config{TLS: true}, "--clickhouse.tls: only for an external"},
		{chengine.Config{TLS: true, Addr: "db:9440", TLSCA: "/nonexistent.pem"}, "--clickhouse.tls-ca:"},
		{chengine.Config{TLS: true, Addr: "db:9440", TLSCert: "c.pem"}, "--clickhouse.tls-cert and --clickhouse.tls-key"},
	} {
		c.cfg.Database, c.cfg.Engine = "leadpipe", "auto"
		if err := c.cfg.Validate(); err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
}

// TestSupervisorRestartsThenGivesUp kills the engine: it is restarted on
// the same address; killed again before it has run a minute, with
// --clickhouse.engine-max-failed-starts=2, the supervisor gives up and
// Wait says why.
func TestSupervisorRestartsThenGivesUp(t *testing.T) {
	testenv.Slow(t, "starts the ClickHouse engine")
	cfg := testenv.ClickHouseConfig()
	cfg.MaxFailedStarts = 2
	e, err := chengine.Start(context.Background(), cfg, t.TempDir(), testenv.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	addr, pid := e.Addr, e.PID()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if err := e.Down(); err == nil || !strings.Contains(err.Error(), "killed by SIGKILL") {
			return fmt.Errorf("Down() = %v while the engine is down", err)
		}
		return nil
	})
	testenv.Eventually(t, time.Minute, func() error {
		if e.Restarts() != 1 || e.Down() != nil {
			return fmt.Errorf("%d restarts, down: %v", e.Restarts(), e.Down())
		}
		return nil
	})
	if e.Addr != addr || e.PID() == pid {
		t.Errorf("restarted engine: %s pid %d; want %s and a new pid", e.Addr, e.PID(), addr)
	}
	conn, err := e.OpenDefault()
	if err != nil {
		t.Fatal(err)
	}
	var one uint8
	if err := conn.QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("query after the restart: %v", err)
	}
	conn.Close()

	if err := syscall.Kill(e.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = e.Wait(ctx)
	if err == nil || !strings.Contains(err.Error(), "2 failed starts in a row") || !strings.Contains(err.Error(), "--clickhouse.engine-max-failed-starts") {
		t.Fatalf("Wait after two kills = %v; want the supervisor to give up naming the flag", err)
	}
	if e.Restarts() != 1 {
		t.Errorf("%d restarts after giving up, want 1", e.Restarts())
	}
}

// TestEngineOnFixedAddresses: with --clickhouse.engine-native-addr and
// -http-addr the managed engine takes clients there (a BI tool's saved
// connection), before and after a restart.
func TestEngineOnFixedAddresses(t *testing.T) {
	testenv.Slow(t, "starts the ClickHouse engine")
	free := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}
	cfg := testenv.ClickHouseConfig()
	cfg.NativeAddr, cfg.HTTPAddr = free(), free()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	e, err := chengine.Start(context.Background(), cfg, t.TempDir(), testenv.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for round := range 2 {
		if e.Addr != cfg.NativeAddr || e.HTTPAddr != cfg.HTTPAddr {
			t.Fatalf("round %d: engine on %s and %s, want %s and %s", round, e.Addr, e.HTTPAddr, cfg.NativeAddr, cfg.HTTPAddr)
		}
		resp, err := http.Get((&url.URL{Scheme: "http", Host: cfg.HTTPAddr, Path: "/", RawQuery: url.Values{"query": {"SELECT 1"}}.Encode()}).String())
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.TrimSpace(string(body)) != "1" {
			t.Fatalf("round %d: HTTP answered %q", round, body)
		}
		if err := e.Restart(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestEnginePortTakenWhileStopped: a chdb engine's own ports sit behind the
// relay; when another process takes one while the engine is stopped (or
// between choosing a free port and the engine binding it), the start
// picks new ports instead of failing, and clients keep the relay's address.
func TestEnginePortTakenWhileStopped(t *testing.T) {
	testenv.Slow(t, "starts the ClickHouse engine")
	e, err := chengine.Start(context.Background(), testenv.ClickHouseConfig(), t.TempDir(), testenv.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	addr, inner := e.Addr, e.EngineNativeAddr()
	if err := e.StopEngine(); err != nil {
		t.Fatal(err)
	}
	squatter, err := net.Listen("tcp", inner)
	if err != nil {
		t.Fatalf("taking the engine's port %s: %v", inner, err)
	}
	defer squatter.Close()
	if err := e.StartEngine(context.Background()); err != nil {
		t.Fatalf("start with the engine's port taken: %v", err)
	}
	if e.Addr != addr || e.EngineNativeAddr() == inner {
		t.Errorf("after the start: clients on %s (want %s), engine on %s (want other than %s)", e.Addr, addr, e.EngineNativeAddr(), inner)
	}
	conn, err := e.OpenDefault()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var one uint8
	if err := conn.QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("query after the start: %v", err)
	}
}

// TestStartWaitsForARestartingServer: a process started while the
// ClickHouse it is given restarts (refusing connections for a moment)
// waits for it instead of failing.
func TestStartWaitsForARestartingServer(t *testing.T) {
	testenv.Slow(t, "starts the ClickHouse engine")
	e, err := chengine.Start(context.Background(), testenv.ClickHouseConfig(), t.TempDir(), testenv.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.StopEngine(); err != nil {
		t.Fatal(err)
	}
	restarted := make(chan error, 1)
	go func() {
		time.Sleep(2 * time.Second)
		restarted <- e.StartEngine(context.Background())
	}()
	cfg := testenv.ClickHouseConfig()
	cfg.Addr = e.Addr
	client, err := chengine.Start(context.Background(), cfg, t.TempDir(), testenv.Quiet())
	if err != nil {
		t.Fatalf("start against a restarting server: %v", err)
	}
	client.Close()
	if err := <-restarted; err != nil {
		t.Fatal(err)
	}
}
