package jobs_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/parzelle/parzelle/golden"
	"github.com/parzelle/parzelle/msgbox"
	"github.com/parzelle/parzelle/node/nodetest"
	"github.com/parzelle/parzelle/register"
	"github.com/parzelle/parzelle/tenant"
	"github.com/parzelle/parzelle/xmlsafe"
)

// The story tests follow one domain's messages through a stretch of time:
// sent one after the other to one tenant's register inbox, and shuffled,
// each sent twice and all at once to another's, both registers must end in
// the same state and history, the one a golden file under testdata/ holds.

// storyFile is a file of a story: a fixture message and the register inbox
// it goes to.
type storyFile struct {
	path  string
	inbox string // "register" or "gewerbe"
}

// xmeldFiles and xpsFiles name fixture messages by their prefix.
func xmeldFiles(prefixes ...string) []storyFile {
	return storyFiles(filepath.Join(fixtures, "messages", "xmeld"), prefixes)
}

func xpsFiles(prefixes ...string) []storyFile {
	return storyFiles(filepath.Join(fixtures, "messages", "xpersonenstand"), prefixes)
}

func storyFiles(dir string, prefixes []string) []storyFile {
	var out []storyFile
	for _, p := range prefixes {
		files, _ := filepath.Glob(filepath.Join(dir, p+"-*.xml"))
		for _, f := range files {
			out = append(out, storyFile{path: f, inbox: "register"})
		}
		if len(files) != 1 {
			panic(fmt.Sprintf("fixture %s in %s: %v", p, dir, files))
		}
	}
	return out
}

// story is a tenant file mapping the named specs into the Melderegister and
// the Gewerberegister, with a register inbox for each.
const storyTenant = `id: %[1]s
name: Register %[1]s
identities:
  - {id: "ags:%[2]s", type: xoev, category: Meldebehörde, transports: [xta]}
  - {id: "register:%[2]s", type: xoev, category: Melderegister, transports: [xta]}
  - {id: "gewerbe:%[2]s", type: xoev, category: Gewerberegister, transports: [xta]}
clients:
  - {name: fachverfahren, subject: "CN=%[1]s,OU=Fachverfahren,O=Parzelle Demo", identities: ["ags:%[2]s"], role: fachverfahren}
trust:
  clientCAs: ["{{CA}}"]
registers:
  - {name: melderegister, type: person}
  - {name: gewerberegister, type: business}
access:
  rules:
    - {role: fachverfahren, operations: [read, search], purposes: [meldewesen], legalBasis: "§ 3 BMG"}
    - {role: register-inbox, operations: [write], purposes: [meldewesen], legalBasis: "§ 33 BMG"}
inboxes:
  - {identity: "register:%[2]s", register: melderegister, writers: ["ags:%[2]s"], purpose: meldewesen}
  - {identity: "gewerbe:%[2]s", register: gewerberegister, writers: ["ags:%[2]s"], purpose: meldewesen}
mappings:
%[3]s`

// storyNode starts a node whose tenants Düsseldorf and Köln map the named
// spec files (names under fixtures/mappings, without .yaml).
func storyNode(t *testing.T, specNames ...string) *nodetest.Node {
	var lines []string
	for _, name := range specNames {
		abs, err := filepath.Abs(filepath.Join(fixtures, "mappings", name+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, "  - "+abs+"\n")
	}
	tenants := map[string]string{}
	for id, code := range ags {
		tenants[id] = fmt.Sprintf(storyTenant, id, code, strings.Join(lines, ""))
	}
	return startNode(t, tenants)
}

// sendStory sends the files to the tenant's inboxes over XTA, in the order
// given, and returns their transport message ids.
func sendStory(t *testing.T, n *nodetest.Node, tenantID string, files []storyFile) []string {
	t.Helper()
	author := "ags:" + ags[tenantID]
	c := n.XTAClient(tenantID, author)
	var ids []string
	for _, f := range files {
		doc, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		root, err := xmlsafe.Parse(bytes.NewReader(doc), xmlsafe.Options{})
		if err != nil {
			t.Fatalf("%s: %v", f.path, err)
		}
		id, err := n.Send(t.Context(), c, author, f.inbox+":"+ags[tenantID], root.Name.Local, root.Name.Space, doc)
		if err != nil {
			t.Fatalf("send %s: %v", f.path, err)
		}
		ids = append(ids, id)
	}
	return ids
}

// playStory sends the files to Düsseldorf one after the other, each once
// its predecessor is applied, and to Köln shuffled, each twice, all at
// once; every report must reach wantStatus. It returns Düsseldorf's register
// state, after checking that Köln's is the same.
func playStory(t *testing.T, n *nodetest.Node, registerName, purpose string, files []storyFile, seed uint64, wantStatus int) string {
	t.Helper()
	for _, f := range files {
		for id, status := range settle(t, n, sendStory(t, n, "duesseldorf", []storyFile{f})...) {
			if status != wantStatus {
				t.Fatalf("%s (%s) in Düsseldorf: report status %d, want %d; dead letters: %v", filepath.Base(f.path), id, status, wantStatus, deadLetters(t, n, "duesseldorf"))
			}
		}
	}
	shuffled := append(slices.Clone(files), files...)
	rand.New(rand.NewPCG(seed, 11)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for id, status := range settle(t, n, sendStory(t, n, "koeln", shuffled)...) {
		if status != wantStatus {
			t.Errorf("Köln message %s: report status %d, want %d; dead letters: %v", id, status, wantStatus, deadLetters(t, n, "koeln"))
		}
	}
	want := registerState(t, n, "duesseldorf", registerName, purpose)
	if got := registerState(t, n, "koeln", registerName, purpose); got != want {
		t.Errorf("Köln's register, from the shuffled and repeated story:\n%s\nwant Düsseldorf's, from the story in order:\n%s", got, want)
	}
	return want
}

// deadLetters lists a tenant's open dead letters for a failure message.
func deadLetters(t *testing.T, n *nodetest.Node, tenantID string) string {
	letters, err := n.Letters.List(t.Context(), tenantID, false)
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, l := range letters {
		out = append(out, fmt.Sprintf("%s %s: %s %v", l.MessageType, l.Step, l.Reason, l.Problems))
	}
	return strings.Join(out, "; ")
}

// registerState renders every record of a tenant's register that no merge
// absorbed: its history as known now (valid spans, attributes, sources),
// sorted, without the ids and times that differ from run to run.
func registerState(t *testing.T, n *nodetest.Node, tenantID, registerName, purpose string) string {
	t.Helper()
	rows, err := n.Pool.Query(t.Context(), `SELECT id::text, deleted_at IS NOT NULL FROM register_record
		WHERE tenant_id = $1 AND register = $2 AND merged_into IS NULL`, tenantID, registerName)
	if err != nil {
		t.Fatal(err)
	}
	type rec struct {
		id      string
		deleted bool
	}
	var recs []rec
	for rows.Next() {
		var r rec
		if err := rows.Scan(&r.id, &r.deleted); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	actor := tenant.Actor{Tenant: tenantID, Kind: tenant.ActorCertificate, Subject: "test", Role: "fachverfahren", Purpose: purpose}
	type span struct {
		From       string              `json:"from,omitempty"`
		To         string              `json:"to,omitempty"`
		Attributes register.Attributes `json:"attributes"`
		Sources    []string            `json:"sources,omitempty"`
	}
	var out []string
	for _, r := range recs {
		if r.deleted {
			out = append(out, `{"deleted": true}`)
			continue
		}
		vs, err := n.Store.History(t.Context(), actor, tenantID, registerName, r.id, register.Temporal{})
		if err != nil {
			t.Fatalf("history of %s: %v", r.id, err)
		}
		var spans []span
		for _, v := range vs {
			spans = append(spans, span{v.ValidFrom, v.ValidTo, v.Attributes, v.Sources})
		}
		b, err := json.MarshalIndent(spans, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	slices.Sort(out)
	return strings.Join(out, "\n") + "\n"
}

// current returns the attributes valid today of the one record of the
// register whose family name and given names are as given.
func current(t *testing.T, n *nodetest.Node, tenantID, familienname, vornamen, geburtsdatum string) register.Attributes {
	t.Helper()
	found, err := n.Store.Search(t.Context(), clerk(tenantID), tenantID, "melderegister", register.Query{Familienname: familienname, Vornamen: vornamen, Geburtsdatum: geburtsdatum})
	if err != nil || len(found) != 1 {
		t.Fatalf("%s, %s (%s) in %s: %d records, %v", familienname, vornamen, geburtsdatum, tenantID, len(found), err)
	}
	return found[0].Attributes
}

// TestStoryXMeldFamily: the Ñáñez family over a year in Düsseldorf — the
// move from Köln, the IDNr, documents, a child's Auskunftssperre, a name
// change, a naturalisation, Sofía's birth (XPersonenstand), the children,
// the legal representatives, a Nebenwohnung in Berlin and its end, a
// Doktorgrad, the church, Berlin's copies of what Düsseldorf keeps — ends in
// one register state whatever the order and however often each message
// arrives; the state is the golden one, and the facts an evidence answer
// relies on are in it.
func TestStoryXMeldFamily(t *testing.T) {
	n := storyNode(t, "xmeld-zuzug", "xmeld-auswertung", "xmeld-anschrift", "xmeld-name", "xmeld-sperren", "xmeld-familie",
		"xmeld-staatsangehoerigkeit", "xmeld-dokument", "xmeld-berichtigung", "xpersonenstand-geburt")
	files := append(xmeldFiles("07", "09", "22", "10", "11", "23", "21", "12", "13", "20", "15", "19"),
		xpsFiles("06", "01", "08", "09")...)
	files = append(files, xmeldFiles("14", "44", "17", "16", "24", "25", "42", "43", "45", "18")...)
	state := playStory(t, n, "melderegister", "meldewesen", files, 7, msgbox.StatusGreen)
	golden.Check(t, filepath.Join("testdata", "story-xmeld-family.golden"), []byte(state))

	tobias := current(t, n, "duesseldorf", "Ñáñez", "Tobias Friedrich", "1988-11-02")
	if tobias["idnr"] == nil || tobias["doktorgrad"] == nil || tobias["nebenwohnungen"] != nil {
		t.Errorf("Tobias today: IDNr, Doktorgrad and no Nebenwohnung expected: %v", tobias)
	}
	lucia := current(t, n, "duesseldorf", "Ruiz Ñáñez", "Lucía Carmen", "1990-06-14")
	if sa, _ := lucia["staatsangehoerigkeit"].([]any); len(sa) != 2 {
		t.Errorf("Lucía's nationalities: %v, want German and Spanish", lucia["staatsangehoerigkeit"])
	}
	if sp, _ := lucia["uebermittlungssperren"].([]any); len(sp) != 1 {
		t.Errorf("Lucía's Übermittlungssperren: %v, want one", lucia["uebermittlungssperren"])
	}
	mateo := current(t, n, "duesseldorf", "Ruiz Ñáñez", "Mateo Jonas", "2019-09-30")
	if sp, _ := mateo["auskunftssperren"].([]any); len(sp) != 1 || mateo["auskunftssperre"] != true {
		t.Errorf("Mateo's Auskunftssperre, which an evidence answer must respect: %v", mateo)
	}
	sofia := current(t, n, "duesseldorf", "Ñáñez", "Sofía Helena", "2025-12-01")
	if sofia["hauptwohnung"] == nil || sofia["gesetzlicheVertreter"] == nil {
		t.Errorf("Sofía, born in Düsseldorf: a Hauptwohnung and her parents as representatives expected: %v", sofia)
	}
	if found, err := n.Store.Search(t.Context(), clerk("duesseldorf"), "duesseldorf", "melderegister", register.Query{Familienname: "Ñáñez", Vornamen: "Lucía Carmen", Geburtsdatum: "1990-06-14"}); err != nil || len(found) != 1 || found[0].Attributes["familienname"] != "Ruiz Ñáñez" {
		t.Errorf("Lucía by her former name: %v %v, want her one record under her new name", found, err)
	}
}

// TestStoryXPersonenstand: a birth creates the child's record, a
// correction of the birth entry and a death ending a registration, with the
// XMeld messages that registered the persons, in any order and twice: the
// same golden state.
func TestStoryXPersonenstand(t *testing.T) {
	n := storyNode(t, "xmeld-zuzug", "xmeld-auswertung", "xmeld-name", "xmeld-berichtigung", "xpersonenstand-geburt", "xpersonenstand-sterbefall")
	files := append(xmeldFiles("07", "09", "12", "28", "29"), xpsFiles("01", "08", "09", "16", "18")...)
	state := playStory(t, n, "melderegister", "meldewesen", files, 3, msgbox.StatusGreen)
	golden.Check(t, filepath.Join("testdata", "story-xpersonenstand.golden"), []byte(state))

	sofia := current(t, n, "duesseldorf", "Ñáñez", "Sofía Helena", "2025-12-01")
	if sofia["hauptwohnung"] == nil || sofia["geburtsort"] == nil {
		t.Errorf("Sofía's record, which the birth created: %v", sofia)
	}
	wagner := current(t, n, "duesseldorf", "Wagner", "Emil", "1979-03-05")
	if wagner["sterbedatum"] != "2026-03-13" || wagner["hauptwohnung"] != nil {
		t.Errorf("Emil Wagner of Rostock after his death (corrected to 2026-03-13): %v", wagner)
	}
}

// TestStoryGewerbe: a business's life — Anmeldung, Ummeldung to a new
// Betriebsstätte, the correction of the Ummeldung's house number (and a
// second business in the same message), Abmeldung — in any order and
// twice: the same golden state.
func TestStoryGewerbe(t *testing.T) {
	n := storyNode(t, "xgewerbeanzeige")
	samples := filepath.Join(specs, "xoev", "xgewerbeanzeige", "samples")
	mappingData := filepath.Join("..", "mapping", "testdata")
	var files []storyFile
	for _, f := range []string{filepath.Join(samples, "xgwa2.2-valid.xml"), filepath.Join(mappingData, "xgwa2.2-ummeldung.xml"),
		filepath.Join(mappingData, "xgwa2.2-korrektur.xml"), filepath.Join(mappingData, "xgwa2.2-abmeldung.xml")} {
		files = append(files, storyFile{path: f, inbox: "gewerbe"})
	}
	// No XGewerbeanzeige schema is public: the reports are yellow (applied,
	// not validated).
	state := playStory(t, n, "gewerberegister", "meldewesen", files, 5, msgbox.StatusYellow)
	golden.Check(t, filepath.Join("testdata", "story-gewerbe.golden"), []byte(state))
	if !strings.Contains(state, `"status": "abgemeldet"`) || !strings.Contains(state, `"hausnummer": "21"`) || strings.Contains(state, `"hausnummer": "12"`) {
		t.Errorf("the business's history: the Abmeldung and the corrected house number 21 (never 12) expected:\n%s", state)
	}
}
