package api

import (
	"cmp"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/leadpipe/leadpipe/internal/tenant"
	"github.com/leadpipe/leadpipe/ipintel"
)

// The dashboard: server-rendered pages over the same API handlers (each page
// calls them in-process with the signed-in key, so roles, tenant scoping and
// the audit log apply exactly as to API clients). No JavaScript framework;
// the chart is an SVG drawn here.

//go:embed web
var webFiles embed.FS

// sessionCookie holds the signed-in API key: HttpOnly (no script can read
// it), SameSite=Strict (no other site can make the browser send it) and
// Secure whenever the dashboard is reached over https.
const sessionCookie = "lp_session"

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"duration": func(seconds uint64) string {
		d := time.Duration(seconds) * time.Second
		switch {
		case d >= time.Hour:
			return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
		case d >= time.Minute:
			return fmt.Sprintf("%dm %ds", int(d.Minutes()), int(d.Seconds())%60)
		}
		return fmt.Sprintf("%ds", int(d.Seconds()))
	},
	"when": func(v any) string {
		var t time.Time
		switch x := v.(type) {
		case time.Time:
			t = x
		case string:
			t, _ = time.Parse(time.RFC3339Nano, x)
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
}).ParseFS(webFiles, "web/*.html"))

type pageData struct {
	Title    string
	SignedIn bool
	Site     tenant.Site
	Error    string
	From, To string
	Q        map[string]string

	Sites        []siteJSON
	Companies    []Company
	NetworkTypes []string
	Sources      []string
	Sorts        []string
	Feeds        []tenant.Feed
	Next         string
	Company      Company
	Visits       []Visit
	Chart        template.HTML
	TopPages     []TopPage
	VisitSources []keyCount
	Countries    []keyCount
	IdentifiedBy []keyCount // the company's hits by the layer that named it, in words
	Score        Score
	Status       trackerStatus
	Logos        bool // show the companies' favicons (--api.logos)
	Reasons      []reasonCount
	Snippet      string
	Providers    []providerLink
	// Refresh, when set, sends the browser on to this path.
	Refresh string
}

// processorReasons are the filter ledger's reasons, in the order the
// filtered-traffic page lists them (processor.Reasons; query does not
// import the processor).
var processorReasons = []string{"residential", "mobile", "hosting", "bot", "unknown", "invalid", "erased"}

type reasonCount struct {
	Reason string
	Hits   uint64
}

func (s *Server) dashboardRoutes(mux *http.ServeMux) {
	static, _ := fs.Sub(webFiles, "web")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := s.sessionKey(r); ok {
			http.Redirect(w, r, "/app/", http.StatusSeeOther)
			return
		}
		s.render(w, "login.html", pageData{Title: "Sign in", Providers: s.providerLinks()})
	})
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("POST /logout", s.logout)
	mux.HandleFunc("GET /app/{$}", s.page(s.sitesPage))
	mux.HandleFunc("GET /app/sites/{site}", s.page(s.feedPage))
	mux.HandleFunc("GET /app/sites/{site}/companies/{id}", s.page(s.companyPage))
	mux.HandleFunc("GET /app/sites/{site}/filtered", s.page(s.filteredPage))
	mux.HandleFunc("GET /app/sites/{site}/status", s.page(s.statusPage))
	mux.HandleFunc("GET /app/sites/{site}/snippet", s.page(s.snippetPage))
}

func (s *Server) render(w http.ResponseWriter, name string, d pageData) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	img := "img-src 'self' data:"
	if s.cfg.Logos {
		img += " https:" // the companies' favicons, from their own sites
	}
	h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; "+img+"; form-action 'self'; frame-ancestors 'none'")
	d.Logos = s.cfg.Logos
	h.Set("X-Content-Type-Options", "nosniff")
	// same-origin, not no-referrer: with no-referrer browsers send "Origin:
	// null" on form posts, and the sign-in check needs the real origin.
	h.Set("Referrer-Policy", "same-origin")
	if err := pages.ExecuteTemplate(w, name, d); err != nil {
		s.log.Error("rendering dashboard page", "page", name, "err", err)
	}
}

func (s *Server) sessionKey(r *http.Request) (string, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return "", false
	}
	_, ok := s.tenants.Authenticate(c.Value)
	return c.Value, ok
}

// sameOrigin refuses form posts from other sites (SameSite=Strict already
// keeps the session cookie away from them; this covers the sign-in form).
func sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "cross-site sign-in refused", http.StatusForbidden)
		return
	}
	if s.authLimit.blocked(remoteIP(r)) {
		w.Header().Set("Retry-After", authRetryAfter)
		w.WriteHeader(http.StatusTooManyRequests)
		s.renderLogin(w, "Too many failed attempts from this address; try again in a minute.")
		return
	}
	key := strings.TrimSpace(r.PostFormValue("key"))
	if _, ok := s.tenants.Authenticate(key); !ok {
		s.authLimit.failed(remoteIP(r))
		w.WriteHeader(http.StatusUnauthorized)
		s.renderLogin(w, "That key is not valid.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: key, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: secureRequest(r), MaxAge: 12 * 3600})
	http.Redirect(w, r, "/app/", http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "cross-site sign-out refused", http.StatusForbidden)
		return
	}
	// A session made by a sign-in ends here, in every API process; an
	// API key pasted into the form lives on.
	if token, ok := s.sessionKey(r); ok {
		if k, _ := s.tenants.Authenticate(token); k.User != "" {
			if err := s.tenants.RevokeKey(r.Context(), k.ID); err != nil {
				s.log.Error("ending a session", "key", k.ID, "err", err)
			}
		}
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: secureRequest(r), MaxAge: -1})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func secureRequest(r *http.Request) bool {
	return r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"
}

// page wraps a dashboard page: it needs a session, and gets the key.
func (s *Server) page(h func(w http.ResponseWriter, r *http.Request, key string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key, ok := s.sessionKey(r)
		if !ok {
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
		h(w, r, key)
	}
}

// api calls an API handler in-process as the signed-in key and decodes its
// JSON answer into out; it returns the status and the API's error message.
func (s *Server) api(r *http.Request, key, path string, out any) (int, string) {
	req := httptest.NewRequestWithContext(r.Context(), http.MethodGet, path, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	req.RemoteAddr = r.RemoteAddr
	rec := httptest.NewRecorder()
	s.handler.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		var e struct{ Error string }
		json.Unmarshal(rec.Body.Bytes(), &e)
		return rec.Code, e.Error
	}
	if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
		return http.StatusInternalServerError, "cannot read the API's answer"
	}
	return rec.Code, ""
}

func (s *Server) sitesPage(w http.ResponseWriter, r *http.Request, key string) {
	var out struct{ Sites []siteJSON }
	s.api(r, key, "/api/v1/sites", &out)
	if len(out.Sites) == 1 {
		http.Redirect(w, r, "/app/sites/"+out.Sites[0].ID, http.StatusSeeOther)
		return
	}
	s.render(w, "sites.html", pageData{Title: "Sites", SignedIn: true, Sites: out.Sites})
}

// dashSite resolves the page's site for the key, or answers 404.
func (s *Server) dashSite(w http.ResponseWriter, r *http.Request, key string) (tenant.Site, bool) {
	k, _ := s.tenants.Authenticate(key)
	site, ok := s.tenants.Site(r.PathValue("site"))
	if !ok || !k.CanRead(site) {
		w.WriteHeader(http.StatusNotFound)
		s.render(w, "sites.html", pageData{Title: "Not found", SignedIn: true, Error: "No such site."})
		return tenant.Site{}, false
	}
	return site, true
}

var feedFormFields = []string{"from", "to", "country", "network_type", "industry", "source", "min_visits", "page", "q", "sort", "candidates", "feed", "cursor"}

func (s *Server) feedPage(w http.ResponseWriter, r *http.Request, key string) {
	site, ok := s.dashSite(w, r, key)
	if !ok {
		return
	}
	d := pageData{Title: site.Name, SignedIn: true, Site: site, Q: map[string]string{},
		NetworkTypes: ipintel.Types, Sources: sources, Sorts: []string{"last_seen", "score", "visits", "engaged", "pageviews"}}
	params := url.Values{}
	for _, f := range feedFormFields {
		if v := strings.TrimSpace(r.URL.Query().Get(f)); v != "" {
			params.Set(f, v)
			d.Q[f] = v
		}
	}
	var out struct {
		Companies  []Company
		From, To   string
		NextCursor string `json:"next_cursor"`
	}
	if code, msg := s.api(r, key, "/api/v1/sites/"+site.ID+"/companies?"+params.Encode(), &out); code != http.StatusOK {
		d.Error = msg
	}
	d.Companies, d.From, d.To = out.Companies, out.From, out.To
	if out.NextCursor != "" {
		next := url.Values{}
		for k, v := range params {
			next[k] = v
		}
		next.Set("cursor", out.NextCursor)
		d.Next = next.Encode()
	}
	var feeds struct{ Feeds []tenant.Feed }
	s.api(r, key, "/api/v1/sites/"+site.ID+"/feeds", &feeds)
	d.Feeds = feeds.Feeds
	s.render(w, "feed.html", d)
}

func (s *Server) companyPage(w http.ResponseWriter, r *http.Request, key string) {
	site, ok := s.dashSite(w, r, key)
	if !ok {
		return
	}
	params := url.Values{}
	for _, f := range []string{"from", "to"} {
		if v := r.URL.Query().Get(f); v != "" {
			params.Set(f, v)
		}
	}
	var out struct {
		Company   Company
		Visits    []Visit
		From, To  string
		Daily     []Day
		TopPages  []TopPage `json:"top_pages"`
		Sources   map[string]uint64
		Countries map[string]uint64
		DecidedBy map[string]uint64 `json:"decided_by"`
		Score     Score
	}
	d := pageData{Title: "Company", SignedIn: true, Site: site}
	if code, msg := s.api(r, key, "/api/v1/sites/"+site.ID+"/companies/"+url.PathEscape(r.PathValue("id"))+"?"+params.Encode(), &out); code != http.StatusOK {
		w.WriteHeader(code)
		d.Error = msg
		s.render(w, "sites.html", d)
		return
	}
	d.Title, d.Company, d.Visits, d.From, d.To = out.Company.Name, out.Company, out.Visits, out.From, out.To
	d.Chart = visitsChart(out.Daily, out.From, out.To)
	d.TopPages, d.VisitSources, d.Countries = out.TopPages, byCount(out.Sources), byCount(out.Countries)
	d.IdentifiedBy = byCount(layerWords(out.DecidedBy))
	d.Score = out.Score
	s.render(w, "company.html", d)
}

// layerNames say in words which layer of the IP intelligence named a
// company (ipintel's decided_by).
var layerNames = map[string]string{
	"override":      "your overrides file",
	"companies":     "your company ranges",
	"learned":       "a network learned from visitors who identified",
	"registry":      "a registry assignment (imported)",
	"rdap":          "a registry assignment (RDAP)",
	"rdns":          "reverse DNS",
	"asn-list":      "the network's owner (curated list)",
	"name-rule":     "the network's owner (by its name)",
	"address-space": "the network's address space (likely)",
}

// layerWords renames a breakdown by layer into words.
func layerWords(byLayer map[string]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(byLayer))
	for l, n := range byLayer {
		out[cmp.Or(layerNames[l], l)] += n
	}
	return out
}

// keyCount is one entry of a breakdown (visits by source, pageviews by
// country), largest first.
type keyCount struct {
	Key   string
	Count uint64
}

func byCount(m map[string]uint64) []keyCount {
	out := make([]keyCount, 0, len(m))
	for k, n := range m {
		if k == "" {
			k = "unknown"
		}
		out = append(out, keyCount{k, n})
	}
	slices.SortFunc(out, func(a, b keyCount) int {
		if a.Count != b.Count {
			return cmp.Compare(b.Count, a.Count)
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out
}

// visitsChart draws visits per day of the range as SVG bars.
func visitsChart(daily []Day, from, to string) template.HTML {
	start, err1 := time.Parse(time.DateOnly, from)
	end, err2 := time.Parse(time.DateOnly, to)
	if err1 != nil || err2 != nil || end.Before(start) {
		return ""
	}
	days := int(end.Sub(start).Hours()/24) + 1
	counts := make([]uint64, days)
	most := uint64(1)
	for _, d := range daily {
		day, err := time.Parse(time.DateOnly, d.Day)
		if err != nil {
			continue
		}
		if i := int(day.Sub(start).Hours() / 24); i >= 0 && i < days {
			counts[i] += d.Visits
			most = max(most, counts[i])
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg viewBox="0 0 %d 100" preserveAspectRatio="none" role="img" aria-label="visits per day">`, days*10)
	for i, c := range counts {
		h := 95 * c / most
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="8" height="%d"><title>%s: %d</title></rect>`,
			i*10+1, 100-h, h, start.AddDate(0, 0, i).Format(time.DateOnly), c)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // numbers and dates only
}

func (s *Server) filteredPage(w http.ResponseWriter, r *http.Request, key string) {
	site, ok := s.dashSite(w, r, key)
	if !ok {
		return
	}
	var out struct {
		Reasons  map[string]uint64
		From, To string
	}
	d := pageData{Title: "Filtered traffic", SignedIn: true, Site: site}
	if code, msg := s.api(r, key, "/api/v1/sites/"+site.ID+"/filtered", &out); code != http.StatusOK {
		d.Error = msg
	}
	for _, reason := range processorReasons {
		if n := out.Reasons[reason]; n > 0 {
			d.Reasons = append(d.Reasons, reasonCount{reason, n})
		}
	}
	d.From, d.To = out.From, out.To
	s.render(w, "filtered.html", d)
}

func (s *Server) statusPage(w http.ResponseWriter, r *http.Request, key string) {
	site, ok := s.dashSite(w, r, key)
	if !ok {
		return
	}
	d := pageData{Title: "Tracker status", SignedIn: true, Site: site}
	if code, msg := s.api(r, key, "/api/v1/sites/"+site.ID+"/status", &d.Status); code != http.StatusOK {
		d.Error = msg
	}
	s.render(w, "status.html", d)
}

func (s *Server) snippetPage(w http.ResponseWriter, r *http.Request, key string) {
	site, ok := s.dashSite(w, r, key)
	if !ok {
		return
	}
	collector := s.cfg.CollectorURL
	if collector == "" {
		collector = "https://COLLECTOR"
	}
	snippet := "<script>window.leadpipe=window.leadpipe||function(){(leadpipe.q=leadpipe.q||[]).push(arguments)};</script>\n" +
		`<script async src="` + collector + `/lf.js" data-site="` + site.ID + `" data-consent="required"></script>`
	s.render(w, "snippet.html", pageData{Title: "Tracking snippet", SignedIn: true, Site: site, Snippet: snippet})
}
