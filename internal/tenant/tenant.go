package tenant

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
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

// AllSites in a key's grants means every site of its account, present and
// future (every site of the installation for an operator key).
const AllSites = "*"

// Account is a customer of the installation: it owns sites, and its keys
// read only its sites. Saved feeds belong to a site, so they are shared by
// the account's keys that were granted the site.
type Account struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}

// Site is a website that sends hits.
type Site struct {
	ID string `json:"id"`
	// Account owns the site; empty for a site of the installation itself
	// (made by an operator key without an account, or before accounts).
	Account string    `json:"account,omitempty"`
	Name    string    `json:"name"`
	Domain  string    `json:"domain"`
	Created time.Time `json:"created"`
	// KeepHosting keeps hits from hosting and cloud networks, which are
	// dropped as non-human by default (for sites whose visitors work from
	// virtual desktops or corporate cloud proxies).
	KeepHosting bool `json:"keep_hosting,omitempty"`
	// RetentionDays is how long the site's raw hits and visits are kept
	// (0: DefaultRetentionDays); the company aggregates keep 800 days.
	RetentionDays int `json:"retention_days,omitempty"`
	// SecretHash is the SHA-256 of the site secret that server-side senders
	// present to POST /v1/batch; empty until one is made.
	SecretHash string `json:"secret_hash,omitempty"`
}

// Key is an API key as stored: its secret only as a hash.
type Key struct {
	ID   string `json:"id"`
	Hash string `json:"hash"`
	// Account the key belongs to: it reads that account's sites only. An
	// operator key (the owner key that serve makes) has none and spans the
	// installation.
	Account string    `json:"account,omitempty"`
	Role    Role      `json:"role"`
	Sites   []string  `json:"sites"`
	Created time.Time `json:"created"`
	Revoked bool      `json:"revoked,omitempty"`
	// Expires, when set, ends the key: Authenticate refuses it after.
	Expires time.Time `json:"expires,omitzero"`
	// User is set on a dashboard session's key: the signed-in user it acts
	// for (sign-in with an identity provider makes one, sign-out revokes it).
	User string `json:"user,omitempty"`
}

// Expired reports whether the key's expiry has passed at now.
func (k *Key) Expired(now time.Time) bool { return !k.Expires.IsZero() && !now.Before(k.Expires) }

// DefaultRetentionDays and MaxRetentionDays bound a site's retention of
// raw hits and visits.
const (
	DefaultRetentionDays = 180
	MaxRetentionDays     = 800
)

// Retention is the site's retention of raw hits and visits, in days.
func (s Site) Retention() int {
	if s.RetentionDays <= 0 {
		return DefaultRetentionDays
	}
	return min(s.RetentionDays, MaxRetentionDays)
}

// CanRead reports whether the key was granted the site: the site is in
// the key's account (any, for a key without one) and in its grants.
func (k *Key) CanRead(site Site) bool {
	if k.Account != "" && site.Account != k.Account {
		return false
	}
	return k.AllSites() || slices.Contains(k.Sites, site.ID)
}

// AllSites reports whether the key holds every site of its scope.
func (k *Key) AllSites() bool { return slices.Contains(k.Sites, AllSites) }

// Operator reports whether the key administers the whole installation:
// accounts, and sites of any account.
func (k *Key) Operator() bool { return k.Account == "" && k.Role == RoleAdmin && k.AllSites() }

// AtLeast reports whether the key's role is r or more powerful.
func (k *Key) AtLeast(r Role) bool { return k.Role.rank() >= r.rank() }

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

const lookupMissTTL = 5 * time.Second

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

func (s *Store) applySite(raw []byte, deleted bool, id string) {
	apply(s, "site", raw, deleted, id, func(n *snapshot) map[string]Site { return n.sites }, func(n *snapshot) {
		if deleted {
			n.deleted[id] = true
		} else {
			delete(n.deleted, id)
		}
	})
}

// Deleted reports whether the site was deleted: a processor drops its hits.
func (s *Store) Deleted(site string) bool { return s.snap.Load().deleted[site] }

// DeletedSites lists the sites whose deletion the sites bucket keeps.
func (s *Store) DeletedSites() []string {
	return slices.Sorted(maps.Keys(s.snap.Load().deleted))
}

func (s *Store) applyKey(raw []byte, deleted bool, id string) {
	apply(s, "key", raw, deleted, id, func(n *snapshot) map[string]Key { return n.keys }, nil)
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

// SitesOf returns the sites a key can read, by id.
func (s *Store) SitesOf(key Key) []Site {
	var out []Site
	for _, site := range s.Sites() {
		if key.CanRead(site) {
			out = append(out, site)
		}
	}
	return out
}

// Site returns a known site.
func (s *Store) Site(id string) (Site, bool) {
	site, ok := s.snap.Load().sites[id]
	return site, ok
}

// Sites returns every site, by id.
func (s *Store) Sites() []Site {
	return sorted(s.snap.Load().sites, func(a, b Site) int { return strings.Compare(a.ID, b.ID) })
}

// ValidateDomain checks a site's domain: a bare host name, no scheme or path.
func ValidateDomain(d string) error {
	if d == "" {
		return errors.New("is empty")
	}
	if len(d) > 253 || strings.ContainsAny(d, "/:@ ?#") {
		return fmt.Errorf("%q is not a bare host name (like example.com)", d)
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("%q is not a valid host name", d)
		}
	}
	return nil
}

// CreateSite stores a new site of the account ("" for the installation's
// own) and returns it.
func (s *Store) CreateSite(ctx context.Context, account, name, domain string) (Site, error) {
	site := Site{ID: randomID(10), Account: account, Name: name, Domain: strings.ToLower(domain), Created: time.Now().UTC()}
	raw, _ := json.Marshal(site)
	if _, err := s.sites.Create(ctx, site.ID, raw); err != nil {
		return Site{}, fmt.Errorf("storing site: %w", err)
	}
	s.applySite(raw, false, site.ID)
	return site, nil
}

// UpdateSite changes a site's settings with compare-and-set, so concurrent
// updates from several API processes are not lost.
func (s *Store) UpdateSite(ctx context.Context, id string, change func(*Site)) (Site, error) {
	for range 5 {
		e, err := s.sites.Get(ctx, id)
		if err != nil {
			return Site{}, fmt.Errorf("reading site %s: %w", id, err)
		}
		var site Site
		if err := json.Unmarshal(e.Value(), &site); err != nil {
			return Site{}, fmt.Errorf("decoding site %s: %w", id, err)
		}
		change(&site)
		site.ID = id
		raw, _ := json.Marshal(site)
		if _, err := s.sites.Update(ctx, id, raw, e.Revision()); err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue // changed meanwhile: read again
			}
			return Site{}, fmt.Errorf("storing site %s: %w", id, err)
		}
		s.applySite(raw, false, id)
		return site, nil
	}
	return Site{}, fmt.Errorf("storing site %s: too many concurrent updates", id)
}

// LookupSite returns a site, reading the bucket when the snapshot does not
// know it yet (a site created a moment ago in another process).
func (s *Store) LookupSite(ctx context.Context, id string) (Site, bool) {
	if site, ok := s.Site(id); ok {
		return site, true
	}
	if at, ok := s.misses.Load(id); ok && time.Since(at.(time.Time)) < lookupMissTTL {
		return Site{}, false
	}
	e, err := s.sites.Get(ctx, id)
	if err != nil {
		s.misses.Store(id, time.Now())
		return Site{}, false
	}
	s.applySite(e.Value(), false, id)
	return s.Site(id)
}

// SiteSecretPrefix starts every site secret.
const SiteSecretPrefix = "lps_"

// RotateSiteSecret makes a new secret for a site's server-side senders,
// replacing the old one, and returns it: it is stored only as a hash.
func (s *Store) RotateSiteSecret(ctx context.Context, id string) (string, error) {
	secret := randomID(32)
	if _, err := s.UpdateSite(ctx, id, func(site *Site) { site.SecretHash = hashSecret(secret) }); err != nil {
		return "", err
	}
	return SiteSecretPrefix + id + "_" + secret, nil
}

// AuthenticateSite returns the site a site secret belongs to.
func (s *Store) AuthenticateSite(token string) (Site, bool) {
	rest, ok := strings.CutPrefix(token, SiteSecretPrefix)
	if !ok {
		return Site{}, false
	}
	id, secret, ok := strings.Cut(rest, "_")
	if !ok {
		return Site{}, false
	}
	site, ok := s.Site(id)
	if !ok || site.SecretHash == "" {
		return Site{}, false
	}
	if subtle.ConstantTimeCompare([]byte(hashSecret(secret)), []byte(site.SecretHash)) != 1 {
		return Site{}, false
	}
	return site, true
}

// KeyPrefix starts every API key, so leaked keys are easy to find by scanners.
const KeyPrefix = "lp_"

// CreateKey stores a new key with the account, role, grants, expiry and
// user of k, and returns it with its secret, which is not stored and cannot
// be shown again.
func (s *Store) CreateKey(ctx context.Context, k Key) (Key, string, error) {
	id := randomID(12)
	secret := randomID(32)
	key := Key{ID: id, Hash: hashSecret(secret), Account: k.Account, Role: k.Role, Sites: k.Sites,
		Created: time.Now().UTC(), Expires: k.Expires, User: k.User}
	raw, _ := json.Marshal(key)
	if _, err := s.keys.Create(ctx, id, raw); err != nil {
		return Key{}, "", fmt.Errorf("storing key: %w", err)
	}
	s.applyKey(raw, false, id)
	return key, KeyPrefix + id + "_" + secret, nil
}

// Key returns a stored key (revoked and expired ones too).
func (s *Store) Key(id string) (Key, bool) {
	k, ok := s.snap.Load().keys[id]
	return k, ok
}

// Keys returns every stored key, by creation time.
func (s *Store) Keys() []Key {
	return sorted(s.snap.Load().keys, func(a, b Key) int {
		return cmp.Or(a.Created.Compare(b.Created), strings.Compare(a.ID, b.ID))
	})
}

// RevokeKey ends a key at once, in every process. An API key stays listed
// as revoked, so the audit log's key ids keep a meaning; a session's key
// is deleted.
func (s *Store) RevokeKey(ctx context.Context, id string) error {
	k, ok := s.Key(id)
	if !ok {
		return fmt.Errorf("key %s: %w", id, jetstream.ErrKeyNotFound)
	}
	if k.User != "" {
		return s.purgeKey(ctx, id)
	}
	k.Revoked = true
	raw, _ := json.Marshal(k)
	if _, err := s.keys.Put(ctx, id, raw); err != nil {
		return fmt.Errorf("revoking key %s: %w", id, err)
	}
	s.applyKey(raw, false, id)
	return nil
}

// purgeKey removes a key from the bucket and the snapshot.
func (s *Store) purgeKey(ctx context.Context, id string) error {
	if err := s.keys.Purge(ctx, id); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("deleting key %s: %w", id, err)
	}
	s.applyKey(nil, true, id)
	return nil
}

// Authenticate returns the key a bearer token stands for.
func (s *Store) Authenticate(token string) (Key, bool) {
	rest, ok := strings.CutPrefix(token, KeyPrefix)
	if !ok {
		return Key{}, false
	}
	id, secret, ok := strings.Cut(rest, "_")
	if !ok {
		return Key{}, false
	}
	key, ok := s.snap.Load().keys[id]
	if !ok || key.Revoked || key.Expired(time.Now()) {
		return Key{}, false
	}
	if subtle.ConstantTimeCompare([]byte(hashSecret(secret)), []byte(key.Hash)) != 1 {
		return Key{}, false
	}
	return key, true
}

// EnsureOwnerKey makes sure path holds a valid admin key for all sites,
// creating one on first start. It reports whether it created the key.
func (s *Store) EnsureOwnerKey(ctx context.Context, path string) (bool, error) {
	if raw, err := os.ReadFile(path); err == nil {
		if key, ok := s.Authenticate(strings.TrimSpace(string(raw))); ok && key.Operator() {
			return false, nil
		}
		s.log.Warn("owner key file does not hold a valid owner key; creating a new one", "path", path)
	}
	_, secret, err := s.CreateKey(ctx, Key{Role: RoleAdmin, Sites: []string{AllSites}})
	if err != nil {
		return false, err
	}
	// A new file, renamed over the old: the key is never readable with
	// another file's permissions, nor half-written.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(secret+"\n"), 0o600); err != nil {
		return false, fmt.Errorf("writing owner key: %w", err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return false, fmt.Errorf("writing owner key: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return false, fmt.Errorf("writing owner key: %w", err)
	}
	return true, nil
}

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// randomID returns n characters of lowercase base32 (5 random bits each),
// safe as a NATS subject token and in URLs.
func randomID(n int) string {
	b := make([]byte, (n*5+7)/8)
	_, _ = rand.Read(b)
	return idEncoding.EncodeToString(b)[:n]
}

// DeleteSite removes a site: its settings, its saved feeds, and the hits of
// it still waiting in the HITS stream. The collector refuses its hits from
// then on (403, as for any unknown site). Its stored data in ClickHouse is
// the caller's to erase.
func (s *Store) DeleteSite(ctx context.Context, id string) error {
	stream, err := s.js.Stream(ctx, bus.HitsStream)
	if err != nil {
		return fmt.Errorf("opening stream %s: %w", bus.HitsStream, err)
	}
	if err := s.sites.Purge(ctx, id); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("deleting site %s: %w", id, err)
	}
	s.applySite(nil, true, id)
	if err := stream.Purge(ctx, jetstream.WithPurgeSubject(bus.HitSubject(id))); err != nil {
		return fmt.Errorf("dropping the queued hits of site %s: %w", id, err)
	}
	feeds, err := s.Feeds(ctx, id)
	if err != nil {
		return err
	}
	for _, f := range feeds {
		if err := s.DeleteFeed(ctx, id, f.ID); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("deleting saved feed %s: %w", f.ID, err)
		}
	}
	return nil
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
