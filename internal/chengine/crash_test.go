package chengine_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/leadpipe/leadpipe/internal/chengine"
	"github.com/leadpipe/leadpipe/internal/testenv"
)

// TestClientResetDoesNotCrashEngine resets client connections (as the
// kernel does for a client killed with unread data in its socket), idle
// and with a query's result still unread, and checks that the managed
// engine lives on. Against chDB 26.7's own port, the first reset of an
// idle connection aborts the engine (see relay.go).
func TestClientResetDoesNotCrashEngine(t *testing.T) {
	testenv.Slow(t, "starts the ClickHouse engine")
	e, err := chengine.Start(context.Background(), testenv.ClickHouseConfig(), t.TempDir(), testenv.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	pid := e.PID()
	ctx := context.Background()
	for _, query := range []string{
		"SELECT 1",
		"SELECT number, toString(number) FROM system.numbers LIMIT 100000000",
	} {
		for range 3 {
			// Dial through a listener of our own, to hold the TCP
			// connection that the driver uses and reset it.
			conns := make(chan *net.TCPConn, 1)
			conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{e.Addr}, MaxOpenConns: 1,
				DialContext: func(ctx context.Context, addr string) (net.Conn, error) {
					c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
					if err == nil {
						conns <- c.(*net.TCPConn)
					}
					return c, err
				}})
			if err != nil {
				t.Fatal(err)
			}
			rows, err := conn.Query(ctx, query)
			if err != nil {
				t.Fatalf("%s: %v", query, err)
			}
			rows.Next() // the rest stays unread for the long query
			if query == "SELECT 1" {
				rows.Close()
			}
			c := <-conns
			c.SetLinger(0)
			c.Close() // a reset, not a FIN
			conn.Close()
		}
	}
	// The engine's abort takes a second or two; ask after that.
	check := func() error {
		conn, err := e.OpenDefault()
		if err != nil {
			return err
		}
		defer conn.Close()
		var one uint8
		return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
	}
	time.Sleep(3 * time.Second)
	if err := check(); err != nil {
		t.Fatalf("engine after reset connections: %v; log:\n%s", err, e.LastLogLines(30))
	}
	if e.PID() != pid || e.Restarts() != 0 {
		t.Fatalf("engine pid %d → %d after %d restarts: a reset connection killed it; log:\n%s", pid, e.PID(), e.Restarts(), e.LastLogLines(30))
	}
}
