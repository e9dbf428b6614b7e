package api

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/leadpipe/leadpipe/internal/tenant"
)

// feedParams are the query parameters a saved feed may hold: the feed's
// filters and sort, not its date range or paging.
var feedParams = map[string]bool{"country": true, "network_type": true, "min_visits": true, "q": true,
	"page": true, "page_match": true, "industry": true, "source": true, "sort": true}

// saveFeed stores a named filter set for the site (analyst and up).
func (s *Server) saveFeed(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	site, ok := s.site(w, r, key)
	if !ok {
		return
	}
	var in struct {
		Name    string `json:"name"`
		Filters string `json:"filters"`
	}
	if !decodeBody(w, r, &in) {
		return
	}
	in.Name = strings.TrimSpace(in.Name)
	if in.Name == "" || len(in.Name) > 100 {
		writeError(w, http.StatusBadRequest, "name: must be 1 to 100 characters")
		return
	}
	values, err := url.ParseQuery(in.Filters)
	if err != nil {
		writeError(w, http.StatusBadRequest, "filters: not a query string like country=DE&min_visits=2")
		return
	}
	for k := range values {
		if !feedParams[k] {
			writeError(w, http.StatusBadRequest, "filters: "+k+" cannot be saved in a feed")
			return
		}
	}
	// Check the filters the way the feed will read them.
	probe := &http.Request{URL: &url.URL{RawQuery: values.Encode()}}
	if _, err := feedQuery(probe, site.ID, "2000-01-01", "2000-01-01"); err != nil {
		writeError(w, http.StatusBadRequest, "filters: "+err.Error())
		return
	}
	f, err := s.tenants.SaveFeed(r.Context(), tenant.Feed{Site: site.ID, Name: in.Name, Filters: values.Encode(), Owner: key.ID})
	if err != nil {
		s.log.Error("saving feed", "err", err)
		writeError(w, http.StatusServiceUnavailable, "feeds: cannot be stored now, retry")
		return
	}
	writeJSON(w, http.StatusCreated, f)
}

func (s *Server) listFeeds(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	site, ok := s.site(w, r, key)
	if !ok {
		return
	}
	feeds, err := s.tenants.Feeds(r.Context(), site.ID)
	if err != nil {
		s.log.Error("listing feeds", "err", err)
		writeError(w, http.StatusServiceUnavailable, "feeds: unavailable, retry")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"feeds": feeds})
}

// deleteFeed removes a saved feed: its owner or an admin may.
func (s *Server) deleteFeed(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	site, ok := s.site(w, r, key)
	if !ok {
		return
	}
	f, found, err := s.tenants.Feed(r.Context(), site.ID, r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "feeds: unavailable, retry")
		return
	}
	if !found {
		writeError(w, http.StatusNotFound, "feed: not found")
		return
	}
	if f.Owner != key.ID && !key.AtLeast(tenant.RoleAdmin) {
		writeError(w, http.StatusForbidden, "feed: only its owner or an admin can delete it")
		return
	}
	if err := s.tenants.DeleteFeed(r.Context(), site.ID, f.ID); err != nil {
		writeError(w, http.StatusServiceUnavailable, "feeds: unavailable, retry")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// withSavedFeed applies ?feed=<id>: the saved filters, then the request's
// own parameters over them.
func (s *Server) withSavedFeed(w http.ResponseWriter, r *http.Request, site string) (*http.Request, bool) {
	id := r.URL.Query().Get("feed")
	if id == "" {
		return r, true
	}
	f, found, err := s.tenants.Feed(r.Context(), site, id)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "feeds: unavailable, retry")
		return nil, false
	}
	if !found {
		writeError(w, http.StatusNotFound, "feed: not found")
		return nil, false
	}
	merged, _ := url.ParseQuery(f.Filters)
	for k, v := range r.URL.Query() {
		if k != "feed" {
			merged[k] = v
		}
	}
	r2 := r.Clone(r.Context())
	r2.URL.RawQuery = merged.Encode()
	return r2, true
}
