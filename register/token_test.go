package register_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parzelle/parzelle/tenant"
)

// trustIssuer makes the harness's tenant trust a new token issuer: it
// generates the issuer's key, appends an access.tokens entry to the
// tenant's file and reloads the tenants, as the node does when a file
// changes. It returns the issuer's signing key.
func (h *harness) trustIssuer(t *testing.T, tenantID, issuer string) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(h.dir, tenantID+"-idp.pem")
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(h.dir, "tenants", tenantID+".yaml")
	f, err := os.OpenFile(file, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = fmt.Fprintf(f, "  tokens:\n    - {issuer: %q, audience: parzelle, keys: [%q]}\n", issuer, pub)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := h.tenants.Reload(t.Context()); err != nil || len(rep.Rejected) > 0 {
		t.Fatalf("reload with the token issuer: %v %v", err, rep.Rejected)
	}
	return key
}

// TestPersonTokens: a person acting with a signed token gets what the
// token's role and purpose allow, is audited under the token's subject,
// and a token that is expired, for another tenant or not signed by a
// trusted issuer is refused with 401.
func TestPersonTokens(t *testing.T) {
	h := startHarness(t)
	const issuer, koelnIssuer = "https://idp.duesseldorf.test", "https://idp.koeln.test"
	key := h.trustIssuer(t, "duesseldorf", issuer)
	koelnKey := h.trustIssuer(t, "koeln", koelnIssuer)
	stranger, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := idnr("9081726354")
	rec := h.mustCreate(t, "duesseldorf", isolationPerson("tok-1", id, "Tokenhausen"))
	path := records("duesseldorf", "melderegister")
	log := "/api/v1/tenants/duesseldorf/registers/melderegister/access-log"

	now := time.Now()
	sign := func(k *ecdsa.PrivateKey, c tenant.TokenClaims, at time.Time) string {
		t.Helper()
		if c.Audience == "" {
			c.Audience = "parzelle"
		}
		if c.TTL == 0 {
			c.TTL = 10 * time.Minute
		}
		raw, err := tenant.SignToken(k, c, at)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	clerk := tenant.TokenClaims{Issuer: issuer, Tenant: "duesseldorf", Subject: "clerk-0815", Role: "sachbearbeitung", Purpose: "auskunft"}
	valid := sign(key, clerk, now)
	noPurpose := clerk
	noPurpose.Purpose = ""
	forKoeln := clerk
	forKoeln.Tenant = "koeln"
	koelnClerk := tenant.TokenClaims{Issuer: koelnIssuer, Tenant: "koeln", Subject: "koeln-clerk", Role: "fachverfahren", Purpose: "meldewesen"}
	otherAudience := clerk
	otherAudience.Audience = "someone-else"
	unsigned := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." +
		base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, `{"iss":%q,"aud":["parzelle"],"sub":"x","tenant":"duesseldorf","role":"sachbearbeitung","purpose":"auskunft","exp":%d}`,
			issuer, now.Add(time.Hour).Unix())) + "."

	cases := []struct {
		name, token, purpose, method, path string
		body                               any
		status                             int
		problem                            string
		// audited: the outcome of the entry in duesseldorf's log, with
		// actor and actor tenant ("" for no entry)
		outcome, actor, actorTenant string
	}{
		{"read", valid, "", "GET", path + "/" + rec.ID, nil, 200, "", "granted", "clerk-0815", "duesseldorf"},
		{"read with the token's purpose repeated", valid, "auskunft", "GET", path + "/" + rec.ID, nil, 200, "", "granted", "clerk-0815", "duesseldorf"},
		{"history", valid, "", "GET", path + "/" + rec.ID + "/history", nil, 200, "", "granted", "clerk-0815", "duesseldorf"},
		{"search", valid, "", "GET", path + "?idnr=" + id, nil, 200, "", "granted", "clerk-0815", "duesseldorf"},
		{"purpose from the header when the token has none", sign(key, noPurpose, now), "auskunft", "GET", path + "/" + rec.ID, nil, 200, "", "granted", "clerk-0815", "duesseldorf"},
		{"export", valid, "", "GET", log, nil, 403, "forbidden", "denied", "clerk-0815", "duesseldorf"},
		{"write", valid, "", "PATCH", path + "/" + rec.ID, map[string]any{"attributes": map[string]any{"vornamen": "X"}}, 403, "forbidden", "denied", "clerk-0815", "duesseldorf"},
		{"create", valid, "", "POST", path, isolationPerson("tok-2", idnr("1122334455"), "X"), 403, "forbidden", "denied", "clerk-0815", "duesseldorf"},
		{"no purpose at all", sign(key, noPurpose, now), "", "GET", path + "/" + rec.ID, nil, 403, "forbidden", "denied", "clerk-0815", "duesseldorf"},
		{"a valid token of another tenant", sign(koelnKey, koelnClerk, now), "", "GET", path + "/" + rec.ID, nil, 403, "forbidden", "denied", "koeln-clerk", "koeln"},
		{"a header contradicting the token's purpose", valid, "meldewesen", "GET", path + "/" + rec.ID, nil, 401, "bad-token", "", "", ""},
		{"expired", sign(key, clerk, now.Add(-2*time.Hour)), "", "GET", path + "/" + rec.ID, nil, 401, "bad-token", "", "", ""},
		{"expired, for export", sign(key, clerk, now.Add(-2*time.Hour)), "", "GET", log, nil, 401, "bad-token", "", "", ""},
		{"for another tenant by this tenant's issuer", sign(key, forKoeln, now), "", "GET", path + "/" + rec.ID, nil, 401, "bad-token", "", "", ""},
		{"for this tenant by the other tenant's issuer key", sign(koelnKey, clerk, now), "", "GET", path + "/" + rec.ID, nil, 401, "bad-token", "", "", ""},
		{"signed by an unknown key", sign(stranger, clerk, now), "", "GET", path + "/" + rec.ID, nil, 401, "bad-token", "", "", ""},
		{"another audience", sign(key, otherAudience, now), "", "GET", path + "/" + rec.ID, nil, 401, "bad-token", "", "", ""},
		{"not signed (alg none)", unsigned, "", "GET", path + "/" + rec.ID, nil, 401, "bad-token", "", "", ""},
		{"tampered signature", valid[:len(valid)-4] + "AAAA", "", "GET", path + "/" + rec.ID, nil, 401, "bad-token", "", "", ""},
		{"not issued yet", sign(key, clerk, now.Add(time.Hour)), "", "GET", path + "/" + rec.ID, nil, 401, "bad-token", "", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			seq := h.auditHead(t, "duesseldorf")
			res := h.call(t, "duesseldorf-sb", c.purpose, c.method, c.path, c.body, "Authorization", "Bearer "+c.token)
			if res.status != c.status {
				t.Fatalf("status %d, want %d: %s", res.status, c.status, res.body)
			}
			if c.problem != "" {
				if p := res.problem(t); p["type"] != "urn:parzelle:problem:"+c.problem {
					t.Errorf("problem %s", res.body)
				}
				if containsFold(res.body, "Tokenhausen") || containsFold(res.body, id) {
					t.Errorf("the refusal discloses the record: %s", res.body)
				}
			}
			if c.status == 401 && res.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			var entries []struct{ kind, actor, actorTenant, role, purpose, outcome string }
			rows, err := h.pool.Query(t.Context(), `SELECT actor_kind, actor, actor_tenant, role, purpose, outcome FROM audit_entry
				WHERE tenant_id = 'duesseldorf' AND seq > $1 ORDER BY seq`, seq)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var e struct{ kind, actor, actorTenant, role, purpose, outcome string }
				if err := rows.Scan(&e.kind, &e.actor, &e.actorTenant, &e.role, &e.purpose, &e.outcome); err != nil {
					t.Fatal(err)
				}
				entries = append(entries, e)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			switch {
			case c.outcome == "" && len(entries) != 0:
				t.Errorf("a refused token was audited: %+v", entries)
			case c.outcome != "" && len(entries) != 1:
				t.Errorf("audit entries %+v, want one", entries)
			case c.outcome != "":
				e := entries[0]
				if e.kind != tenant.ActorToken || e.actor != c.actor || e.actorTenant != c.actorTenant || e.outcome != c.outcome {
					t.Errorf("audit entry %+v, want a %s by token %s of %s", e, c.outcome, c.actor, c.actorTenant)
				}
			}
		})
	}

	// A token is no pass for another tenant's certificate: Köln's client
	// carrying Düsseldorf's clerk token acts as itself, which Düsseldorf
	// refuses and audits under Köln's certificate.
	seq := h.auditHead(t, "duesseldorf")
	if res := h.call(t, "koeln", "", "GET", path+"/"+rec.ID, nil, "Authorization", "Bearer "+valid); res.status != http.StatusForbidden {
		t.Errorf("Düsseldorf's token carried by Köln's certificate: %d %s", res.status, res.body)
	}
	var actor, actorTenant string
	if err := h.pool.QueryRow(t.Context(), `SELECT actor, actor_tenant FROM audit_entry WHERE tenant_id = 'duesseldorf' AND seq > $1 AND outcome = 'denied'`, seq).Scan(&actor, &actorTenant); err != nil || actorTenant != "koeln" || !strings.HasPrefix(actor, "CN=koeln,") {
		t.Errorf("carried token audited as %q of %q (%v), want Köln's certificate", actor, actorTenant, err)
	}

	// The Datenschutz office sees the clerk's disclosures under the clerk's
	// name in the access log.
	export := h.call(t, "duesseldorf-dsb", "datenschutzauskunft", "GET", log+"?idnr="+id, nil)
	if export.status != http.StatusOK || !containsFold(export.body, `"empfaenger":"clerk-0815"`) || !containsFold(export.body, `"zweck":"auskunft"`) {
		t.Errorf("access log export: %d %s", export.status, export.body)
	}
}
