package xnachweis_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parzelle/parzelle/msgbox"
	"github.com/parzelle/parzelle/node/nodetest"
	"github.com/parzelle/parzelle/pki"
	"github.com/parzelle/parzelle/xmlsafe"
	"github.com/parzelle/parzelle/xmlschema"
	"github.com/parzelle/parzelle/xnachweis"
)

const (
	specs    = "../../shared/specs"
	fixtures = "../fixtures"
	easDE    = "urn:cef.eu:names:identifier:EAS:0204"
	// The demo classification of the Meldebescheinigung (the real one is
	// in the OOTS semantic repository).
	meldebescheinigung = "https://sr.oots.tech.ec.europa.eu/evidencetypeclassifications/ec/5c8d1e5e-5b4a-4a0e-9a66-5d8e2b9f5a01"
	gewerbeauskunft    = "https://sr.oots.tech.ec.europa.eu/evidencetypeclassifications/ec/0b6e3f1a-7c2d-4e8f-9a6b-3c4d5e6f7a81"
	issuer             = "https://vermittlungsstelle.test"
)

// Parties of the tests: Düsseldorf provides, Köln's Bürgeramt and a
// police authority ask, and a requester with a daily quota of one.
var (
	provider   = xnachweis.Agent{Scheme: easDE, ID: "991-05111-00", Name: "Meldebehörde Düsseldorf"}
	buergeramt = xnachweis.Agent{Scheme: easDE, ID: "991-05315-00", Name: "Stadt Köln - Bürgeramt"}
	polizei    = xnachweis.Agent{Scheme: easDE, ID: "991-05000-99", Name: "Polizeipräsidium Düsseldorf"}
	sparsam    = xnachweis.Agent{Scheme: easDE, ID: "991-05000-01", Name: "Stadt Monheim"}
)

// provideTenant is Düsseldorf's tenant file: a Melderegister fed by its
// Fachverfahren over XTA (register:05111000) and answering evidence
// requests over HTTPS and at nachweis:05111000.
const provideTenant = `id: duesseldorf
name: Melderegister Düsseldorf
identities:
  - {id: "ags:05111000", type: xoev, category: Meldebehörde, transports: [xta]}
  - {id: "register:05111000", type: xoev, category: Melderegister, transports: [xta]}
  - {id: "nachweis:05111000", type: xoev, category: Nachweisabruf, transports: [xta]}
  - {id: "gewerbe:05111000", type: xoev, category: Gewerberegister, transports: [xta]}
clients:
  - {name: fachverfahren, subject: "CN=duesseldorf,OU=Fachverfahren,O=Parzelle Demo", identities: ["ags:05111000"], role: fachverfahren}
  - {name: buergeramt, subject: "CN=buergeramt,OU=Fachverfahren,O=Parzelle Demo"}
  - {name: polizei, subject: "CN=polizei,OU=Fachverfahren,O=Parzelle Demo"}
  - {name: monheim, subject: "CN=monheim,OU=Fachverfahren,O=Parzelle Demo"}
trust:
  clientCAs: ["{{CA}}"]
keys:
  signing:
    - {key: "{{DIR}}/signing.key", cert: "{{DIR}}/signing.crt"}
registers:
  - {name: melderegister, type: person}
  - {name: gewerberegister, type: business}
access:
  rules:
    - {role: fachverfahren, operations: [read, search], purposes: [meldewesen], legalBasis: "§ 3 BMG"}
    - {role: register-inbox, operations: [write], purposes: [meldewesen], legalBasis: "§ 33 BMG"}
    - {role: datenschutz, operations: [export], purposes: [datenschutzauskunft], legalBasis: "§ 9 IDNrG"}
inboxes:
  - {identity: "register:05111000", register: melderegister, writers: ["ags:05111000"], purpose: meldewesen}
  - {identity: "gewerbe:05111000", register: gewerberegister, writers: ["ags:05111000"], purpose: meldewesen, mappings: ["%[3]s"]}
schemas:
  missing: warn  # no XGewerbeanzeige schema is public
mappings:
%[1]s
evidence:
  provider: {scheme: "` + easDE + `", id: "991-05111-00", name: "Meldebehörde Düsseldorf"}
  identity: "nachweis:05111000"
  insecureTestMode: %[2]t
  tokens: {issuer: "` + issuer + `", keys: ["{{DIR}}/vermittlungsstelle.crt"]}
  types:
    - id: meldebescheinigung
      register: melderegister
      document: meldebescheinigung
      classification: "` + meldebescheinigung + `"
      title: Meldebescheinigung
      fields: [familienname, vornamen, doktorgrad, geburtsdatum, geburtsort, hauptwohnung, nebenwohnungen]
      auskunftssperre: {disclose: ["§ 34 Abs. 4 BMG"]}
    - id: gewerbeauskunft
      register: gewerberegister
      document: gewerbeauskunft
      classification: "` + gewerbeauskunft + `"
      title: Gewerbeauskunft
      fields: [name, status, beginn, betriebsstaette]
  requesters:
    - scheme: "` + easDE + `"
      id: "991-05315-00"
      name: "Stadt Köln - Bürgeramt"
      clients: [buergeramt]
      accounts: ["ags:05315000"]
      grants: [{type: meldebescheinigung, purposes: [wohnsitznachweis], legalBasis: "§ 34 Abs. 1 BMG"},
               {type: gewerbeauskunft, purposes: [gewerbeaufsicht], legalBasis: "§ 14 Abs. 5 GewO"}]
    - scheme: "` + easDE + `"
      id: "991-05000-99"
      name: "Polizeipräsidium Düsseldorf"
      clients: [polizei]
      grants: [{type: meldebescheinigung, purposes: [gefahrenabwehr], legalBasis: "§ 34 Abs. 4 BMG"}]
    - scheme: "` + easDE + `"
      id: "991-05000-01"
      name: "Stadt Monheim"
      clients: [monheim]
      grants: [{type: meldebescheinigung, purposes: [wohnsitznachweis], legalBasis: "§ 34 Abs. 1 BMG"}]
      quota: {perDay: 1}
`

// askTenant is Köln, whose Bürgeramt asks over XTA from ags:05315000.
const askTenant = `id: koeln
name: Melderegister Köln
identities:
  - {id: "ags:05315000", type: xoev, category: Meldebehörde, transports: [xta]}
clients:
  - {name: fachverfahren, subject: "CN=koeln,OU=Fachverfahren,O=Parzelle Demo", identities: ["ags:05315000"]}
trust:
  clientCAs: ["{{CA}}"]
`

// world is a running node with Düsseldorf's register fed and the keys of
// the Vermittlungsstelle and of Düsseldorf's signature.
type world struct {
	*nodetest.Node
	signCA     *pki.Authority
	signCAFile string
	vs         crypto.Signer
	trust      []*x509.Certificate
	schemas    *xmlschema.Registry
}

var loadSchemas = nodetest.Schemas

// worldOptions vary the world.
type worldOptions struct {
	insecure bool
	// messages are XMeld fixtures (by prefix) to feed the register.
	messages []string
	alg      pki.Algorithm
}

// newWorld starts the node, its tenants and the keys, and feeds
// Düsseldorf's register with the XMeld fixtures over XTA.
func newWorld(t testing.TB, o worldOptions) *world {
	t.Helper()
	now := time.Now()
	alg := o.alg
	if alg == "" {
		alg = pki.RSA3072
	}
	ca, err := pki.NewAuthority(pkix.Name{CommonName: "Parzelle Test Signing CA"}, pki.ECDSAP256, now.Add(-48*time.Hour), now.AddDate(1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	w := &world{signCA: ca, schemas: loadSchemas(t), trust: []*x509.Certificate{ca.Cert}}
	files := map[string][]byte{}
	issue := func(name string, subject string, alg pki.Algorithm) crypto.Signer {
		cert, key, err := ca.Issue(pki.Template{Subject: pkix.Name{CommonName: subject}, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(0, 1, 0)}, alg)
		if err != nil {
			t.Fatal(err)
		}
		pemKey, err := pki.EncodeKey(key)
		if err != nil {
			t.Fatal(err)
		}
		files[name+".crt"], files[name+".key"] = pki.EncodeCertificate(cert), pemKey
		return key
	}
	issue("signing", "Melderegister Düsseldorf (Siegel)", alg)
	w.vs = issue("vermittlungsstelle", "Vermittlungsstelle (Siegel)", pki.ECDSAP256)
	w.signCAFile = filepath.Join(t.TempDir(), "signing-ca.crt")
	if err := os.WriteFile(w.signCAFile, pki.EncodeCertificate(ca.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	var specsList []string
	for _, n := range []string{"zuzug", "auswertung", "sperren", "name", "familie"} {
		abs, err := filepath.Abs(filepath.Join(fixtures, "mappings", "xmeld-"+n+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		specsList = append(specsList, "  - "+abs)
	}
	gewerbeSpec, err := filepath.Abs(filepath.Join(fixtures, "mappings", "xgewerbeanzeige.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	w.Node = nodetest.Start(t, nodetest.Options{
		Tenants: map[string]string{"duesseldorf": fmt.Sprintf(provideTenant, strings.Join(specsList, "\n"), o.insecure, gewerbeSpec), "koeln": askTenant},
		Log:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Files:   files, Clients: []string{"duesseldorf", "koeln", "buergeramt", "polizei", "monheim", "stranger"}, Schemas: w.schemas,
	})
	w.feed(t, o.messages...)
	return w
}

// feed sends XMeld fixtures to Düsseldorf's register inbox and waits
// until they are applied.
func (w *world) feed(t testing.TB, prefixes ...string) {
	t.Helper()
	c := w.XTAClient("duesseldorf", "ags:05111000")
	var ids []string
	for _, p := range prefixes {
		files, _ := filepath.Glob(filepath.Join(fixtures, "messages", "xmeld", p+"-*.xml"))
		if len(files) != 1 {
			t.Fatalf("fixture %s: %v", p, files)
		}
		doc, err := os.ReadFile(files[0])
		if err != nil {
			t.Fatal(err)
		}
		root, err := xmlsafe.Parse(bytes.NewReader(doc), xmlsafe.Options{})
		if err != nil {
			t.Fatal(err)
		}
		id, err := w.Send(t.Context(), c, "ags:05111000", "register:05111000", root.Name.Local, root.Name.Space, doc)
		if err != nil {
			t.Fatalf("send %s: %v", p, err)
		}
		ids = append(ids, id)
	}
	for id, st := range w.Settle(t, time.Minute, ids...) {
		if st != msgbox.StatusGreen {
			t.Fatalf("fixture message %s: report %d, want green", id, st)
		}
	}
}

// spec is a Meldebescheinigung request of the requester for a person.
func spec(requester xnachweis.Agent, p xnachweis.Person) xnachweis.RequestSpec {
	return xnachweis.RequestSpec{Requester: requester, Provider: provider, Person: &p,
		Evidence: xnachweis.RequestedEvidence{Classification: meldebescheinigung, Title: "Meldebescheinigung", Format: "application/xml"}}
}

// sealed is the request with a token of the Vermittlungsstelle for the
// purpose.
func (w *world) sealed(t testing.TB, sp xnachweis.RequestSpec, purpose string) []byte {
	t.Helper()
	b, err := xnachweis.SealedRequest(sp, w.vs, issuer, purpose, time.Now(), 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// post sends a request over HTTPS with the client certificate cn.
func (w *world) post(t testing.TB, cn string, request []byte) *xnachweis.Exchange {
	t.Helper()
	x, err := xnachweis.Post(context.Background(), w.HTTP(cn), w.Base, request, w.trust)
	if err != nil {
		t.Fatalf("post: %v (HTTP %d)\n%s", err, x.Status, x.Body)
	}
	return x
}

// valid checks an answer against the XNachweis 1.2.0 schemas.
func (w *world) valid(t testing.TB, answer []byte) {
	t.Helper()
	if err := w.schemas.Validate(xnachweis.SchemaSet, answer); err != nil {
		t.Fatalf("the answer is not valid XNachweis 1.2.0: %v\n%s", err, answer)
	}
}

// Persons of the fixtures.
var (
	tobias       = xnachweis.Person{FamilyName: "Ñáñez", GivenName: "Tobias Friedrich", DateOfBirth: "1988-11-02", LoA: "High"}
	tobiasByIDNr = xnachweis.Person{FamilyName: "Ñáñez", GivenName: "Tobias Friedrich", DateOfBirth: "1988-11-02", IDNr: "48151623425", LoA: "High"}
	mateo        = xnachweis.Person{FamilyName: "Ñáñez", GivenName: "Mateo Jonas", DateOfBirth: "2019-09-30", LoA: "High"}
	wagner       = xnachweis.Person{FamilyName: "Wagner", GivenName: "Emil", DateOfBirth: "1979-03-05", LoA: "High"}
	nobody       = xnachweis.Person{FamilyName: "Niemand", GivenName: "Nora", DateOfBirth: "1990-01-01", LoA: "High"}
)
