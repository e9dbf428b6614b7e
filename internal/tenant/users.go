package tenant

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// User is a person who signs in to the dashboard with an identity provider
// (Google, Microsoft, or any OpenID Connect provider the operator
// configured). An admin grants an e-mail address a role in an account;
// the provider vouches for the address at each sign-in. Users hold no
// secret here: a sign-in makes a session key that expires.
type User struct {
	ID      string    `json:"id"`
	Email   string    `json:"email"`
	Account string    `json:"account,omitempty"`
	Role    Role      `json:"role"`
	Sites   []string  `json:"sites"`
	Created time.Time `json:"created"`
}

// ErrUserExists is returned when an e-mail address already has a user.
var ErrUserExists = errors.New("a user with this e-mail address exists")

func (s *Store) applyUser(raw []byte, deleted bool, id string) {
	apply(s, "user", raw, deleted, id, func(n *snapshot) map[string]User { return n.users }, nil)
}

// NormalizeEmail is how addresses are compared: trimmed, lower case.
func NormalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// CreateUser grants an e-mail address a role on sites of an account.
func (s *Store) CreateUser(ctx context.Context, u User) (User, error) {
	u.Email = NormalizeEmail(u.Email)
	if _, ok := s.UserByEmail(u.Email); ok {
		return User{}, ErrUserExists
	}
	u.ID = randomID(10)
	u.Created = time.Now().UTC()
	raw, _ := json.Marshal(u)
	if _, err := s.users.Create(ctx, u.ID, raw); err != nil {
		return User{}, fmt.Errorf("storing user: %w", err)
	}
	s.applyUser(raw, false, u.ID)
	return u, nil
}

// User returns a known user.
func (s *Store) User(id string) (User, bool) {
	u, ok := s.snap.Load().users[id]
	return u, ok
}

// UserByEmail finds the user of an address (compared normalised).
func (s *Store) UserByEmail(email string) (User, bool) {
	email = NormalizeEmail(email)
	for _, u := range s.snap.Load().users {
		if u.Email == email {
			return u, true
		}
	}
	return User{}, false
}

// Users returns every user, by e-mail address.
func (s *Store) Users() []User {
	return sorted(s.snap.Load().users, func(a, b User) int { return cmp.Compare(a.Email, b.Email) })
}

// DeleteUser removes a user and ends their sessions.
func (s *Store) DeleteUser(ctx context.Context, id string) error {
	for _, k := range s.Keys() {
		if k.User == id {
			if err := s.RevokeKey(ctx, k.ID); err != nil {
				return err
			}
		}
	}
	if err := s.users.Purge(ctx, id); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("deleting user %s: %w", id, err)
	}
	s.applyUser(nil, true, id)
	return nil
}

// SessionTTL is how long a dashboard session lasts after sign-in.
const SessionTTL = 12 * time.Hour

// StartSession makes the key a signed-in user's dashboard session acts
// with: the user's account, role and grants, expiring after SessionTTL.
// Sessions that expired a day ago are removed on the way.
func (s *Store) StartSession(ctx context.Context, u User) (Key, string, error) {
	now := time.Now()
	for _, k := range s.Keys() {
		if k.User != "" && k.Expired(now.Add(-24*time.Hour)) {
			if err := s.RevokeKey(ctx, k.ID); err != nil {
				s.log.Warn("removing an expired session", "key", k.ID, "err", err)
			}
		}
	}
	return s.CreateKey(ctx, Key{Account: u.Account, Role: u.Role, Sites: u.Sites, User: u.ID, Expires: now.Add(SessionTTL).UTC()})
}

// Login is a sign-in in progress with an identity provider: what the
// callback must match. It lives in the logins bucket for ten minutes at
// most and is consumed by its callback, so each can finish once.
type Login struct {
	Provider string `json:"provider"`
	Nonce    string `json:"nonce"`
	Verifier string `json:"verifier"`
}

// ErrNoLogin is returned for a state that began no sign-in, or one that
// already finished or timed out.
var ErrNoLogin = errors.New("no sign-in in progress with this state")

// BeginLogin stores a sign-in in progress and returns its state, the
// unguessable value the provider hands back to the callback.
func (s *Store) BeginLogin(ctx context.Context, l Login) (string, error) {
	state := rand.Text()
	raw, _ := json.Marshal(l)
	if _, err := s.logins.Create(ctx, state, raw); err != nil {
		return "", fmt.Errorf("storing sign-in: %w", err)
	}
	return state, nil
}

// FinishLogin consumes the sign-in of a state: of two callbacks with the
// same state, across any number of API processes, one gets it.
func (s *Store) FinishLogin(ctx context.Context, state string) (Login, error) {
	if state == "" || len(state) > 64 || strings.ContainsAny(state, ".*> ") {
		return Login{}, ErrNoLogin
	}
	e, err := s.logins.Get(ctx, state)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Login{}, ErrNoLogin
	} else if err != nil {
		return Login{}, fmt.Errorf("reading sign-in: %w", err)
	}
	if err := s.logins.Delete(ctx, state, jetstream.LastRevision(e.Revision())); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return Login{}, ErrNoLogin // another callback consumed it first
		}
		return Login{}, fmt.Errorf("consuming sign-in: %w", err)
	}
	var l Login
	if err := json.Unmarshal(e.Value(), &l); err != nil {
		return Login{}, fmt.Errorf("decoding sign-in: %w", err)
	}
	return l, nil
}
