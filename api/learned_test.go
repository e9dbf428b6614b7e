package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/leadpipe/leadpipe/internal/bus"
	"github.com/leadpipe/leadpipe/ipintel"
)

// TestLearnedNetworks: the operator lists the networks learned from
// identifications, sees one explained on /api/v1/ip, and removes it; an
// account's own admin sees and removes none of them.
func TestLearnedNetworks(t *testing.T) {
	t.Parallel()
	a, _ := startAPI(t)
	ctx := context.Background()
	ids, _ := a.bus.JS.KeyValue(ctx, bus.IdentitiesBucket)
	for i := range 3 {
		raw, _ := json.Marshal(ipintel.Identification{Domain: "paper-mill.example", At: time.Now()})
		if _, err := ids.Put(ctx, ipintel.IdentificationKey(netip.MustParsePrefix("198.51.100.0/24"), "s1", fmt.Sprint(i)), raw); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); len(a.learner.Networks()) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("nothing learned")
		}
	}
	code, out := a.call(t, a.owner, "GET", "/api/v1/learned", "")
	if nets, _ := out["networks"].([]any); code != http.StatusOK || len(nets) != 1 || nets[0].(map[string]any)["domain"] != "paper-mill.example" {
		t.Fatalf("GET /api/v1/learned: %d %v", code, out)
	}
	code, out = a.call(t, a.owner, "GET", "/api/v1/ip/198.51.100.7", "")
	if code != http.StatusOK || out["decided_by"] != ipintel.SourceLearned || !strings.Contains(fmt.Sprint(out["evidence"]), "3 of 3 visitors") {
		t.Errorf("GET /api/v1/ip/198.51.100.7: %d %v", code, out)
	}

	code, out = a.call(t, a.owner, "POST", "/api/v1/accounts", `{"name":"Acme"}`)
	if code != http.StatusCreated {
		t.Fatalf("create account: %d %v", code, out)
	}
	code, out = a.call(t, a.owner, "POST", "/api/v1/keys", `{"role":"admin","account":"`+out["id"].(string)+`","sites":["*"]}`)
	if code != http.StatusCreated {
		t.Fatalf("create key: %d %v", code, out)
	}
	accountAdmin := out["key"].(string)
	for _, c := range []struct{ method, path string }{{"GET", "/api/v1/learned"}, {"DELETE", "/api/v1/learned/198.51.100.0/24"}} {
		if code, _ := a.call(t, accountAdmin, c.method, c.path, ""); code != http.StatusForbidden {
			t.Errorf("%s %s as an account's admin: %d, want 403", c.method, c.path, code)
		}
	}

	if code, _ := a.call(t, a.owner, "DELETE", "/api/v1/learned/198.51.100.0/24", ""); code != http.StatusNoContent {
		t.Fatalf("DELETE: %d", code)
	}
	if code, _ := a.call(t, a.owner, "DELETE", "/api/v1/learned/198.51.100.0/24", ""); code != http.StatusNotFound {
		t.Errorf("DELETE again: %d, want 404", code)
	}
	if code, _ := a.call(t, a.owner, "DELETE", "/api/v1/learned/not-a-network", ""); code != http.StatusBadRequest {
		t.Errorf("DELETE of a non-CIDR: %d, want 400", code)
	}
	if _, out := a.call(t, a.owner, "GET", "/api/v1/ip/198.51.100.7", ""); out["decided_by"] == ipintel.SourceLearned {
		t.Errorf("a removed network still decides: %v", out)
	}

	// Deleting a site deletes the identifications its visitors made.
	site := a.createSite(t, "identified")
	raw, _ := json.Marshal(ipintel.Identification{Domain: "shipyard.example", At: time.Now()})
	for _, k := range []string{ipintel.IdentificationKey(netip.MustParsePrefix("203.0.113.0/24"), site, "v1"),
		ipintel.IdentificationKey(netip.MustParsePrefix("203.0.113.0/24"), "othersite", "v2")} {
		if _, err := ids.Put(ctx, k, raw); err != nil {
			t.Fatal(err)
		}
	}
	if code, _ := a.call(t, a.owner, "DELETE", "/api/v1/sites/"+site, ""); code != http.StatusOK && code != http.StatusNoContent {
		t.Fatalf("delete site: %d", code)
	}
	lister, err := ids.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for k := range lister.Keys() {
		if strings.HasPrefix(k, "cb007100") {
			left = append(left, k)
		}
	}
	if len(left) != 1 || !strings.HasSuffix(left[0], ".othersite.v2") {
		t.Errorf("identifications left after the site's deletion: %v, want only the other site's", left)
	}
}
