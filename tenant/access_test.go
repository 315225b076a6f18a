package tenant

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parzelle/parzelle/golden"
	"github.com/parzelle/parzelle/pki"
)

// accessTenant is a tenant with two registers and the demo tenants' rules,
// plus one rule limited to one register.
const accessTenant = `id: duesseldorf
name: Access Test
identities:
  - {id: "ags:05111000", type: xoev, category: Meldebehörde, transports: [xta]}
clients:
  - name: fachverfahren
    subject: CN=fv,O=Test
    identities: [ags:05111000]
    role: fachverfahren
  - name: monitoring
    subject: CN=mon,O=Test
    identities: [ags:05111000]
trust:
  clientCAs: [ca.crt]
registers:
  - name: melderegister
    type: person
  - name: gewerberegister
    type: business
access:
  rules:
    - role: fachverfahren
      operations: [read, search, write]
      purposes: [meldewesen]
      legalBasis: "§ 3 BMG"
    - role: sachbearbeitung
      operations: [read, search]
      purposes: [auskunft]
      legalBasis: "§ 44 BMG"
    - role: sachbearbeitung
      operations: [export]
      purposes: [datenschutzcockpit, auskunft]
      legalBasis: "§ 10 BMG"
      registers: [melderegister]
`

// writeTenant writes a tenant file (and a client CA ca.crt beside it) into
// a temporary directory and parses it.
func writeTenant(t *testing.T, id, content string) (*Config, *pki.Authority, string) {
	t.Helper()
	dir := t.TempDir()
	ca := testCA(t, dir, "Access Test CA")
	path := filepath.Join(dir, id+".yaml")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return c, ca, dir
}

func TestRegisters(t *testing.T) {
	c, _, _ := writeTenant(t, "duesseldorf", accessTenant)
	if got := c.Registers(); len(got) != 2 || got[0] != (RegisterDecl{Name: "melderegister", Type: "person"}) || got[1] != (RegisterDecl{Name: "gewerberegister", Type: "business"}) {
		t.Errorf("Registers() = %+v", got)
	}
	if r, ok := c.Register("gewerberegister"); !ok || r.Type != RegisterBusiness {
		t.Errorf("Register(gewerberegister) = %+v, %v", r, ok)
	}
	if _, ok := c.Register("waffenregister"); ok {
		t.Error("an undeclared register was found")
	}
}

func TestAuthorize(t *testing.T) {
	c, _, _ := writeTenant(t, "duesseldorf", accessTenant)
	fv := Actor{Tenant: "duesseldorf", Kind: ActorCertificate, Subject: "CN=fv,O=Test", Role: "fachverfahren", Purpose: "meldewesen"}
	clerk := Actor{Tenant: "duesseldorf", Kind: ActorToken, Subject: "clerk1", Role: "sachbearbeitung", Purpose: "auskunft"}
	with := func(a Actor, f func(*Actor)) Actor { f(&a); return a }
	cases := []struct {
		name    string
		actor   Actor
		op, reg string
		allowed bool
		basis   string
		reason  string
	}{
		{"fachverfahren reads", fv, OpRead, "melderegister", true, "§ 3 BMG", `role "fachverfahren" may "read" in register "melderegister" for purpose "meldewesen" (§ 3 BMG)`},
		{"fachverfahren writes in every register", fv, OpWrite, "gewerberegister", true, "§ 3 BMG", `role "fachverfahren" may "write" in register "gewerberegister" for purpose "meldewesen" (§ 3 BMG)`},
		{"fachverfahren may not export", fv, OpExport, "melderegister", false, "", `role "fachverfahren" may not "export" in register "melderegister"`},
		{"foreign purpose", with(fv, func(a *Actor) { a.Purpose = "werbung" }), OpRead, "melderegister", false, "", `purpose "werbung" is not allowed for role "fachverfahren" to "read"`},
		{"no purpose", with(fv, func(a *Actor) { a.Purpose = "" }), OpRead, "melderegister", false, "", "no purpose given: send the Parzelle-Purpose header with the purpose of the request (or, with a token, its purpose claim)"},
		{"other tenant", with(fv, func(a *Actor) { a.Tenant = "koeln" }), OpRead, "melderegister", false, "", `an actor of tenant "koeln" may not access the data of tenant "duesseldorf"`},
		{"unknown register", fv, OpRead, "waffenregister", false, "", `tenant "duesseldorf" has no register "waffenregister"`},
		{"unknown operation", fv, "delete", "melderegister", false, "", `"delete" is not an operation (known: read, search, export, write, erase)`},
		{"certificate without role", with(fv, func(a *Actor) { a.Role = "" }), OpRead, "melderegister", false, "", `the certificate "CN=fv,O=Test" has no role in tenant "duesseldorf"`},
		{"token without role", with(clerk, func(a *Actor) { a.Role = "" }), OpRead, "melderegister", false, "", `the token for "clerk1" has no role in tenant "duesseldorf"`},
		{"role without rules", with(fv, func(a *Actor) { a.Role = "hausmeister" }), OpRead, "melderegister", false, "", `role "hausmeister" has no access to the register data of tenant "duesseldorf"`},
		{"clerk reads", clerk, OpRead, "melderegister", true, "§ 44 BMG", `role "sachbearbeitung" may "read" in register "melderegister" for purpose "auskunft" (§ 44 BMG)`},
		{"clerk may not write", clerk, OpWrite, "melderegister", false, "", `role "sachbearbeitung" may not "write" in register "melderegister"`},
		{"clerk exports from the register its rule names", clerk, OpExport, "melderegister", true, "§ 10 BMG", `role "sachbearbeitung" may "export" in register "melderegister" for purpose "auskunft" (§ 10 BMG)`},
		{"clerk exports for the cockpit", with(clerk, func(a *Actor) { a.Purpose = "datenschutzcockpit" }), OpExport, "melderegister", true, "§ 10 BMG", `role "sachbearbeitung" may "export" in register "melderegister" for purpose "datenschutzcockpit" (§ 10 BMG)`},
		{"clerk may not export from another register", clerk, OpExport, "gewerberegister", false, "", `role "sachbearbeitung" may not "export" in register "gewerberegister"`},
		{"cockpit purpose does not allow reading", with(clerk, func(a *Actor) { a.Purpose = "datenschutzcockpit" }), OpRead, "melderegister", false, "", `purpose "datenschutzcockpit" is not allowed for role "sachbearbeitung" to "read"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := c.Authorize(tc.actor, tc.op, tc.reg)
			if d.Allowed != tc.allowed || d.LegalBasis != tc.basis || d.Reason != tc.reason {
				t.Errorf("got %+v\nwant {Allowed:%v LegalBasis:%s Reason:%s}", d, tc.allowed, tc.basis, tc.reason)
			}
		})
	}
}

// TestPrincipalActor authenticates client certificates against the tenant
// and turns their grants into actors with the client entry's role.
func TestPrincipalActor(t *testing.T) {
	c, ca, _ := writeTenant(t, "duesseldorf", accessTenant)
	set := NewSet(c)
	issue := func(subject pkix.Name) *Principal {
		t.Helper()
		cert, _, err := ca.Issue(pki.Template{Subject: subject, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), Client: true}, pki.ECDSAP256)
		if err != nil {
			t.Fatal(err)
		}
		p, err := set.Authenticate([]*x509.Certificate{cert}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	fv := issue(pkix.Name{CommonName: "fv", Organization: []string{"Test"}})
	if len(fv.Grants) != 1 || fv.Grants[0].Role != "fachverfahren" {
		t.Fatalf("grants %+v", fv.Grants)
	}
	a, ok := fv.Actor("duesseldorf", "meldewesen")
	if want := (Actor{Tenant: "duesseldorf", Kind: ActorCertificate, Subject: "CN=fv,O=Test", Role: "fachverfahren", Purpose: "meldewesen"}); !ok || a != want {
		t.Errorf("Actor() = %+v, %v; want %+v", a, ok, want)
	}
	if d := c.Authorize(a, OpWrite, "melderegister"); !d.Allowed {
		t.Errorf("the Fachverfahren certificate may not write: %s", d.Reason)
	}
	if _, ok := fv.Actor("koeln", "meldewesen"); ok {
		t.Error("an actor for a tenant without a grant")
	}
	mon := issue(pkix.Name{CommonName: "mon", Organization: []string{"Test"}})
	a, ok = mon.Actor("duesseldorf", "meldewesen")
	if !ok || a.Role != "" {
		t.Fatalf("Actor() = %+v, %v; want an actor without role", a, ok)
	}
	if d := c.Authorize(a, OpRead, "melderegister"); d.Allowed || d.Reason != `the certificate "CN=mon,O=Test" has no role in tenant "duesseldorf"` {
		t.Errorf("a certificate without role: %+v", d)
	}
}

// TestEvidenceRejects checks every file in testdata/evidence against the
// errors in its .golden file.
func TestEvidenceRejects(t *testing.T) {
	dir := t.TempDir()
	keyFiles(t, dir)
	files, _ := filepath.Glob("testdata/evidence/*.yaml")
	if len(files) < 2 {
		t.Fatalf("only %d files in testdata/evidence", len(files))
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, filepath.Base(file))
			writeFile(t, path, data)
			if _, err = ParseFile(path); err == nil {
				t.Fatal("accepted a bad evidence section")
			}
			got := strings.ReplaceAll(err.Error(), dir, "testdata/evidence") + "\n"
			golden.Check(t, strings.TrimSuffix(file, ".yaml")+".golden", []byte(got))
		})
	}
}

// evidenceTenant offers a Meldebescheinigung to one requester.
const evidenceTenant = `id: duesseldorf
name: Evidence Test
identities:
  - {id: "ags:05111000", type: xoev, category: Meldebehörde, transports: [xta]}
  - {id: "nachweis:05111000", type: xoev, category: Nachweisabruf, transports: [xta]}
clients:
  - {name: amt, subject: "CN=amt,O=Test"}
trust:
  clientCAs: [ca.crt]
keys:
  signing:
    - {key: sign.key, cert: sign.crt}
registers:
  - {name: melderegister, type: person}
evidence:
  provider: {scheme: "urn:cef.eu:names:identifier:EAS:0204", id: "991-1", name: Test}
  identity: "nachweis:05111000"
  tokens: {issuer: "https://vs.test", keys: [sign.crt]}
  types:
    - {id: meldebescheinigung, register: melderegister, document: meldebescheinigung, title: M,
       classification: "https://sr.oots.tech.ec.europa.eu/evidencetypeclassifications/ec/1", fields: [familienname]}
  requesters:
    - {scheme: "urn:cef.eu:names:identifier:EAS:0204", id: "991-2", name: Amt, clients: [amt], accounts: ["ags:05315000"],
       grants: [{type: meldebescheinigung, purposes: [wohnsitznachweis], legalBasis: "§ 34 BMG"}], quota: {perMinute: 60}}
`

// TestEvidenceAuthorize: an evidence requester reads what its grants
// allow, on their legal basis; it finds its requester, type and callers.
func TestEvidenceAuthorize(t *testing.T) {
	dir := t.TempDir()
	keyFiles(t, dir)
	path := filepath.Join(dir, "duesseldorf.yaml")
	writeFile(t, path, []byte(evidenceTenant))
	c, err := ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	e := c.EvidenceProvider()
	if e == nil || e.Requesters[0].Quota.Burst != 6 || !e.Types[0].Offers(EvidenceFormatXML) {
		t.Fatalf("evidence section: %+v", e)
	}
	r := e.Requester("urn:cef.eu:names:identifier:EAS:0204", "991-2")
	if r == nil || !e.SpeaksFor(r, "amt", "") || !e.SpeaksFor(r, "", "ags:05315000") || e.SpeaksFor(r, "other", "") || !e.Caller("amt", "") {
		t.Fatalf("requester %+v", r)
	}
	if e.Type("https://sr.oots.tech.ec.europa.eu/evidencetypeclassifications/ec/1", "") != &e.Types[0] || e.Type("https://sr.oots.tech.ec.europa.eu/evidencetypeclassifications/ec/2", "") != nil {
		t.Error("Type does not find the evidence type by its classification")
	}
	a := Actor{Tenant: "duesseldorf", Kind: ActorEvidence, Subject: "urn:cef.eu:names:identifier:EAS:0204:991-2", Role: "meldebescheinigung", Purpose: "wohnsitznachweis"}
	with := func(f func(*Actor)) Actor { b := a; f(&b); return b }
	for _, tc := range []struct {
		actor   Actor
		op      string
		allowed bool
		reason  string
	}{
		{a, OpRead, true, `requester urn:cef.eu:names:identifier:EAS:0204:991-2 may ask for evidence type "meldebescheinigung" for purpose "wohnsitznachweis" (§ 34 BMG)`},
		{a, OpSearch, false, "an evidence requester may only read"},
		{with(func(b *Actor) { b.Purpose = "werbung" }), OpRead, false, `requester urn:cef.eu:names:identifier:EAS:0204:991-2 may not ask for evidence type "meldebescheinigung" for purpose "werbung"`},
		{with(func(b *Actor) { b.Role = "gewerbeauskunft" }), OpRead, false, `evidence type "gewerbeauskunft" is not made from register "melderegister"`},
		{with(func(b *Actor) { b.Subject = "urn:cef.eu:names:identifier:EAS:0204:991-9" }), OpRead, false, `urn:cef.eu:names:identifier:EAS:0204:991-9 is not an evidence requester of tenant "duesseldorf"`},
	} {
		d := c.Authorize(tc.actor, tc.op, "melderegister")
		if d.Allowed != tc.allowed || d.Reason != tc.reason || (d.Allowed && d.LegalBasis != "§ 34 BMG") {
			t.Errorf("%+v %s: %+v, want %v %q", tc.actor, tc.op, d, tc.allowed, tc.reason)
		}
	}
}
