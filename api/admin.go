package api

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"

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
	// IntentPages are the words of its high-intent page paths.
	IntentPages []string `json:"intent_pages"`
}

func siteOut(s tenant.Site) siteJSON {
	return siteJSON{s.ID, s.Account, s.Name, s.Domain, s.KeepHosting, s.Retention(), s.Intent()}
}

// maxIntentPages bounds a site's high-intent page words.
const maxIntentPages = 50

// validIntentPages trims a site's high-intent page words in place and
// checks them, answering 400 when they are wrong.
func validIntentPages(w http.ResponseWriter, words []string) bool {
	if len(words) > maxIntentPages {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("intent_pages: at most %d", maxIntentPages))
		return false
	}
	for i, word := range words {
		words[i] = strings.TrimSpace(word)
		if words[i] == "" || len(words[i]) > 100 || strings.ContainsFunc(words[i], unicode.IsControl) {
			writeError(w, http.StatusBadRequest, "intent_pages: each must be 1 to 100 characters of a page path, like pricing or /contact")
			return false
		}
	}
	return true
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
	s.copySites(r.Context())
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
		// IntentPages replaces the list; [] restores the defaults.
		IntentPages *[]string `json:"intent_pages"`
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
	if in.IntentPages != nil && !validIntentPages(w, *in.IntentPages) {
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
		if in.IntentPages != nil {
			site.IntentPages = *in.IntentPages
		}
	})
	if err != nil {
		s.log.Error("updating site", "err", err)
		writeError(w, http.StatusServiceUnavailable, "sites: cannot be stored now, retry")
		return
	}
	s.copySites(r.Context())
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

// grants checks the grants of a new key or user: a key can only hand out
// what it holds, and only its account's sites. It answers the error itself
// when it returns false.
func (s *Server) grants(w http.ResponseWriter, key tenant.Key, account string, roleName string, sites []string) (tenant.Role, bool) {
	role, err := tenant.ParseRole(roleName)
	if err != nil {
		writeError(w, http.StatusBadRequest, "role: "+err.Error())
		return "", false
	}
	if len(sites) == 0 {
		writeError(w, http.StatusBadRequest, `sites: at least one site id (or "*" for all) is required`)
		return "", false
	}
	for _, id := range sites {
		if id == tenant.AllSites {
			if !key.AllSites() {
				writeError(w, http.StatusForbidden, `sites: "*" is not granted to this key`)
				return "", false
			}
			continue
		}
		// Only a key that could see every site learns that one does not
		// exist; to any other, it is simply not theirs.
		site, exists := s.tenants.Site(id)
		switch {
		case exists && !key.CanRead(site), !exists && !key.Operator():
			writeError(w, http.StatusForbidden, "sites: "+id+" is not granted to this key")
			return "", false
		case !exists:
			writeError(w, http.StatusBadRequest, "sites: "+id+" does not exist")
			return "", false
		case site.Account != account:
			writeError(w, http.StatusBadRequest, "sites: "+id+" belongs to another account than the new key's")
			return "", false
		}
	}
	return role, true
}

// keyJSON is a key as the API lists it: never its hash.
type keyJSON struct {
	ID      string      `json:"id"`
	Account string      `json:"account,omitempty"`
	Role    tenant.Role `json:"role"`
	Sites   []string    `json:"sites"`
	Created time.Time   `json:"created"`
	Expires *time.Time  `json:"expires,omitempty"`
	Revoked bool        `json:"revoked,omitempty"`
	User    string      `json:"user,omitempty"`
}

func keyOut(k tenant.Key) keyJSON {
	out := keyJSON{ID: k.ID, Account: k.Account, Role: k.Role, Sites: k.Sites, Created: k.Created, Revoked: k.Revoked, User: k.User}
	if !k.Expires.IsZero() {
		out.Expires = &k.Expires
	}
	return out
}

// MaxKeyDays bounds expires_in_days of a new key.
const MaxKeyDays = 3650

func (s *Server) createKey(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	var in struct {
		Account string   `json:"account"`
		Role    string   `json:"role"`
		Sites   []string `json:"sites"`
		// ExpiresInDays ends the key after so many days; 0 never.
		ExpiresInDays int `json:"expires_in_days"`
	}
	if !decodeBody(w, r, &in) {
		return
	}
	if in.ExpiresInDays < 0 || in.ExpiresInDays > MaxKeyDays {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("expires_in_days: must be between 0 (never) and %d", MaxKeyDays))
		return
	}
	account, ok := s.accountFor(w, key, in.Account)
	if !ok {
		return
	}
	role, ok := s.grants(w, key, account, in.Role, in.Sites)
	if !ok {
		return
	}
	k := tenant.Key{Account: account, Role: role, Sites: in.Sites}
	if in.ExpiresInDays > 0 {
		k.Expires = time.Now().UTC().AddDate(0, 0, in.ExpiresInDays)
	}
	created, secret, err := s.tenants.CreateKey(r.Context(), k)
	if err != nil {
		s.log.Error("creating key", "err", err)
		writeError(w, http.StatusServiceUnavailable, "keys: cannot be stored now, retry")
		return
	}
	out := map[string]any{"id": created.ID, "key": secret, "account": created.Account, "role": created.Role, "sites": created.Sites}
	if !created.Expires.IsZero() {
		out["expires"] = created.Expires
	}
	writeJSON(w, http.StatusCreated, out)
}

// manages reports whether key may list and remove the keys and users of
// account: an admin for every site of that account (an operator: of any
// account). Sessions are listed with their users.
func manages(key tenant.Key, account string) bool {
	return key.AllSites() && (key.Account == "" || key.Account == account)
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	out := []keyJSON{}
	for _, k := range s.tenants.Keys() {
		if manages(key, k.Account) && k.User == "" {
			out = append(out, keyOut(k))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": out})
}

// revokeKey ends a key at once. A key outside the caller's reach is
// indistinguishable from one that does not exist.
func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	k, ok := s.tenants.Key(r.PathValue("id"))
	if !ok || !manages(key, k.Account) {
		writeError(w, http.StatusNotFound, "key: not found")
		return
	}
	if err := s.tenants.RevokeKey(r.Context(), k.ID); err != nil {
		s.log.Error("revoking key", "err", err)
		writeError(w, http.StatusServiceUnavailable, "keys: cannot be stored now, retry")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// createUser lets an e-mail address sign in to the dashboard with an
// identity provider, with a role on sites of an account.
func (s *Server) createUser(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	var in struct {
		Account string   `json:"account"`
		Email   string   `json:"email"`
		Role    string   `json:"role"`
		Sites   []string `json:"sites"`
	}
	if !decodeBody(w, r, &in) {
		return
	}
	in.Email = tenant.NormalizeEmail(in.Email)
	if at := strings.IndexByte(in.Email, '@'); at < 1 || at == len(in.Email)-1 || len(in.Email) > 254 || strings.ContainsAny(in.Email, " ,;<>") {
		writeError(w, http.StatusBadRequest, "email: not an e-mail address")
		return
	}
	account, ok := s.accountFor(w, key, in.Account)
	if !ok {
		return
	}
	role, ok := s.grants(w, key, account, in.Role, in.Sites)
	if !ok {
		return
	}
	u, err := s.tenants.CreateUser(r.Context(), tenant.User{Email: in.Email, Account: account, Role: role, Sites: in.Sites})
	if errors.Is(err, tenant.ErrUserExists) {
		writeError(w, http.StatusConflict, "email: "+err.Error())
		return
	} else if err != nil {
		s.log.Error("creating user", "err", err)
		writeError(w, http.StatusServiceUnavailable, "users: cannot be stored now, retry")
		return
	}
	writeJSON(w, http.StatusCreated, u)
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	out := []tenant.User{}
	for _, u := range s.tenants.Users() {
		if manages(key, u.Account) {
			out = append(out, u)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": out})
}

// deleteUser takes a user's access away and ends their sessions.
func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request, key tenant.Key) {
	u, ok := s.tenants.User(r.PathValue("id"))
	if !ok || !manages(key, u.Account) {
		writeError(w, http.StatusNotFound, "user: not found")
		return
	}
	if err := s.tenants.DeleteUser(r.Context(), u.ID); err != nil {
		s.log.Error("deleting user", "err", err)
		writeError(w, http.StatusServiceUnavailable, "users: cannot be stored now, retry")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
