package osci_test

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/jobs"
	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/msgbox"
	"github.com/parzelle/parzelle/node/nodetest"
	"github.com/parzelle/parzelle/osci"
	"github.com/parzelle/parzelle/osci/oscitest"
	"github.com/parzelle/parzelle/pki"
	"github.com/parzelle/parzelle/register"
	"github.com/parzelle/parzelle/tenant"
	"github.com/parzelle/parzelle/xta"
)

// authorTenant is a Fachverfahren's tenant that sends over XTA, with the
// demo PKI's alice keys for OSCI (%[1]s is the demo PKI's directory).
const authorTenant = `id: koeln
name: Fachverfahren Köln
identities:
  - {id: "ags:05315000", type: xoev, category: Meldebehörde, transports: [xta]}
clients:
  - {name: fachverfahren, subject: "CN=fachverfahren,OU=Fachverfahren,O=Parzelle Demo", identities: ["ags:05315000"]}
trust:
  clientCAs: ["{{CA}}"]
keys:
  signing: [{pkcs12: %[1]s/alice_signature_4096.p12, passwordFile: "{{DIR}}/pin"}]
  decryption: [{pkcs12: %[1]s/alice_cipher_4096.p12, passwordFile: "{{DIR}}/pin"}]
`

// TestSenderXTAToOSCI: a Fachverfahren sends an XTA message to osci:bob,
// a reader this node does not host for XTA: the directory names his OSCI
// intermediary (here the node's own bremen tenant, reached over HTTPS
// like any other), and the message is stored in bob's postbox there —
// the XTA MessageMetaData as the custom header Id="MetaData", the content
// signed by the author tenant (alice's key) and encrypted to bob, the
// attachment with it. The author's report turns green, naming the OSCI
// MessageId. bob collects it with the client role and opens it. A reader
// whose cipher certificate in the directory has expired is refused before
// anything is sent (red, 3705, no dialog opened); a reader the directory
// cannot place turns the report red (9809).
func TestSenderXTAToOSCI(t *testing.T) {
	ctx := t.Context()
	certs := oscitest.Certs
	dir := t.TempDir()
	directory := filepath.Join(dir, "directory.yaml")
	n := nodetest.Start(t, nodetest.Options{Tenants: map[string]string{"bremen": fmt.Sprintf(intermediaryTenant, certs), "koeln": fmt.Sprintf(authorTenant, certs)},
		Files: map[string][]byte{"pin": []byte("123456\n")}, Clients: []string{"osci-client", "fachverfahren"}, Directory: directory, Schemas: osciSchemas(t)})
	n.Sender.HTTP = n.HTTP("osci-client")
	writeDirectory(t, directory, "osci:bob", n.Base+"/osci", "bob_cipher_4096", "osci_manager")
	sender := n.XTAClient("fachverfahren", "ags:05315000")
	doc := []byte(`<nachricht xmlns="urn:test">Hallo bob</nachricht>`)
	send := func(reader string, attachments ...xta.OutgoingContent) string {
		t.Helper()
		id, err := sender.CreateMessageID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		err = sender.Send(ctx, &xta.OutgoingMessage{MessageID: id, Author: xta.Party{ID: "ags:05315000"}, Reader: xta.Party{ID: reader},
			Service: "urn:test:service", BusinessScenario: "XMELD_DATA", MessageType: "nachricht", MessageTypeSchema: "urn:test",
			Message:     xta.OutgoingContent{ContentType: "text/xml", Encoding: "UTF-8", Filename: "nachricht.xml", Data: bytes.NewReader(doc), Size: int64(len(doc))},
			Attachments: attachments})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	id := send("osci:bob", xta.OutgoingContent{ContentType: "text/plain", Filename: "anlage.txt", ID: "anlage.txt", Data: strings.NewReader("Anlage"), Size: 6})
	out := awaitReport(t, n, "koeln", "ags:05315000", id, settled)
	if out.Status != msgbox.StatusGreen || !strings.Contains(records(out), "Über OSCI an "+n.Base+"/osci in das Postfach von osci:bob zugestellt") {
		t.Fatalf("the author's report: status %d\n%s", out.Status, records(out))
	}

	bob := client(t, n, "bob")
	s, err := bob.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := s.Fetch(ctx, "")
	if err != nil || a == nil {
		t.Fatalf("bob's fetch: %v %v", a, err)
	}
	content, err := osci.OpenContent(a, []*keys.KeyPair{bob.Cipher}, keys.NewTrustStore([]*x509.Certificate{oscitest.Certificate(t, "alice_signature_4096")}))
	if err != nil {
		t.Fatal(err)
	}
	meta := a.Envelope.Root.FindAll(osci.XTAMetaNamespace, "MessageMetaData")
	if string(content.Document) != string(doc) || len(meta) != 1 || a.MIME.Part("anlage.txt") == nil || string(a.MIME.Part("anlage.txt").Body) != "Anlage" {
		t.Errorf("bob got %q, %d MessageMetaData, attachment %v", content.Document, len(meta), a.MIME.Part("anlage.txt"))
	}
	if id, _ := meta[0].Attribute("Id"); id != "MetaData" {
		t.Errorf("the MessageMetaData header's Id is %q", id)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// A reader whose cipher certificate in the directory has expired:
	// refused before anything is sent.
	expired := filepath.Join(dir, "abgelaufen.crt")
	ca, err := pki.NewAuthority(pkix.Name{CommonName: "Test-CA"}, pki.RSA3072, time.Now().AddDate(-3, 0, 0), time.Now().AddDate(1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue(pki.Template{Subject: pkix.Name{CommonName: "abgelaufen"}, NotBefore: time.Now().AddDate(-2, 0, 0), NotAfter: time.Now().AddDate(-1, 0, 0)}, pki.RSA3072)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFiles(expired, filepath.Join(dir, "abgelaufen.key"), cert, key); err != nil {
		t.Fatal(err)
	}
	writeDirectory(t, directory, "osci:bob", n.Base+"/osci", "bob_cipher_4096", "osci_manager")
	body, _ := os.ReadFile(directory)
	body = append(body, []byte("  - reader: osci:abgelaufen\n    intermediary: "+n.Base+"/osci\n    cipherCertificate: "+expired+
		"\n    intermediaryCipherCertificate: "+certs+"/osci_manager_cipher_4096.cer\n    intermediarySignatureCertificate: "+certs+"/osci_manager_signature_4096.cer\n")...)
	body = append(body, []byte("  - reader: osci:passivlos\n    intermediary: "+n.Base+"/osci\n    cipherCertificate: "+certs+"/carol_cipher_4096.cer"+
		"\n    intermediaryCipherCertificate: "+certs+"/osci_manager_cipher_4096.cer\n    intermediarySignatureCertificate: "+certs+"/osci_manager_signature_4096.cer\n    mode: passive\n")...)
	if err := os.WriteFile(directory, body, 0o644); err != nil {
		t.Fatal(err)
	}
	dialogs := func() (count int) {
		if err := db.InTenant(ctx, n.Pool, "bremen", func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, `SELECT count(*) FROM osci_dialog`).Scan(&count)
		}); err != nil {
			t.Fatal(err)
		}
		return count
	}
	before := dialogs()
	if out := awaitReport(t, n, "koeln", "ags:05315000", send("osci:abgelaufen"), settled); out.Status != msgbox.StatusRed || !strings.Contains(records(out), "3705") {
		t.Errorf("the message to a reader with an expired certificate: status %d\n%s", out.Status, records(out))
	}
	if dialogs() != before {
		t.Error("a dialog was opened for a reader whose certificate had expired")
	}

	// A reader the directory does not know how to reach.
	lost := send("osci:unbekannt")
	if out := awaitReport(t, n, "koeln", "ags:05315000", lost, settled); out.Status != msgbox.StatusRed || !strings.Contains(records(out), "9809") {
		t.Errorf("the lost message's report: status %d\n%s", out.Status, records(out))
	}
	// A passive recipient whose address the directory does not name.
	if out := awaitReport(t, n, "koeln", "ags:05315000", send("osci:passivlos"), settled); out.Status != msgbox.StatusRed ||
		!strings.Contains(records(out), "without its contentReceiver") {
		t.Errorf("the message to a passive recipient without address: status %d\n%s", out.Status, records(out))
	}
	// All three are dead letters of koeln (no route); an operator discards
	// the lost one: its content goes, its report says why.
	letters, err := n.Letters.List(ctx, "koeln", false)
	if err != nil {
		t.Fatal(err)
	}
	causes := map[string]string{}
	for _, l := range letters {
		causes[l.Reader] = l.Step + " " + l.Cause
		if l.MessageID == lost {
			operator := tenant.Actor{Tenant: "koeln", Kind: "operator", Subject: "ops@test", Role: "operator", Purpose: "betrieb"}
			if err := n.Letters.Discard(ctx, operator, "koeln", l.ID, "Empfänger gibt es nicht"); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(letters) != 3 || causes["osci:abgelaufen"] != "send no-route" || causes["osci:unbekannt"] != "send no-route" || causes["osci:passivlos"] != "send no-route" {
		t.Errorf("koeln's dead letters: %v", causes)
	}
	if out := awaitReport(t, n, "koeln", "ags:05315000", lost, settled); outboxParts(t, n, lost) != 0 || !strings.Contains(records(out), "Empfänger gibt es nicht") {
		t.Errorf("the discarded message: %d parts\n%s", outboxParts(t, n, lost), records(out))
	}
}

// awaitReport polls the report of a message the account (of the tenant)
// sent until done says so, a minute at most, and returns it as it last
// was.
func awaitReport(t testing.TB, n *nodetest.Node, tenantID, account, messageID string, done func(*msgbox.Outbox) bool) *msgbox.Outbox {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := n.Box.Report(t.Context(), tenantID, account, messageID)
		if err != nil {
			t.Fatal(err)
		}
		if done(out) || time.Now().After(deadline) {
			return out
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// settled is the done of awaitReport for a report no longer open.
func settled(out *msgbox.Outbox) bool { return out.Status != msgbox.StatusOpen }

func records(out *msgbox.Outbox) string {
	var b strings.Builder
	for _, r := range out.Records {
		b.WriteString(r.Level + " " + r.Code + " " + r.Reason + "\n")
	}
	return b.String()
}

// receiverTenant is node B's tenant: the intermediary (the demo PKI's
// OSCI-Manager keys) of the XTA account ags:04011000, reachable over OSCI
// (its cipher certificate is the tenant's decryption key), which trusts
// alice's signature for the author ags:05315000 on node A.
const receiverTenant = `id: bremen
name: Fachverfahren Bremen und sein OSCI-Intermediär
identities:
  - id: "ags:04011000"
    type: xoev
    category: Meldebehörde
    transports: [xta, osci]
    osci: {cipherCertificate: %[1]s/osci_manager_cipher_4096.cer, signatureCertificate: %[1]s/osci_manager_signature_4096.cer}
clients:
  - {name: fachverfahren, subject: "CN=fachverfahren-b,OU=Fachverfahren,O=Parzelle Demo", identities: ["ags:04011000"]}
trust:
  clientCAs: ["{{CA}}"]
keys:
  trust:
    counterparts: [{identity: "ags:05315000", signers: [%[1]s/alice_signature_4096.cer]}]
  signing: [{pkcs12: %[1]s/osci_manager_signature_4096.p12, passwordFile: "{{DIR}}/pin"}]
  decryption: [{pkcs12: %[1]s/osci_manager_cipher_4096.p12, passwordFile: "{{DIR}}/pin"}]
`

// TestTwoNodesXTAOverOSCI: two nodes, two databases, two PKIs. An XTA
// sendMessage on node A from ags:05315000 to ags:04011000, whom A's
// directory places behind node B's intermediary, arrives in B's XTA
// message box over OSCI (A presents a client certificate of B's CA):
// B's Fachverfahren lists and fetches it over XTA, document and
// attachment as sent; A's transport report is green, and once B's reader
// closed the message, the process card brings the fetching and reception
// times into it. While the directory
// still points where B is not, the job retries; once it points to B the
// message arrives, once. A message B refuses for good (its author's
// signer is not trusted there: 9700) turns A's report red naming the
// code.
func TestTwoNodesXTAOverOSCI(t *testing.T) {
	ctx := t.Context()
	certs := oscitest.Certs
	files := map[string][]byte{"pin": []byte("123456\n")}
	b := nodetest.Start(t, nodetest.Options{Tenants: map[string]string{"bremen": fmt.Sprintf(receiverTenant, certs)}, Files: files,
		Clients: []string{"osci-node-a", "fachverfahren-b"}, Schemas: osciSchemas(t)})
	directory := filepath.Join(t.TempDir(), "directory.yaml")
	muenster := strings.NewReplacer("id: koeln", "id: muenster", "ags:05315000", "ags:05515000", "CN=fachverfahren,", "CN=fachverfahren-ms,", "alice_", "bob_").
		Replace(fmt.Sprintf(authorTenant, certs))
	a := nodetest.Start(t, nodetest.Options{Tenants: map[string]string{"koeln": fmt.Sprintf(authorTenant, certs), "muenster": muenster}, Files: files,
		Clients: []string{"fachverfahren", "fachverfahren-ms"}, Directory: directory, Schemas: osciSchemas(t)})
	a.Sender.HTTP, a.Sender.CardInterval = b.HTTP("osci-node-a"), 200*time.Millisecond
	route := func(url string) {
		writeDirectory(t, directory, "ags:04011000", url, "osci_manager_cipher_4096", "osci_manager")
	}
	doc := []byte(`<nachricht xmlns="urn:test">von Köln nach Bremen</nachricht>`)
	send := func(cn, author string) string {
		t.Helper()
		sender := a.XTAClient(cn, author)
		id, err := sender.CreateMessageID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		err = sender.Send(ctx, &xta.OutgoingMessage{MessageID: id, Author: xta.Party{ID: author}, Reader: xta.Party{ID: "ags:04011000"},
			Service: "urn:test:service", BusinessScenario: "XMELD_DATA", MessageType: "nachricht", MessageTypeSchema: "urn:test",
			Message:     xta.OutgoingContent{ContentType: "text/xml", Encoding: "UTF-8", Filename: "nachricht.xml", Data: bytes.NewReader(doc), Size: int64(len(doc))},
			Attachments: []xta.OutgoingContent{{ContentType: "text/plain", Filename: "anlage.txt", ID: "anlage.txt", Data: strings.NewReader("Anlage"), Size: 6}}})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	// B is not where the directory says: the first attempt fails and is
	// retried; then the directory points to B.
	route("https://127.0.0.1:1/osci")
	id := send("fachverfahren", "ags:05315000")
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(jobErrors(t, a), "127.0.0.1:1") {
		if time.Now().After(deadline) {
			t.Fatal("no failed attempt against the unreachable address")
		}
		time.Sleep(100 * time.Millisecond)
	}
	route(b.Base + "/osci")
	if out := awaitReport(t, a, "koeln", "ags:05315000", id, settled); out.Status != msgbox.StatusGreen {
		t.Fatalf("A's report: status %d\n%s", out.Status, records(out))
	}
	reader := b.XTAClient("fachverfahren-b", "ags:04011000")
	got := nextMessage(t, reader)
	if got.MessageID != id || len(got.Contents) != 2 || string(got.Contents[0].Data) != string(doc) || string(got.Contents[1].Data) != "Anlage" {
		t.Fatalf("B's reader fetched %s with %d contents: %+v", got.MessageID, len(got.Contents), got.Contents)
	}
	if err := reader.Close(ctx, got.MessageID); err != nil {
		t.Fatal(err)
	}
	if n := inboxRows(t, b, "ags:04011000"); n != 1 {
		t.Errorf("the message arrived %d times at B", n)
	}
	// The process card brings B's fetching and reception into A's report.
	out := awaitReport(t, a, "koeln", "ags:05315000", id, func(o *msgbox.Outbox) bool { return o.Fetched != nil && o.Closed != nil })
	if out.Fetched == nil || out.Closed == nil {
		t.Fatalf("A's report shows no reception a minute after B's reader closed the message:\n%s", records(out))
	}
	if !strings.Contains(records(out), "Laut Laufzettel von ags:04011000") {
		t.Errorf("A's report after the reception:\n%s", records(out))
	}

	// B refuses for good what muenster's signer sends (not trusted for
	// ags:05515000 there): red, with the code, and a dead letter of
	// muenster on A whose message keeps its content.
	refused := send("fachverfahren-ms", "ags:05515000")
	out = awaitReport(t, a, "muenster", "ags:05515000", refused, settled)
	if out.Status != msgbox.StatusRed || !strings.Contains(records(out), "9700") {
		t.Errorf("the refused message's report: status %d\n%s", out.Status, records(out))
	}
	letters, err := a.Letters.List(ctx, "muenster", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(letters) != 1 || letters[0].MessageID != refused || letters[0].Step != jobs.StepSend || letters[0].Cause != jobs.CauseNotAccepted ||
		!strings.Contains(letters[0].Reason, "9700") || letters[0].Author != "ags:05515000" {
		t.Fatalf("A's dead letters of muenster: %+v", letters)
	}
	if parts := outboxParts(t, a, refused); parts != 2 {
		t.Errorf("the refused message keeps %d parts, not its 2", parts)
	}
	if parts := outboxParts(t, a, id); parts != 0 {
		t.Errorf("the delivered message still has %d parts stored on A", parts)
	}
	// B learns to trust muenster's signer; a day passes, and B forgets
	// the MessageId A recorded. The operator's retry finds it forgotten
	// (9801 and no process card), asks for a new one and delivers.
	trusted := strings.Replace(fmt.Sprintf(receiverTenant, certs), "counterparts: [", `counterparts: [{identity: "ags:05515000", signers: [`+certs+`/bob_signature_4096.cer]}, `, 1)
	if err := os.WriteFile(filepath.Join(b.Dir, "tenants", "bremen.yaml"), []byte(strings.NewReplacer("{{CA}}", b.CAFile, "{{DIR}}", b.Dir).Replace(trusted)), 0o644); err != nil {
		t.Fatal(err)
	}
	if rep, err := b.Tenants.Reload(ctx); err != nil || len(rep.Rejected) > 0 {
		t.Fatalf("B's tenants: %v %v", err, rep.Rejected)
	}
	if _, err := b.Pool.Exec(ctx, `DELETE FROM osci_message_id`); err != nil {
		t.Fatal(err)
	}
	operator := tenant.Actor{Tenant: "muenster", Kind: "operator", Subject: "ops@test", Role: "operator", Purpose: "betrieb"}
	if err := a.Letters.Retry(ctx, operator, "muenster", letters[0].ID); err != nil {
		t.Fatal(err)
	}
	out = awaitReport(t, a, "muenster", "ags:05515000", refused, settled)
	if out.Status != msgbox.StatusGreen || strings.Contains(records(out), "früheren Versuch") {
		t.Fatalf("the retried message's report: status %d\n%s", out.Status, records(out))
	}
	if got = nextMessage(t, reader); got.MessageID != refused {
		t.Fatalf("B's reader after the retry got %s", got.MessageID)
	}
}

// outboxParts counts the stored parts of an outbox message of node n.
func outboxParts(t *testing.T, n *nodetest.Node, messageID string) int {
	var parts int
	err := n.Pool.QueryRow(t.Context(), `SELECT count(*) FROM xta_part p JOIN xta_message m ON m.id = p.message WHERE m.box = 'outbox' AND m.message_id = $1`, messageID).Scan(&parts)
	if err != nil {
		t.Fatal(err)
	}
	return parts
}

// jobErrors are the errors River recorded for the node's osci_forward
// jobs.
func jobErrors(t *testing.T, n *nodetest.Node) string {
	var errs string
	err := n.Pool.QueryRow(t.Context(), `SELECT coalesce(string_agg(errors::text, ' '), '') FROM river_job WHERE kind = 'osci_forward'`).Scan(&errs)
	if err != nil {
		t.Fatal(err)
	}
	return errs
}

// writeDirectory writes a directory file with one entry: the reader (its
// cipher certificate of the demo PKI) behind the intermediary at url
// (whose demo PKI certificates are intermediary_cipher_4096 and
// intermediary_signature_4096).
func writeDirectory(t testing.TB, file, reader, url, readerCipher, intermediary string) {
	certs := oscitest.Certs
	err := os.WriteFile(file, []byte(`entries:
  - reader: "`+reader+`"
    intermediary: `+url+`
    cipherCertificate: `+certs+`/`+readerCipher+`.cer
    intermediaryCipherCertificate: `+certs+`/`+intermediary+`_cipher_4096.cer
    intermediarySignatureCertificate: `+certs+`/`+intermediary+`_signature_4096.cer
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
}

// TestTwoNodesRegisterInbox: a Fachverfahren on node A sends an XMeld
// message over XTA to Düsseldorf's register inbox, which A's directory
// places behind node B's intermediary: it goes over OSCI, B's pipeline
// applies it, and the person appears in B's register.
func TestTwoNodesRegisterInbox(t *testing.T) {
	ctx := t.Context()
	files := map[string][]byte{"pin": []byte("123456\n")}
	b := nodetest.Start(t, nodetest.Options{Tenants: map[string]string{"duesseldorf": registerOverOSCI(t)}, Files: files,
		Clients: []string{"osci-node-a"}, Schemas: nodetest.Schemas(t)})
	directory := filepath.Join(t.TempDir(), "directory.yaml")
	fv := strings.NewReplacer("id: koeln", "id: fachverfahren", "ags:05315000", "ags:05111000").Replace(fmt.Sprintf(authorTenant, oscitest.Certs))
	a := nodetest.Start(t, nodetest.Options{Tenants: map[string]string{"fachverfahren": fv}, Files: files, Clients: []string{"fachverfahren"},
		Directory: directory, Schemas: nodetest.Schemas(t)})
	a.Sender.HTTP = b.HTTP("osci-node-a")
	writeDirectory(t, directory, "register:05111000", b.Base+"/osci", "carol_cipher_4096", "carol")
	typ, doc := nodetest.XMeld(t, "01")
	id, err := a.Send(ctx, a.XTAClient("fachverfahren", "ags:05111000"), "ags:05111000", "register:05111000", typ, nodetest.XMeldNS, doc)
	if err != nil {
		t.Fatal(err)
	}
	if out := awaitReport(t, a, "fachverfahren", "ags:05111000", id, settled); out.Status != msgbox.StatusGreen && out.Status != msgbox.StatusYellow {
		t.Fatalf("A's report: status %d\n%s", out.Status, records(out))
	}
	deadline := time.Now().Add(time.Minute)
	clerk := tenant.Actor{Tenant: "duesseldorf", Kind: tenant.ActorCertificate, Subject: "test", Role: "fachverfahren", Purpose: "meldewesen"}
	for {
		found, err := b.Store.Search(ctx, clerk, "duesseldorf", "melderegister", register.Query{Familienname: "Ćosić", Vornamen: "Mirela Ana", Geburtsdatum: "1987-04"})
		if err != nil {
			t.Fatal(err)
		}
		if len(found) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the person sent from node A is not in B's register after a minute (%d records)", len(found))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestTwoNodesCollect: node A's tenant has the postbox of its account
// ags:05315000 at node B's intermediary (alice's keys, collect: true, the
// directory's entry naming B). bob's Fachverfahren stores a delivery
// there; A's collection fetches it, checks bob's signature against the
// tenant's trust for the author ags:04011000, and puts it into the
// account's XTA box, where A's Fachverfahren fetches it over XTA;
// bob's process card shows the reception. A second collection finds
// nothing and stores nothing twice.
func TestTwoNodesCollect(t *testing.T) {
	ctx := t.Context()
	certs := oscitest.Certs
	files := map[string][]byte{"pin": []byte("123456\n")}
	bremen := strings.Replace(fmt.Sprintf(intermediaryTenant, certs), "trust:\n", fmt.Sprintf(`  - id: osci:koeln
    type: osci
    category: Postfach
    transports: [osci]
    osci: {cipherCertificate: %[1]s/alice_cipher_4096.cer, signatureCertificate: %[1]s/alice_signature_4096.cer}
trust:
`, certs), 1)
	b := nodetest.Start(t, nodetest.Options{Tenants: map[string]string{"bremen": bremen}, Files: files, Clients: []string{"osci-node-a", "osci-client"}, Schemas: osciSchemas(t)})
	directory := filepath.Join(t.TempDir(), "directory.yaml")
	koeln := strings.NewReplacer(`transports: [xta]}`, `transports: [xta], collect: true}`,
		"keys:\n", fmt.Sprintf("keys:\n  trust:\n    counterparts: [{identity: \"ags:04011000\", signers: [%s/bob_signature_4096.cer]}]\n", certs)).Replace(fmt.Sprintf(authorTenant, certs))
	a := nodetest.Start(t, nodetest.Options{Tenants: map[string]string{"koeln": koeln}, Files: files, Clients: []string{"fachverfahren"}, Directory: directory, Schemas: osciSchemas(t)})
	a.Sender.HTTP = b.HTTP("osci-node-a")
	writeDirectory(t, directory, "ags:05315000", b.Base+"/osci", "alice_cipher_4096", "osci_manager")

	bob := client(t, b, "bob")
	s, err := bob.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	aliceCipher := oscitest.Certificate(t, "alice_cipher_4096")
	// First in the postbox: a delivery whose content carol signed, whom
	// A does not trust for ags:04011000.
	unopened := []byte(`<nachricht xmlns="urn:test">von carol signiert</nachricht>`)
	carolContent, _, err := osci.SealContent(unopened, nil, oscitest.Key(t, "carol_signature_4096"), []*x509.Certificate{aliceCipher})
	if err != nil {
		t.Fatal(err)
	}
	carolID, err := s.MessageID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ans, err := s.Store(ctx, osci.Outgoing{MessageID: carolID, Subject: "von carol", Reader: aliceCipher, CustomHeaders: []string{metaData("ags:04011000", "ags:05315000", "nachricht")},
		Content: carolContent}); err != nil || !ans.OK() {
		t.Fatalf("the delivery signed by carol: %v %v", ans, err)
	}
	// Second: one whose content is encrypted to bob, not to koeln's key.
	misdirected, _, err := osci.SealContent([]byte(`<nachricht xmlns="urn:test">an bob verschlüsselt</nachricht>`), nil, bob.Signer,
		[]*x509.Certificate{oscitest.Certificate(t, "bob_cipher_4096")})
	if err != nil {
		t.Fatal(err)
	}
	misID, err := s.MessageID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ans, err := s.Store(ctx, osci.Outgoing{MessageID: misID, Subject: "an bob verschlüsselt", Reader: aliceCipher, CustomHeaders: []string{metaData("ags:04011000", "ags:05315000", "nachricht")},
		Content: misdirected}); err != nil || !ans.OK() {
		t.Fatalf("the delivery encrypted to bob: %v %v", ans, err)
	}
	id, err := s.MessageID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	doc := []byte(`<nachricht xmlns="urn:test">von Bremen nach Köln</nachricht>`)
	content, atts, err := osci.SealContent(doc, []osci.Attachment{{ContentID: "anlage.txt", ContentType: "text/plain", Data: []byte("Anlage"), Size: 6}}, bob.Signer, []*x509.Certificate{aliceCipher})
	if err != nil {
		t.Fatal(err)
	}
	meta := metaData("ags:04011000", "ags:05315000", "nachricht")
	if ans, err := s.Store(ctx, osci.Outgoing{MessageID: id, Subject: "an Köln", Reader: aliceCipher, CustomHeaders: []string{meta}, Content: content, Attachments: atts}); err != nil || !ans.OK() {
		t.Fatalf("bob's storeDelivery: %v %v", ans, err)
	}

	reader := a.XTAClient("fachverfahren", "ags:05315000")
	deadline := time.Now().Add(time.Minute)
	var got *xta.ReceivedMessage
	for got == nil {
		// The node enqueues a collection every minute; the test does not
		// wait that long (one collection runs at a time: a second enqueue
		// while one runs is dropped).
		if err := a.Collector.Enqueue(ctx); err != nil {
			t.Fatal(err)
		}
		if got, err = reader.GetMessage(ctx, ""); err != nil {
			if time.Now().After(deadline) {
				t.Fatalf("nothing collected into A's XTA box after a minute: %v", err)
			}
			got = nil
			time.Sleep(200 * time.Millisecond)
		}
	}
	if len(got.Contents) != 2 || string(got.Contents[0].Data) != string(doc) || string(got.Contents[1].Data) != "Anlage" {
		t.Fatalf("A's reader fetched %d contents: %+v", len(got.Contents), got.Contents)
	}
	if err := reader.Close(ctx, got.MessageID); err != nil {
		t.Fatal(err)
	}
	// The collection's dialog ended, which confirmed the reception.
	card, err := s.ProcessCard(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if card.Reception == nil {
		t.Errorf("bob's process card shows no reception: %+v", card)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	before := countMessages(t, a, "koeln")
	if err := a.Collector.Enqueue(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if after := countMessages(t, a, "koeln"); after != before {
		t.Errorf("a second collection stored %d more messages", after-before)
	}

	// The deliveries carol signed and the one encrypted to bob did not
	// hold up bob's: they are dead letters of koeln, taken off the
	// postbox (carol's card shows the reception). An operator's retry
	// before A trusts carol opens the dead letter again; once A trusts
	// carol for ags:04011000, the retry opens the delivery, and A's
	// Fachverfahren fetches it.
	letters, err := a.Letters.List(ctx, "koeln", false)
	if err != nil {
		t.Fatal(err)
	}
	var carolLetter int64
	causes := map[string]string{}
	for _, l := range letters {
		causes[l.MessageID] = l.Step + " " + l.Cause
		if l.MessageID == "osci-unopened:"+carolID && l.Reader == "ags:05315000" && strings.Contains(l.Reason, "signature") {
			carolLetter = l.ID
		}
	}
	if len(letters) != 2 || carolLetter == 0 || causes["osci-unopened:"+carolID] != "collect signature" || causes["osci-unopened:"+misID] != "collect unreadable" {
		t.Fatalf("koeln's dead letters: %+v", letters)
	}
	operator := tenant.Actor{Tenant: "koeln", Kind: "operator", Subject: "ops@test", Role: "operator", Purpose: "betrieb"}
	if err := a.Letters.Retry(ctx, operator, "koeln", carolLetter); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		l, err := a.Letters.Show(ctx, "koeln", carolLetter)
		if err != nil {
			t.Fatal(err)
		}
		if l.ResolvedAt == nil && len(l.History) == 2 {
			if l.History[1].Cause != jobs.CauseSignature {
				t.Errorf("the retry's failure: %+v", l.History[1])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dead letter retried before the trust was fixed is not open again: %+v", l)
		}
	}
	s, err = bob.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if card, err := s.ProcessCard(ctx, carolID); err != nil || card.Reception == nil {
		t.Errorf("the process card of the delivery carol signed: %+v %v", card, err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := reader.GetMessage(ctx, ""); err == nil {
		t.Fatalf("A's reader got the unopened delivery: %s", got.Contents[0].Data)
	}
	trusting := strings.Replace(koeln, "bob_signature_4096.cer]", "bob_signature_4096.cer, "+certs+"/carol_signature_4096.cer]", 1)
	if err := os.WriteFile(filepath.Join(a.Dir, "tenants", "koeln.yaml"), []byte(strings.NewReplacer("{{CA}}", a.CAFile, "{{DIR}}", a.Dir).Replace(trusting)), 0o644); err != nil {
		t.Fatal(err)
	}
	if rep, err := a.Tenants.Reload(ctx); err != nil || len(rep.Rejected) > 0 {
		t.Fatalf("A's tenants: %v %v", err, rep.Rejected)
	}
	if err := a.Letters.Retry(ctx, operator, "koeln", carolLetter); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		got, err = reader.GetMessage(ctx, "")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the retried delivery did not arrive in A's XTA box: %v", err)
		}
	}
	if string(got.Contents[0].Data) != string(unopened) {
		t.Errorf("A's reader fetched %s", got.Contents[0].Data)
	}
}

// TestTwoNodesPassiveReader: node A's directory names carol a passive
// recipient behind node B's intermediary, at her address: an XTA message
// to her goes to B as forwardDelivery, B pushes it to carol, and the
// process card brings her reception into A's report.
func TestTwoNodesPassiveReader(t *testing.T) {
	ctx := t.Context()
	certs := oscitest.Certs
	carol := newPassiveRecipient(t, func(int) osci.Code { return osci.CodeDoneDialogClosed })
	bremen := withPassiveCarol(fmt.Sprintf(intermediaryTenant, certs), carol)
	b := nodetest.Start(t, nodetest.Options{Tenants: map[string]string{"bremen": bremen},
		Files: map[string][]byte{"pin": []byte("123456\n"), "carol-tls.pem": carol.caPEM()}, Clients: []string{"osci-node-a"}, Schemas: osciSchemas(t)})
	directory := filepath.Join(t.TempDir(), "directory.yaml")
	a := nodetest.Start(t, nodetest.Options{Tenants: map[string]string{"koeln": fmt.Sprintf(authorTenant, certs)}, Files: map[string][]byte{"pin": []byte("123456\n")},
		Clients: []string{"fachverfahren"}, Directory: directory, Schemas: osciSchemas(t)})
	a.Sender.HTTP, a.Sender.CardInterval = b.HTTP("osci-node-a"), 200*time.Millisecond
	writeDirectory(t, directory, "osci:carol", b.Base+"/osci", "carol_cipher_4096", "osci_manager")
	entry, _ := os.ReadFile(directory)
	entry = append(entry, []byte("    mode: passive\n    contentReceiver: "+carol.server.URL+"/osci\n")...)
	if err := os.WriteFile(directory, entry, 0o644); err != nil {
		t.Fatal(err)
	}
	doc := []byte(`<nachricht xmlns="urn:test">an carol</nachricht>`)
	id, err := a.Send(ctx, a.XTAClient("fachverfahren", "ags:05315000"), "ags:05315000", "osci:carol", "nachricht", "urn:test", doc)
	if err != nil {
		t.Fatal(err)
	}
	out := awaitReport(t, a, "koeln", "ags:05315000", id, func(o *msgbox.Outbox) bool { return o.Closed != nil || o.Status == msgbox.StatusRed })
	if out.Closed == nil {
		t.Fatalf("A's report shows no reception by carol: status %d\n%s", out.Status, records(out))
	}
	if out.Status != msgbox.StatusGreen || !strings.Contains(records(out), "zur Weiterleitung an den passiven Empfänger osci:carol") {
		t.Errorf("A's report: status %d\n%s", out.Status, records(out))
	}
	carol.mu.Lock()
	defer carol.mu.Unlock()
	if strings.Join(carol.received, "|") != string(doc) || len(carol.problems) > 0 {
		t.Errorf("carol received %q, problems %v", carol.received, carol.problems)
	}
}

// dropThird is a transport that loses the answer to the third request it
// carries (after the intermediary carried it out), as a crash or a broken
// connection between the storeDelivery and its answer would.
type dropThird struct {
	next http.RoundTripper
	n    atomic.Int32
}

func (d *dropThird) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := d.next.RoundTrip(r)
	if d.n.Add(1) == 3 && err == nil {
		resp.Body.Close()
		return nil, errors.New("connection reset (test: the answer is lost)")
	}
	return resp, err
}

// nextMessage is the next message in the reader's XTA box: there as
// soon as A's report is green, since B stores a delivery into the box in
// the transaction that answers it.
func nextMessage(t testing.TB, reader *xta.Client) *xta.ReceivedMessage {
	t.Helper()
	got, err := reader.GetMessage(t.Context(), "")
	if err != nil {
		t.Fatalf("the box of %s: %v", reader.Account, err)
	}
	return got
}

// inboxRows counts the messages node n ever put into the account's box
// (received ones too).
func inboxRows(t testing.TB, n *nodetest.Node, account string) int {
	var rows int
	if err := n.Pool.QueryRow(t.Context(), `SELECT count(*) FROM xta_message WHERE box = 'inbox' AND account = $1`, account).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	return rows
}

// twoNodes starts node B (bremen: its intermediary, with the XTA account
// ags:04011000 reachable over OSCI) and node A (koeln: the author
// ags:05315000), whose directory places ags:04011000 behind B and whose
// sender reaches B with a client certificate of B's CA.
func twoNodes(t *testing.T) (a, b *nodetest.Node) {
	certs := oscitest.Certs
	files := map[string][]byte{"pin": []byte("123456\n")}
	b = nodetest.Start(t, nodetest.Options{Tenants: map[string]string{"bremen": fmt.Sprintf(receiverTenant, certs)}, Files: files,
		Clients: []string{"osci-node-a", "fachverfahren-b"}, Schemas: osciSchemas(t)})
	directory := filepath.Join(t.TempDir(), "directory.yaml")
	a = nodetest.Start(t, nodetest.Options{Tenants: map[string]string{"koeln": fmt.Sprintf(authorTenant, certs)}, Files: files,
		Clients: []string{"fachverfahren"}, Directory: directory, Schemas: osciSchemas(t)})
	a.Sender.HTTP = b.HTTP("osci-node-a")
	writeDirectory(t, directory, "ags:04011000", b.Base+"/osci", "osci_manager_cipher_4096", "osci_manager")
	return a, b
}

// TestTwoNodesAnswerLost: the answer to A's storeDelivery is lost after B
// stored the message. The job retries with the MessageId it recorded
// before the store; B refuses the second use (9801), which tells A the
// message is there: A's report turns green, and B's reader finds the
// message exactly once.
func TestTwoNodesAnswerLost(t *testing.T) {
	ctx := t.Context()
	a, b := twoNodes(t)
	a.Sender.HTTP = &http.Client{Transport: &dropThird{next: a.Sender.HTTP.Transport}}
	doc := []byte(`<nachricht xmlns="urn:test">einmal</nachricht>`)
	id, err := a.Send(ctx, a.XTAClient("fachverfahren", "ags:05315000"), "ags:05315000", "ags:04011000", "nachricht", "urn:test", doc)
	if err != nil {
		t.Fatal(err)
	}
	out := awaitReport(t, a, "koeln", "ags:05315000", id, settled)
	if out.Status != msgbox.StatusGreen || !strings.Contains(records(out), "bei einem früheren Versuch") {
		t.Fatalf("A's report: status %d\n%s", out.Status, records(out))
	}
	reader := b.XTAClient("fachverfahren-b", "ags:04011000")
	got := nextMessage(t, reader)
	if string(got.Contents[0].Data) != string(doc) {
		t.Fatalf("B's reader fetched %s", got.Contents[0].Data)
	}
	if err := reader.Close(ctx, got.MessageID); err != nil {
		t.Fatal(err)
	}
	if n := inboxRows(t, b, "ags:04011000"); n != 1 {
		t.Errorf("the message arrived %d times at B", n)
	}
	// The job runs once more, as River runs a job it rescued from a node
	// that died after the delivery committed: it leaves the delivered
	// message (its content gone) alone.
	var outbox int64
	if err := a.Pool.QueryRow(ctx, `SELECT id FROM xta_message WHERE box = 'outbox' AND message_id = $1`, id).Scan(&outbox); err != nil {
		t.Fatal(err)
	}
	job, err := a.Jobs.Insert(ctx, osci.ForwardArgs{Tenant: "koeln", Outbox: outbox, MessageID: id, Reader: "ags:04011000"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var state string
		if err := a.Pool.QueryRow(ctx, `SELECT state FROM river_job WHERE id = $1`, job.Job.ID).Scan(&state); err != nil {
			t.Fatal(err)
		}
		if state == "completed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the repeated job is %s after 30 s", state)
		}
	}
	letters, err := a.Letters.List(ctx, "koeln", false)
	if out := awaitReport(t, a, "koeln", "ags:05315000", id, settled); out.Status != msgbox.StatusGreen || err != nil || len(letters) != 0 {
		t.Errorf("after the repeated job: status %d, dead letters %v %v\n%s", out.Status, letters, err, records(out))
	}
}

// TestTwoNodesDialogReuse: A keeps its dialog with B open for the next
// delivery, so that three messages in a row cost B one dialog, not
// three; when B has forgotten the dialog (here: its dialogs deleted, as
// its idle timeout would), A's next delivery is refused 9400 in it and
// goes through in a new one.
func TestTwoNodesDialogReuse(t *testing.T) {
	ctx := t.Context()
	a, b := twoNodes(t)
	dialogs := func() (n int) {
		if err := b.Pool.QueryRow(ctx, `SELECT count(*) FROM osci_dialog`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	send := func(i int) {
		t.Helper()
		doc := []byte(fmt.Sprintf(`<nachricht xmlns="urn:test">Nummer %d</nachricht>`, i))
		id, err := a.Send(ctx, a.XTAClient("fachverfahren", "ags:05315000"), "ags:05315000", "ags:04011000", "nachricht", "urn:test", doc)
		if err != nil {
			t.Fatal(err)
		}
		if out := awaitReport(t, a, "koeln", "ags:05315000", id, settled); out.Status != msgbox.StatusGreen {
			t.Fatalf("message %d: status %d\n%s", i, out.Status, records(out))
		}
	}
	for i := range 3 {
		send(i)
	}
	if n := dialogs(); n != 1 {
		t.Errorf("three deliveries in a row opened %d dialogs at B, not one", n)
	}
	if _, err := b.Pool.Exec(ctx, `DELETE FROM osci_dialog`); err != nil {
		t.Fatal(err)
	}
	send(3)
	if n := dialogs(); n != 1 {
		t.Errorf("after B forgot the dialog, B has %d dialogs, not the one new", n)
	}
	reader := b.XTAClient("fachverfahren-b", "ags:04011000")
	for i := range 4 {
		if err := reader.Close(ctx, nextMessage(t, reader).MessageID); err != nil {
			t.Fatalf("message %d at B: %v", i, err)
		}
	}
}
