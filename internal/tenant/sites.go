package tenant

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadpipe/leadpipe/internal/bus"
)

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
	// IntentPages are the words of the site's high-intent page paths
	// (pricing, contact, demo…): a page whose path contains one, in any
	// case, weighs more in the lead score. Empty: DefaultIntentPages.
	IntentPages []string `json:"intent_pages,omitempty"`
}

// DefaultIntentPages are the high-intent page words of a site that names
// none: the pages a buyer reads, not a browser.
var DefaultIntentPages = []string{"pricing", "plans", "contact", "demo", "quote", "trial"}

// Intent is the site's high-intent page words.
func (s Site) Intent() []string {
	if len(s.IntentPages) == 0 {
		return DefaultIntentPages
	}
	return s.IntentPages
}

// IntentPath reports whether a page path is one of the site's high-intent
// pages: it contains one of the words, in any case.
func (s Site) IntentPath(path string) bool {
	for _, w := range s.Intent() {
		if containsFold(path, w) {
			return true
		}
	}
	return false
}

// containsFold reports whether s contains substr, ASCII case folded,
// without allocating.
func containsFold(s, substr string) bool {
	for i := 0; i+len(substr) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(substr)], substr) {
			return true
		}
	}
	return false
}

// Retention is the site's retention of raw hits and visits, in days.
func (s Site) Retention() int {
	if s.RetentionDays <= 0 {
		return DefaultRetentionDays
	}
	return min(s.RetentionDays, MaxRetentionDays)
}

const lookupMissTTL = 5 * time.Second

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
