package bus_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadpipe/leadpipe/internal/bus"
	"github.com/leadpipe/leadpipe/internal/testenv"
)

// node is one server of a three-node JetStream cluster on loopback.
type node struct {
	opts *server.Options
	srv  *server.Server
}

func (n *node) start(t *testing.T) {
	t.Helper()
	srv, err := server.NewServer(n.opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(20 * time.Second) {
		t.Fatalf("%s not ready", n.opts.ServerName)
	}
	n.srv = srv
}

func (n *node) kill() {
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startCluster starts three JetStream servers routed to each other, with
// every write synced (sync_interval: always, as deploy/nats configures it).
func startCluster(t *testing.T) ([]*node, string) {
	t.Helper()
	var routes, urls []string
	clientPorts, routePorts := make([]int, 3), make([]int, 3)
	for i := range 3 {
		clientPorts[i], routePorts[i] = freePort(t), freePort(t)
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", routePorts[i]))
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[i]))
	}
	nodes := make([]*node, 3)
	for i := range 3 {
		nodes[i] = &node{opts: &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       clientPorts[i],
			JetStream:  true,
			StoreDir:   filepath.Join(t.TempDir(), "js"),
			SyncAlways: true,
			NoSigs:     true,
			Cluster:    server.ClusterOpts{Name: "leadpipe", Host: "127.0.0.1", Port: routePorts[i]},
			Routes:     server.RoutesFromStr(strings.Join(routes, ",")),
		}}
		nodes[i].start(t)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			if n.srv != nil && n.srv.Running() {
				n.kill()
			}
		}
	})
	return nodes, strings.Join(urls, ",")
}

// TestClusterKeepsAckedHitsThroughNodeLoss publishes hits to an R3 HITS
// stream on a three-node cluster while the stream's leader is killed, the
// node restarted, and the new leader killed too: publishing resumes each
// time, and every hit JetStream acknowledged is in the stream exactly once.
func TestClusterKeepsAckedHitsThroughNodeLoss(t *testing.T) {
	testenv.Slow(t, "runs a 3-node NATS cluster through node loss")
	nodes, urls := startCluster(t)
	ctx := context.Background()
	cfg := testenv.BusConfig()
	cfg.URL, cfg.Replicas = urls, 3
	var b *bus.Bus
	// The cluster elects its meta leader first: until then JetStream
	// requests fail.
	testenv.Eventually(t, 30*time.Second, func() error {
		var err error
		b, err = bus.Open(ctx, cfg, "", testenv.Quiet())
		return err
	})
	defer b.Close()
	stream, err := b.JS.Stream(ctx, bus.HitsStream)
	if err != nil {
		t.Fatal(err)
	}
	leader := func() *node {
		t.Helper()
		info, err := stream.Info(ctx)
		if err != nil || info.Cluster == nil {
			t.Fatalf("stream info: %v", err)
		}
		if info.Config.Replicas != 3 {
			t.Fatalf("HITS has %d replicas, want 3", info.Config.Replicas)
		}
		for _, n := range nodes {
			if n.opts.ServerName == info.Cluster.Leader {
				return n
			}
		}
		t.Fatalf("no node is the stream leader %q", info.Cluster.Leader)
		return nil
	}

	const total = 3000
	acked := make([]bool, total)
	var failures atomic.Int64
	var slowest time.Duration
	publish := func(i int) {
		msg := nats.NewMsg(bus.HitSubject("site1"))
		msg.Data = []byte(fmt.Sprintf(`{"id":"h%d"}`, i))
		msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("site1:h%d", i))
		// A sender retries until acknowledged (the collector answers 503
		// meanwhile); the duplicate window keeps a retry from storing twice.
		start := time.Now()
		defer func() { slowest = max(slowest, time.Since(start)) }()
		for {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := b.JS.PublishMsg(pctx, msg)
			cancel()
			if err == nil {
				acked[i] = true
				return
			}
			if time.Since(start) > 30*time.Second {
				t.Fatalf("hit %d: publishing did not resume within 30s: %v", i, err)
			}
			failures.Add(1)
			time.Sleep(100 * time.Millisecond)
		}
	}
	var first, second *node
	for i := range total {
		switch i {
		case total / 4:
			first = leader()
			t.Logf("killing %s, the stream leader", first.opts.ServerName)
			first.kill()
		case total / 2:
			t.Logf("restarting %s with its store", first.opts.ServerName)
			first.start(t)
		case 3 * total / 4:
			second = leader()
			t.Logf("killing %s, the stream leader now", second.opts.ServerName)
			second.kill()
		}
		publish(i)
	}
	t.Logf("%d publishes failed and were retried; the slowest took %v", failures.Load(), slowest)

	// Read the stream back: every acknowledged hit, once.
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("reading message %d: %v", seq, err)
		}
		seen[m.Header.Get(jetstream.MsgIDHeader)]++
	}
	lost, dups := 0, 0
	for i := range total {
		switch n := seen[fmt.Sprintf("site1:h%d", i)]; {
		case acked[i] && n == 0:
			lost++
		case n > 1:
			dups += n - 1
		}
	}
	if lost != 0 || dups != 0 {
		t.Errorf("after two node losses: %d acknowledged hits lost, %d stored twice", lost, dups)
	}
	if info.State.Msgs != total {
		t.Errorf("the stream holds %d messages, want %d", info.State.Msgs, total)
	}
}

// TestDeployConfigsParse: the three-node cluster configs under deploy/ are
// valid nats-server configs with what the README says they have.
func TestDeployConfigsParse(t *testing.T) {
	t.Setenv("LEADPIPE_NATS_KEY", "k-0123456789abcdef0123456789abcdef")
	for i := 1; i <= 3; i++ {
		path := fmt.Sprintf("../../deploy/nats/nats-%d.conf", i)
		opts, err := server.ProcessConfigFile(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if !opts.JetStream || !opts.SyncAlways || opts.JetStreamKey != "k-0123456789abcdef0123456789abcdef" ||
			opts.JetStreamCipher != server.ChaCha || len(opts.Routes) != 3 || opts.Cluster.Name != "leadpipe" {
			t.Errorf("%s: jetstream %v, sync always %v, key from the environment %v, cipher %v, %d routes, cluster %q",
				path, opts.JetStream, opts.SyncAlways, opts.JetStreamKey != "", opts.JetStreamCipher, len(opts.Routes), opts.Cluster.Name)
		}
	}
}
