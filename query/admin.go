package query

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/leadpipe/leadpipe/internal/tenant"
)

type siteJSON struct {
	ID          string `json:"id"`
	Account     string `json:"account,omitempty"`
	Name        string `json:"name"`
	Domain      string `json:"domain"`
	KeepHosting bool   `json:"keep_hosting"`
	// RetentionDays is how long raw hits and visits are kept.
	RetentionDays int `json:"retention_days"`
}

func siteOut(s tenant.Site) siteJSON {
	return siteJSON{s.ID, s.Account, s.Name, s.Domain, s.KeepHosting, s.Retention()}
}

// validName trims a name of an account or site in place and checks its
// length, answering 400 when it is wrong.
func validName(w http.ResponseWriter, name *string) bool {
	*name = strings.TrimSpace(*name)
	if *name == "" || len(*name) > 200 {
		writeError(w, http.StatusBadRequest, "name: must be 1 to 200 characters")
		return false
	}
	return true
}

// createAccount makes a customer account (operator keys only); its first
// admin key is then made with POST /api/v1/keys naming the account.
func (s *Server) createAccount(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	var in struct {
		Name string `json:"name"`
	}
	if !decodeBody(w, r, &in) {
		return
	}
	if !validName(w, &in.Name) {
		return
	}
	if !key.Operator() {
		writeError(w, http.StatusForbidden, "role: only an operator key (an admin key of the installation) can create accounts")
		return
	}
	a, err := s.tenants.CreateAccount(r.Context(), in.Name)
	if err != nil {
		s.log.Error("creating account", "err", err)
		writeError(w, http.StatusServiceUnavailable, "accounts: cannot be stored now, retry")
		return
	}
	writeJSON(w, http.StatusCreated, a)
}

// listAccounts shows an operator every account, and any other key its own.
func (s *Server) listAccounts(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	out := []tenant.Account{}
	for _, a := range s.tenants.Accounts() {
		if key.Account == "" || a.ID == key.Account {
			out = append(out, a)
		}
	}
	setRows(w, len(out))
	writeJSON(w, http.StatusOK, map[string]any{"accounts": out})
}

// accountFor decides the account a new site or key goes to: the key's own,
// or, for a key of the installation, the one the request names (or none).
// It answers the error itself when it returns false.
func (s *Server) accountFor(w http.ResponseWriter, key tenant.Key, requested string) (string, bool) {
	if key.Account != "" {
		if requested != "" && requested != key.Account {
			writeError(w, http.StatusForbidden, "account: a key can only act in its own account")
			return "", false
		}
		return key.Account, true
	}
	if requested != "" {
		if _, ok := s.tenants.Account(requested); !ok {
			writeError(w, http.StatusBadRequest, "account: "+requested+" does not exist")
			return "", false
		}
	}
	return requested, true
}

func (s *Server) createSite(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	var in struct {
		Account string `json:"account"`
		Name    string `json:"name"`
		Domain  string `json:"domain"`
	}
	if !decodeBody(w, r, &in) {
		return
	}
	if !validName(w, &in.Name) {
		return
	}
	if err := tenant.ValidateDomain(in.Domain); err != nil {
		writeError(w, http.StatusBadRequest, "domain: "+err.Error())
		return
	}
	if !key.AllSites() {
		writeError(w, http.StatusForbidden, "role: only an admin key for all sites can create sites")
		return
	}
	account, ok := s.accountFor(w, key, in.Account)
	if !ok {
		return
	}
	site, err := s.tenants.CreateSite(r.Context(), account, in.Name, in.Domain)
	if err != nil {
		s.log.Error("creating site", "err", err)
		writeError(w, http.StatusServiceUnavailable, "sites: cannot be stored now, retry")
		return
	}
	writeJSON(w, http.StatusCreated, siteOut(site))
}

func (s *Server) listSites(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	out := []siteJSON{}
	for _, site := range s.tenants.SitesOf(key) {
		out = append(out, siteOut(site))
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
		Name          *string `json:"name"`
		KeepHosting   *bool   `json:"keep_hosting"`
		RetentionDays *int    `json:"retention_days"`
	}
	if !decodeBody(w, r, &in) {
		return
	}
	if in.Name != nil && !validName(w, in.Name) {
		return
	}
	if in.RetentionDays != nil && (*in.RetentionDays < 1 || *in.RetentionDays > tenant.MaxRetentionDays) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("retention_days: must be between 1 and %d", tenant.MaxRetentionDays))
		return
	}
	updated, err := s.tenants.UpdateSite(r.Context(), site.ID, func(site *tenant.Site) {
		if in.Name != nil {
			site.Name = *in.Name
		}
		if in.KeepHosting != nil {
			site.KeepHosting = *in.KeepHosting
		}
		if in.RetentionDays != nil {
			site.RetentionDays = *in.RetentionDays
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
		Account string   `json:"account"`
		Role    string   `json:"role"`
		Sites   []string `json:"sites"`
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
	account, ok := s.accountFor(w, key, in.Account)
	if !ok {
		return
	}
	// A key can only hand out what it holds, and only its account's sites.
	for _, id := range in.Sites {
		if id == tenant.AllSites {
			if !key.AllSites() {
				writeError(w, http.StatusForbidden, `sites: "*" is not granted to this key`)
				return
			}
			continue
		}
		// Only a key that could see every site learns that one does not
		// exist; to any other, it is simply not theirs.
		site, exists := s.tenants.Site(id)
		switch {
		case exists && !key.CanRead(site), !exists && !key.Operator():
			writeError(w, http.StatusForbidden, "sites: "+id+" is not granted to this key")
			return
		case !exists:
			writeError(w, http.StatusBadRequest, "sites: "+id+" does not exist")
			return
		case site.Account != account:
			writeError(w, http.StatusBadRequest, "sites: "+id+" belongs to another account than the new key's")
			return
		}
	}
	created, secret, err := s.tenants.CreateKey(r.Context(), account, role, in.Sites)
	if err != nil {
		s.log.Error("creating key", "err", err)
		writeError(w, http.StatusServiceUnavailable, "keys: cannot be stored now, retry")
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"id": created.ID, "key": secret, "account": created.Account, "role": created.Role, "sites": created.Sites})
}
