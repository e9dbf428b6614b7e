package tenant_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leadpipe/leadpipe/internal/bus"
	"github.com/leadpipe/leadpipe/internal/tenant"
	"github.com/leadpipe/leadpipe/internal/testenv"
)

func TestKeysAreStoredHashedAndAuthenticate(t *testing.T) {
	b := testenv.Bus(t)
	ctx := context.Background()
	store, err := tenant.Open(ctx, b.JS, testenv.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	key, secret, err := store.CreateKey(ctx, "", tenant.RoleAnalyst, []string{"site1"})
	if err != nil {
		t.Fatal(err)
	}
	kv, _ := b.JS.KeyValue(ctx, bus.KeysBucket)
	entry, err := kv.Get(ctx, key.ID)
	if err != nil {
		t.Fatal(err)
	}
	_, secretPart, _ := strings.Cut(strings.TrimPrefix(secret, tenant.KeyPrefix), "_")
	if strings.Contains(string(entry.Value()), secretPart) {
		t.Fatalf("the stored key holds its secret: %s", entry.Value())
	}
	got, ok := store.Authenticate(secret)
	if !ok || got.ID != key.ID || got.Role != tenant.RoleAnalyst {
		t.Fatalf("Authenticate(valid) = %+v, %v", got, ok)
	}
	for _, bad := range []string{"", "lp_", secret + "x", strings.Replace(secret, secretPart, strings.Repeat("a", len(secretPart)), 1), "Bearer " + secret} {
		if _, ok := store.Authenticate(bad); ok {
			t.Errorf("Authenticate(%q) accepted", bad)
		}
	}
	if !got.CanRead(tenant.Site{ID: "site1"}) || got.CanRead(tenant.Site{ID: "site2"}) || got.AtLeast(tenant.RoleAdmin) || !got.AtLeast(tenant.RoleViewer) {
		t.Errorf("grants of %+v are wrong", got)
	}
}

// TestChangesReachOtherProcesses: a site created through one store is seen
// by another store on the same JetStream (another collector process).
func TestChangesReachOtherProcesses(t *testing.T) {
	b := testenv.Bus(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := tenant.Open(ctx, b.JS, testenv.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	other, err := tenant.Open(ctx, b.JS, testenv.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	site, err := a.CreateSite(ctx, "", "Example", "Example.COM")
	if err != nil {
		t.Fatal(err)
	}
	if site.Domain != "example.com" {
		t.Errorf("domain not lower-cased: %q", site.Domain)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if _, ok := other.Site(site.ID); !ok {
			return os.ErrNotExist
		}
		return nil
	})
	// And a store opened later loads it at start.
	late, err := tenant.Open(ctx, b.JS, testenv.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := late.Site(site.ID); !ok {
		t.Error("a store opened after the site was created does not know it")
	}
}

func TestOwnerKeyIsCreatedOnceWithMode0600(t *testing.T) {
	b := testenv.Bus(t)
	ctx := context.Background()
	store, err := tenant.Open(ctx, b.JS, testenv.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "owner.key")
	created, err := store.EnsureOwnerKey(ctx, path)
	if err != nil || !created {
		t.Fatalf("first EnsureOwnerKey: %v %v", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("owner.key mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	raw, _ := os.ReadFile(path)
	key, ok := store.Authenticate(strings.TrimSpace(string(raw)))
	if !ok || key.Role != tenant.RoleAdmin || !key.CanRead(tenant.Site{ID: "any-site", Account: "any"}) {
		t.Errorf("owner key %+v is not an admin for all sites", key)
	}
	if created, err := store.EnsureOwnerKey(ctx, path); err != nil || created {
		t.Errorf("second EnsureOwnerKey created a new key: %v %v", created, err)
	}
}

func TestValidateDomain(t *testing.T) {
	for _, ok := range []string{"example.com", "a.b.example.co.uk", "localhost"} {
		if err := tenant.ValidateDomain(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "https://example.com", "example.com/path", "a..b", "user@example.com", "exa mple.com"} {
		if err := tenant.ValidateDomain(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
