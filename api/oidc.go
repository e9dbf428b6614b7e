package api

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/leadpipe/leadpipe/internal/tenant"
)

// Sign-in with an identity provider (OpenID Connect, authorization code
// flow with PKCE): Google, Microsoft (one Entra ID directory), or any
// provider by its issuer URL. The provider vouches for an e-mail address;
// an admin granted that address a role in an account (POST
// /api/v1/users). A sign-in then makes a session key with the user's
// grants that expires after tenant.SessionTTL, so the dashboard, the API
// handlers it calls and the audit log treat it like any key.
//
// What is checked, in order: the state the provider hands back was begun
// in this browser (a cookie) and is consumed once across every API process
// (tenant.FinishLogin); the code is exchanged with the PKCE verifier; the
// ID token's signature against the provider's published keys, its issuer,
// audience (our client id) and expiry (go-oidc); its nonce against the
// sign-in's, so a token from another sign-in is refused; the address is
// not marked unverified; and a user holds it.

// OIDCConfig names the identity providers the dashboard offers.
type OIDCConfig struct {
	GoogleClientID, GoogleClientSecret string
	// MicrosoftTenant is the directory (tenant) id, a GUID: the multi-tenant
	// endpoints (common, organizations) issue tokens of many issuers, which
	// a single-issuer check cannot verify.
	MicrosoftTenant, MicrosoftClientID, MicrosoftClientSecret string
	// Issuer, ClientID, ClientSecret and Name configure any other provider.
	Issuer, ClientID, ClientSecret, Name string
}

func (c *OIDCConfig) registerFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.GoogleClientID, "oidc.google-client-id", "", "OAuth client id for sign-in with Google")
	fs.StringVar(&c.GoogleClientSecret, "oidc.google-client-secret", "", "its client secret (prefer LEADPIPE_OIDC_GOOGLE_CLIENT_SECRET)")
	fs.StringVar(&c.MicrosoftTenant, "oidc.microsoft-tenant", "", "Microsoft Entra ID directory (tenant) id for sign-in with Microsoft")
	fs.StringVar(&c.MicrosoftClientID, "oidc.microsoft-client-id", "", "application (client) id for sign-in with Microsoft")
	fs.StringVar(&c.MicrosoftClientSecret, "oidc.microsoft-client-secret", "", "its client secret (prefer LEADPIPE_OIDC_MICROSOFT_CLIENT_SECRET)")
	fs.StringVar(&c.Issuer, "oidc.issuer", "", "issuer URL of another OpenID Connect provider")
	fs.StringVar(&c.ClientID, "oidc.client-id", "", "client id at --oidc.issuer")
	fs.StringVar(&c.ClientSecret, "oidc.client-secret", "", "its client secret (prefer LEADPIPE_OIDC_CLIENT_SECRET)")
	fs.StringVar(&c.Name, "oidc.name", "single sign-on", "what the sign-in button calls --oidc.issuer")
}

var guid = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// providers checks the configuration and returns the providers it names.
func (c *OIDCConfig) providers(publicURL string) ([]*provider, error) {
	var out []*provider
	add := func(id, label, issuer, clientID, secret, flagName string) error {
		switch {
		case clientID == "" && secret == "":
			return nil
		case clientID == "":
			return fmt.Errorf("--oidc.%sclient-id: needed with --oidc.%sclient-secret", flagName, flagName)
		case secret == "":
			return fmt.Errorf("--oidc.%sclient-secret: needed with --oidc.%sclient-id", flagName, flagName)
		}
		out = append(out, &provider{id: id, label: label, issuer: issuer, oauth: oauth2.Config{
			ClientID: clientID, ClientSecret: secret,
			RedirectURL: strings.TrimSuffix(publicURL, "/") + "/login/" + id + "/callback",
			Scopes:      []string{oidc.ScopeOpenID, "email", "profile"},
		}})
		return nil
	}
	if err := add("google", "Google", "https://accounts.google.com", c.GoogleClientID, c.GoogleClientSecret, "google-"); err != nil {
		return nil, err
	}
	if c.MicrosoftClientID != "" && !guid.MatchString(c.MicrosoftTenant) {
		return nil, fmt.Errorf("--oidc.microsoft-tenant: %q is not a directory (tenant) id like 72f988bf-86f1-41af-91ab-2d7cd011db47; multi-tenant sign-in is not supported", c.MicrosoftTenant)
	}
	if err := add("microsoft", "Microsoft", "https://login.microsoftonline.com/"+c.MicrosoftTenant+"/v2.0", c.MicrosoftClientID, c.MicrosoftClientSecret, "microsoft-"); err != nil {
		return nil, err
	}
	if c.Issuer != "" || c.ClientID != "" {
		u, err := url.Parse(c.Issuer)
		if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			return nil, fmt.Errorf("--oidc.issuer: %q is not an http(s) URL", c.Issuer)
		}
	}
	if err := add("oidc", c.Name, c.Issuer, c.ClientID, c.ClientSecret, ""); err != nil {
		return nil, err
	}
	return out, nil
}

// provider is one configured identity provider; its discovery document
// and keys are fetched at its first sign-in, so an unreachable provider
// does not stop the API from starting.
type provider struct {
	id, label, issuer string

	mu       sync.Mutex
	oauth    oauth2.Config
	verifier *oidc.IDTokenVerifier
}

// discover fetches the provider's configuration once it succeeds.
func (p *provider) discover(ctx context.Context) (*oauth2.Config, *oidc.IDTokenVerifier, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.verifier == nil {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		op, err := oidc.NewProvider(ctx, p.issuer)
		if err != nil {
			return nil, nil, err
		}
		p.oauth.Endpoint = op.Endpoint()
		// The keys are fetched with a context of their own: the first
		// request's would end with that request.
		p.verifier = op.VerifierContext(context.WithoutCancel(ctx), &oidc.Config{ClientID: p.oauth.ClientID})
	}
	oauth := p.oauth
	return &oauth, p.verifier, nil
}

// providerLink is a sign-in button.
type providerLink struct{ ID, Label string }

func (s *Server) providerLinks() []providerLink {
	var out []providerLink
	for _, p := range s.cfg.providers {
		out = append(out, providerLink{p.id, p.label})
	}
	return out
}

func (s *Server) provider(id string) *provider {
	for _, p := range s.cfg.providers {
		if p.id == id {
			return p
		}
	}
	return nil
}

// loginCookie binds a sign-in to the browser that began it. SameSite=Lax,
// not Strict: the provider's redirect back is a cross-site navigation.
const loginCookie = "lp_login"

func (s *Server) oidcRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /login/{provider}", s.oidcStart)
	mux.HandleFunc("GET /login/{provider}/callback", s.oidcCallback)
}

func (s *Server) oidcStart(w http.ResponseWriter, r *http.Request) {
	p := s.provider(r.PathValue("provider"))
	if p == nil {
		w.WriteHeader(http.StatusNotFound)
		s.renderLogin(w, "No such sign-in provider.")
		return
	}
	oauth, _, err := p.discover(r.Context())
	if err != nil {
		s.log.Error("reaching identity provider", "provider", p.id, "err", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		s.renderLogin(w, p.label+" cannot be reached now; try again shortly.")
		return
	}
	nonce, verifier := rand.Text(), oauth2.GenerateVerifier()
	state, err := s.tenants.BeginLogin(r.Context(), tenant.Login{Provider: p.id, Nonce: nonce, Verifier: verifier})
	if err != nil {
		s.log.Error("beginning sign-in", "err", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		s.renderLogin(w, "Sign-in is unavailable now; try again shortly.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: state, Path: "/login/", HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: secureRequest(r), MaxAge: 600})
	http.Redirect(w, r, oauth.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), http.StatusFound)
}

// errSignIn is a refused sign-in: its message is shown; the cause is logged.
type errSignIn struct {
	status int
	msg    string
	cause  error
}

func (e *errSignIn) Error() string { return fmt.Sprintf("%s: %v", e.msg, e.cause) }

func refused(msg string, cause error) *errSignIn {
	return &errSignIn{http.StatusUnauthorized, msg, cause}
}

func (s *Server) oidcCallback(w http.ResponseWriter, r *http.Request) {
	entry := auditEntry{TS: time.Now(), Method: r.Method, Route: "GET /login/{provider}/callback", Remote: remoteIP(r)}
	if s.authLimit.blocked(remoteIP(r)) {
		w.Header().Set("Retry-After", authRetryAfter)
		w.WriteHeader(http.StatusTooManyRequests)
		s.renderLogin(w, "Too many failed attempts from this address; try again in a minute.")
		entry.Status = http.StatusTooManyRequests
		s.audit.record(entry)
		return
	}
	// The state cookie has done its work, whatever comes next.
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: "", Path: "/login/", HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: secureRequest(r), MaxAge: -1})
	key, token, err := s.signIn(r)
	if err != nil {
		var e *errSignIn
		if !errors.As(err, &e) {
			e = &errSignIn{http.StatusServiceUnavailable, "Sign-in is unavailable now; try again shortly.", err}
		}
		if e.status == http.StatusUnauthorized {
			s.authLimit.failed(remoteIP(r))
		}
		s.log.Warn("sign-in refused", "provider", r.PathValue("provider"), "status", e.status, "err", e.cause)
		entry.Status = uint16(e.status)
		s.audit.record(entry)
		w.WriteHeader(e.status)
		s.renderLogin(w, e.msg)
		return
	}
	entry.KeyID, entry.Role, entry.Status = key.ID, string(key.Role), http.StatusOK
	s.audit.record(entry)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: token, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: secureRequest(r), MaxAge: int(tenant.SessionTTL / time.Second)})
	// A page, not a redirect: browsers do not send a SameSite=Strict cookie
	// on a redirect chain that began at another site (the provider).
	s.render(w, "signedin.html", pageData{Title: "Signed in", Refresh: "/app/"})
}

// signIn checks a provider's callback and starts the user's session.
func (s *Server) signIn(r *http.Request) (tenant.Key, string, error) {
	ctx := r.Context()
	p := s.provider(r.PathValue("provider"))
	if p == nil {
		return tenant.Key{}, "", &errSignIn{http.StatusNotFound, "No such sign-in provider.", errors.New("unknown provider")}
	}
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		return tenant.Key{}, "", refused(p.label+" did not sign you in.", fmt.Errorf("provider error %q: %s", e, q.Get("error_description")))
	}
	state := q.Get("state")
	c, err := r.Cookie(loginCookie)
	if err != nil || subtle.ConstantTimeCompare([]byte(c.Value), []byte(state)) != 1 {
		return tenant.Key{}, "", refused("This sign-in was not started in this browser; sign in again.", errors.New("state does not match the login cookie"))
	}
	login, err := s.tenants.FinishLogin(ctx, state)
	if errors.Is(err, tenant.ErrNoLogin) {
		return tenant.Key{}, "", refused("This sign-in has already finished or timed out; sign in again.", err)
	} else if err != nil {
		return tenant.Key{}, "", err
	}
	if login.Provider != p.id {
		return tenant.Key{}, "", refused("This sign-in was begun with another provider; sign in again.", errors.New("provider mismatch"))
	}
	oauth, verifier, err := p.discover(ctx)
	if err != nil {
		return tenant.Key{}, "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	tok, err := oauth.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(login.Verifier))
	if err != nil {
		return tenant.Key{}, "", refused(p.label+" did not confirm the sign-in; sign in again.", fmt.Errorf("exchanging the code: %w", err))
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return tenant.Key{}, "", refused(p.label+" sent no identity token.", errors.New("no id_token in the token response"))
	}
	idt, err := verifier.Verify(ctx, raw)
	if err != nil {
		return tenant.Key{}, "", refused("The identity token is not valid.", err)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(login.Nonce)) != 1 {
		return tenant.Key{}, "", refused("The identity token belongs to another sign-in.", errors.New("nonce does not match: a replayed token"))
	}
	var claims struct {
		Email         string `json:"email"`
		EmailVerified *bool  `json:"email_verified"`
	}
	if err := idt.Claims(&claims); err != nil {
		return tenant.Key{}, "", refused("The identity token is not valid.", err)
	}
	if claims.Email == "" || (claims.EmailVerified != nil && !*claims.EmailVerified) {
		return tenant.Key{}, "", &errSignIn{http.StatusForbidden, p.label + " did not vouch for an e-mail address.", errors.New("no verified email claim")}
	}
	user, ok := s.tenants.UserByEmail(claims.Email)
	if !ok {
		return tenant.Key{}, "", &errSignIn{http.StatusForbidden, claims.Email + " has no access to this dashboard; ask an admin of your account to add you.", errors.New("no user")}
	}
	return s.tenants.StartSession(ctx, user)
}

func (s *Server) renderLogin(w http.ResponseWriter, msg string) {
	s.render(w, "login.html", pageData{Title: "Sign in", Error: msg, Providers: s.providerLinks()})
}
