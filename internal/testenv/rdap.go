package testenv

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/leadpipe/leadpipe/ipintel"
)

// RDAPServer is a local RDAP service standing in for the five regional
// registries: it serves IANA's bootstrap files with every registry's base
// URL moved to the server, and answers /…/ip/{address} with the response
// document (ipintel/testdata/rdap) whose network contains the address, or
// 404. Fail, when set, answers instead.
type RDAPServer struct {
	*httptest.Server
	// Bootstrap is the URL to configure as RDAPConfig.Bootstrap.
	Bootstrap string

	mu      sync.Mutex
	queries []string
	fail    func(w http.ResponseWriter) bool
	docs    []rdapDoc
}

type rdapDoc struct {
	first, last netip.Addr
	prefixes    []netip.Prefix // the range as prefixes
	body        []byte
}

// holds reports whether the document's network holds all of p.
func (d *rdapDoc) holds(p netip.Prefix) bool {
	for _, q := range d.prefixes {
		if q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// StartRDAP starts an RDAPServer over the response documents in dir
// (every *.json file but the iana-*.json bootstrap files there), stopped
// when the test ends.
func StartRDAP(t testing.TB, dir string) *RDAPServer {
	t.Helper()
	s := &RDAPServer{}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	boot := map[string][]byte{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if name := filepath.Base(f); strings.HasPrefix(name, "iana-") {
			boot[strings.TrimPrefix(name, "iana-")] = raw
			continue
		}
		n, err := ipintel.ParseRDAPNetwork(raw)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		prefixes, err := ipintel.RangeToPrefixes(n.First, n.Last)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		s.docs = append(s.docs, rdapDoc{n.First, n.Last, prefixes, raw})
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{file}", func(w http.ResponseWriter, r *http.Request) {
		raw, ok := boot[r.PathValue("file")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(s.localBootstrap(t, raw))
	})
	mux.HandleFunc("GET /{registry}/ip/{query...}", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.queries = append(s.queries, r.PathValue("registry")+" "+r.PathValue("query"))
		fail := s.fail
		s.mu.Unlock()
		if fail != nil && fail(w) {
			return
		}
		// An address or a CIDR (RFC 9082): the most specific network
		// containing all of it.
		q := r.PathValue("query")
		if !strings.Contains(q, "/") {
			q += "/128"
			if !strings.Contains(q, ":") {
				q = strings.TrimSuffix(q, "/128") + "/32"
			}
		}
		p, err := netip.ParsePrefix(q)
		if err != nil {
			http.Error(w, `{"errorCode":400}`, http.StatusBadRequest)
			return
		}
		p = p.Masked()
		var best *rdapDoc
		for i := range s.docs {
			d := &s.docs[i]
			if d.holds(p) && (best == nil || best.first.Less(d.first) || d.last.Less(best.last)) {
				best = d
			}
		}
		if best == nil {
			w.Header().Set("Content-Type", "application/rdap+json")
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"errorCode":404,"title":"Not Found"}`))
			return
		}
		w.Header().Set("Content-Type", "application/rdap+json")
		w.Write(best.body)
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	s.Bootstrap = s.URL + "/"
	return s
}

// localBootstrap rewrites a bootstrap file's service URLs to the server:
// https://rdap.db.ripe.net/ becomes URL/rdap.db.ripe.net/.
func (s *RDAPServer) localBootstrap(t testing.TB, raw []byte) []byte {
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Error(err)
		return nil
	}
	for _, svc := range doc["services"].([]any) {
		urls := svc.([]any)[1].([]any)
		for i, u := range urls {
			host := strings.TrimPrefix(strings.TrimPrefix(u.(string), "https://"), "http://")
			host, _, _ = strings.Cut(host, "/")
			urls[i] = s.URL + "/" + host + "/"
		}
	}
	out, _ := json.Marshal(doc)
	return out
}

// Queries returns the queries received so far, as "registry address".
func (s *RDAPServer) Queries() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.queries...)
}

// FailWith makes every query answer with fail (nil: answer normally);
// fail returns false to answer normally after all.
func (s *RDAPServer) FailWith(fail func(w http.ResponseWriter) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = fail
}
