package ipintel

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gaissmai/bart"
	"github.com/nats-io/nats.go/jetstream"
)

// SourceLearned names the first-party layer's evidence and decisions.
const SourceLearned = "learned"

// confLearned is the confidence of a learned network: visitors of the
// operator's own sites said, with consent, where they work.
const confLearned = 0.9

// Learning thresholds: a network is a company's when at least
// LearnMinVisitors distinct visitors identified with its domain within
// LearnWindow, and at least LearnMinAgreement of the visitors identified
// from the network did.
const (
	LearnMinVisitors  = 3
	LearnMinAgreement = 0.8
	LearnWindow       = 30 * 24 * time.Hour
)

// LearnedNetwork is a network learned as a company's from first-party
// identifications.
type LearnedNetwork struct {
	Prefix netip.Prefix `json:"network"`
	Domain string       `json:"domain"`
	// Visitors is how many distinct visitors identified with Domain from
	// the network within the window; Identified how many identified at
	// all; Agreement the share of the first among the second.
	Visitors   int       `json:"visitors"`
	Identified int       `json:"identified"`
	Agreement  float64   `json:"agreement"`
	Last       time.Time `json:"last_identified"`
}

// Says is the network as evidence.
func (n *LearnedNetwork) Says() string {
	return fmt.Sprintf("%d of %d visitors identified from %s in the last %d days gave an address at %s", n.Visitors, n.Identified,
		n.Prefix, int(LearnWindow.Hours()/24), n.Domain)
}

// Identification is one visitor's consented identification: the
// registrable domain of the address they gave, never the address.
type Identification struct {
	Domain string    `json:"domain"`
	At     time.Time `json:"at"`
}

// LearnedRemoval is an administrator's removal of a learned network: it is
// not learned again while the identifications that made it are kept.
type LearnedRemoval struct {
	Domain string    `json:"domain"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
}

// LearnNetwork is the network an identification from ip teaches: the
// registry assignment containing it, when one was imported, else its /24
// (IPv4) or /48 (IPv6).
func (db *DB) LearnNetwork(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	if a, ok := db.registry.Lookup(ip); ok {
		return a.Prefix
	}
	return missPrefix(ip)
}

// netKey writes a network as one bucket key token: its address in hex and
// its length ("c6336400-24"), as keys allow neither ':' nor '/'.
func netKey(p netip.Prefix) string {
	return hex.EncodeToString(p.Addr().AsSlice()) + "-" + strconv.Itoa(p.Bits())
}

// parseNetKey reads what netKey wrote.
func parseNetKey(s string) (netip.Prefix, error) {
	h, bits, ok := strings.Cut(s, "-")
	raw, err := hex.DecodeString(h)
	n, err2 := strconv.Atoi(bits)
	addr, ok2 := netip.AddrFromSlice(raw)
	if !ok || err != nil || err2 != nil || !ok2 || n < 0 || n > addr.BitLen() {
		return netip.Prefix{}, fmt.Errorf("%q is not a network key", s)
	}
	return netip.PrefixFrom(addr, n).Masked(), nil
}

// IdentificationKey is the identities bucket's key of a visitor's
// identification from a network of a site: "<network>.<site>.<visitor id>".
func IdentificationKey(network netip.Prefix, site, visitor string) string {
	return netKey(network) + "." + site + "." + visitor
}

// RemovalKey is the learned bucket's key of a removed network.
func RemovalKey(network netip.Prefix) string { return netKey(network) }

// Learner keeps the networks learned from identifications: it follows the
// identities bucket (written by every processor) and the removals bucket
// (written by the API), and answers lookups from a radix tree rebuilt when
// either changes. Lookup is safe for concurrent use; Run must be called
// once.
type Learner struct {
	ids, removals jetstream.KeyValue
	log           *slog.Logger

	mu      sync.Mutex
	byNet   map[netip.Prefix]map[string]Identification // network → "site.visitor" → identification
	removed map[netip.Prefix]LearnedRemoval
	table   atomic.Pointer[bart.Table[*LearnedNetwork]]
	list    atomic.Pointer[[]*LearnedNetwork]
	changed chan struct{}
	running atomic.Bool
	built   atomic.Int64 // rebuilds, for tests
}

// NewLearner returns a learner over the identities and removals buckets.
func NewLearner(ids, removals jetstream.KeyValue, log *slog.Logger) *Learner {
	l := &Learner{ids: ids, removals: removals, log: log, byNet: map[netip.Prefix]map[string]Identification{},
		removed: map[netip.Prefix]LearnedRemoval{}, changed: make(chan struct{}, 1)}
	l.table.Store(&bart.Table[*LearnedNetwork]{})
	l.list.Store(&[]*LearnedNetwork{})
	return l
}

// Lookup returns the learned network containing ip.
func (l *Learner) Lookup(ip netip.Addr) (*LearnedNetwork, bool) {
	if l == nil {
		return nil, false
	}
	return l.table.Load().Lookup(ip.Unmap())
}

// Networks lists the learned networks, most visitors first.
func (l *Learner) Networks() []*LearnedNetwork { return *l.list.Load() }

// Rebuilds counts how often the learned networks were recomputed.
func (l *Learner) Rebuilds() int64 { return l.built.Load() }

// Run follows both buckets until ctx ends.
func (l *Learner) Run(ctx context.Context) error {
	if !l.running.CompareAndSwap(false, true) {
		return errors.New("BUG: Learner.Run called twice")
	}
	ids, err := l.ids.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watching identifications: %w", err)
	}
	defer ids.Stop()
	rem, err := l.removals.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watching learned-network removals: %w", err)
	}
	defer rem.Stop()
	tick := time.NewTicker(time.Hour) // identifications age out of the window
	defer tick.Stop()
	// Nothing is learned before both buckets' current values are in (a
	// nil entry marks the end of them): a removal must not come after the
	// identifications it overrules.
	var idsIn, remIn bool
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-ids.Updates():
			if !ok {
				return watchEnded(ctx, "identifications")
			}
			if e == nil {
				idsIn = true
			} else {
				l.applyIdentification(e)
			}
		case e, ok := <-rem.Updates():
			if !ok {
				return watchEnded(ctx, "learned-network removals")
			}
			if e == nil {
				remIn = true
			} else {
				l.applyRemoval(e)
			}
		case <-tick.C:
		case <-debounce.C:
			l.rebuild(time.Now())
			continue
		}
		if idsIn && remIn {
			// Updates come in bursts: rebuild once they have stopped for
			// a moment.
			debounce.Reset(50 * time.Millisecond)
		}
	}
}

func (l *Learner) applyIdentification(e jetstream.KeyValueEntry) {
	network, who, ok := strings.Cut(e.Key(), ".")
	p, err := parseNetKey(network)
	if !ok || err != nil {
		l.log.Warn("identification key unreadable; ignored", "key", e.Key())
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		if m := l.byNet[p]; m != nil {
			delete(m, who)
		}
		return
	}
	var id Identification
	if err := json.Unmarshal(e.Value(), &id); err != nil || id.Domain == "" {
		l.log.Warn("identification unreadable; ignored", "key", e.Key())
		return
	}
	if l.byNet[p] == nil {
		l.byNet[p] = map[string]Identification{}
	}
	l.byNet[p][who] = id
}

func (l *Learner) applyRemoval(e jetstream.KeyValueEntry) {
	p, err := parseNetKey(e.Key())
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var r LearnedRemoval
	if e.Operation() != jetstream.KeyValuePut || json.Unmarshal(e.Value(), &r) != nil {
		delete(l.removed, p)
		return
	}
	l.removed[p] = r
}

// rebuild recomputes the learned networks as of now.
func (l *Learner) rebuild(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := &bart.Table[*LearnedNetwork]{}
	var list []*LearnedNetwork
	for p, ids := range l.byNet {
		maps.DeleteFunc(ids, func(_ string, id Identification) bool { return now.Sub(id.At) > LearnWindow })
		if len(ids) == 0 {
			delete(l.byNet, p)
			continue
		}
		if r, ok := l.removed[p]; ok && now.Sub(r.At) <= LearnWindow {
			continue
		}
		if n, ok := learn(p, ids); ok {
			t.Insert(p, n)
			list = append(list, n)
		}
	}
	slices.SortFunc(list, func(a, b *LearnedNetwork) int {
		if a.Visitors != b.Visitors {
			return b.Visitors - a.Visitors
		}
		return a.Prefix.Addr().Compare(b.Prefix.Addr())
	})
	l.table.Store(t)
	l.list.Store(&list)
	l.built.Add(1)
}

// learn decides whether a network's identifications make it a company's.
func learn(p netip.Prefix, ids map[string]Identification) (*LearnedNetwork, bool) {
	count := map[string]int{}
	var last time.Time
	for _, id := range ids {
		count[id.Domain]++
		if id.At.After(last) {
			last = id.At
		}
	}
	var top string
	for d, c := range count {
		if c > count[top] || c == count[top] && d < top {
			top = d
		}
	}
	n := &LearnedNetwork{Prefix: p, Domain: top, Visitors: count[top], Identified: len(ids), Last: last}
	n.Agreement = float64(n.Visitors) / float64(n.Identified)
	return n, n.Visitors >= LearnMinVisitors && n.Agreement >= LearnMinAgreement
}

// LearnedApplies reports whether the learned network n may name ip's
// company: not when an imported registry assignment holding ip is more
// specific (another company's /28 inside the learned /24).
func (db *DB) LearnedApplies(ip netip.Addr, n *LearnedNetwork) bool {
	a, ok := db.registry.Lookup(ip.Unmap())
	return !ok || a.Prefix.Bits() <= n.Prefix.Bits()
}

// ApplyLearned folds a learned network into a result: below the operator's
// files, above registry assignments, RDAP, reverse DNS and the ASN (the
// caller checks LearnedApplies).
func ApplyLearned(r *Result, n *LearnedNetwork) {
	if n == nil || r.Source == "override" || r.Source == "companies" {
		return
	}
	r.Known = true
	r.CompanyID, r.CompanyName, r.CompanyDomain = CompanyIDFor(n.Domain, ""), n.Domain, n.Domain
	r.Industry, r.Size, r.CompanyCountry, r.Profile = "", "", "", nil
	r.Type, r.Confidence, r.Source = TypeBusiness, confLearned, SourceLearned
}

// Remove stops a learned network from naming its company, for as long as
// the identifications that taught it are kept. It reports false when the
// network is not learned.
func (l *Learner) Remove(ctx context.Context, network netip.Prefix, by string) (bool, error) {
	n, ok := l.table.Load().Get(network.Masked())
	if !ok {
		return false, nil
	}
	raw, _ := json.Marshal(LearnedRemoval{Domain: n.Domain, By: by, At: time.Now().UTC()})
	if _, err := l.removals.Put(ctx, RemovalKey(n.Prefix), raw); err != nil {
		return false, err
	}
	// Applied here at once, not only when the watch delivers it, so the
	// caller's next read no longer shows the network.
	l.mu.Lock()
	l.removed[n.Prefix] = LearnedRemoval{Domain: n.Domain, By: by, At: time.Now()}
	l.mu.Unlock()
	l.rebuild(time.Now())
	return true, nil
}

// VisitorIdentification is one of a visitor's identifications, as an
// access request shows it.
type VisitorIdentification struct {
	Network netip.Prefix `json:"network"`
	Identification
}

// Identifications lists a visitor's identifications on a site.
func (l *Learner) Identifications(ctx context.Context, site, visitor string) ([]VisitorIdentification, error) {
	lister, err := l.ids.ListKeysFiltered(ctx, "*."+site+"."+visitor)
	if err != nil {
		return nil, err
	}
	out := []VisitorIdentification{}
	for k := range lister.Keys() {
		e, err := l.ids.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		network, _, _ := strings.Cut(k, ".")
		var v VisitorIdentification
		if v.Network, err = parseNetKey(network); err != nil || json.Unmarshal(e.Value(), &v.Identification) != nil {
			continue
		}
		out = append(out, v)
	}
	return out, nil
}

// Forget deletes the identifications of a visitor of a site (visitor "*":
// of every visitor of the site), as an erasure request or a site's
// deletion asks; what they taught is unlearned at the next rebuild.
func (l *Learner) Forget(ctx context.Context, site, visitor string) (int, error) {
	lister, err := l.ids.ListKeysFiltered(ctx, "*."+site+"."+visitor)
	if err != nil {
		return 0, err
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	for _, k := range keys {
		if err := l.ids.Purge(ctx, k); err != nil {
			return 0, err
		}
	}
	if len(keys) > 0 {
		// A purge leaves a marker holding the key (network, site and
		// visitor id): removed too.
		if err := l.ids.PurgeDeletes(ctx, jetstream.DeleteMarkersOlderThan(-1)); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}

// watchEnded is the error of a bucket watch that stopped: the stage must
// fail rather than go on with answers it no longer updates.
func watchEnded(ctx context.Context, what string) error {
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("the watch of the %s ended", what)
}
