package tenant

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// AllSites in a key's grants means every site of its account, present and
// future (every site of the installation for an operator key).
const AllSites = "*"

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

func (s *Store) applyKey(raw []byte, deleted bool, id string) {
	apply(s, "key", raw, deleted, id, func(n *snapshot) map[string]Key { return n.keys }, nil)
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
