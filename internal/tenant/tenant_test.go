package tenant_test

import (
	"context"
	"errors"
	"fmt"
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
	key, secret, err := store.CreateKey(ctx, tenant.Key{Role: tenant.RoleAnalyst, Sites: []string{"site1"}})
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

// TestKeysExpireAndRevoke: an expired key and a revoked key stop working,
// the revocation in every process at once.
func TestKeysExpireAndRevoke(t *testing.T) {
	b := testenv.Bus(t)
	ctx := context.Background()
	store, err := tenant.Open(ctx, b.JS, testenv.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	other, err := tenant.Open(ctx, b.JS, testenv.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	_, expired, err := store.CreateKey(ctx, tenant.Key{Role: tenant.RoleViewer, Sites: []string{"*"}, Expires: time.Now().Add(-time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := store.Authenticate(expired); ok {
		t.Error("an expired key authenticated")
	}
	live, secret, err := store.CreateKey(ctx, tenant.Key{Role: tenant.RoleViewer, Sites: []string{"*"}, Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if _, ok := other.Authenticate(secret); !ok {
			return errors.New("the other process does not know the key yet")
		}
		return nil
	})
	if err := store.RevokeKey(ctx, live.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := store.Authenticate(secret); ok {
		t.Error("a revoked key authenticated")
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if _, ok := other.Authenticate(secret); ok {
			return errors.New("the other process still accepts the revoked key")
		}
		return nil
	})
	if k, ok := store.Key(live.ID); !ok || !k.Revoked {
		t.Errorf("a revoked API key should stay listed as revoked: %+v %v", k, ok)
	}
}

// TestSessionsOfUsers: a session key carries its user's grants and ends
// with the user.
func TestSessionsOfUsers(t *testing.T) {
	b := testenv.Bus(t)
	ctx := context.Background()
	store, err := tenant.Open(ctx, b.JS, testenv.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	u, err := store.CreateUser(ctx, tenant.User{Email: " Ann@Example.COM", Account: "acc", Role: tenant.RoleAnalyst, Sites: []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.CreateUser(ctx, tenant.User{Email: "ann@example.com", Role: tenant.RoleViewer, Sites: []string{"*"}}); !errors.Is(err, tenant.ErrUserExists) {
		t.Errorf("a second user with the same address: err = %v", err)
	}
	if got, ok := store.UserByEmail("ANN@example.com "); !ok || got.ID != u.ID {
		t.Fatalf("UserByEmail = %+v, %v", got, ok)
	}
	k, secret, err := store.StartSession(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := store.Authenticate(secret)
	if ttl := got.Expires.Sub(k.Created); !ok || got.Account != "acc" || got.Role != tenant.RoleAnalyst || got.User != u.ID ||
		ttl < tenant.SessionTTL-time.Second || ttl > tenant.SessionTTL+time.Second {
		t.Fatalf("session key = %+v, %v", got, ok)
	}
	if err := store.DeleteUser(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := store.Authenticate(secret); ok {
		t.Error("the session of a deleted user still works")
	}
	if _, ok := store.Key(k.ID); ok {
		t.Error("a session's key is kept after revocation")
	}
}

// TestLoginFinishesOnce: of two callbacks with one state, one wins.
func TestLoginFinishesOnce(t *testing.T) {
	b := testenv.Bus(t)
	ctx := context.Background()
	a, err := tenant.Open(ctx, b.JS, testenv.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	other, err := tenant.Open(ctx, b.JS, testenv.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	state, err := a.BeginLogin(ctx, tenant.Login{Provider: "p", Nonce: "n", Verifier: "v"})
	if err != nil {
		t.Fatal(err)
	}
	results := make(chan error, 2)
	for _, s := range []*tenant.Store{a, other} {
		go func() {
			l, err := s.FinishLogin(ctx, state)
			if err == nil && (l.Nonce != "n" || l.Verifier != "v" || l.Provider != "p") {
				err = fmt.Errorf("login came back as %+v", l)
			}
			results <- err
		}()
	}
	var won, lost int
	for range 2 {
		switch err := <-results; {
		case err == nil:
			won++
		case errors.Is(err, tenant.ErrNoLogin):
			lost++
		default:
			t.Fatal(err)
		}
	}
	if won != 1 || lost != 1 {
		t.Errorf("won=%d lost=%d, want one each", won, lost)
	}
	for _, bad := range []string{"", "nope", "a.b", strings.Repeat("A", 65)} {
		if _, err := a.FinishLogin(ctx, bad); !errors.Is(err, tenant.ErrNoLogin) {
			t.Errorf("FinishLogin(%q) = %v", bad, err)
		}
	}
}

// BenchmarkOpen measures a process's start over a keys bucket of n keys
// (dashboard sessions are keys, so a busy installation has many): the
// replay must stay linear in n.
//
//	go test ./internal/tenant -run=^$ -bench=Open -count=6 | tee new.txt; benchstat old.txt new.txt
func BenchmarkOpen(b *testing.B) {
	for _, n := range []int{1000, 8000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			bs := testenv.Bus(b)
			ctx := context.Background()
			store, err := tenant.Open(ctx, bs.JS, testenv.Quiet())
			if err != nil {
				b.Fatal(err)
			}
			for range n {
				if _, _, err := store.CreateKey(ctx, tenant.Key{Role: tenant.RoleViewer}); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for b.Loop() {
				ctx, cancel := context.WithCancel(ctx)
				s, err := tenant.Open(ctx, bs.JS, testenv.Quiet())
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				if got := len(s.Keys()); got < n {
					b.Fatalf("%d keys after replay, want %d", got, n)
				}
			}
		})
	}
}
