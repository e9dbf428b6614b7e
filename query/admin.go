package query

import (
	"net/http"
	"strings"

	"github.com/leadpipe/leadpipe/internal/tenant"
)

type siteJSON struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Domain      string `json:"domain"`
	KeepHosting bool   `json:"keep_hosting"`
}

func siteOut(s tenant.Site) siteJSON { return siteJSON{s.ID, s.Name, s.Domain, s.KeepHosting} }

func (s *Server) createSite(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	var in struct {
		Name   string `json:"name"`
		Domain string `json:"domain"`
	}
	if !decodeBody(w, r, &in) {
		return
	}
	in.Name = strings.TrimSpace(in.Name)
	if in.Name == "" || len(in.Name) > 200 {
		writeError(w, http.StatusBadRequest, "name: must be 1 to 200 characters")
		return
	}
	if err := tenant.ValidateDomain(in.Domain); err != nil {
		writeError(w, http.StatusBadRequest, "domain: "+err.Error())
		return
	}
	if !key.CanRead(tenant.AllSites) {
		writeError(w, http.StatusForbidden, "role: only an admin key for all sites can create sites")
		return
	}
	site, err := s.tenants.CreateSite(r.Context(), in.Name, in.Domain)
	if err != nil {
		s.log.Error("creating site", "err", err)
		writeError(w, http.StatusServiceUnavailable, "sites: cannot be stored now, retry")
		return
	}
	writeJSON(w, http.StatusCreated, siteOut(site))
}

func (s *Server) listSites(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	out := []siteJSON{}
	for _, site := range s.tenants.Sites() {
		if key.CanRead(site.ID) {
			out = append(out, siteOut(site))
		}
	}
	setRows(w, len(out))
	writeJSON(w, http.StatusOK, map[string]any{"sites": out})
}

// updateSite changes a site's settings: name and filters.
func (s *Server) updateSite(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	site, ok := s.site(w, r, key)
	if !ok {
		return
	}
	var in struct {
		Name        *string `json:"name"`
		KeepHosting *bool   `json:"keep_hosting"`
	}
	if !decodeBody(w, r, &in) {
		return
	}
	if in.Name != nil && (strings.TrimSpace(*in.Name) == "" || len(*in.Name) > 200) {
		writeError(w, http.StatusBadRequest, "name: must be 1 to 200 characters")
		return
	}
	updated, err := s.tenants.UpdateSite(r.Context(), site.ID, func(site *tenant.Site) {
		if in.Name != nil {
			site.Name = strings.TrimSpace(*in.Name)
		}
		if in.KeepHosting != nil {
			site.KeepHosting = *in.KeepHosting
		}
	})
	if err != nil {
		s.log.Error("updating site", "err", err)
		writeError(w, http.StatusServiceUnavailable, "sites: cannot be stored now, retry")
		return
	}
	writeJSON(w, http.StatusOK, siteOut(updated))
}

// rotateSiteSecret makes a new secret for the site's server-side senders
// (POST /v1/batch on the collector); the old one stops working.
func (s *Server) rotateSiteSecret(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	site, ok := s.site(w, r, key)
	if !ok {
		return
	}
	secret, err := s.tenants.RotateSiteSecret(r.Context(), site.ID)
	if err != nil {
		s.log.Error("rotating site secret", "err", err)
		writeError(w, http.StatusServiceUnavailable, "sites: cannot be stored now, retry")
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"site": site.ID, "secret": secret})
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	var in struct {
		Role  string   `json:"role"`
		Sites []string `json:"sites"`
	}
	if !decodeBody(w, r, &in) {
		return
	}
	role, err := tenant.ParseRole(in.Role)
	if err != nil {
		writeError(w, http.StatusBadRequest, "role: "+err.Error())
		return
	}
	if len(in.Sites) == 0 {
		writeError(w, http.StatusBadRequest, `sites: at least one site id (or "*" for all) is required`)
		return
	}
	for _, id := range in.Sites {
		if !key.CanRead(id) {
			// A key can only hand out what it holds.
			writeError(w, http.StatusForbidden, "sites: "+id+" is not granted to this key")
			return
		}
		if _, ok := s.tenants.Site(id); !ok && id != tenant.AllSites {
			writeError(w, http.StatusBadRequest, "sites: "+id+" does not exist")
			return
		}
	}
	created, secret, err := s.tenants.CreateKey(r.Context(), role, in.Sites)
	if err != nil {
		s.log.Error("creating key", "err", err)
		writeError(w, http.StatusServiceUnavailable, "keys: cannot be stored now, retry")
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"id": created.ID, "key": secret, "role": created.Role, "sites": created.Sites})
}
