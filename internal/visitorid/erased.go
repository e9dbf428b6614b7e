package visitorid

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadpipe/leadpipe/internal/bus"
)

// Erased remembers visitors erased on request, for as long as hits of
// theirs may still wait in the HITS stream: processors drop those hits on
// arrival. Markers live in a JetStream KV bucket (keyed by the stored
// visitor id, never the client id) that every process watches.
type Erased struct {
	kv  jetstream.KeyValue
	ttl time.Duration
	mu  sync.RWMutex
	ids map[string]int64 // "<site>.<visitor id>" → until (unix seconds)
}

// OpenErased loads the markers and keeps them current until ctx ends. A
// marker holds for ttl: as long as the HITS stream keeps a hit. After
// that a visitor who comes back (same cookie) is counted again.
func OpenErased(ctx context.Context, js jetstream.JetStream, ttl time.Duration) (*Erased, error) {
	kv, err := js.KeyValue(ctx, bus.ErasedBucket)
	if err != nil {
		return nil, fmt.Errorf("opening bucket %s: %w", bus.ErasedBucket, err)
	}
	e := &Erased{kv: kv, ttl: ttl, ids: map[string]int64{}}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("watching bucket %s: %w", bus.ErasedBucket, err)
	}
	apply := func(u jetstream.KeyValueEntry) {
		e.mu.Lock()
		defer e.mu.Unlock()
		until, err := strconv.ParseInt(string(u.Value()), 10, 64)
		if u.Operation() == jetstream.KeyValuePut && err == nil {
			e.ids[u.Key()] = until
		} else {
			delete(e.ids, u.Key())
		}
	}
	for u := range w.Updates() {
		if u == nil {
			break
		}
		apply(u)
	}
	go func() {
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case u, ok := <-w.Updates():
				if !ok {
					return
				}
				if u != nil {
					apply(u)
				}
			}
		}
	}()
	return e, nil
}

func erasedKey(site string, vid uint64) string {
	return site + "." + strconv.FormatUint(vid, 16)
}

// Add marks a visitor of a site as erased.
func (e *Erased) Add(ctx context.Context, site string, vid uint64) error {
	k := erasedKey(site, vid)
	until := time.Now().Add(e.ttl).Unix()
	if _, err := e.kv.Put(ctx, k, []byte(strconv.FormatInt(until, 10))); err != nil {
		return fmt.Errorf("recording erasure: %w", err)
	}
	e.mu.Lock()
	e.ids[k] = until
	e.mu.Unlock()
	return nil
}

// Has reports whether a visitor of a site was erased recently.
func (e *Erased) Has(site string, vid uint64) bool {
	if e == nil {
		return false
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if len(e.ids) == 0 {
		return false
	}
	until, ok := e.ids[erasedKey(site, vid)]
	return ok && time.Now().Unix() < until
}

// ParseErasedKey reads a marker's key of the erased bucket back into the
// site and the stored visitor id.
func ParseErasedKey(key string) (site string, vid uint64, ok bool) {
	i := strings.LastIndexByte(key, '.')
	if i <= 0 {
		return "", 0, false
	}
	vid, err := strconv.ParseUint(key[i+1:], 16, 64)
	return key[:i], vid, err == nil
}
