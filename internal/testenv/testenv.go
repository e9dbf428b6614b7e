// Package testenv starts the real components tests run against: an embedded
// NATS JetStream server, the real ClickHouse engine, the real ASN data. No
// mocks: what passes here runs the same code as production.
//
// A test package that needs ClickHouse calls testenv.Main from its TestMain,
// which lets the engine child (this test binary re-run) start, and stops the
// shared engine when the package's tests are done.
//
// It imports what the real components need (internal/bus, internal/cache,
// internal/chengine, ipintel, store); tests alone import it.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/leadpipe/leadpipe/internal/bus"
	"github.com/leadpipe/leadpipe/internal/cache"
	"github.com/leadpipe/leadpipe/internal/chengine"
	"github.com/leadpipe/leadpipe/ipintel"
	"github.com/leadpipe/leadpipe/store"
)

var (
	engineOnce sync.Once
	engine     *chengine.Server
	engineDir  string
	engineErr  error

	ipOnce  sync.Once
	ipStore *ipintel.Store
	ipErr   error
)

// Main runs a test package's tests and then stops the shared engine.
func Main(m *testing.M) {
	chengine.MaybeRunChild()
	code := m.Run()
	if engine != nil {
		engine.Close()
		os.RemoveAll(engineDir)
	}
	os.Exit(code)
}

// Logger logs warnings and errors to stderr: enough to see why a test
// failed without drowning its output.
func Logger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// Slow marks a test that needs the ClickHouse engine, a browser or a
// cluster: the fast tier (`go test -short`) skips it, saying why; with
// CI=true nothing is skipped.
func Slow(t testing.TB, why string) {
	t.Helper()
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skipf("skipped by -short: %s (CI=true runs it)", why)
	}
}

// Quiet discards logs (tests that provoke errors on purpose).
func Quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// ClickHouseConfig is the managed-engine config tests use.
func ClickHouseConfig() chengine.Config {
	return chengine.Config{Database: "leadpipe", User: "default", Engine: "chdb", EngineLib: chengine.DefaultLibPath()}
}

// Engine returns the package's shared ClickHouse engine, starting it on
// first use. A missing engine fails the test: `make setup` fetches it.
func Engine(t testing.TB) *chengine.Server {
	t.Helper()
	Slow(t, "needs the ClickHouse engine")
	engineOnce.Do(func() {
		engineDir, engineErr = os.MkdirTemp("", "leadpipe-engine-")
		if engineErr != nil {
			return
		}
		engine, engineErr = chengine.Start(context.Background(), ClickHouseConfig(), engineDir, Logger())
	})
	if engineErr != nil {
		t.Fatalf("starting the ClickHouse engine (run `make setup`): %v", engineErr)
	}
	return engine
}

// Database creates a fresh, migrated database on the shared engine and
// returns a connection to it, closed when the test ends.
func Database(t testing.TB) (driver.Conn, string) {
	t.Helper()
	return DatabaseAt(t, ^uint32(0))
}

// DatabaseAt is Database with the migrations up to version last only.
func DatabaseAt(t testing.TB, last uint32) (driver.Conn, string) {
	t.Helper()
	e := Engine(t)
	name := "t_" + RandomHex(6)
	ctx := context.Background()
	def, err := e.OpenDefault()
	if err != nil {
		t.Fatal(err)
	}
	defer def.Close()
	if err := store.CreateDatabase(ctx, def, name); err != nil {
		t.Fatal(err)
	}
	conn, err := e.OpenDB(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.MigrateTo(ctx, conn, Quiet(), last); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, name
}

// BusConfig is the embedded NATS config tests use: any free port.
func BusConfig() bus.Config {
	return bus.Config{Listen: "127.0.0.1:0", Encrypt: true, Sync: "interval", Replicas: 1, HitsMaxAge: time.Hour, HitsMaxBytes: 64 << 20, DuplicateWindow: 2 * time.Minute}
}

// Bus starts an embedded JetStream server with leadpipe's streams, stopped
// when the test ends.
func Bus(t testing.TB) *bus.Bus {
	t.Helper()
	return BusWith(t, BusConfig())
}

// BusWith is Bus with a config of the test's own.
func BusWith(t testing.TB, cfg bus.Config) *bus.Bus {
	t.Helper()
	b, err := bus.Open(context.Background(), cfg, t.TempDir(), Logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// QueuedHits returns every hit waiting in the HITS stream, in order (a
// message may hold several).
func QueuedHits(t testing.TB, b *bus.Bus) []bus.Hit {
	t.Helper()
	ctx := context.Background()
	st, err := b.JS.Stream(ctx, bus.HitsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []bus.Hit
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue // removed
		}
		for _, raw := range bus.SplitHits(m.Data) {
			h, err := bus.DecodeHit(raw)
			if err != nil {
				t.Fatalf("message %d: %v", seq, err)
			}
			out = append(out, h)
		}
	}
	return out
}

// IPDataDir is where `make setup` leaves the IP data.
func IPDataDir() string { return cache.IPDataDir() }

// IPSources are the real IP data files: ASN data and the country database.
func IPSources() ipintel.Sources {
	dir := IPDataDir()
	return ipintel.Sources{ASNDir: dir, CountryMMDB: filepath.Join(dir, "country.mmdb")}
}

// IPData loads the real IP data once per test binary.
func IPData(t testing.TB) *ipintel.Store {
	t.Helper()
	ipOnce.Do(func() { ipStore, ipErr = ipintel.OpenStore(IPSources(), Quiet()) })
	if ipErr != nil {
		t.Fatalf("loading the IP data (run `make setup`): %v", ipErr)
	}
	return ipStore
}

// ASN is the real ASN table.
func ASN(t testing.TB) *ipintel.Table { return IPData(t).DB().ASN() }

// Eventually polls cond until it returns nil or the timeout passes.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := 10 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", timeout, err)
		}
		time.Sleep(wait)
		wait = min(wait*2, 250*time.Millisecond)
	}
}

// RandomHex returns n random bytes as hex.
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
