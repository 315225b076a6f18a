package xnachweis_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/parzelle/parzelle/golden"
	"github.com/parzelle/parzelle/register"
	"github.com/parzelle/parzelle/xnachweis"
)

// counts are the rows that an answer may add (audit, access log, tokens)
// and those it must not change (the register).
type counts struct{ audit, versions, records, facts int }

func (w *world) counts(t testing.TB) counts {
	t.Helper()
	var c counts
	err := w.Pool.QueryRow(t.Context(), `SELECT (SELECT count(*) FROM audit_entry WHERE tenant_id = 'duesseldorf'),
		(SELECT count(*) FROM register_version WHERE tenant_id = 'duesseldorf'), (SELECT count(*) FROM register_record WHERE tenant_id = 'duesseldorf'),
		(SELECT count(*) FROM register_fact WHERE tenant_id = 'duesseldorf')`).Scan(&c.audit, &c.versions, &c.records, &c.facts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// lastAudit is Düsseldorf's newest audit entry.
func (w *world) lastAudit(t testing.TB) (operation, outcome, detail string) {
	t.Helper()
	err := w.Pool.QueryRow(t.Context(), `SELECT operation, outcome, detail FROM audit_entry WHERE tenant_id = 'duesseldorf' ORDER BY seq DESC LIMIT 1`).
		Scan(&operation, &outcome, &detail)
	if err != nil {
		t.Fatal(err)
	}
	return operation, outcome, detail
}

// normalized replaces what differs from run to run in an answer or an
// evidence document: ids, times, today's date, signatures, base64.
func normalized(b []byte) []byte {
	s := string(b)
	for _, r := range []struct {
		re   *regexp.Regexp
		with string
	}{
		{regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`), "UUID"},
		{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`), "TIME"},
		{regexp.MustCompile(regexp.QuoteMeta(time.Now().Format(time.DateOnly)) + "|" + regexp.QuoteMeta(time.Now().In(berlin).Format(time.DateOnly))), "TODAY"},
		{regexp.MustCompile(`(<xn-bk:RepositoryItem>)[A-Za-z0-9+/=]+(</xn-bk:RepositoryItem>)`), "${1}BASE64${2}"},
		{regexp.MustCompile(`(<ds:(?:SignatureValue|DigestValue|X509Certificate)>)[^<]+`), "${1}…"},
		{regexp.MustCompile(`produktversion="[^"]*"`), `produktversion="…"`},
	} {
		s = r.re.ReplaceAllString(s, r.with)
	}
	return []byte(s)
}

var berlin, _ = time.LoadLocation("Europe/Berlin")

// TestBadRequests: each bad request gets its own error response (valid
// XNachweis, signed on the transport), an audit entry naming its code, and
// no change to the register.
func TestBadRequests(t *testing.T) {
	w := newWorld(t, worldOptions{messages: family})
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	withToken := func(sp xnachweis.RequestSpec, claims func(*xnachweis.TokenClaims)) []byte {
		if sp.ID == "" {
			sp.ID = "urn:uuid:0b0e6f4e-6d1a-4f4e-9a51-3d5a1c2f0a99"
		}
		c, err := xnachweis.ClaimsFor(xnachweis.BuildRequest(sp), "", issuer, "wohnsitznachweis")
		if err != nil {
			t.Fatal(err)
		}
		claims(&c)
		if sp.Token, err = xnachweis.MintToken(w.vs, c, time.Now(), 10*time.Minute); err != nil {
			t.Fatal(err)
		}
		return xnachweis.BuildRequest(sp)
	}
	replayed := w.sealed(t, spec(buergeramt, tobias), "wohnsitznachweis")
	cases := []struct {
		name, cn string
		setup    func()
		request  func() []byte
		code     xnachweis.Code
	}{
		{name: "bad-seal", cn: "buergeramt", code: xnachweis.CodeTokenInvalid, request: func() []byte {
			b, err := xnachweis.SealedRequest(spec(buergeramt, tobias), otherKey, issuer, "wohnsitznachweis", time.Now(), time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}},
		{name: "token-for-another-request", cn: "buergeramt", code: xnachweis.CodeTokenMismatch, request: func() []byte {
			other := spec(buergeramt, nobody)
			other.ID = "urn:uuid:0b0e6f4e-6d1a-4f4e-9a51-3d5a1c2f0a98"
			c, err := xnachweis.ClaimsFor(xnachweis.BuildRequest(other), "", issuer, "wohnsitznachweis")
			if err != nil {
				t.Fatal(err)
			}
			sp := spec(buergeramt, tobias)
			if sp.Token, err = xnachweis.MintToken(w.vs, c, time.Now(), time.Minute); err != nil {
				t.Fatal(err)
			}
			return xnachweis.BuildRequest(sp)
		}},
		{name: "token-without-idnr-use", cn: "buergeramt", code: xnachweis.CodeTokenMismatch, request: func() []byte {
			return withToken(spec(buergeramt, tobiasByIDNr), func(c *xnachweis.TokenClaims) { c.IDNr = false })
		}},
		{name: "expired-token", cn: "buergeramt", code: xnachweis.CodeTokenExpired, request: func() []byte {
			b, err := xnachweis.SealedRequest(spec(buergeramt, tobias), w.vs, issuer, "wohnsitznachweis", time.Now().Add(-2*time.Hour), time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}},
		{name: "replayed-token", cn: "buergeramt", code: xnachweis.CodeTokenReplayed,
			setup:   func() { w.post(t, "buergeramt", replayed) },
			request: func() []byte { return replayed }},
		{name: "requester-not-allowed", cn: "buergeramt", code: xnachweis.CodeRequester, request: func() []byte {
			return w.sealed(t, spec(polizei, tobias), "gefahrenabwehr")
		}},
		{name: "purpose-not-granted", cn: "buergeramt", code: xnachweis.CodeRequester, request: func() []byte {
			return w.sealed(t, spec(buergeramt, tobias), "werbung")
		}},
		{name: "provider-unknown", cn: "buergeramt", code: xnachweis.CodeProviderUnknown, request: func() []byte {
			sp := spec(buergeramt, tobias)
			sp.Provider.ID = "991-99999-99"
			return w.sealed(t, sp, "wohnsitznachweis")
		}},
		{name: "evidence-type-not-offered", cn: "buergeramt", code: xnachweis.CodeTypeNotOffered, request: func() []byte {
			sp := spec(buergeramt, tobias)
			sp.Evidence.Classification = "https://sr.oots.tech.ec.europa.eu/evidencetypeclassifications/ec/00000000-0000-0000-0000-000000000000"
			return w.sealed(t, sp, "wohnsitznachweis")
		}},
		{name: "format-not-offered", cn: "buergeramt", code: xnachweis.CodeFormat, request: func() []byte {
			sp := spec(buergeramt, tobias)
			sp.Evidence.Format = "application/pdf"
			return w.sealed(t, sp, "wohnsitznachweis")
		}},
		{name: "quota-exceeded", cn: "monheim", code: xnachweis.CodeQuota,
			setup:   func() { w.post(t, "monheim", w.sealed(t, spec(sparsam, tobias), "wohnsitznachweis")) },
			request: func() []byte { return w.sealed(t, spec(sparsam, tobias), "wohnsitznachweis") }},
		{name: "no-match", cn: "buergeramt", code: xnachweis.CodeNoMatch, request: func() []byte {
			return w.sealed(t, spec(buergeramt, nobody), "wohnsitznachweis")
		}},
		{name: "ambiguous-match", cn: "buergeramt", code: xnachweis.CodeAmbiguous, request: func() []byte {
			return w.sealed(t, spec(buergeramt, wagner), "wohnsitznachweis")
		}},
		{name: "auskunftssperre", cn: "buergeramt", code: xnachweis.CodeNoMatch, request: func() []byte {
			return w.sealed(t, spec(buergeramt, mateo), "wohnsitznachweis")
		}},
		{name: "malformed-xml", cn: "buergeramt", code: xnachweis.CodeMalformed, request: func() []byte {
			return []byte(`<xn-de:DE.EvidenceRequest.0101 xmlns:xn-de="` + xnachweis.NSDE + `"><unclosed></xn-de:DE.EvidenceRequest.0101>`)
		}},
		{name: "dtd", cn: "buergeramt", code: xnachweis.CodeMalformed, request: func() []byte {
			return []byte(`<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]><r>&b;</r>`)
		}},
		{name: "not-a-request", cn: "buergeramt", code: xnachweis.CodeNotARequest, request: func() []byte {
			return []byte(`<xn-de:DE.EvidenceResponse.0102 xmlns:xn-de="` + xnachweis.NSDE + `"/>`)
		}},
		{name: "schema-invalid", cn: "buergeramt", code: xnachweis.CodeSchemaInvalid, request: func() []byte {
			b := w.sealed(t, spec(buergeramt, tobias), "wohnsitznachweis")
			return regexp.MustCompile(`<xn-bk:GivenName>[^<]*</xn-bk:GivenName>`).ReplaceAll(b, nil)
		}},
		{name: "oversize", cn: "buergeramt", code: xnachweis.CodeTooLarge, request: func() []byte {
			b := w.sealed(t, spec(buergeramt, tobias), "wohnsitznachweis")
			return bytes.Replace(b, []byte("?>"), []byte("?><!--"+strings.Repeat("x", xnachweis.DefaultMaxRequest)+"-->"), 1)
		}},
	}
	details := map[string]string{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.setup != nil {
				c.setup()
			}
			req := c.request()
			before := w.counts(t)
			x := w.post(t, c.cn, req)
			if x.Code != c.code.Value {
				t.Fatalf("answer %s (%s), want %s:\n%s", x.Code, x.Details, c.code.Value, x.Body)
			}
			if x.Status != c.code.Status {
				t.Errorf("HTTP %d, want %d", x.Status, c.code.Status)
			}
			w.valid(t, x.Body)
			details[c.name] = x.Details
			golden.Check(t, filepath.Join("testdata", "error-"+c.name+".golden"), normalized(x.Body))
			after := w.counts(t)
			if after.audit != before.audit+1 {
				t.Errorf("%d audit entries added, want 1", after.audit-before.audit)
			}
			if after.versions != before.versions || after.records != before.records || after.facts != before.facts {
				t.Errorf("the register changed: %+v → %+v", before, after)
			}
			if op, outcome, detail := w.lastAudit(t); op != "evidence" || outcome == register.OutcomeGranted ||
				!(strings.Contains(detail, c.code.Value) || strings.Contains(detail, "no-match") || strings.Contains(detail, "ambiguous") || strings.Contains(detail, "auskunftssperre")) {
				t.Errorf("audit entry %s %s %q", op, outcome, detail)
			}
		})
	}
	// The block is not revealed: the requester reads what it reads for
	// a person who is not there; only the audit log knows.
	if details["auskunftssperre"] != details["no-match"] {
		t.Errorf("Auskunftssperre answered %q, no match %q: a requester can tell them apart", details["auskunftssperre"], details["no-match"])
	}
	if _, _, detail := w.lastAudit(t); detail == "" {
		t.Error("no audit detail")
	}
	if rep, err := register.VerifyAudit(t.Context(), w.Pool, "duesseldorf"); err != nil || !rep.OK() {
		t.Errorf("audit chain: %+v %v", rep, err)
	}
}

// TestUnknownCaller: a client certificate no evidence section names gets
// problem JSON, not an XNachweis answer, and nothing is audited.
func TestUnknownCaller(t *testing.T) {
	w := newWorld(t, worldOptions{})
	before := w.counts(t)
	resp, err := w.HTTP("duesseldorf").Post(w.Base+xnachweis.Path, "application/xml", bytes.NewReader(w.sealed(t, spec(buergeramt, tobias), "wohnsitznachweis")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("HTTP %d %s, want 403 problem JSON", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if after := w.counts(t); after != before {
		t.Errorf("counts changed: %+v → %+v", before, after)
	}
}
