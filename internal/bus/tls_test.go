package bus_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/leadpipe/leadpipe/internal/bus"
	"github.com/leadpipe/leadpipe/internal/testenv"
)

// TestTLSToExternalNATS: against a NATS server that requires TLS, the bus
// connects with --nats.tls-ca naming the CA of the server's certificate
// and sets up its streams; without it, it refuses the unknown certificate.
func TestTLSToExternalNATS(t *testing.T) {
	certFile, keyFile, _ := testenv.SelfSignedCert(t)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: t.TempDir(), NoSigs: true,
		TLS: true, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
	})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("TLS NATS server not ready")
	}
	t.Cleanup(srv.Shutdown)

	cfg := testenv.BusConfig()
	cfg.URL = fmt.Sprintf("tls://127.0.0.1:%d", port)
	if b, err := bus.Open(context.Background(), cfg, "", testenv.Quiet()); err == nil {
		b.Close()
		t.Fatal("connected to a server whose certificate nothing vouches for")
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("refusal does not say why: %v", err)
	}
	cfg.TLSCA = certFile
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	b, err := bus.Open(context.Background(), cfg, "", testenv.Quiet())
	if err != nil {
		t.Fatalf("with --nats.tls-ca: %v", err)
	}
	defer b.Close()
	if !b.Conn.TLSRequired() {
		t.Error("the connection is not TLS")
	}
	if _, err := b.JS.Stream(context.Background(), bus.HitsStream); err != nil {
		t.Errorf("streams over TLS: %v", err)
	}
}
