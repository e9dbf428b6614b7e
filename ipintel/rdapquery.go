package ipintel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gaissmai/bart"
	"golang.org/x/time/rate"
)

// The RDAP layer's dealings with the registries: the bootstrap, the
// queries, and the limits they are sent within.

// admit reports whether host may be asked now: not paused by a
// Retry-After, its circuit not open (a half-open circuit lets one query
// through).
func (r *RDAP) admit(host string) (*registryState, bool) {
	r.regMu.Lock()
	defer r.regMu.Unlock()
	reg := r.regs[host]
	if reg == nil {
		reg = &registryState{limiter: rate.NewLimiter(rate.Limit(r.cfg.Rate), 1)}
		r.regs[host] = reg
	}
	now := time.Now()
	switch {
	case now.Before(reg.pausedTil):
		r.counters.paused.Add(1)
		return reg, false
	case now.Before(reg.openTil):
		r.counters.broken.Add(1)
		return reg, false
	}
	return reg, true
}

// record updates host's circuit with a query's outcome.
func (r *RDAP) record(host string, err error) {
	r.regMu.Lock()
	defer r.regMu.Unlock()
	reg := r.regs[host]
	var ra *retryAfterError
	switch {
	case err == nil:
		reg.failures, reg.opens = 0, 0
	case errors.As(err, &ra):
		reg.pausedTil = time.Now().Add(ra.wait)
	default:
		reg.failures++
		if reg.failures >= r.cfg.FailuresToOpen {
			reg.opens++
			wait := min(r.cfg.Cooldown<<min(reg.opens-1, 6), time.Hour)
			reg.openTil = time.Now().Add(wait)
			// Half open after the cooldown: the first query goes through,
			// and its failure opens the circuit again at once.
			reg.failures = r.cfg.FailuresToOpen - 1
			r.log.Warn("RDAP registry failing; not asked for a while", "registry", host, "for", wait)
		}
	}
}

// spend takes one query from today's cap.
func (r *RDAP) spend() bool {
	r.regMu.Lock()
	defer r.regMu.Unlock()
	if day := time.Now().UTC().Format(time.DateOnly); day != r.day {
		r.day, r.usedDay = day, 0
	}
	if r.usedDay >= r.cfg.DailyCap {
		return false
	}
	r.usedDay++
	return true
}

// retryAfterError is a registry asking to be left alone for a while.
type retryAfterError struct{ wait time.Duration }

func (e *retryAfterError) Error() string { return "registry asks to retry after " + e.wait.String() }

// query asks base about job's network (RFC 9082 ip/address/length) and
// judges the answer.
func (r *RDAP) query(ctx context.Context, base string, job rdapJob) (*RDAPAnswer, time.Duration, error) {
	at, end := job.net.Addr(), prefixEnd(job.net)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"ip/"+job.net.String(), nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", "application/rdap+json")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, 0, err
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return &RDAPAnswer{Prefix: missPrefix(at), Skip: SkipNotFound}, r.cfg.MissTTL, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "":
		return nil, 0, &retryAfterError{wait: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		// Refused (400, 403…): the registry will not answer for this
		// network; asking again at every hit would only spend the cap.
		return &RDAPAnswer{Prefix: missPrefix(at), Skip: SkipRefused}, r.cfg.MissTTL, nil
	case resp.StatusCode != http.StatusOK:
		return nil, 0, fmt.Errorf("RDAP %s: %s", req.URL.Host, resp.Status)
	}
	n, err := ParseRDAPNetwork(body)
	if err != nil {
		return nil, 0, err
	}
	if at.Is4() != n.First.Is4() || at.Less(n.First) || n.Last.Less(end) {
		return nil, 0, fmt.Errorf("RDAP %s answered %s - %s, which does not contain the network asked about", req.URL.Host, n.First, n.Last)
	}
	v := JudgeRDAP(n, job.isp, r.cls)
	// Of a network that is not an organisation's, only why is kept: its
	// name and handle may be a person's.
	a := &RDAPAnswer{Skip: v.Skip}
	if v.Company != "" {
		a = &RDAPAnswer{First: n.First, Last: n.Last, Handle: n.Handle, NetName: n.NetName, Status: n.Status, Country: n.Country,
			Company: v.Company, Type: organisationType(v.Company, r.cls)}
	}
	// The answer is kept for the registry's network; a miss for no more
	// than the /24 (/48) around the address, so that another company's
	// assignment next door is still asked about.
	var network netip.Prefix
	for _, p := range appendPrefixes(nil, n.First, n.Last) {
		if p.Contains(at) {
			network = p
		}
	}
	a.Prefix = network
	if v.Company == "" {
		if mp := missPrefix(at); network.Bits() < mp.Bits() {
			a.Prefix = mp
		}
		return a, r.cfg.MissTTL, nil
	}
	return a, r.cfg.AnswerTTL, nil
}

// retryAfter reads a Retry-After header (seconds or an HTTP date); a
// missing or unreadable one means a minute.
func retryAfter(h string, now time.Time) time.Duration {
	if s, err := strconv.Atoi(strings.TrimSpace(h)); err == nil && s >= 0 {
		return min(time.Duration(s)*time.Second, 24*time.Hour)
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return min(t.Sub(now), 24*time.Hour)
	}
	return time.Minute
}

func hostOf(base string) string {
	if u, err := url.Parse(base); err == nil && u.Host != "" {
		return u.Host
	}
	return base
}

// rdapBootstrap is the IANA bootstrap: registry base URLs by prefix.
type rdapBootstrap struct {
	services bart.Table[string]
	loaded   time.Time
}

func (b *rdapBootstrap) serviceFor(ip netip.Addr) (string, bool) { return b.services.Lookup(ip) }

// bootstrap returns the bootstrap, reading it when it is missing or a
// day old (a failed refresh keeps the old one).
func (r *RDAP) bootstrap(ctx context.Context) (*rdapBootstrap, error) {
	cur := r.boot.Load()
	if cur != nil && time.Since(cur.loaded) < 24*time.Hour {
		return cur, nil
	}
	b := &rdapBootstrap{loaded: time.Now()}
	for _, file := range []string{"ipv4.json", "ipv6.json"} {
		if err := r.readBootstrap(ctx, r.cfg.Bootstrap+file, b); err != nil {
			if cur != nil {
				r.log.Warn("refreshing the RDAP bootstrap failed; keeping the old one", "err", err)
				cur.loaded = time.Now().Add(-23 * time.Hour) // try again in an hour
				return cur, nil
			}
			return nil, err
		}
	}
	r.boot.Store(b)
	return b, nil
}

// readBootstrap reads one RFC 9224 file into b.
func (r *RDAP) readBootstrap(ctx context.Context, u string, b *rdapBootstrap) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", u, resp.Status)
	}
	var doc struct {
		Services [][][]string `json:"services"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&doc); err != nil {
		return fmt.Errorf("%s: %w", u, err)
	}
	for _, svc := range doc.Services {
		if len(svc) != 2 || len(svc[1]) == 0 {
			continue
		}
		base := svc[1][0]
		for _, s := range svc[1] { // prefer HTTPS
			if strings.HasPrefix(s, "https://") {
				base = s
				break
			}
		}
		if !strings.HasSuffix(base, "/") {
			base += "/"
		}
		for _, c := range svc[0] {
			if p, err := netip.ParsePrefix(c); err == nil {
				b.services.Insert(p.Masked(), base)
			}
		}
	}
	return nil
}
