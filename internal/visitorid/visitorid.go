// Package visitorid derives the pseudonymous visitor id stored with each
// hit, and keeps the erasure markers of erased visitor ids (Erased). The
// processor uses it to key hits and drop an erased visitor's queued ones;
// the API uses it to find a visitor's data for an access or erasure
// request by client id. (Package visit, apart, says what a visit is.)
//
// It imports internal/bus alone.
package visitorid

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadpipe/leadpipe/internal/bus"
)

// Keys derives the stored visitor id. A browser's client id is never
// stored: it is keyed-hashed with an installation secret, so a stolen
// database cannot be linked to cookies. A hit without a client id (no
// consent) gets a hash of site, IP and user agent under a salt of the day;
// salts live two days in JetStream, then yesterday's hashes cannot be
// recomputed by anyone. Every processor reads the same secret and salts.
type Keys struct {
	js     jetstream.JetStream
	mu     sync.Mutex
	secret []byte
	salts  map[string][]byte
}

// NewKeys reads the installation secret and daily salts from JetStream KV.
func NewKeys(js jetstream.JetStream) *Keys {
	return &Keys{js: js, salts: map[string][]byte{}}
}

// ID keys a hit's visitor. The salt is the one of the day the hit was
// received, not of its (client-given, possibly days old) event time: salts
// of past days are gone and must not be made again.
func (v *Keys) ID(ctx context.Context, h *bus.Hit, ip netip.Addr) (uint64, error) {
	if h.ClientID != "" {
		return v.ClientID(ctx, h.Site, h.ClientID)
	}
	salt, err := v.salt(ctx, time.UnixMilli(h.ReceivedAt).UTC().Format("20060102"))
	if err != nil {
		return 0, err
	}
	ipb := ip.Unmap().AsSlice()
	return keyedHash(salt, h.Site, string(ipb), h.UserAgent), nil
}

// ClientID is the stored visitor id of a site's client id (the _lfa cookie).
func (v *Keys) ClientID(ctx context.Context, site, cid string) (uint64, error) {
	secret, err := v.installSecret(ctx)
	if err != nil {
		return 0, err
	}
	return keyedHash(secret, site, cid), nil
}

func keyedHash(key []byte, parts ...string) uint64 {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return binary.BigEndian.Uint64(m.Sum(nil))
}

func (v *Keys) installSecret(ctx context.Context) ([]byte, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.secret != nil {
		return v.secret, nil
	}
	s, err := getOrCreate(ctx, v.js, bus.SecretsBucket, "visitor-id-key")
	if err != nil {
		return nil, err
	}
	v.secret = s
	return s, nil
}

func (v *Keys) salt(ctx context.Context, day string) ([]byte, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if s, ok := v.salts[day]; ok {
		return s, nil
	}
	s, err := getOrCreate(ctx, v.js, bus.SaltsBucket, "day-"+day)
	if err != nil {
		return nil, err
	}
	// Only today's salt is in use (and yesterday's around midnight):
	// forget older ones, as the bucket does after two days.
	for d := range v.salts {
		if d < time.Now().UTC().AddDate(0, 0, -1).Format("20060102") {
			delete(v.salts, d)
		}
	}
	v.salts[day] = s
	return s, nil
}

// getOrCreate returns the bucket's value for key, creating a random one
// first if there is none; concurrent processors agree on one value.
func getOrCreate(ctx context.Context, js jetstream.JetStream, bucket, key string) ([]byte, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("opening bucket %s: %w", bucket, err)
	}
	for range 3 {
		e, err := kv.Get(ctx, key)
		if err == nil {
			return e.Value(), nil
		}
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, fmt.Errorf("reading %s/%s: %w", bucket, key, err)
		}
		val := make([]byte, 32)
		_, _ = rand.Read(val)
		if _, err := kv.Create(ctx, key, val); err == nil {
			return val, nil
		} else if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("creating %s/%s: %w", bucket, key, err)
		}
	}
	return nil, fmt.Errorf("creating %s/%s: lost the race three times", bucket, key)
}
