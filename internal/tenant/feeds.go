package tenant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadpipe/leadpipe/internal/bus"
)

// Feed is a saved, named set of company-feed filters, shared by everyone
// who can read the site (Leadfeeder calls them custom feeds).
type Feed struct {
	ID      string    `json:"id"`
	Site    string    `json:"site"`
	Name    string    `json:"name"`
	Filters string    `json:"filters"` // the feed's query parameters, URL-encoded
	Owner   string    `json:"owner"`   // the key that saved it
	Created time.Time `json:"created"`
}

func (s *Store) feeds(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := s.js.KeyValue(ctx, bus.FeedsBucket)
	if err != nil {
		return nil, fmt.Errorf("opening bucket %s: %w", bus.FeedsBucket, err)
	}
	return kv, nil
}

// SaveFeed stores a new saved feed and returns it with its id.
func (s *Store) SaveFeed(ctx context.Context, f Feed) (Feed, error) {
	kv, err := s.feeds(ctx)
	if err != nil {
		return Feed{}, err
	}
	f.ID, f.Created = randomID(10), time.Now().UTC()
	raw, _ := json.Marshal(f)
	if _, err := kv.Create(ctx, f.Site+"."+f.ID, raw); err != nil {
		return Feed{}, fmt.Errorf("storing feed: %w", err)
	}
	return f, nil
}

// Feed returns one saved feed of a site.
func (s *Store) Feed(ctx context.Context, site, id string) (Feed, bool, error) {
	kv, err := s.feeds(ctx)
	if err != nil {
		return Feed{}, false, err
	}
	e, err := kv.Get(ctx, site+"."+id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return Feed{}, false, nil
	}
	if err != nil {
		return Feed{}, false, fmt.Errorf("reading feed: %w", err)
	}
	var f Feed
	if err := json.Unmarshal(e.Value(), &f); err != nil {
		return Feed{}, false, fmt.Errorf("decoding feed: %w", err)
	}
	return f, true, nil
}

// Feeds lists a site's saved feeds by name.
func (s *Store) Feeds(ctx context.Context, site string) ([]Feed, error) {
	kv, err := s.feeds(ctx)
	if err != nil {
		return nil, err
	}
	lister, err := kv.ListKeysFiltered(ctx, site+".*")
	if err != nil {
		return nil, fmt.Errorf("listing feeds: %w", err)
	}
	out := []Feed{}
	for k := range lister.Keys() {
		id := strings.TrimPrefix(k, site+".")
		if f, ok, err := s.Feed(ctx, site, id); err == nil && ok {
			out = append(out, f)
		}
	}
	slices.SortFunc(out, func(a, b Feed) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// DeleteFeed removes a saved feed.
func (s *Store) DeleteFeed(ctx context.Context, site, id string) error {
	kv, err := s.feeds(ctx)
	if err != nil {
		return err
	}
	return kv.Delete(ctx, site+"."+id)
}
