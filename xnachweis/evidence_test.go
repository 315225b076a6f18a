package xnachweis_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parzelle/parzelle/golden"
	"github.com/parzelle/parzelle/msgbox"
	"github.com/parzelle/parzelle/node/nodetest"
	"github.com/parzelle/parzelle/register"
	"github.com/parzelle/parzelle/tenant"
	"github.com/parzelle/parzelle/xmlsafe"
	"github.com/parzelle/parzelle/xnachweis"
	"github.com/parzelle/parzelle/xta"
)

// family are the XMeld fixtures the tests feed: the Ñáñez family's move
// (07), Tobias's IDNr (09), the child Mateo's Auskunftssperre (11), and
// the two Emil Wagners born the same day (27, 28).
var family = []string{"07", "09", "11", "27", "28"}

// fields returns the evidence document's subject fields as element name
// → text (nested elements joined by "/").
func fields(t testing.TB, doc []byte) map[string]string {
	t.Helper()
	root, err := xmlsafe.Parse(bytes.NewReader(doc), xmlsafe.Options{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	var walk func(prefix string, el *xmlsafe.Element)
	walk = func(prefix string, el *xmlsafe.Element) {
		for _, c := range el.Children {
			name := prefix + c.Name.Local
			if len(c.Children) == 0 {
				out[name] = strings.TrimSpace(c.Text)
			} else {
				walk(name+"/", c)
			}
		}
	}
	if s := root.Child(xnachweis.NSEvidence, "Person"); s != nil {
		walk("", s)
	}
	return out
}

// TestEvidenceEndToEnd: the XMeld fixtures go in over XTA; a 0101 request
// for Tobias Ñáñez over HTTPS gets a Meldebescheinigung with exactly the
// fields the evidence type allows, signed by Düsseldorf, in a response
// that validates; the same by IDNr.
func TestEvidenceEndToEnd(t *testing.T) {
	w := newWorld(t, worldOptions{messages: family})
	for _, p := range []xnachweis.Person{tobias, tobiasByIDNr} {
		x := w.post(t, "buergeramt", w.sealed(t, spec(buergeramt, p), "wohnsitznachweis"))
		w.valid(t, x.Body)
		if x.Code != "" || x.Evidence == nil {
			t.Fatalf("answer %s %s:\n%s", x.Code, x.Details, x.Body)
		}
		got := fields(t, x.Evidence)
		want := map[string]string{"familienname": "Ñáñez", "vornamen": "Tobias Friedrich", "geburtsdatum": "1988-11-02", "geburtsort": "Essen",
			"hauptwohnung/strasse": "Bilker Allee", "hauptwohnung/hausnummer": "54", "hauptwohnung/postleitzahl": "40219",
			"hauptwohnung/wohnort": "Düsseldorf", "hauptwohnung/seit": "2025-06-01"}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s = %q, want %q", k, got[k], v)
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("the Meldebescheinigung shows %s = %q, which the evidence type does not allow", k, got[k])
			}
		}
		if x.EvidenceOf == nil || !strings.Contains(x.EvidenceOf.Subject.CommonName, "Düsseldorf") {
			t.Errorf("evidence signed by %v", x.EvidenceOf)
		}
	}
}

// TestEvidenceGolden: the answers of each kind — a national response, an
// EU one (0301 → 0302) and the evidence document — as golden files, valid
// against the schemas; the evidence's signature verifies in xmlsec1, and
// a tampered evidence does not.
func TestEvidenceGolden(t *testing.T) {
	w := newWorld(t, worldOptions{messages: family})
	x := w.post(t, "buergeramt", w.sealed(t, spec(buergeramt, tobiasByIDNr), "wohnsitznachweis"))
	w.valid(t, x.Body)
	golden.Check(t, filepath.Join("testdata", "response-0102.golden"), normalized(x.Body))
	golden.Check(t, filepath.Join("testdata", "evidence-meldebescheinigung.golden"), normalized(x.Evidence))

	eu := spec(buergeramt, tobias)
	eu.Type = xnachweis.RequestEU
	y := w.post(t, "buergeramt", w.sealed(t, eu, "wohnsitznachweis"))
	w.valid(t, y.Body)
	if y.Code != "" || !bytes.Contains(y.Body, []byte("DE.EvidenceResponse.0302")) {
		t.Fatalf("EU request answered %s:\n%s", y.Code, y.Body)
	}
	golden.Check(t, filepath.Join("testdata", "response-0302.golden"), normalized(y.Body))
	eu.Person = &nobody
	z := w.post(t, "buergeramt", w.sealed(t, eu, "wohnsitznachweis"))
	w.valid(t, z.Body)
	if z.Code != xnachweis.CodeNoMatch.Value || !bytes.Contains(z.Body, []byte("DE.EvidenceErrorResponse.0303")) {
		t.Fatalf("EU request for nobody answered %s:\n%s", z.Code, z.Body)
	}

	dir := t.TempDir()
	file := filepath.Join(dir, "evidence.xml")
	if err := os.WriteFile(file, x.Evidence, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("xmlsec1", "--verify", "--trusted-pem", w.signCAFile, file).CombinedOutput(); err != nil {
		t.Fatalf("xmlsec1 refused the evidence's signature: %v\n%s", err, out)
	}
	tampered := bytes.Replace(x.Evidence, []byte("Bilker Allee"), []byte("Bilker Allée"), 1)
	if bytes.Equal(tampered, x.Evidence) {
		t.Fatal("nothing to tamper with")
	}
	if err := os.WriteFile(file, tampered, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("xmlsec1", "--verify", "--trusted-pem", w.signCAFile, file).CombinedOutput(); err == nil {
		t.Fatalf("xmlsec1 accepted a tampered evidence:\n%s", out)
	}
}

// TestEvidenceAuskunftssperre: a requester whose legal basis the evidence
// type lists gets evidence about a blocked person; the match by birth place
// tells the two Emil Wagners apart.
func TestEvidenceAuskunftssperre(t *testing.T) {
	w := newWorld(t, worldOptions{messages: family})
	x := w.post(t, "polizei", w.sealed(t, spec(polizei, mateo), "gefahrenabwehr"))
	if x.Code != "" || fields(t, x.Evidence)["vornamen"] != "Mateo Jonas" {
		t.Fatalf("the police asked about the blocked child: %s %s", x.Code, x.Details)
	}
	kassel := wagner
	kassel.PlaceOfBirth = "Kassel"
	y := w.post(t, "buergeramt", w.sealed(t, spec(buergeramt, kassel), "wohnsitznachweis"))
	if y.Code != "" || fields(t, y.Evidence)["hauptwohnung/strasse"] != "Hermannstraße" {
		t.Fatalf("Emil Wagner of Kassel: %s %s", y.Code, y.Details)
	}
}

// TestEvidenceAccessLog: requests by IDNr, answered or refused, are in the
// access log the Datenschutzcockpit export reads, with token, evidence
// type and result.
func TestEvidenceAccessLog(t *testing.T) {
	w := newWorld(t, worldOptions{messages: family})
	w.post(t, "buergeramt", w.sealed(t, spec(buergeramt, tobiasByIDNr), "wohnsitznachweis"))
	stranger := tobiasByIDNr
	stranger.IDNr = "65929970489"
	w.post(t, "buergeramt", w.sealed(t, spec(buergeramt, stranger), "wohnsitznachweis"))
	bad, err := xnachweis.SealedRequest(spec(buergeramt, tobiasByIDNr), w.vs, issuer, "wohnsitznachweis", time.Now().Add(-2*time.Hour), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	w.post(t, "buergeramt", bad)
	var out bytes.Buffer
	dsb := tenant.Actor{Tenant: "duesseldorf", Kind: tenant.ActorCertificate, Subject: "dsb", Role: "datenschutz", Purpose: "datenschutzauskunft"}
	if _, err := w.Store.ExportAccessLog(t.Context(), dsb, "duesseldorf", "melderegister", register.AccessFilter{}, &out); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var d register.Disclosure
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatal(err)
		}
		if d.Operation != "evidence" {
			continue
		}
		if d.Recipient != "urn:cef.eu:names:identifier:EAS:0204:991-05315-00" || d.EvidenceType != "meldebescheinigung" || (d.TokenID != "" && d.Purpose != "wohnsitznachweis") {
			t.Errorf("entry %+v", d)
		}
		got = append(got, fmt.Sprintf("%s %s token:%t record:%t", d.IDNr, d.Result, d.TokenID != "", d.RecordID != ""))
	}
	want := []string{"48151623425 answered token:true record:true", "65929970489 no-match token:true record:false", "48151623425 XN_TOKEN_EXPIRED token:false record:false"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("access log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestEvidenceOverXTA: Köln's Bürgeramt sends the request as an XTA
// message to Düsseldorf's evidence identity; the answer arrives in Köln's
// message box as an XTA message, and the request's report turns green
// naming it. A request from an account no requester lists is answered
// with an error response the same way.
func TestEvidenceOverXTA(t *testing.T) {
	w := newWorld(t, worldOptions{messages: family})
	c := w.XTAClient("koeln", "ags:05315000")
	id, err := w.Send(t.Context(), c, "ags:05315000", "nachweis:05111000", xnachweis.RequestNational, xnachweis.NSDE,
		w.sealed(t, spec(buergeramt, tobias), "wohnsitznachweis"))
	if err != nil {
		t.Fatal(err)
	}
	if st := w.Settle(t, time.Minute, id); st[id] != msgbox.StatusGreen {
		t.Fatalf("request report %d, want green", st[id])
	}
	rep, err := c.TransportReport(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(fmt.Sprint(rep), msgbox.RecordAnswered) {
		t.Errorf("report without %s: %+v", msgbox.RecordAnswered, rep)
	}
	var answer *xta.ReceivedMessage
	for deadline := time.Now().Add(30 * time.Second); answer == nil; {
		list, err := c.StatusList(t.Context(), xta.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Entries) > 0 {
			if answer, err = c.GetMessage(t.Context(), list.Entries[0].MessageID); err != nil {
				t.Fatal(err)
			}
		} else if time.Now().After(deadline) {
			t.Fatal("no answer in Köln's box")
		}
		time.Sleep(50 * time.Millisecond)
	}
	x := &xnachweis.Exchange{Body: answer.Contents[0].Data}
	if err := x.Check(w.trust); err != nil || x.Code != "" {
		t.Fatalf("the answer over XTA: %v %s\n%s", err, x.Code, x.Body)
	}
	w.valid(t, x.Body)
	if fields(t, x.Evidence)["familienname"] != "Ñáñez" {
		t.Errorf("evidence %s", x.Evidence)
	}
	if err := c.Close(t.Context(), answer.MessageID); err != nil {
		t.Fatal(err)
	}
	// The request's content is gone once answered.
	var left int
	if err := w.Pool.QueryRow(t.Context(), `SELECT count(*) FROM xta_message WHERE box = 'inbox' AND message_id = $1`, id).Scan(&left); err != nil || left != 0 {
		t.Errorf("the answered request is still in the box (%d, %v)", left, err)
	}
}

// TestInsecureTestMode: a tenant that skips the IssuedToken's check
// answers a request without a valid token, and says so on /metrics and on
// the console.
func TestInsecureTestMode(t *testing.T) {
	w := newWorld(t, worldOptions{insecure: true, messages: []string{"07"}})
	sp := spec(buergeramt, tobias)
	sp.Token = "nicht-gesiegelt"
	if x := w.post(t, "buergeramt", xnachweis.BuildRequest(sp)); x.Code != "" {
		t.Fatalf("insecure test mode: %s %s", x.Code, x.Details)
	}
	mf, err := w.Metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range mf {
		if f.GetName() == "parzelle_xnachweis_insecure_test_mode" {
			for _, m := range f.GetMetric() {
				found = found || (m.GetLabel()[0].GetValue() == "duesseldorf" && m.GetGauge().GetValue() == 1)
			}
		}
	}
	if !found {
		t.Error("parzelle_xnachweis_insecure_test_mode{tenant=\"duesseldorf\"} is not 1")
	}
	if _, page := nodetest.ConsoleGet(t, w.Ops, "betrieb", nodetest.ConsolePassword, "/console/"); !strings.Contains(page, "INSECURE TEST MODE") {
		t.Errorf("the console does not show the insecure test mode:\n%s", page)
	}
}

// TestGewerbeauskunft: a business from the Gewerberegister, asked for by
// its name as a legal person, answered with a Gewerbeauskunft.
func TestGewerbeauskunft(t *testing.T) {
	w := newWorld(t, worldOptions{})
	doc, err := os.ReadFile(filepath.Join(specs, "xoev", "xgewerbeanzeige", "samples", "xgwa2.2-valid.xml"))
	if err != nil {
		t.Fatal(err)
	}
	id, err := w.Send(t.Context(), w.XTAClient("duesseldorf", "ags:05111000"), "ags:05111000", "gewerbe:05111000", "gewerbemeldung",
		"http://www.xgewerbeanzeige.de/spezifikation/2.2", doc)
	if err != nil {
		t.Fatal(err)
	}
	if st := w.Settle(t, time.Minute, id); st[id] == msgbox.StatusRed {
		t.Fatalf("the Gewerbeanzeige was not applied: %v", st)
	}
	sp := xnachweis.RequestSpec{Requester: buergeramt, Provider: provider, Business: &xnachweis.Business{LegalName: "Tibor Pick e.K."},
		Evidence: xnachweis.RequestedEvidence{Classification: gewerbeauskunft, Title: "Gewerbeauskunft"}}
	x := w.post(t, "buergeramt", w.sealed(t, sp, "gewerbeaufsicht"))
	w.valid(t, x.Body)
	if x.Code != "" {
		t.Fatalf("%s %s", x.Code, x.Details)
	}
	root, err := xmlsafe.Parse(bytes.NewReader(x.Evidence), xmlsafe.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := root.Child(xnachweis.NSEvidence, "Betrieb")
	if root.Name.Local != "Gewerbeauskunft" || b == nil || b.Child(xnachweis.NSEvidence, "name").TrimmedText() != "Tibor Pick e.K." ||
		b.Child(xnachweis.NSEvidence, "status").TrimmedText() != "aktiv" || b.Child(xnachweis.NSEvidence, "inhaber") != nil {
		t.Errorf("Gewerbeauskunft:\n%s", x.Evidence)
	}
	sp.Business.LegalName = "Niemand GmbH"
	if y := w.post(t, "buergeramt", w.sealed(t, sp, "gewerbeaufsicht")); y.Code != xnachweis.CodeNoMatch.Value {
		t.Errorf("an unknown business: %s", y.Code)
	}
}
