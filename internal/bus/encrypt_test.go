package bus_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/leadpipe/leadpipe/internal/bus"
	"github.com/leadpipe/leadpipe/internal/testenv"
)

// marker is a visitor IP (from a documentation range) to look for on disk.
const marker = "203.0.113.77"

func publishMarker(t *testing.T, b *bus.Bus) {
	t.Helper()
	data := []byte(`{"id":"h1","site":"s","type":"pageview","url":"https://x/","consent":"granted","ts":1,"received_at":1,"ip":"` + marker + `"}`)
	if _, err := b.JS.Publish(context.Background(), bus.HitSubject("s"), data); err != nil {
		t.Fatal(err)
	}
}

// onDisk reports whether any file under dir holds s.
func onDisk(t *testing.T, dir, s string) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		found = found || bytes.Contains(raw, []byte(s))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func readMarker(t *testing.T, b *bus.Bus) {
	t.Helper()
	stream, err := b.JS.Stream(context.Background(), bus.HitsStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatalf("reading the hit back: %v", err)
	}
	if !bytes.Contains(m.Data, []byte(marker)) {
		t.Fatalf("the hit read back is %q", m.Data)
	}
}

// TestStoreEncryptedAtRest: the embedded JetStream store is encrypted — a
// queued hit's visitor IP is in none of its files (it is, in plain, without
// encryption: the search works) — reads back after a restart with the same
// key, and does not open with another.
func TestStoreEncryptedAtRest(t *testing.T) {
	ctx := context.Background()
	plain := t.TempDir()
	cfg := testenv.BusConfig()
	cfg.Encrypt = false
	b, err := bus.Open(ctx, cfg, plain, testenv.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	publishMarker(t, b)
	b.Close()
	if !onDisk(t, plain, marker) {
		t.Fatal("without encryption the IP is not found on disk either: the search proves nothing")
	}

	dir := t.TempDir()
	cfg.Encrypt = true
	b, err = bus.Open(ctx, cfg, dir, testenv.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	publishMarker(t, b)
	b.Close()
	if onDisk(t, filepath.Join(dir, "nats"), marker) {
		t.Error("the visitor IP is readable in the encrypted store's files")
	}
	keyPath := filepath.Join(dir, bus.StoreKeyFile)
	if st, err := os.Stat(keyPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("store key %s: %v, mode %v; want 0600", keyPath, err, st.Mode())
	}

	b, err = bus.Open(ctx, cfg, dir, testenv.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	readMarker(t, b)
	b.Close()

	// A store made before encryption is converted when first opened with
	// it: still readable, no longer in plain on disk.
	b, err = bus.Open(ctx, cfg, plain, testenv.Quiet())
	if err != nil {
		t.Fatalf("opening an unencrypted store with encryption on: %v", err)
	}
	readMarker(t, b)
	b.Close()
	if onDisk(t, filepath.Join(plain, "nats"), marker) {
		t.Error("the converted store still holds the visitor IP in plain")
	}

	// Another key does not open the store: it fails, it does not start
	// empty over the queued hits.
	if err := os.WriteFile(keyPath, []byte(testenv.RandomHex(32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := bus.Open(ctx, cfg, dir, testenv.Quiet()); err == nil {
		b.Close()
		t.Error("the store opened with another key")
	}
}
