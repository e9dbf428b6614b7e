package api_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/leadpipe/leadpipe/api"
	"github.com/leadpipe/leadpipe/internal/tenant"
)

// idp is an OpenID Connect provider for tests: discovery, a JWKS, an
// authorization endpoint that signs the configured person in at once, and
// a token endpoint that checks the code, the client and the PKCE verifier
// and returns an RS256-signed ID token.
type idp struct {
	srv              *httptest.Server
	key              *rsa.PrivateKey
	clientID, secret string

	mu    sync.Mutex
	codes map[string]authRequest
	// email is who signs in; mint, when set, changes the next tokens'
	// claims; signer, when set, signs them instead of the published key;
	// replay, when set, is returned instead of a new token.
	email  string
	mint   func(claims map[string]any)
	signer *rsa.PrivateKey
	replay string
	issued []string
}

type authRequest struct{ nonce, challenge, redirect string }

func newIDP(t *testing.T) *idp {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &idp{key: key, clientID: "leadpipe-test", secret: "s3cret", codes: map[string]authRequest{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{
			"issuer": p.srv.URL, "authorization_endpoint": p.srv.URL + "/authorize", "token_endpoint": p.srv.URL + "/token",
			"jwks_uri": p.srv.URL + "/jwks", "response_types_supported": []string{"code"},
			"subject_types_supported": []string{"public"}, "id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &p.key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	})
	mux.HandleFunc("GET /authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("client_id") != p.clientID || q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" ||
			q.Get("code_challenge") == "" || q.Get("nonce") == "" || !strings.Contains(q.Get("scope"), "openid") {
			http.Error(w, "bad authorization request: "+r.URL.RawQuery, http.StatusBadRequest)
			return
		}
		code := rand.Text()
		p.mu.Lock()
		p.codes[code] = authRequest{q.Get("nonce"), q.Get("code_challenge"), q.Get("redirect_uri")}
		p.mu.Unlock()
		http.Redirect(w, r, q.Get("redirect_uri")+"?"+url.Values{"code": {code}, "state": {q.Get("state")}}.Encode(), http.StatusFound)
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		id, secret, ok := r.BasicAuth()
		if !ok {
			id, secret = r.PostFormValue("client_id"), r.PostFormValue("client_secret")
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		code := r.PostFormValue("code")
		req, known := p.codes[code]
		delete(p.codes, code) // a code is good once
		sum := sha256.Sum256([]byte(r.PostFormValue("code_verifier")))
		if id != p.clientID || secret != p.secret || !known || req.redirect != r.PostFormValue("redirect_uri") ||
			base64.RawURLEncoding.EncodeToString(sum[:]) != req.challenge {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"error":"invalid_grant"}`))
			return
		}
		token := p.replay
		if token == "" {
			token = p.sign(t, req.nonce)
		}
		p.issued = append(p.issued, token)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": "at", "token_type": "Bearer", "expires_in": 300, "id_token": token})
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *idp) sign(t *testing.T, nonce string) string {
	now := time.Now()
	claims := map[string]any{"iss": p.srv.URL, "aud": p.clientID, "sub": "user-1", "email": p.email, "email_verified": true,
		"nonce": nonce, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}
	if p.mint != nil {
		p.mint(claims)
	}
	key := p.key
	if p.signer != nil {
		key = p.signer
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		t.Error(err)
		return ""
	}
	raw, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Error(err)
	}
	return raw
}

// set changes how the provider answers the next sign-ins.
func (p *idp) set(email string, mint func(map[string]any), signer *rsa.PrivateKey, replay string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.email, p.mint, p.signer, p.replay = email, mint, signer, replay
}

// browser is a cookie-keeping client that remembers the URLs it visited.
type browser struct {
	*http.Client
	visited []string
}

func newBrowser() *browser {
	jar, _ := cookiejar.New(nil)
	b := &browser{Client: &http.Client{Jar: jar}}
	b.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		b.visited = append(b.visited, req.URL.String())
		return nil
	}
	return b
}

func (b *browser) get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := b.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestOIDCSignIn runs the dashboard's sign-in against a provider the test
// runs: a granted address signs in and out; tokens with the wrong audience
// or issuer, expired, signed by an unknown key, of another sign-in
// (replayed), or for an address nobody granted are refused, as are a
// callback replayed and one from a browser that did not begin the sign-in.
func TestOIDCSignIn(t *testing.T) {
	t.Parallel()
	p := newIDP(t)
	a, _ := startAPIWith(t, func(cfg *api.Config, apiURL string) {
		cfg.PublicURL = apiURL
		cfg.OIDC = api.OIDCConfig{Issuer: p.srv.URL, ClientID: p.clientID, ClientSecret: p.secret, Name: "Test IdP"}
	})
	site := a.createSite(t, "alpha")
	if code, out := a.call(t, a.owner, "POST", "/api/v1/users", `{"email":"ann@example.com","role":"viewer","sites":["`+site+`"]}`); code != 201 {
		t.Fatalf("add user: %d %v", code, out)
	}
	if code, body := newBrowser().get(t, a.srv.URL+"/"); code != 200 || !strings.Contains(body, `href="/login/oidc"`) || !strings.Contains(body, "Sign in with Test IdP") {
		t.Fatalf("the sign-in page offers no provider: %d %s", code, body)
	}

	// A granted address signs in; the session reads only what the user was granted.
	p.set("Ann@Example.com", nil, nil, "")
	ann := newBrowser()
	code, body := ann.get(t, a.srv.URL+"/login/oidc")
	if code != 200 || !strings.Contains(body, `content="0;url=/app/"`) {
		t.Fatalf("sign-in: %d %s (visited %v)", code, body, ann.visited)
	}
	goodToken := p.issued[len(p.issued)-1]
	var callback string
	for _, u := range ann.visited {
		if strings.Contains(u, "/login/oidc/callback") {
			callback = u
		}
	}
	var session *http.Cookie
	base, _ := url.Parse(a.srv.URL)
	for _, c := range ann.Jar.Cookies(base) {
		if c.Name == "lp_session" {
			session = c
		}
	}
	if session == nil {
		t.Fatal("no session cookie after sign-in")
	}
	key, ok := a.tenants.Authenticate(session.Value)
	if !ok || key.User == "" || key.Role != tenant.RoleViewer || key.Expires.IsZero() || time.Until(key.Expires) > tenant.SessionTTL {
		t.Fatalf("session key = %+v, %v", key, ok)
	}
	if code, body := ann.get(t, a.srv.URL+"/app/sites/"+site); code != 200 || !strings.Contains(body, "Sign out") {
		t.Errorf("the dashboard after sign-in: %d", code)
	}
	other := a.createSite(t, "beta")
	if code, _ := ann.get(t, a.srv.URL+"/app/sites/"+other); code != 404 {
		t.Errorf("the session reads a site it was not granted: %d", code)
	}

	// The same callback again: the sign-in has finished.
	replayed := newBrowser()
	replayed.Jar.SetCookies(&url.URL{Scheme: "http", Host: base.Host, Path: "/login/"}, []*http.Cookie{{Name: "lp_login", Value: mustQuery(t, callback, "state"), Path: "/login/"}})
	if code, body := replayed.get(t, callback); code != 401 || !strings.Contains(body, "already finished") {
		t.Errorf("a replayed callback: %d %s", code, body)
	}

	refusals := []struct {
		name   string
		email  string
		mint   func(map[string]any)
		signer *rsa.PrivateKey
		replay string
		want   int
	}{
		{"wrong audience", "ann@example.com", func(c map[string]any) { c["aud"] = "another-client" }, nil, "", 401},
		{"wrong issuer", "ann@example.com", func(c map[string]any) { c["iss"] = "https://evil.example" }, nil, "", 401},
		{"expired", "ann@example.com", func(c map[string]any) {
			c["iat"], c["exp"] = time.Now().Add(-time.Hour).Unix(), time.Now().Add(-30*time.Minute).Unix()
		}, nil, "", 401},
		{"unknown signing key", "ann@example.com", nil, mustKey(t), "", 401},
		{"token of an earlier sign-in", "", nil, nil, goodToken, 401},
		{"unverified address", "ann@example.com", func(c map[string]any) { c["email_verified"] = false }, nil, "", 403},
		{"address nobody granted", "bob@example.com", nil, nil, "", 403},
	}
	for _, r := range refusals {
		t.Run(r.name, func(t *testing.T) {
			p.set(r.email, r.mint, r.signer, r.replay)
			b := newBrowser()
			code, body := b.get(t, a.srv.URL+"/login/oidc")
			if code != r.want || !strings.Contains(body, `class="error"`) {
				t.Errorf("%d, want %d: %s", code, r.want, body)
			}
			for _, c := range b.Jar.Cookies(base) {
				if c.Name == "lp_session" {
					t.Errorf("a refused sign-in set a session cookie")
				}
			}
			if code, _ := b.get(t, a.srv.URL+"/app/"); code != 200 || len(b.visited) == 0 || !strings.HasSuffix(b.visited[len(b.visited)-1], "/") {
				t.Errorf("the dashboard did not send a refused browser to sign in: %v", b.visited)
			}
		})
	}

	// A callback in a browser that did not begin the sign-in (login CSRF).
	p.set("ann@example.com", nil, nil, "")
	victim := newBrowser()
	victim.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if strings.Contains(req.URL.Path, "/callback") {
			victim.visited = append(victim.visited, req.URL.String())
			return http.ErrUseLastResponse
		}
		return nil
	}
	victim.get(t, a.srv.URL+"/login/oidc")
	if len(victim.visited) == 0 {
		t.Fatal("no callback URL")
	}
	if code, _ := newBrowser().get(t, victim.visited[len(victim.visited)-1]); code != 401 {
		t.Errorf("a callback in another browser: %d, want 401", code)
	}

	// Signing out ends the session in the store, not only in the browser.
	req, _ := http.NewRequest("POST", a.srv.URL+"/logout", nil)
	req.AddCookie(session)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, ok := a.tenants.Authenticate(session.Value); ok {
		t.Error("the session key still works after sign-out")
	}
}

func mustQuery(t *testing.T, raw, name string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.Query().Get(name) == "" {
		t.Fatalf("no %s in %q", name, raw)
	}
	return u.Query().Get(name)
}

func mustKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestOIDCConfig: each provider's flags are checked, naming the flag.
func TestOIDCConfig(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		oidc api.OIDCConfig
		want string
	}{
		{api.OIDCConfig{GoogleClientID: "id"}, "--oidc.google-client-secret"},
		{api.OIDCConfig{GoogleClientSecret: "s"}, "--oidc.google-client-id"},
		{api.OIDCConfig{MicrosoftClientID: "id", MicrosoftClientSecret: "s", MicrosoftTenant: "common"}, "--oidc.microsoft-tenant"},
		{api.OIDCConfig{ClientID: "id", ClientSecret: "s", Issuer: "accounts.example"}, "--oidc.issuer"},
		{api.OIDCConfig{Issuer: "https://idp.example", ClientID: "id"}, "--oidc.client-secret"},
		{api.OIDCConfig{GoogleClientID: "id", GoogleClientSecret: "s",
			MicrosoftClientID: "id", MicrosoftClientSecret: "s", MicrosoftTenant: "72f988bf-86f1-41af-91ab-2d7cd011db47"}, ""},
	} {
		cfg := api.Config{Addr: "127.0.0.1:8090", OIDC: c.oidc}
		err := cfg.Validate()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.HasPrefix(err.Error(), c.want+":")) {
			t.Errorf("%+v: err = %v, want %q", c.oidc, err, c.want)
		}
	}
	cfg := api.Config{Addr: "127.0.0.1:8090", PublicURL: "dashboard.example"}
	if err := cfg.Validate(); err == nil || !strings.HasPrefix(err.Error(), "--api.public-url:") {
		t.Errorf("a public URL without scheme: %v", err)
	}
}
