package api

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/leadpipe/leadpipe/internal/tenant"
	"github.com/leadpipe/leadpipe/ipintel"
	"github.com/leadpipe/leadpipe/store"
)

// dateRange reads from= and to= (YYYY-MM-DD, UTC, inclusive); the default is
// the last 30 days up to today.
func dateRange(w http.ResponseWriter, r *http.Request) (from, to string, ok bool) {
	today := time.Now().UTC().Truncate(24 * time.Hour)
	t := today
	if v := r.URL.Query().Get("to"); v != "" {
		var err error
		if t, err = time.Parse(time.DateOnly, v); err != nil {
			writeError(w, http.StatusBadRequest, "to: must be a date YYYY-MM-DD")
			return "", "", false
		}
	}
	f := t.AddDate(0, 0, -29)
	if v := r.URL.Query().Get("from"); v != "" {
		var err error
		if f, err = time.Parse(time.DateOnly, v); err != nil {
			writeError(w, http.StatusBadRequest, "from: must be a date YYYY-MM-DD")
			return "", "", false
		}
	}
	if f.After(t) {
		writeError(w, http.StatusBadRequest, "from: must not be after to")
		return "", "", false
	}
	if t.Sub(f) > 800*24*time.Hour {
		writeError(w, http.StatusBadRequest, "from: range is longer than 800 days")
		return "", "", false
	}
	return f.Format(time.DateOnly), t.Format(time.DateOnly), true
}

// Company is one row of the company feed, with the company's profile
// (brand, legal name, domain, industry, size, headquarters, LinkedIn, and
// where each came from) when one is known.
type Company struct {
	store.Company
	Profile *ipintel.Profile `json:"profile,omitempty"`
}

// withProfiles gives the companies their profiles from the IP data.
func (s *Server) withProfiles(rows []store.Company) []Company {
	db := s.ipdata.DB()
	out := make([]Company, len(rows))
	for i, c := range rows {
		out[i] = Company{Company: c, Profile: db.ProfileOf(c.ID, c.Domain)}
	}
	return out
}

// boolParam reads a yes/no query parameter: absent, "false" or "0" is
// no, "true" or "1" yes; anything else is an error naming it.
func boolParam(q url.Values, name string) (bool, error) {
	switch q.Get(name) {
	case "", "false", "0":
		return false, nil
	case "true", "1":
		return true, nil
	}
	return false, errors.New(name + ": must be true or false")
}

// feedPlan is how a feed request is answered.
type feedPlan struct {
	store.Feed
	limit int // what the client asked for; the store is asked for one more
}

// Sources are how visits came, as package visit classifies them.
var sources = []string{"direct", "search", "social", "referral", "campaign"}

// feedQuery reads the feed's filters from the request and plans its
// queries, or returns the error naming the bad parameter.
func feedQuery(r *http.Request, site, from, to string) (feedPlan, error) {
	q := r.URL.Query()
	f := store.Feed{Site: site, From: from, To: to}
	if page := q.Get("page"); page != "" {
		f.Page = page
		switch q.Get("page_match") {
		case "", "contains":
		case "equals":
			f.PageEquals = true
		default:
			return feedPlan{}, errors.New("page_match: must be contains or equals")
		}
	} else if q.Get("page_match") != "" {
		return feedPlan{}, errors.New("page_match: needs page")
	}
	if v := q.Get("industry"); v != "" {
		f.Industry = v
	}
	if v := q.Get("source"); v != "" {
		if !slices.Contains(sources, v) {
			return feedPlan{}, errors.New("source: must be one of " + strings.Join(sources, ", "))
		}
		f.Source = v
	}
	if v := q.Get("country"); v != "" {
		if len(v) != 2 {
			return feedPlan{}, errors.New("country: must be a two-letter code")
		}
		f.Country = strings.ToUpper(v)
	}
	if v := q.Get("network_type"); v != "" {
		if !ipintel.KnownType(v) {
			return feedPlan{}, errors.New("network_type: must be one of " + strings.Join(ipintel.Types, ", "))
		}
		f.Network = v
	}
	if v := q.Get("min_visits"); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return feedPlan{}, errors.New("min_visits: must be a whole number")
		}
		f.MinVisits = n
	}
	if v := q.Get("q"); v != "" {
		if len(v) > 200 {
			return feedPlan{}, errors.New("q: longer than 200 characters")
		}
		f.Search = v
	}
	candidates, err := boolParam(q, "candidates")
	if err != nil {
		return feedPlan{}, err
	}
	f.Candidates = candidates
	sort := q.Get("sort")
	if sort == "" {
		sort = "last_seen"
	}
	if !slices.Contains(store.FeedSorts, sort) {
		return feedPlan{}, errors.New("sort: must be " + strings.Join(store.FeedSorts[:len(store.FeedSorts)-1], ", ") + " or " + store.FeedSorts[len(store.FeedSorts)-1])
	}
	f.Sort = sort
	plan := feedPlan{Feed: f, limit: 100}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			return feedPlan{}, errors.New("limit: must be between 1 and 10000")
		}
		plan.limit = n
	}
	if v := q.Get("cursor"); v != "" {
		n, err := decodeCursor(v)
		if err != nil {
			return feedPlan{}, errors.New("cursor: not a cursor this API gave")
		}
		plan.Offset = n
	}
	// One row more than asked tells whether there is a next page.
	plan.Limit = plan.limit + 1
	return plan, nil
}

// Cursors are opaque to clients: the offset of the next page.
func encodeCursor(offset int) string {
	return base64.RawURLEncoding.EncodeToString([]byte("o:" + strconv.Itoa(offset)))
}

func decodeCursor(c string) (int, error) {
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, err
	}
	s, ok := strings.CutPrefix(string(raw), "o:")
	if !ok {
		return 0, errors.New("bad cursor")
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 1_000_000 {
		return 0, errors.New("bad cursor")
	}
	return n, nil
}

func (s *Server) companies(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	site, ok := s.site(w, r, key)
	if !ok {
		return
	}
	from, to, ok := dateRange(w, r)
	if !ok {
		return
	}
	r, ok = s.withSavedFeed(w, r, site.ID)
	if !ok {
		return
	}
	plan, err := feedQuery(r, site.ID, from, to)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	limit, offset := plan.limit, plan.Offset
	rows, err := s.db.FeedCompanies(r.Context(), plan.Feed)
	if err != nil {
		s.dbUnavailable(w, "querying company feed", err)
		return
	}
	out := s.withProfiles(rows)
	resp := map[string]any{"from": from, "to": to}
	if len(out) > limit {
		out = out[:limit]
		resp["next_cursor"] = encodeCursor(offset + limit)
	}
	resp["companies"] = out
	setRows(w, len(out))
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) filtered(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	site, ok := s.site(w, r, key)
	if !ok {
		return
	}
	from, to, ok := dateRange(w, r)
	if !ok {
		return
	}
	reasons, err := s.db.FilteredByReason(r.Context(), site.ID, from, to)
	if err != nil {
		s.dbUnavailable(w, "querying filter ledger", err)
		return
	}
	setRows(w, len(reasons))
	writeJSON(w, http.StatusOK, map[string]any{"reasons": reasons, "from": from, "to": to})
}

// recentHits is how many of a site's latest hits the tracker status shows.
const recentHits = 50

// trackerStatus is the tracker status: a site's latest hits, and what
// leadpipe makes of the line the request comes from.
type trackerStatus struct {
	Recent   []RecentHit `json:"recent"`
	ThisLine *statusLine `json:"this_line,omitempty"`
}

// statusLine is what a hit from the requester's address would be.
type statusLine struct {
	NetworkType string           `json:"network_type"`
	Company     *ipintel.Company `json:"company"`
	ASOrg       string           `json:"as_org"`
	Country     string           `json:"country"`
	Kept        bool             `json:"kept"`
}

// status answers the tracker status, so that whoever installs the
// tracker can check it from the line they are on. The requester's
// address is explained, never stored.
func (s *Server) status(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	site, ok := s.site(w, r, key)
	if !ok {
		return
	}
	hits, err := s.db.RecentHits(r.Context(), site.ID, recentHits)
	if err != nil {
		s.dbUnavailable(w, "querying recent hits", err)
		return
	}
	out := trackerStatus{Recent: hits}
	if out.Recent == nil {
		out.Recent = []RecentHit{}
	}
	if ip, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		a := s.explain(ip.Addr())
		out.ThisLine = &statusLine{NetworkType: a.NetworkType, Company: a.Company, ASOrg: a.ASOrg, Country: a.Country,
			Kept: a.Company != nil || a.NetworkType == ipintel.TypeHosting && site.KeepHosting}
	}
	setRows(w, len(hits))
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) ip(w http.ResponseWriter, r *http.Request, _ tenant.Key) {
	ip, err := netip.ParseAddr(r.PathValue("ip"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "ip: not an IPv4 or IPv6 address")
		return
	}
	writeJSON(w, http.StatusOK, s.explain(ip))
}

// explain is what leadpipe knows of ip, with the reverse-DNS and RDAP
// answers known so far (it never waits for either).
func (s *Server) explain(ip netip.Addr) ipintel.Answer {
	var sig *ipintel.PTRSignal
	if s.ptr != nil {
		if v, ok := s.ptr.Peek(ip); ok {
			sig = &v
		}
	}
	var rdap *ipintel.RDAPAnswer
	if s.rdap != nil {
		if a, ok := s.rdap.Lookup(ip); ok && time.Now().Before(a.Expires) {
			rdap = a
		}
	}
	var learned *ipintel.LearnedNetwork
	if s.learned != nil {
		learned, _ = s.learned.Lookup(ip)
	}
	return s.ipdata.DB().Explain(ip, ipintel.Signals{PTR: sig, RDAP: rdap, Learned: learned})
}
