package tenant

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadpipe/leadpipe/internal/bus"
)

// Role is what a key may do.
type Role string

// Roles, from most to least powerful.
const (
	RoleAdmin   Role = "admin"   // manages sites, keys and rules; reads everything granted
	RoleAnalyst Role = "analyst" // reads and exports
	RoleViewer  Role = "viewer"  // reads the feed only
)

func (r Role) rank() int {
	switch r {
	case RoleAdmin:
		return 3
	case RoleAnalyst:
		return 2
	case RoleViewer:
		return 1
	}
	return 0
}

// ParseRole accepts admin, analyst or viewer.
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if r.rank() == 0 {
		return "", fmt.Errorf("role %q is not one of admin, analyst, viewer", s)
	}
	return r, nil
}

// Account is a customer of the installation: it owns sites, and its keys
// read only its sites. Saved feeds belong to a site, so they are shared by
// the account's keys that were granted the site.
type Account struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}

// DefaultRetentionDays and MaxRetentionDays bound a site's retention of
// raw hits and visits.
const (
	DefaultRetentionDays = 180
	MaxRetentionDays     = 800
)

type snapshot struct {
	accounts map[string]Account
	sites    map[string]Site
	keys     map[string]Key
	users    map[string]User
	// deleted are sites removed (DeleteSite): their hits still in flight
	// are dropped by processors rather than written after the erasure.
	deleted map[string]bool
}

// Store reads and writes sites and keys; reads come from a watched snapshot.
type Store struct {
	js       jetstream.JetStream
	accounts jetstream.KeyValue
	sites    jetstream.KeyValue
	keys     jetstream.KeyValue
	users    jetstream.KeyValue
	logins   jetstream.KeyValue
	log      *slog.Logger

	mu   sync.Mutex // serialises snapshot rebuilds
	snap atomic.Pointer[snapshot]
	// replay, while Open replays the buckets, is the snapshot being built:
	// entries go into it in place (nobody reads it yet) and it is
	// published once, instead of a copy of every map per entry, which made
	// a start quadratic in the number of keys (sessions are keys).
	replay *snapshot
	// misses remembers when LookupSite last found a site in no bucket, so
	// a stream of hits for an unknown site costs one read per
	// lookupMissTTL, not one each.
	misses sync.Map // site id → time.Time
}

// Open binds the buckets, loads the current sites and keys, and keeps the
// snapshot current until ctx ends.
func Open(ctx context.Context, js jetstream.JetStream, log *slog.Logger) (*Store, error) {
	s := &Store{js: js, log: log}
	var err error
	if s.accounts, err = js.KeyValue(ctx, bus.AccountsBucket); err != nil {
		return nil, fmt.Errorf("opening bucket %s: %w", bus.AccountsBucket, err)
	}
	if s.sites, err = js.KeyValue(ctx, bus.SitesBucket); err != nil {
		return nil, fmt.Errorf("opening bucket %s: %w", bus.SitesBucket, err)
	}
	if s.keys, err = js.KeyValue(ctx, bus.KeysBucket); err != nil {
		return nil, fmt.Errorf("opening bucket %s: %w", bus.KeysBucket, err)
	}
	if s.users, err = js.KeyValue(ctx, bus.UsersBucket); err != nil {
		return nil, fmt.Errorf("opening bucket %s: %w", bus.UsersBucket, err)
	}
	if s.logins, err = js.KeyValue(ctx, bus.LoginsBucket); err != nil {
		return nil, fmt.Errorf("opening bucket %s: %w", bus.LoginsBucket, err)
	}
	s.replay = &snapshot{accounts: map[string]Account{}, sites: map[string]Site{}, keys: map[string]Key{},
		users: map[string]User{}, deleted: map[string]bool{}}
	s.snap.Store(s.replay)
	defer s.endReplay()
	for _, w := range []struct {
		kv    jetstream.KeyValue
		apply func([]byte, bool, string)
	}{
		{s.accounts, s.applyAccount},
		{s.sites, s.applySite},
		{s.keys, s.applyKey},
		{s.users, s.applyUser},
	} {
		watcher, err := w.kv.WatchAll(ctx)
		if err != nil {
			return nil, fmt.Errorf("watching bucket %s: %w", w.kv.Bucket(), err)
		}
		// The watch first replays current values, then a nil marker.
		for e := range watcher.Updates() {
			if e == nil {
				break
			}
			w.apply(e.Value(), e.Operation() != jetstream.KeyValuePut, e.Key())
		}
		go func(watcher jetstream.KeyWatcher, apply func([]byte, bool, string)) {
			defer watcher.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case e, ok := <-watcher.Updates():
					if !ok {
						return
					}
					if e != nil {
						apply(e.Value(), e.Operation() != jetstream.KeyValuePut, e.Key())
					}
				}
			}
		}(watcher, w.apply)
	}
	return s, nil
}

// endReplay publishes the snapshot the replay built; from now on every
// change copies.
func (s *Store) endReplay() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snap.Store(s.replay)
	s.replay = nil
}

// apply decodes a bucket entry into the snapshot map field picks, or
// removes it there when the entry was deleted; then runs also, if given,
// on the new snapshot.
func apply[T any](s *Store, kind string, raw []byte, deleted bool, id string, field func(*snapshot) map[string]T, also func(*snapshot)) {
	var v T
	if !deleted {
		if err := json.Unmarshal(raw, &v); err != nil {
			s.log.Error("ignoring undecodable "+kind, kind, id, "err", err)
			return
		}
	}
	s.update(func(n *snapshot) {
		if deleted {
			delete(field(n), id)
		} else {
			field(n)[id] = v
		}
		if also != nil {
			also(n)
		}
	})
}

func (s *Store) applyAccount(raw []byte, deleted bool, id string) {
	apply(s, "account", raw, deleted, id, func(n *snapshot) map[string]Account { return n.accounts }, nil)
}

// update copies the snapshot, changes the copy and publishes it: readers
// never lock. Sites and keys change rarely, so copying is cheap enough;
// during Open's replay, the unpublished snapshot is changed in place.
func (s *Store) update(change func(*snapshot)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.replay != nil {
		change(s.replay)
		return
	}
	old := s.snap.Load()
	n := &snapshot{accounts: maps.Clone(old.accounts), sites: maps.Clone(old.sites), keys: maps.Clone(old.keys),
		users: maps.Clone(old.users), deleted: maps.Clone(old.deleted)}
	change(n)
	s.snap.Store(n)
}

// CreateAccount stores a new account and returns it.
func (s *Store) CreateAccount(ctx context.Context, name string) (Account, error) {
	a := Account{ID: randomID(10), Name: name, Created: time.Now().UTC()}
	raw, _ := json.Marshal(a)
	if _, err := s.accounts.Create(ctx, a.ID, raw); err != nil {
		return Account{}, fmt.Errorf("storing account: %w", err)
	}
	s.applyAccount(raw, false, a.ID)
	return a, nil
}

// Account returns a known account.
func (s *Store) Account(id string) (Account, bool) {
	a, ok := s.snap.Load().accounts[id]
	return a, ok
}

// Accounts returns every account, by id.
func (s *Store) Accounts() []Account {
	return sorted(s.snap.Load().accounts, func(a, b Account) int { return strings.Compare(a.ID, b.ID) })
}

// sorted returns the values of one of the snapshot's maps in order.
func sorted[T any](m map[string]T, order func(a, b T) int) []T {
	return slices.SortedFunc(maps.Values(m), order)
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// randomID returns n characters of lowercase base32 (5 random bits each),
// safe as a NATS subject token and in URLs.
func randomID(n int) string {
	b := make([]byte, (n*5+7)/8)
	_, _ = rand.Read(b)
	return idEncoding.EncodeToString(b)[:n]
}

// DeleteAccount removes an account, its users and its keys (sessions
// included); its sites must be deleted first (DeleteSite), which the caller
// does with their data.
func (s *Store) DeleteAccount(ctx context.Context, id string) error {
	for _, site := range s.Sites() {
		if site.Account == id {
			return fmt.Errorf("account %s still has site %s", id, site.ID)
		}
	}
	for _, u := range s.Users() {
		if u.Account == id {
			if err := s.DeleteUser(ctx, u.ID); err != nil {
				return err
			}
		}
	}
	for _, k := range s.Keys() {
		if k.Account == id {
			if err := s.purgeKey(ctx, k.ID); err != nil {
				return err
			}
		}
	}
	if err := s.accounts.Purge(ctx, id); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("deleting account %s: %w", id, err)
	}
	s.applyAccount(nil, true, id)
	return nil
}
