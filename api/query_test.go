package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leadpipe/leadpipe/api"
	"github.com/leadpipe/leadpipe/internal/bus"
	"github.com/leadpipe/leadpipe/internal/tenant"
	"github.com/leadpipe/leadpipe/internal/testenv"
	"github.com/leadpipe/leadpipe/internal/visitorid"
	"github.com/leadpipe/leadpipe/ipintel"
	"github.com/leadpipe/leadpipe/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type testAPI struct {
	srv      *httptest.Server
	tenants  *tenant.Store
	visitors *visitorid.Keys
	conn     driver.Conn
	owner    string
	bus      *bus.Bus
	server   *api.Server
	learner  *ipintel.Learner
}

func startAPI(t testing.TB) (*testAPI, func(string, ...any)) {
	t.Helper()
	return startAPIWith(t, nil)
}

// startAPIWith starts the API with configure's changes to its
// configuration, given the URL the API will have.
func startAPIWith(t testing.TB, configure func(cfg *api.Config, url string)) (*testAPI, func(string, ...any)) {
	t.Helper()
	b := testenv.Bus(t)
	conn, _ := testenv.Database(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	tenants, err := tenant.Open(ctx, b.JS, testenv.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	_, owner, err := tenants.CreateKey(ctx, tenant.Key{Role: tenant.RoleAdmin, Sites: []string{tenant.AllSites}})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	visitors := visitorid.NewKeys(b.JS)
	erased, err := visitorid.OpenErased(ctx, b.JS, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var handler http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	cfg := api.Config{Addr: "127.0.0.1:0"}
	if configure != nil {
		configure(&cfg, srv.URL)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ids, _ := b.JS.KeyValue(ctx, bus.IdentitiesBucket)
	removals, _ := b.JS.KeyValue(ctx, bus.LearnedBucket)
	learner := ipintel.NewLearner(ids, removals, testenv.Quiet())
	go func() { _ = learner.Run(ctx) }()
	s := api.New(cfg, api.Deps{ClickHouse: conn, Tenants: tenants, Visitors: visitors, Erased: erased, IPData: testenv.IPData(t),
		Learned: learner, Ready: func(context.Context) error { return nil }}, reg, testenv.Quiet())
	handler = s.Handler()
	exec := func(q string, args ...any) {
		t.Helper()
		if err := conn.Exec(context.Background(), q, args...); err != nil {
			t.Fatal(err)
		}
	}
	return &testAPI{srv: srv, tenants: tenants, visitors: visitors, conn: conn, owner: owner, bus: b, server: s, learner: learner}, exec
}

func (a *testAPI) call(t testing.TB, key, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, a.srv.URL+path, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if resp.StatusCode == http.StatusNoContent {
		return resp.StatusCode, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s %s: not JSON: %v", method, path, err)
	}
	return resp.StatusCode, out
}

func (a *testAPI) createSite(t testing.TB, name string) string {
	t.Helper()
	code, out := a.call(t, a.owner, "POST", "/api/v1/sites", `{"name":"`+name+`","domain":"`+name+`.example"}`)
	if code != http.StatusCreated {
		t.Fatalf("create site: %d %v", code, out)
	}
	return out["id"].(string)
}

func (a *testAPI) createKey(t testing.TB, role, site string) string {
	t.Helper()
	code, out := a.call(t, a.owner, "POST", "/api/v1/keys", `{"role":"`+role+`","sites":["`+site+`"]}`)
	if code != http.StatusCreated {
		t.Fatalf("create key: %d %v", code, out)
	}
	return out["key"].(string)
}

// TestTenantIsolation: a key never reads a site it was not granted, and
// roles limit what a key may do.
func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	a, exec := startAPI(t)
	siteA, siteB := a.createSite(t, "alpha"), a.createSite(t, "beta")
	day := time.Now().UTC().Format(time.DateOnly)
	for _, site := range []string{siteA, siteB} {
		exec(`INSERT INTO hits (site_id, ts, received_at, hit_id, type, url, path, visitor_id, consent, company_id, company_name, asn, as_org, network_type)
			VALUES (?, now64(3), now64(3), 'h1', 'pageview', 'https://x/', '/', 1, 'granted', 'c1', ?, 1, 'Org', 'business')`, site, "Company of "+site)
		exec(`INSERT INTO filtered_daily (site_id, day, reason, hits) VALUES (?, ?, 'unmatched', 4)`, site, day)
	}
	viewerA := a.createKey(t, "viewer", siteA)
	adminA := a.createKey(t, "admin", siteA)

	code, out := a.call(t, viewerA, "GET", "/api/v1/sites/"+siteA+"/companies", "")
	if code != 200 || len(out["companies"].([]any)) != 1 || !strings.Contains(jsonString(out), "Company of "+siteA) {
		t.Fatalf("viewer reading its site: %d %v", code, out)
	}
	code, out = a.call(t, viewerA, "GET", "/api/v1/sites/"+siteA+"/filtered", "")
	if code != 200 || out["reasons"].(map[string]any)["unmatched"] != float64(4) {
		t.Errorf("filtered: %d %v", code, out)
	}
	for _, probe := range []struct {
		key, method, path, body string
		want                    int
	}{
		{viewerA, "GET", "/api/v1/sites/" + siteB + "/companies", "", 404},
		{viewerA, "GET", "/api/v1/sites/" + siteB + "/filtered", "", 404},
		{adminA, "GET", "/api/v1/sites/" + siteB + "/companies", "", 404},
		{viewerA, "GET", "/api/v1/sites/nosuchsite/companies", "", 404},
		{"", "GET", "/api/v1/sites/" + siteA + "/companies", "", 401},
		{"lp_bogus_key", "GET", "/api/v1/sites", "", 401},
		{viewerA, "POST", "/api/v1/sites", `{"name":"x","domain":"x.example"}`, 403},
		{viewerA, "POST", "/api/v1/keys", `{"role":"viewer","sites":["` + siteA + `"]}`, 403},
		{adminA, "POST", "/api/v1/keys", `{"role":"viewer","sites":["` + siteB + `"]}`, 403},
		{adminA, "POST", "/api/v1/keys", `{"role":"viewer","sites":["*"]}`, 403},
		{adminA, "POST", "/api/v1/sites", `{"name":"x","domain":"x.example"}`, 403},
	} {
		code, out := a.call(t, probe.key, probe.method, probe.path, probe.body)
		if code != probe.want {
			t.Errorf("%s %s with %.12s…: %d %v, want %d", probe.method, probe.path, probe.key, code, out, probe.want)
		}
		if _, ok := out["error"]; !ok {
			t.Errorf("%s %s: no JSON error in %v", probe.method, probe.path, out)
		}
		if strings.Contains(jsonString(out), "Company of "+siteB) {
			t.Errorf("%s %s leaked site B's data: %v", probe.method, probe.path, out)
		}
	}
	code, out = a.call(t, viewerA, "GET", "/api/v1/sites", "")
	if sites := out["sites"].([]any); code != 200 || len(sites) != 1 {
		t.Errorf("viewer A lists %v, want only site A", out)
	}
}

// TestAccounts: an account's keys, even an admin key for all its sites,
// read and manage that account's sites only; only an operator key makes
// accounts and acts across them.
func TestAccounts(t *testing.T) {
	t.Parallel()
	a, exec := startAPI(t)
	account := func(name string) string {
		t.Helper()
		code, out := a.call(t, a.owner, "POST", "/api/v1/accounts", `{"name":"`+name+`"}`)
		if code != http.StatusCreated {
			t.Fatalf("create account: %d %v", code, out)
		}
		return out["id"].(string)
	}
	acme, globex := account("Acme"), account("Globex")
	// Each account's first admin key, made by the operator.
	adminOf := func(acct string) string {
		t.Helper()
		code, out := a.call(t, a.owner, "POST", "/api/v1/keys", `{"account":"`+acct+`","role":"admin","sites":["*"]}`)
		if code != http.StatusCreated || out["account"] != acct {
			t.Fatalf("create account admin: %d %v", code, out)
		}
		return out["key"].(string)
	}
	acmeAdmin, globexAdmin := adminOf(acme), adminOf(globex)
	siteOf := func(key, name string) string {
		t.Helper()
		code, out := a.call(t, key, "POST", "/api/v1/sites", `{"name":"`+name+`","domain":"`+name+`.example"}`)
		if code != http.StatusCreated {
			t.Fatalf("create site: %d %v", code, out)
		}
		return out["id"].(string)
	}
	acmeSite, globexSite := siteOf(acmeAdmin, "acme"), siteOf(globexAdmin, "globex")
	for _, site := range []string{acmeSite, globexSite} {
		exec(`INSERT INTO hits (site_id, ts, received_at, hit_id, type, url, path, visitor_id, visit_id, visit_start, new_visit,
			consent, company_id, company_name, asn, as_org, network_type)
			VALUES (?, now64(3), now64(3), 'h1', 'pageview', 'https://x/', '/', 1, 1, now64(3), 1, 'granted', 'c1', ?, 1, 'Org', 'business')`,
			site, "Visitor of "+site)
	}
	// The account admin makes keys for its own sites.
	code, out := a.call(t, acmeAdmin, "POST", "/api/v1/keys", `{"role":"viewer","sites":["`+acmeSite+`"]}`)
	if code != http.StatusCreated || out["account"] != acme {
		t.Fatalf("account admin making a viewer key: %d %v", code, out)
	}
	acmeViewer := out["key"].(string)
	if code, out := a.call(t, acmeViewer, "GET", "/api/v1/sites/"+acmeSite+"/companies", ""); code != 200 || !strings.Contains(jsonString(out), "Visitor of "+acmeSite) {
		t.Errorf("acme viewer on its site: %d %v", code, out)
	}
	for _, probe := range []struct {
		key, method, path, body string
		want                    int
	}{
		{acmeAdmin, "GET", "/api/v1/sites/" + globexSite + "/companies", "", 404},
		{acmeViewer, "GET", "/api/v1/sites/" + globexSite + "/companies", "", 404},
		{acmeAdmin, "PATCH", "/api/v1/sites/" + globexSite, `{"keep_hosting":true}`, 404},
		{acmeAdmin, "POST", "/api/v1/keys", `{"role":"viewer","sites":["` + globexSite + `"]}`, 403},
		{acmeAdmin, "POST", "/api/v1/keys", `{"account":"` + globex + `","role":"admin","sites":["*"]}`, 403},
		{acmeAdmin, "POST", "/api/v1/sites", `{"account":"` + globex + `","name":"x","domain":"x.example"}`, 403},
		{acmeAdmin, "POST", "/api/v1/accounts", `{"name":"Mine"}`, 403},
		{a.owner, "POST", "/api/v1/keys", `{"account":"nosuchaccount","role":"viewer","sites":["*"]}`, 400},
		{a.owner, "POST", "/api/v1/keys", `{"account":"` + acme + `","role":"viewer","sites":["` + globexSite + `"]}`, 400},
	} {
		code, out := a.call(t, probe.key, probe.method, probe.path, probe.body)
		if code != probe.want {
			t.Errorf("%s %s %s: %d %v, want %d", probe.method, probe.path, probe.body, code, out, probe.want)
		}
		if strings.Contains(jsonString(out), "Visitor of "+globexSite) {
			t.Errorf("%s %s leaked globex's data: %v", probe.method, probe.path, out)
		}
	}
	list := func(key, path, field string) int {
		t.Helper()
		code, out := a.call(t, key, "GET", path, "")
		if code != 200 {
			t.Fatalf("GET %s: %d %v", path, code, out)
		}
		return len(out[field].([]any))
	}
	if n := list(acmeAdmin, "/api/v1/sites", "sites"); n != 1 {
		t.Errorf("acme admin lists %d sites, want 1", n)
	}
	if n := list(acmeAdmin, "/api/v1/accounts", "accounts"); n != 1 {
		t.Errorf("acme admin lists %d accounts, want its own", n)
	}
	if n := list(a.owner, "/api/v1/sites", "sites"); n != 2 {
		t.Errorf("the operator lists %d sites, want 2", n)
	}
	if n := list(a.owner, "/api/v1/accounts", "accounts"); n != 2 {
		t.Errorf("the operator lists %d accounts, want 2", n)
	}

	// Keys and users: an account admin lists, revokes and grants only in
	// its account.
	code, out = a.call(t, globexAdmin, "GET", "/api/v1/keys", "")
	if code != 200 || strings.Contains(jsonString(out), `"account":"`+acme+`"`) || strings.Contains(jsonString(out), `"hash"`) {
		t.Errorf("globex admin listing keys: %d %v", code, out)
	}
	acmeViewerID := strings.Split(strings.TrimPrefix(acmeViewer, tenant.KeyPrefix), "_")[0]
	if code, out := a.call(t, globexAdmin, "DELETE", "/api/v1/keys/"+acmeViewerID, ""); code != 404 {
		t.Errorf("globex admin revoking an acme key: %d %v", code, out)
	}
	if code, out := a.call(t, globexAdmin, "POST", "/api/v1/users", `{"email":"spy@globex.example","role":"viewer","sites":["`+acmeSite+`"]}`); code != 403 {
		t.Errorf("globex admin granting a user an acme site: %d %v", code, out)
	}
	code, out = a.call(t, acmeAdmin, "POST", "/api/v1/users", `{"email":"Ann@Acme.example","role":"viewer","sites":["*"]}`)
	if code != 201 || out["account"] != acme || out["email"] != "ann@acme.example" {
		t.Fatalf("acme admin adding a user: %d %v", code, out)
	}
	annID := out["id"].(string)
	if code, _ := a.call(t, acmeAdmin, "POST", "/api/v1/users", `{"email":"ann@acme.example","role":"admin","sites":["*"]}`); code != 409 {
		t.Errorf("a second user of one address: %d", code)
	}
	if n := list(globexAdmin, "/api/v1/users", "users"); n != 0 {
		t.Errorf("globex admin lists %d users, want none of acme's", n)
	}
	if code, _ := a.call(t, globexAdmin, "DELETE", "/api/v1/users/"+annID, ""); code != 404 {
		t.Errorf("globex admin deleting an acme user: %d", code)
	}
	if n := list(acmeAdmin, "/api/v1/users", "users"); n != 1 {
		t.Errorf("acme admin lists %d users, want 1", n)
	}
	if code, _ := a.call(t, acmeAdmin, "DELETE", "/api/v1/keys/"+acmeViewerID, ""); code != 204 {
		t.Errorf("acme admin revoking its viewer key: %d", code)
	}
	if code, _ := a.call(t, acmeViewer, "GET", "/api/v1/sites", ""); code != 401 {
		t.Errorf("a revoked key still reads: %d", code)
	}
}

// TestKeysExpire: a key made to expire works until then, and is listed
// with its expiry.
func TestKeysExpire(t *testing.T) {
	t.Parallel()
	a, _ := startAPI(t)
	site := a.createSite(t, "alpha")
	code, out := a.call(t, a.owner, "POST", "/api/v1/keys", `{"role":"viewer","sites":["`+site+`"],"expires_in_days":1}`)
	if code != 201 || out["expires"] == nil {
		t.Fatalf("create expiring key: %d %v", code, out)
	}
	expires, err := time.Parse(time.RFC3339Nano, out["expires"].(string))
	if err != nil || time.Until(expires) < 23*time.Hour || time.Until(expires) > 25*time.Hour {
		t.Errorf("expires = %v (%v), want in a day", out["expires"], err)
	}
	if code, _ := a.call(t, out["key"].(string), "GET", "/api/v1/sites", ""); code != 200 {
		t.Errorf("an unexpired key is refused: %d", code)
	}
	for _, bad := range []string{`-1`, `99999`, `"soon"`} {
		if code, out := a.call(t, a.owner, "POST", "/api/v1/keys", `{"role":"viewer","sites":["*"],"expires_in_days":`+bad+`}`); code != 400 {
			t.Errorf("expires_in_days %s: %d %v", bad, code, out)
		}
	}
	// An expired key: the store is what decides, so make one in the past.
	_, expired, err := a.tenants.CreateKey(context.Background(), tenant.Key{Role: tenant.RoleAdmin, Sites: []string{"*"}, Expires: time.Now().Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := a.call(t, expired, "GET", "/api/v1/sites", ""); code != 401 {
		t.Errorf("an expired key reads: %d", code)
	}
}

// TestSiteAndAccountErasure: deleting a site removes its rows from every
// table and its hits waiting in the stream, leaving other sites alone;
// deleting an account does that for each of its sites and removes its
// keys; each is recorded as a data request.
func TestSiteAndAccountErasure(t *testing.T) {
	t.Parallel()
	a, exec := startAPI(t)
	ctx := context.Background()
	code, out := a.call(t, a.owner, "POST", "/api/v1/accounts", `{"name":"Acme"}`)
	if code != http.StatusCreated {
		t.Fatalf("account: %d %v", code, out)
	}
	acme := out["id"].(string)
	siteIn := func(account, name string) string {
		t.Helper()
		code, out := a.call(t, a.owner, "POST", "/api/v1/sites", `{"account":"`+account+`","name":"`+name+`","domain":"`+name+`.example"}`)
		if code != http.StatusCreated {
			t.Fatalf("site: %d %v", code, out)
		}
		return out["id"].(string)
	}
	one, two, other := siteIn(acme, "one"), siteIn(acme, "two"), siteIn("", "other")
	code, out = a.call(t, a.owner, "POST", "/api/v1/keys", `{"account":"`+acme+`","role":"admin","sites":["*"]}`)
	if code != http.StatusCreated {
		t.Fatalf("key: %d %v", code, out)
	}
	acmeKey := out["key"].(string)
	for _, site := range []string{one, two, other} {
		exec(`INSERT INTO hits (site_id, ts, received_at, hit_id, type, url, path, visitor_id, visit_id, visit_start, new_visit,
			consent, company_id, company_name, asn, as_org, network_type)
			VALUES (?, now64(3), now64(3), 'h1', 'pageview', 'https://x/', '/', 1, 1, now64(3), 1, 'granted', 'c1', 'Org', 1, 'Org', 'business')`, site)
		exec(`INSERT INTO dropped_hits (site_id, ts, reason, hit_key) VALUES (?, now64(3), 'residential', 1)`, site)
		if _, err := a.bus.JS.Publish(ctx, bus.HitSubject(site), []byte(`{"queued":true}`)); err != nil {
			t.Fatal(err)
		}
	}
	// Every table that has a site_id column, whatever its engine, the
	// Records apart: a table the erasure misses fails the test (and a new
	// one with no rows here fails the check before the erasure, so that
	// the test gets rows for it).
	var tables []string
	rows, err := a.conn.Query(ctx, "SELECT DISTINCT table FROM system.columns WHERE database = currentDatabase() AND name = 'site_id'")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var table string
		rows.Scan(&table)
		if !slices.Contains(store.Records, table) {
			tables = append(tables, table)
		}
	}
	rows.Close()
	if len(tables) < 6 {
		t.Fatalf("only %d tables with a site_id: %v", len(tables), tables)
	}
	rowsOf := func(site string) map[string]uint64 {
		t.Helper()
		out := map[string]uint64{}
		for _, table := range tables {
			var n uint64
			qctx := clickhouse.Context(ctx, clickhouse.WithParameters(clickhouse.Parameters{"table": table, "site": site}))
			if err := a.conn.QueryRow(qctx, "SELECT count() FROM {table:Identifier} WHERE site_id = {site:String}").Scan(&n); err != nil {
				t.Fatal(err)
			}
			out[table] = n
		}
		stream, err := a.bus.JS.Stream(ctx, bus.HitsStream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := stream.Info(ctx, jetstream.WithSubjectFilter(bus.HitSubject(site)))
		if err != nil {
			t.Fatal(err)
		}
		out["queued"] = info.State.Subjects[bus.HitSubject(site)]
		return out
	}
	for _, site := range []string{one, two, other} {
		for what, n := range rowsOf(site) {
			if n == 0 {
				t.Fatalf("site %s has no %s rows before the erasure: the test proves nothing", site, what)
			}
		}
	}

	code, out = a.call(t, acmeKey, "DELETE", "/api/v1/sites/"+one, "")
	if code != http.StatusOK || out["deleted_hits"] != float64(1) {
		t.Fatalf("deleting a site: %d %v", code, out)
	}
	for what, n := range rowsOf(one) {
		if n != 0 {
			t.Errorf("deleted site: %d %s rows left", n, what)
		}
	}
	// A processor's batch built just before the deletion lands late; the
	// sweeper erases it, from what the sites bucket keeps (a restarted
	// process knows the deleted sites too).
	exec(`INSERT INTO hits (site_id, ts, received_at, hit_id, type, url, path, visitor_id, visit_id, visit_start, new_visit,
		consent, company_id, company_name, asn, as_org, network_type)
		VALUES (?, now64(3), now64(3), 'late', 'pageview', 'https://x/', '/', 2, 2, now64(3), 1, 'granted', 'c1', 'Org', 1, 'Org', 'business')`, one)
	restarted, err := tenant.Open(ctx, a.bus.JS, testenv.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(restarted.DeletedSites(), one) {
		t.Errorf("a restarted process does not know the deleted site: %v", restarted.DeletedSites())
	}
	if err := a.server.SweepOnce(ctx); err != nil {
		t.Fatal(err)
	}
	for what, n := range rowsOf(one) {
		if n != 0 && what != "queued" {
			t.Errorf("deleted site after the sweep: %d %s rows left", n, what)
		}
	}
	if code, _ := a.call(t, acmeKey, "GET", "/api/v1/sites/"+one+"/companies", ""); code != http.StatusNotFound {
		t.Errorf("feed of a deleted site: %d, want 404", code)
	}
	if code, _ := a.call(t, acmeKey, "DELETE", "/api/v1/accounts/"+acme, ""); code != http.StatusForbidden {
		t.Errorf("an account key deleting its account: %d, want 403 (operators only)", code)
	}
	if code, out := a.call(t, a.owner, "POST", "/api/v1/users", `{"account":"`+acme+`","email":"ann@acme.example","role":"viewer","sites":["*"]}`); code != http.StatusCreated {
		t.Fatalf("adding a user to the account: %d %v", code, out)
	}
	code, out = a.call(t, a.owner, "DELETE", "/api/v1/accounts/"+acme, "")
	if code != http.StatusOK || out["deleted_hits"] != float64(1) {
		t.Fatalf("deleting the account: %d %v", code, out)
	}
	for what, n := range rowsOf(two) {
		if n != 0 {
			t.Errorf("site of the deleted account: %d %s rows left", n, what)
		}
	}
	for what, n := range rowsOf(other) {
		if n == 0 {
			t.Errorf("another account's site lost its %s rows", what)
		}
	}
	if _, ok := a.tenants.UserByEmail("ann@acme.example"); ok {
		t.Error("a user of the deleted account can still sign in")
	}
	if code, _ := a.call(t, acmeKey, "GET", "/api/v1/sites", ""); code != http.StatusUnauthorized {
		t.Errorf("a key of the deleted account: %d, want 401", code)
	}
	var requests uint64
	if err := a.conn.QueryRow(ctx, "SELECT count() FROM data_requests WHERE kind = 'site_erasure' AND completed_at >= requested_at").Scan(&requests); err != nil {
		t.Fatal(err)
	}
	if requests != 2 {
		t.Errorf("%d site erasures recorded, want 2", requests)
	}
}

func TestBadRequests(t *testing.T) {
	t.Parallel()
	a, _ := startAPI(t)
	site := a.createSite(t, "gamma")
	for _, tc := range []struct {
		method, path, body, wantErr string
		want                        int
	}{
		{"GET", "/api/v1/sites/" + site + "/companies?from=yesterday", "", "from:", 400},
		{"GET", "/api/v1/sites/" + site + "/companies?to=2026-13-01", "", "to:", 400},
		{"GET", "/api/v1/sites/" + site + "/companies?from=2026-02-01&to=2026-01-01", "", "from: must not be after to", 400},
		{"GET", "/api/v1/sites/" + site + "/companies?limit=0", "", "limit:", 400},
		{"GET", "/api/v1/sites/" + site + "/companies?from=2026-01-01'--", "", "from:", 400},
		{"POST", "/api/v1/sites", `{"name":"","domain":"x.example"}`, "name:", 400},
		{"POST", "/api/v1/sites", `{"name":"x","domain":"https://x.example/"}`, "domain:", 400},
		{"POST", "/api/v1/sites", `{"name":"x","domain":"x.example","extra":1}`, "body:", 400},
		{"POST", "/api/v1/keys", `{"role":"god","sites":["*"]}`, "role:", 400},
		{"POST", "/api/v1/keys", `{"role":"viewer","sites":[]}`, "sites:", 400},
		{"POST", "/api/v1/keys", `{"role":"viewer","sites":["nosuchsite"]}`, "sites:", 400},
		{"GET", "/api/v1/ip/not-an-ip", "", "ip:", 400},
		{"GET", "/api/v1/nothing", "", "path:", 404},
	} {
		code, out := a.call(t, a.owner, tc.method, tc.path, tc.body)
		if code != tc.want || !strings.HasPrefix(out["error"].(string), tc.wantErr) {
			t.Errorf("%s %s %s: %d %v, want %d with %q", tc.method, tc.path, tc.body, code, out, tc.want, tc.wantErr)
		}
	}
}

func TestIPEndpoint(t *testing.T) {
	t.Parallel()
	a, exec := startAPI(t)
	code, out := a.call(t, a.owner, "GET", "/api/v1/ip/1.0.0.1", "")
	if code != 200 || out["asn"] != float64(13335) || out["as_org"] != "Cloudflare, Inc." || out["evidence"] == nil {
		t.Errorf("/api/v1/ip/1.0.0.1: %d %v", code, out)
	}
	// An address of SAP's network answers with SAP's profile; company.country
	// is its headquarters, the top-level country where the address is.
	sap := testenv.ASN(t).PrefixesOf(212794)[0].Addr().Next()
	code, out = a.call(t, a.owner, "GET", "/api/v1/ip/"+sap.String(), "")
	c, _ := out["company"].(map[string]any)
	if code != 200 || c == nil || c["name"] != "SAP" || c["legal_name"] != "SAP SE" || c["domain"] != "sap.com" ||
		c["industry"] != "Software Development" || c["size"] != "10001+" || c["country"] != "DE" || c["city"] != "Walldorf" ||
		!strings.HasPrefix(fmt.Sprint(c["sources"].(map[string]any)["name"]), "leadpipe curated: ") || out["as_org"] != "SAP SE" {
		t.Errorf("/api/v1/ip/%s: %d %v", sap, code, out)
	}
	// The feed and the company page show the profile of a company the IP
	// data has one for.
	site := a.createSite(t, "profiles")
	id := ipintel.CompanyIDFor("", "SAP SE")
	now := time.Now().UTC()
	exec(`INSERT INTO hits (site_id, ts, received_at, hit_id, type, url, path, visitor_id, consent, company_id, company_name,
		company_domain, asn, as_org, network_type, country, company_country) VALUES (?, ?, ?, 'p1', 'pageview', 'https://x.example/', '/', 1,
		'granted', ?, 'SAP', 'sap.com', 212794, 'SAP SE', 'business', 'US', 'DE')`, site, now, now, id)
	code, out = a.call(t, a.owner, "GET", "/api/v1/sites/"+site+"/companies", "")
	rows, _ := out["companies"].([]any)
	if code != 200 || len(rows) != 1 || rows[0].(map[string]any)["country"] != "DE" ||
		fmt.Sprint(rows[0].(map[string]any)["profile"].(map[string]any)["city"]) != "Walldorf" {
		t.Errorf("feed with a profiled company (headquarters DE, visited from the US): %d %v", code, out)
	}
	code, out = a.call(t, a.owner, "GET", "/api/v1/sites/"+site+"/companies/"+id, "")
	if p, _ := out["company"].(map[string]any)["profile"].(map[string]any); code != 200 || p["legal_name"] != "SAP SE" {
		t.Errorf("company page of a profiled company: %d %v", code, out)
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestCompanyPage(t *testing.T) {
	t.Parallel()
	a, exec := startAPI(t)
	site, other := a.createSite(t, "delta"), a.createSite(t, "epsilon")
	base := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
	insert := func(site string, visitor uint64, offset time.Duration, typ, url string, engagedMS uint32) {
		t.Helper()
		decided := "name-rule"
		if typ == "engagement" {
			decided = "learned"
		}
		exec(`INSERT INTO hits (site_id, ts, received_at, hit_id, type, url, path, title, referrer, visitor_id, consent, engaged_ms,
			company_id, company_name, asn, as_org, network_type, country, decided_by)
			VALUES (?, ?, ?, ?, ?, ?, '/', 'Title', '', ?, 'granted', ?, 'c42', 'Acme AG', 1, 'Acme AG', 'business', 'DE', ?)`,
			site, base.Add(offset), base.Add(offset), testenv.RandomHex(8), typ, url, visitor, engagedMS, decided)
	}
	insert(site, 1, 0, "pageview", "https://delta.example/", 0)
	insert(site, 1, 2*time.Minute, "engagement", "https://delta.example/", 42000)
	insert(site, 1, 50*time.Minute, "pageview", "https://delta.example/pricing", 0)
	insert(other, 9, 0, "pageview", "https://epsilon.example/secret", 0)

	code, out := a.call(t, a.owner, "GET", "/api/v1/sites/"+site+"/companies/c42", "")
	if code != 200 {
		t.Fatalf("company page: %d %v", code, out)
	}
	company := out["company"].(map[string]any)
	visits := out["visits"].([]any)
	if company["name"] != "Acme AG" || company["pageviews"] != float64(2) || len(visits) != 2 {
		t.Fatalf("company page: %v", out)
	}
	if d := fmt.Sprint(out["decided_by"]); d != "map[learned:1 name-rule:2]" {
		t.Errorf("hits by the layer that named the company: %s", d)
	}
	latest := visits[0].(map[string]any)
	earlier := visits[1].(map[string]any)
	if len(latest["pages"].([]any)) != 1 || earlier["engaged_seconds"] != float64(42) {
		t.Errorf("visits newest first, with engaged time: %v", visits)
	}
	if strings.Contains(jsonString(out), "secret") {
		t.Error("the company page of one site shows another site's hits")
	}
	if code, _ := a.call(t, a.owner, "GET", "/api/v1/sites/"+site+"/companies/nosuchcompany", ""); code != 404 {
		t.Errorf("unknown company: %d, want 404", code)
	}
	viewer := a.createKey(t, "viewer", other)
	if code, _ := a.call(t, viewer, "GET", "/api/v1/sites/"+site+"/companies/c42", ""); code != 404 {
		t.Errorf("a key of another site: %d, want 404", code)
	}
}

// TestCompanyPageBreakdowns: the company page's top pages, sources,
// countries and visits per day, from hits stamped with their visits as
// the processor stores them.
func TestCompanyPageBreakdowns(t *testing.T) {
	t.Parallel()
	a, exec := startAPI(t)
	site := a.createSite(t, "eta")
	base := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	insertFor := func(company string, visit uint64, offset time.Duration, typ, path, source, country string, opens uint8, engagedMS uint32) {
		t.Helper()
		exec(`INSERT INTO hits (site_id, ts, received_at, hit_id, type, url, path, title, referrer, source, visitor_id,
			visit_id, visit_start, new_visit, consent, engaged_ms, company_id, company_name, asn, as_org, network_type, country)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, '', ?, ?, ?, ?, ?, 'granted', ?, ?, 'Acme AG', 1, 'Acme AG', 'business', ?)`,
			site, base.Add(offset), base.Add(offset), testenv.RandomHex(8), typ, "https://eta.example"+path, path, "T"+path,
			source, visit, visit, base, opens, engagedMS, company, country)
	}
	insert := func(visit uint64, offset time.Duration, typ, path, source, country string, opens uint8, engagedMS uint32) {
		t.Helper()
		insertFor("c7", visit, offset, typ, path, source, country, opens, engagedMS)
	}
	// c8 is c7's mirror for the country: its lone AT visitor came first.
	insertFor("c8", 11, 0, "pageview", "/", "direct", "AT", 1, 0)
	insertFor("c8", 12, time.Minute, "pageview", "/", "direct", "DE", 1, 0)
	insertFor("c8", 12, 2*time.Minute, "pageview", "/a", "direct", "DE", 0, 0)
	// c9 has no pageview in the range, only an engagement ping: its country
	// is the last seen one.
	insertFor("c9", 13, 3*time.Minute, "engagement", "/", "direct", "FR", 0, 1000)
	insert(1, 0, "pageview", "/pricing", "search", "DE", 1, 0)
	insert(1, time.Minute, "engagement", "/pricing", "direct", "DE", 0, 30000)
	insert(1, 2*time.Minute, "pageview", "/", "direct", "DE", 0, 0)
	insert(2, 5*time.Minute, "pageview", "/pricing", "social", "AT", 1, 0)

	code, out := a.call(t, a.owner, "GET", "/api/v1/sites/"+site+"/companies/c7", "")
	if code != 200 {
		t.Fatalf("company page: %d %v", code, out)
	}
	if got := jsonString(out["top_pages"]); got != `[{"engaged_seconds":30,"pageviews":2,"path":"/pricing","title":"T/pricing"},{"engaged_seconds":0,"pageviews":1,"path":"/","title":"T/"}]` {
		t.Errorf("top pages: %s", got)
	}
	if got := jsonString(out["sources"]); got != `{"search":1,"social":1}` {
		t.Errorf("sources: %s", got)
	}
	if got := jsonString(out["countries"]); got != `{"AT":1,"DE":2}` {
		t.Errorf("countries: %s", got)
	}
	if got, want := jsonString(out["daily"]), `[{"day":"`+base.Format(time.DateOnly)+`","pageviews":3,"visits":2}]`; got != want {
		t.Errorf("daily: %s, want %s", got, want)
	}
	visits := out["visits"].([]any)
	if len(visits) != 2 || visits[0].(map[string]any)["source"] != "social" || visits[1].(map[string]any)["source"] != "search" ||
		len(visits[1].(map[string]any)["pages"].([]any)) != 2 {
		t.Errorf("visits: %s", jsonString(visits))
	}
	if company := out["company"].(map[string]any); company["visits"] != float64(2) || company["visitors"] != float64(2) {
		t.Errorf("company: %v", company)
	}
	// The company's country is where most of its pageviews came from, not
	// the first or the last visitor's (AT), on the page, in the feed (last
	// seen first: c7, c9, c8) and in its filter.
	if company := out["company"].(map[string]any); company["country"] != "DE" {
		t.Errorf("company country %v, want DE", company["country"])
	}
	for filter, want := range map[string]string{"": `["DE","FR","DE"]`, "?country=DE": `["DE","DE"]`, "?country=AT": `[]`, "?country=FR": `["FR"]`} {
		code, out := a.call(t, a.owner, "GET", "/api/v1/sites/"+site+"/companies"+filter, "")
		if code != 200 {
			t.Fatalf("feed%s: %d %v", filter, code, out)
		}
		countries := []string{}
		for _, c := range out["companies"].([]any) {
			countries = append(countries, c.(map[string]any)["country"].(string))
		}
		if got := jsonString(countries); got != want {
			t.Errorf("feed%s countries %s, want %s", filter, got, want)
		}
	}
}

func TestExports(t *testing.T) {
	t.Parallel()
	a, exec := startAPI(t)
	site := a.createSite(t, "zeta")
	day := time.Now().UTC().Truncate(24 * time.Hour)
	for i, c := range []string{"Acme AG", "Beta GmbH", "Acme AG"} {
		exec(`INSERT INTO hits (site_id, ts, received_at, hit_id, type, url, path, visitor_id, consent, engaged_ms,
			company_id, company_name, asn, as_org, network_type, country)
			VALUES (?, ?, ?, ?, 'pageview', 'https://zeta.example/', '/', ?, 'granted', 1500, ?, ?, 1, 'x', 'business', 'DE')`,
			site, day.Add(time.Duration(i)*time.Minute), day, testenv.RandomHex(8), i, "id-"+c, c)
	}
	get := func(key, format string) (int, string, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", a.srv.URL+"/api/v1/sites/"+site+"/export?format="+format, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), body
	}
	analyst := a.createKey(t, "analyst", site)

	code, ct, body := get(analyst, "csv")
	lines := strings.Split(strings.TrimSpace(string(body)), "\n")
	if code != 200 || ct != "text/csv; charset=utf-8" || len(lines) != 3 || !strings.HasPrefix(lines[0], "day,company_id,company_name") ||
		!strings.Contains(lines[1], "Acme AG") || !strings.Contains(lines[1], ",2,") {
		t.Errorf("csv: %d %s\n%s", code, ct, body)
	}
	code, _, body = get(analyst, "ndjson")
	if n := strings.Count(string(body), "\n"); code != 200 || n != 2 || !strings.Contains(string(body), `"company_name":"Beta GmbH"`) {
		t.Errorf("ndjson: %d\n%s", code, body)
	}
	code, ct, body = get(analyst, "arrow")
	if code != 200 || ct != "application/vnd.apache.arrow.stream" {
		t.Fatalf("arrow: %d %s", code, ct)
	}
	rd, err := ipc.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Release()
	rows := 0
	var pageviews uint64
	for rd.Next() {
		rec := rd.RecordBatch()
		rows += int(rec.NumRows())
		col := rec.Column(rec.Schema().FieldIndices("pageviews")[0]).(*array.Uint64)
		for i := 0; i < col.Len(); i++ {
			pageviews += col.Value(i)
		}
	}
	if rd.Err() != nil || rows != 2 || pageviews != 3 || !rd.Schema().Equal(api.ExportSchema) {
		t.Errorf("arrow stream read back: %d rows, %d pageviews, err %v", rows, pageviews, rd.Err())
	}
	viewer := a.createKey(t, "viewer", site)
	if code, _, _ := get(viewer, "csv"); code != http.StatusForbidden {
		t.Errorf("a viewer exporting: %d, want 403 (exports need analyst)", code)
	}
	if code, _, body := get(analyst, "xml"); code != http.StatusBadRequest || !strings.Contains(string(body), "format:") {
		t.Errorf("format=xml: %d %s", code, body)
	}
}

// TestVisitorAccessAndErasure: an admin exports and erases a visitor's
// data by client id; each request is recorded with its completion time.
func TestVisitorAccessAndErasure(t *testing.T) {
	t.Parallel()
	a, exec := startAPI(t)
	site := a.createSite(t, "eta")
	keys := a.visitors
	ctx := context.Background()
	mine, err := keys.ClientID(ctx, site, "LF1.1.abc.1")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := keys.ClientID(ctx, site, "LF1.1.other.2")
	for i, vid := range []uint64{mine, mine, other} {
		exec(`INSERT INTO hits (site_id, ts, received_at, hit_id, type, url, path, visitor_id, visit_id, visit_start, new_visit,
			consent, company_id, company_name, asn, as_org, network_type)
			VALUES (?, now64(3), now64(3), ?, 'pageview', ?, '/', ?, ?, now64(3), 1, 'granted', 'c1', 'Acme AG', 1, 'x', 'business')`,
			site, fmt.Sprint("h", i), fmt.Sprintf("https://eta.example/%d", i), vid, i+1)
	}
	visitsOf := func(vid uint64) uint64 {
		t.Helper()
		var n uint64
		if err := a.conn.QueryRow(ctx, "SELECT count() FROM visits WHERE site_id = ? AND visitor_id = ?", site, vid).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if visitsOf(mine) != 2 || visitsOf(other) != 1 {
		t.Fatalf("visits before erasure: %d and %d", visitsOf(mine), visitsOf(other))
	}
	// The visitor identified once, with consent; the other visitor too.
	ids, _ := a.bus.JS.KeyValue(ctx, bus.IdentitiesBucket)
	for _, vid := range []uint64{mine, other} {
		raw, _ := json.Marshal(ipintel.Identification{Domain: "acme.example", At: time.Now().UTC()})
		if _, err := ids.Put(ctx, ipintel.IdentificationKey(netip.MustParsePrefix("198.51.100.0/24"), site, strconv.FormatUint(vid, 16)), raw); err != nil {
			t.Fatal(err)
		}
	}
	identified := func(cid string) []any {
		t.Helper()
		_, out := a.call(t, a.owner, "GET", "/api/v1/sites/"+site+"/visitors/"+cid+"/export", "")
		l, _ := out["identifications"].([]any)
		return l
	}
	if l := identified("LF1.1.abc.1"); len(l) != 1 || l[0].(map[string]any)["domain"] != "acme.example" || l[0].(map[string]any)["network"] != "198.51.100.0/24" {
		t.Errorf("the export's identifications: %v", l)
	}
	analyst := a.createKey(t, "analyst", site)
	if code, _ := a.call(t, analyst, "GET", "/api/v1/sites/"+site+"/visitors/LF1.1.abc.1/export", ""); code != http.StatusForbidden {
		t.Errorf("an analyst exporting a visitor: %d, want 403", code)
	}
	code, out := a.call(t, a.owner, "GET", "/api/v1/sites/"+site+"/visitors/LF1.1.abc.1/export", "")
	if hits, _ := out["hits"].([]any); code != 200 || len(hits) != 2 {
		t.Fatalf("visitor export: %d %v", code, out)
	}
	code, out = a.call(t, a.owner, "DELETE", "/api/v1/sites/"+site+"/visitors/LF1.1.abc.1", "")
	if code != 200 || out["deleted"] != float64(2) || out["identifications"] != float64(1) {
		t.Fatalf("visitor erasure: %d %v", code, out)
	}
	if mineLeft, otherLeft := identified("LF1.1.abc.1"), identified("LF1.1.other.2"); len(mineLeft) != 0 || len(otherLeft) != 1 {
		t.Errorf("identifications after the erasure: %v of the erased visitor, %v of the other", mineLeft, otherLeft)
	}
	code, out = a.call(t, a.owner, "GET", "/api/v1/sites/"+site+"/visitors/LF1.1.abc.1/export", "")
	if hits, _ := out["hits"].([]any); code != 200 || len(hits) != 0 {
		t.Errorf("after erasure the export still has %v", out)
	}
	if visitsOf(mine) != 0 || visitsOf(other) != 1 {
		t.Errorf("visits after erasure: %d of the erased visitor, %d of the other", visitsOf(mine), visitsOf(other))
	}
	// Physically too: with the lightweight-delete mask ignored, the rows
	// are gone once the erasure's mutations finished.
	testenv.Eventually(t, 30*time.Second, func() error {
		var left uint64
		if err := a.conn.QueryRow(ctx, `SELECT (SELECT count() FROM hits WHERE visitor_id = ? SETTINGS apply_deleted_mask = 0)
			+ (SELECT count() FROM visits WHERE visitor_id = ? SETTINGS apply_deleted_mask = 0)`, mine, mine).Scan(&left); err != nil {
			return err
		}
		if left != 0 {
			return fmt.Errorf("%d rows of the erased visitor still on disk", left)
		}
		return nil
	})
	_, out = a.call(t, a.owner, "GET", "/api/v1/sites/"+site+"/visitors/LF1.1.other.2/export", "")
	if hits, _ := out["hits"].([]any); len(hits) != 1 {
		t.Errorf("erasing one visitor touched another: %v", out)
	}
	var requests uint64
	if err := a.conn.QueryRow(ctx, "SELECT count() FROM data_requests WHERE site_id = ? AND completed_at >= requested_at", site).Scan(&requests); err != nil {
		t.Fatal(err)
	}
	if requests != 7 {
		t.Errorf("%d data requests recorded, want 7 (6 exports, 1 erasure)", requests)
	}
}

// TestFeedFiltersSortAndPages: every feed filter on the real engine, the
// sort orders, cursor pagination, and bad or hostile parameters.
func TestFeedFiltersSortAndPages(t *testing.T) {
	t.Parallel()
	a, exec := startAPI(t)
	site := a.createSite(t, "theta")
	now := time.Now().UTC()
	type co struct {
		id, name, domain, country, network, industry string
		visitors, pages                              int
		path, source                                 string
		engagedMS                                    uint32
		age                                          time.Duration
	}
	companies := []co{
		{"c-acme", "Acme AG", "acme.example", "DE", "business", "Manufacturing", 3, 2, "/pricing", "search", 600000, time.Hour},
		{"c-beta", "Beta University", "beta.example", "FR", "education", "Education", 1, 5, "/docs/api", "direct", 60000, 3 * time.Hour},
		{"c-gamma", "Gamma Ltd", "gamma.example", "GB", "business", "Software", 2, 1, "/careers", "campaign", 0, 2 * time.Hour},
	}
	opens := func(first bool) uint8 {
		if first {
			return 1
		}
		return 0
	}
	n := 0
	for _, c := range companies {
		for v := range c.visitors {
			// Each visitor makes one visit of c.pages pages; its first hit
			// opens it, as the processor stamps them.
			visitor := uint64(v+1)*1000 + uint64(len(c.id))
			for p := range c.pages {
				n++
				exec(`INSERT INTO hits (site_id, ts, received_at, hit_id, type, url, path, source, visitor_id, visit_id, visit_start, new_visit,
					consent, engaged_ms, company_id, company_name, company_domain, company_industry, asn, as_org, network_type, country)
					VALUES (?, ?, ?, ?, 'pageview', ?, ?, ?, ?, ?, ?, ?, 'granted', ?, ?, ?, ?, ?, 1, 'x', ?, ?)`,
					site, now.Add(-c.age), now, fmt.Sprint("h", n), "https://theta.example"+c.path, c.path, c.source,
					visitor, visitor, now.Add(-c.age), opens(p == 0),
					c.engagedMS, c.id, c.name, c.domain, c.industry, c.network, c.country)
			}
		}
	}
	feed := func(query string) ([]string, map[string]any) {
		t.Helper()
		code, out := a.call(t, a.owner, "GET", "/api/v1/sites/"+site+"/companies?"+query, "")
		if code != 200 {
			t.Fatalf("feed ?%s: %d %v", query, code, out)
		}
		var ids []string
		for _, c := range out["companies"].([]any) {
			ids = append(ids, c.(map[string]any)["id"].(string))
		}
		return ids, out
	}
	check := func(query string, want ...string) {
		t.Helper()
		got, _ := feed(query)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("feed ?%s = %v, want %v", query, got, want)
		}
	}
	check("", "c-acme", "c-gamma", "c-beta") // last seen first
	check("sort=visits", "c-acme", "c-gamma", "c-beta")
	check("sort=pageviews", "c-acme", "c-beta", "c-gamma")
	check("sort=engaged", "c-acme", "c-beta", "c-gamma")
	check("sort=score", "c-acme", "c-beta", "c-gamma")
	check("country=fr", "c-beta")
	check("network_type=business", "c-acme", "c-gamma")
	check("min_visits=2", "c-acme", "c-gamma")
	check("q=UNIVERSITY", "c-beta")
	check("q=gamma.ex", "c-gamma")
	check("page=docs", "c-beta")
	check("page=/pricing&page_match=equals", "c-acme")
	check("page=/pric&page_match=equals")
	check("industry=Software", "c-gamma")
	check("country=DE&min_visits=3&q=acme", "c-acme")
	check("source=search", "c-acme")
	check("source=campaign&sort=visits", "c-gamma")
	check("source=referral")
	// Pages of one, following the cursor.
	var all []string
	query := "limit=1&sort=pageviews"
	for range 5 {
		ids, out := feed(query)
		all = append(all, ids...)
		next, ok := out["next_cursor"].(string)
		if !ok {
			break
		}
		query = "limit=1&sort=pageviews&cursor=" + url.QueryEscape(next)
	}
	if strings.Join(all, ",") != "c-acme,c-beta,c-gamma" {
		t.Errorf("paging by one: %v", all)
	}
	_, out := feed("")
	if score := out["companies"].([]any)[0].(map[string]any)["lead_score"].(float64); score <= 0 || score > 100 {
		t.Errorf("lead score %v outside (0, 100]", score)
	}
	// The site's high-intent pages are a site setting; the company page
	// names them when it explains a score (the processor stamps the hits
	// it stores from then on: TestIntentAndHeadquartersStamped).
	score := func(id string) map[string]any {
		t.Helper()
		code, out := a.call(t, a.owner, "GET", "/api/v1/sites/"+site+"/companies/"+id, "")
		if code != 200 {
			t.Fatalf("company %s: %d %v", id, code, out)
		}
		return out["score"].(map[string]any)
	}
	if why := score("c-beta"); why["pageviews"].(float64) != 5 || fmt.Sprint(why["intent_pages"]) != "[pricing plans contact demo quote trial]" {
		t.Errorf("Beta's score explained: %v", why)
	}
	if code, out := a.call(t, a.owner, "PATCH", "/api/v1/sites/"+site, `{"intent_pages":[" /Docs "]}`); code != 200 || fmt.Sprint(out["intent_pages"]) != "[/Docs]" {
		t.Fatalf("PATCH intent_pages: %d %v", code, out)
	}
	if why := score("c-beta"); fmt.Sprint(why["intent_pages"]) != "[/Docs]" {
		t.Errorf("Beta's score explained after naming /docs: %v", why)
	}
	for _, bad := range []string{`{"intent_pages":[""]}`, `{"intent_pages":["a\u0000b"]}`, `{"intent_pages":"pricing"}`} {
		if code, out := a.call(t, a.owner, "PATCH", "/api/v1/sites/"+site, bad); code != 400 {
			t.Errorf("PATCH %s: %d %v, want 400", bad, code, out)
		}
	}
	if code, out := a.call(t, a.owner, "PATCH", "/api/v1/sites/"+site, `{"intent_pages":[]}`); code != 200 || fmt.Sprint(out["intent_pages"]) != "[pricing plans contact demo quote trial]" {
		t.Errorf("PATCH intent_pages [] (the defaults again): %d %v", code, out)
	}
	for _, bad := range []string{"sort=random", "country=Germany", "network_type=cable", "min_visits=-1", "page=x&page_match=regex", "cursor=!!", "source=google", "page_match=equals", "candidates=maybe"} {
		if code, out := a.call(t, a.owner, "GET", "/api/v1/sites/"+site+"/companies?"+bad, ""); code != 400 {
			t.Errorf("feed ?%s: %d %v, want 400", bad, code, out)
		}
	}
	// Hostile values are data, never SQL: they match nothing.
	for _, hostile := range []string{"' OR 1=1 --", "x') OR ('1'='1", "\\'; DROP TABLE hits; --", "{site:String}"} {
		for _, param := range []string{"q", "page", "industry"} {
			if ids, _ := feed(param + "=" + url.QueryEscape(hostile)); len(ids) != 0 {
				t.Errorf("feed ?%s=%q returned %v", param, hostile, ids)
			}
		}
	}
	if code, _ := a.call(t, a.owner, "GET", "/api/v1/sites/"+site+"/companies", ""); code != 200 {
		t.Error("the hits table did not survive the hostile parameters")
	}
}

// TestAuditLog: reads of customer data, admin actions and refused requests
// are written to the audit log with who, what, where and how many rows;
// an admin of some sites sees only their entries.
func TestAuditLog(t *testing.T) {
	t.Parallel()
	a, _ := startAPI(t)
	site, other := a.createSite(t, "iota"), a.createSite(t, "kappa")
	viewer := a.createKey(t, "viewer", site)
	a.call(t, viewer, "GET", "/api/v1/sites/"+site+"/companies", "")
	a.call(t, viewer, "GET", "/api/v1/sites/"+other+"/companies", "") // refused: 404
	a.call(t, "lp_nobody_x", "GET", "/api/v1/sites", "")              // refused: 401
	scoped := a.createKey(t, "admin", site)
	type entry struct {
		Key, Route, Site string
		Status           int
	}
	var got []entry
	testenv.Eventually(t, 10*time.Second, func() error {
		code, out := a.call(t, a.owner, "GET", "/api/v1/audit", "")
		if code != 200 {
			return fmt.Errorf("audit: %d %v", code, out)
		}
		got = nil
		for _, e := range out["entries"].([]any) {
			m := e.(map[string]any)
			got = append(got, entry{m["key"].(string), m["route"].(string), m["site"].(string), int(m["status"].(float64))})
		}
		if len(got) < 6 {
			return fmt.Errorf("%d audit entries so far", len(got))
		}
		return nil
	})
	want := []entry{
		{"", "GET /api/v1/sites", "", 401},
		{"", "GET /api/v1/sites/{site}/companies", other, 404},
		{"", "GET /api/v1/sites/{site}/companies", site, 200},
		{"", "POST /api/v1/sites", "", 201},
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			if g.Route == w.Route && g.Site == w.Site && g.Status == w.Status {
				found = true
			}
		}
		if !found {
			t.Errorf("no audit entry %+v in %+v", w, got)
		}
	}
	// The scoped admin sees its site's entries and not the other site's.
	code, out := a.call(t, scoped, "GET", "/api/v1/audit", "")
	if code != 200 {
		t.Fatalf("scoped audit: %d %v", code, out)
	}
	for _, e := range out["entries"].([]any) {
		if e.(map[string]any)["site"] == other {
			t.Errorf("an admin of %s sees the audit of %s: %v", site, other, e)
		}
	}
	if code, _ := a.call(t, viewer, "GET", "/api/v1/audit", ""); code != http.StatusForbidden {
		t.Errorf("a viewer reading the audit log: %d, want 403", code)
	}
}

func TestSavedFeeds(t *testing.T) {
	t.Parallel()
	a, exec := startAPI(t)
	site, other := a.createSite(t, "lambda"), a.createSite(t, "mu")
	for i, c := range []string{"DE", "FR"} {
		exec(`INSERT INTO hits (site_id, ts, received_at, hit_id, type, url, path, visitor_id, consent, company_id, company_name, asn, as_org, network_type, country)
			VALUES (?, now64(3), now64(3), ?, 'pageview', 'https://l.example/', '/', 1, 'granted', ?, 'Co', 1, 'x', 'business', ?)`, site, fmt.Sprint("h", i), "c-"+c, c)
	}
	analyst, viewer := a.createKey(t, "analyst", site), a.createKey(t, "viewer", site)
	code, out := a.call(t, analyst, "POST", "/api/v1/sites/"+site+"/feeds", `{"name":"German visitors","filters":"country=DE&sort=visits"}`)
	if code != 201 {
		t.Fatalf("save feed: %d %v", code, out)
	}
	id := out["id"].(string)
	if code, _ := a.call(t, viewer, "POST", "/api/v1/sites/"+site+"/feeds", `{"name":"x","filters":""}`); code != 403 {
		t.Errorf("a viewer saving a feed: %d, want 403", code)
	}
	for _, bad := range []string{`{"name":"x","filters":"country=Germany"}`, `{"name":"x","filters":"limit=5"}`, `{"name":"","filters":""}`} {
		if code, out := a.call(t, analyst, "POST", "/api/v1/sites/"+site+"/feeds", bad); code != 400 {
			t.Errorf("save %s: %d %v, want 400", bad, code, out)
		}
	}
	code, out = a.call(t, viewer, "GET", "/api/v1/sites/"+site+"/feeds", "")
	if feeds := out["feeds"].([]any); code != 200 || len(feeds) != 1 || feeds[0].(map[string]any)["name"] != "German visitors" {
		t.Errorf("list feeds (shared with the site's viewers): %d %v", code, out)
	}
	code, out = a.call(t, viewer, "GET", "/api/v1/sites/"+site+"/companies?feed="+id, "")
	if cos := out["companies"].([]any); code != 200 || len(cos) != 1 || cos[0].(map[string]any)["id"] != "c-DE" {
		t.Errorf("feed applied: %d %v", code, out)
	}
	if code, _ := a.call(t, viewer, "GET", "/api/v1/sites/"+site+"/companies?feed=nosuch", ""); code != 404 {
		t.Errorf("unknown feed: %d, want 404", code)
	}
	otherKey := a.createKey(t, "admin", other)
	if code, _ := a.call(t, otherKey, "GET", "/api/v1/sites/"+other+"/companies?feed="+id, ""); code != 404 {
		t.Errorf("another site's feed id: %d, want 404", code)
	}
	if code, _ := a.call(t, viewer, "DELETE", "/api/v1/sites/"+site+"/feeds/"+id, ""); code != 403 {
		t.Errorf("a viewer deleting: %d, want 403", code)
	}
	req, _ := http.NewRequest("DELETE", a.srv.URL+"/api/v1/sites/"+site+"/feeds/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+analyst)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Errorf("owner deleting its feed: %v %v", resp.StatusCode, err)
	}
}

// TestSiteRetentionSetting: an admin sets a site's retention of raw hits
// and visits within 1–800 days; sites show it (180 by default).
func TestSiteRetentionSetting(t *testing.T) {
	t.Parallel()
	a, _ := startAPI(t)
	site := a.createSite(t, "kappa")
	code, out := a.call(t, a.owner, "GET", "/api/v1/sites", "")
	if sites := out["sites"].([]any); code != 200 || sites[0].(map[string]any)["retention_days"] != float64(180) {
		t.Fatalf("default retention: %d %v", code, out)
	}
	code, out = a.call(t, a.owner, "PATCH", "/api/v1/sites/"+site, `{"retention_days":30}`)
	if code != 200 || out["retention_days"] != float64(30) {
		t.Fatalf("setting retention: %d %v", code, out)
	}
	for _, bad := range []string{`{"retention_days":0}`, `{"retention_days":801}`} {
		if code, out := a.call(t, a.owner, "PATCH", "/api/v1/sites/"+site, bad); code != 400 || !strings.HasPrefix(out["error"].(string), "retention_days:") {
			t.Errorf("PATCH %s: %d %v, want 400 naming retention_days", bad, code, out)
		}
	}
	viewer := a.createKey(t, "viewer", site)
	if code, _ := a.call(t, viewer, "PATCH", "/api/v1/sites/"+site, `{"retention_days":5}`); code != http.StatusForbidden {
		t.Errorf("a viewer changing retention: %d, want 403", code)
	}
}

// TestKeyGuessingIsLimited: an address that keeps presenting wrong keys
// is refused (429 with Retry-After) after its allowance, even with a valid
// key then (TestAuthLimiterPerAddress checks other addresses are not).
func TestKeyGuessingIsLimited(t *testing.T) {
	t.Parallel()
	a, _ := startAPI(t)
	limited := 0
	for i := range 40 {
		code, _ := a.call(t, fmt.Sprintf("lp_guess%d_wrongsecret", i), "GET", "/api/v1/sites", "")
		switch code {
		case http.StatusUnauthorized:
		case http.StatusTooManyRequests:
			limited++
		default:
			t.Fatalf("guess %d: %d", i, code)
		}
	}
	if limited < 15 {
		t.Fatalf("%d of 40 wrong keys were refused as too many, want the ones past the allowance of 20", limited)
	}
	req, _ := http.NewRequest("GET", a.srv.URL+"/api/v1/sites", nil)
	req.Header.Set("Authorization", "Bearer "+a.owner)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("a valid key from the guessing address: %d (Retry-After %q), want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

// TestRolesOnEveryEndpoint probes every authenticated endpoint with no
// key, a revoked key, and keys of each role: no key and a revoked one get
// 401, a role below the endpoint's 403, and a role at or above it is let
// through (whatever the handler then answers, never 401 or 403).
func TestRolesOnEveryEndpoint(t *testing.T) {
	t.Parallel()
	a, _ := startAPI(t)
	rank := map[tenant.Role]int{tenant.RoleViewer: 1, tenant.RoleAnalyst: 2, tenant.RoleAdmin: 3}
	keys := map[tenant.Role]string{}
	for _, role := range []tenant.Role{tenant.RoleViewer, tenant.RoleAnalyst, tenant.RoleAdmin} {
		keys[role] = a.createKey(t, string(role), "*")
	}
	revoked := a.createKey(t, "admin", "*")
	if code, _ := a.call(t, a.owner, "DELETE", "/api/v1/keys/"+strings.Split(strings.TrimPrefix(revoked, tenant.KeyPrefix), "_")[0], ""); code != 204 {
		t.Fatalf("revoke: %d", code)
	}
	routes := a.server.Routes()
	if len(routes) < 25 {
		t.Fatalf("only %d routes listed", len(routes))
	}
	for i, r := range routes {
		method, pattern, _ := strings.Cut(r.Pattern, " ")
		// Each probe gets a site of its own: an admin's DELETE succeeds.
		path := strings.NewReplacer("{site}", a.createSite(t, "probe"), "{id}", "nosuchid", "{account}", "nosuchaccount",
			"{cid}", "LF1.1.x.1", "{ip}", "192.0.2.1").Replace(pattern)
		body := ""
		if method == "POST" || method == "PATCH" {
			body = "{}"
		}
		// Refused keys count against their address's allowance: each
		// route's come from an address of their own.
		from := fmt.Sprintf("127.0.1.%d", i+1)
		for _, key := range []string{"", revoked} {
			if code := callFrom(t, from, a.srv.URL, key, method, path, body); code != http.StatusUnauthorized {
				t.Errorf("%s %s without a valid key: %d, want 401", method, path, code)
			}
		}
		for role, key := range keys {
			code := callFrom(t, "127.0.0.1", a.srv.URL, key, method, path, body)
			switch {
			case rank[role] < rank[r.Min] && code != http.StatusForbidden:
				t.Errorf("%s %s as %s (needs %s): %d, want 403", method, path, role, r.Min, code)
			case rank[role] >= rank[r.Min] && (code == http.StatusForbidden || code == http.StatusUnauthorized):
				t.Errorf("%s %s as %s (needs %s): %d, want it let through", method, path, role, r.Min, code)
			}
		}
	}
}

// callFrom makes a request from a local address of loopback's /8.
func callFrom(t *testing.T, localIP, base, key, method, path, body string) int {
	t.Helper()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(localIP)}}
	client := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestSitesTableNamesSites: analysts' queries show site names from the
// sites table, which follows the sites the API makes and renames.
func TestSitesTableNamesSites(t *testing.T) {
	t.Parallel()
	a, _ := startAPI(t)
	code, out := a.call(t, a.owner, "POST", "/api/v1/sites", `{"name":"Shop","domain":"shop.example"}`)
	if code != http.StatusCreated {
		t.Fatalf("site: %d %v", code, out)
	}
	site := out["id"].(string)
	nameOf := func() (name, domain string) {
		t.Helper()
		err := a.conn.QueryRow(context.Background(), "SELECT name, domain FROM sites FINAL WHERE site_id = ?", site).Scan(&name, &domain)
		if err != nil {
			t.Fatal(err)
		}
		return name, domain
	}
	if name, domain := nameOf(); name != "Shop" || domain != "shop.example" {
		t.Errorf("sites has %q, %q; want Shop, shop.example", name, domain)
	}
	if code, out := a.call(t, a.owner, "PATCH", "/api/v1/sites/"+site, `{"name":"Web shop"}`); code != http.StatusOK {
		t.Fatalf("rename: %d %v", code, out)
	}
	if name, _ := nameOf(); name != "Web shop" {
		t.Errorf("sites has %q after the rename, want Web shop", name)
	}
}

// TestTrackerStatus: the tracker status lists a site's latest hits of the
// last day, kept ones with what leadpipe made of them and dropped ones
// with the reason, newest first, never another site's; and it says what
// the requester's own line is (loopback here: unknown, not kept).
func TestTrackerStatus(t *testing.T) {
	t.Parallel()
	a, exec := startAPI(t)
	site, other := a.createSite(t, "status"), a.createSite(t, "status-other")
	now := time.Now().UTC()
	kept := func(site, id, path string, age time.Duration) {
		exec(`INSERT INTO hits (site_id, ts, received_at, hit_id, type, url, path, visitor_id, consent, company_id, company_name,
			asn, as_org, network_type, country) VALUES (?, ?, ?, ?, 'pageview', 'https://x.example/', ?, 1, 'granted', 'c1', 'SAP', 212794,
			'SAP SE', 'business', 'DE')`, site, now.Add(-age), now.Add(-age), id, path)
	}
	kept(site, "k1", "/pricing", 3*time.Minute)
	kept(site, "k2", "/", time.Minute)
	kept(other, "k3", "/secret", 0)
	kept(site, "old", "/old", 25*time.Hour)
	exec(`INSERT INTO dropped_hits (site_id, ts, reason, hit_key) VALUES (?, ?, 'residential', 1), (?, ?, 'bot', 2)`,
		site, now.Add(-2*time.Minute), site, now.Add(-4*time.Minute))

	code, out := a.call(t, a.owner, "GET", "/api/v1/sites/"+site+"/status", "")
	if code != 200 {
		t.Fatalf("status: %d %v", code, out)
	}
	var got []string
	for _, h := range out["recent"].([]any) {
		m := h.(map[string]any)
		if m["kept"] == true {
			got = append(got, fmt.Sprintf("kept %s %s %s", m["path"], m["company"], m["network_type"]))
		} else {
			got = append(got, "dropped "+fmt.Sprint(m["reason"]))
		}
	}
	want := "kept / SAP business,dropped residential,kept /pricing SAP business,dropped bot"
	if strings.Join(got, ",") != want {
		t.Errorf("recent hits %q, want %q", strings.Join(got, ","), want)
	}
	line, _ := out["this_line"].(map[string]any)
	if line == nil || line["network_type"] != "unknown" || line["kept"] != false {
		t.Errorf("this line (loopback): %v", out["this_line"])
	}
}

// TestLogosOnlyWhenAllowed: the dashboard lets browsers load images from
// other sites (the companies' favicons) only with --api.logos.
func TestLogosOnlyWhenAllowed(t *testing.T) {
	t.Parallel()
	for _, allowed := range []bool{false, true} {
		a, _ := startAPIWith(t, func(cfg *api.Config, _ string) { cfg.Logos = allowed })
		resp, err := http.Get(a.srv.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if csp := resp.Header.Get("Content-Security-Policy"); strings.Contains(csp, "https:") != allowed {
			t.Errorf("--api.logos=%v: Content-Security-Policy %q", allowed, csp)
		}
	}
}
