package osci_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/node/nodetest"
	"github.com/parzelle/parzelle/osci"
	"github.com/parzelle/parzelle/osci/oscitest"
	"github.com/parzelle/parzelle/xmldsig"
	"github.com/parzelle/parzelle/xmlsafe"
	"github.com/parzelle/parzelle/xmlschema"
)

// intermediaryTenant runs the Governikus demo intermediary (OSCI-Manager
// keys) with bob's postbox; %[1]s is the demo PKI's directory.
const intermediaryTenant = `id: bremen
name: OSCI-Intermediär mit der Governikus-Demo-PKI
identities:
  - id: osci:bob
    type: osci
    category: Postfach
    transports: [osci]
    osci:
      cipherCertificate: %[1]s/bob_cipher_4096.cer
      signatureCertificate: %[1]s/bob_signature_4096.cer
trust:
  clientCAs: ["{{CA}}"]
keys:
  trust:
    # The OSCI parties this intermediary knows (pinned; dave is not).
    signers: [%[1]s/alice_signature_4096.cer, %[1]s/alice_cipher_4096.cer, %[1]s/bob_signature_4096.cer, %[1]s/bob_cipher_4096.cer]
  signing:
    - pkcs12: %[1]s/osci_manager_signature_4096.p12
      passwordFile: "{{DIR}}/pin"
  decryption:
    - pkcs12: %[1]s/osci_manager_cipher_4096.p12
      passwordFile: "{{DIR}}/pin"
`

// intermediary is a node running the demo intermediary, and an HTTPS
// client of it.
type intermediary struct {
	*nodetest.Node
	client *http.Client
}

func startIntermediary(t testing.TB) *intermediary {
	certs := oscitest.Certs
	n := nodetest.Start(t, nodetest.Options{Tenants: map[string]string{"bremen": fmt.Sprintf(intermediaryTenant, certs)},
		Files: map[string][]byte{"pin": []byte("123456\n")}, Clients: []string{"osci-client"}, Schemas: osciSchemas(t)})
	return &intermediary{Node: n, client: n.HTTP("osci-client")}
}

// request is an OSCI message and the path it is posted to.
type request struct {
	path string
	body []byte
}

// post sends an OSCI message to path and returns the HTTP status and body.
func (ix *intermediary) post(t testing.TB, path string, body []byte) (int, []byte) {
	t.Helper()
	resp, err := ix.client.Post(ix.Base+path, "text/xml", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

// answer is a checked intermediary response.
type answer struct {
	msg      *osci.MIMEMessage
	env      *xmlsafe.Document
	feedback []string
	control  *xmlsafe.Element
	// encryptedTo names the key the answer was transport-encrypted to,
	// "" for a plain answer.
	encryptedTo string
}

// text is the text of the first element named local in the osci
// namespace, "" when there is none.
func (a *answer) text(local string) string {
	if els := a.env.Root.FindAll(osci.Namespace, local); len(els) > 0 {
		return els[0].TrimmedText()
	}
	return ""
}

// time is the plain timestamp of the first element named local, "" when
// there is none.
func (a *answer) time(local string) string {
	if els := a.env.Root.FindAll(osci.Namespace, local); len(els) > 0 {
		if p := els[0].Child(osci.Namespace, "Plain"); p != nil {
			return p.TrimmedText()
		}
	}
	return ""
}

// check reads a response to the order: HTTP 200, valid against the
// order's official response schema, its SupplierSignature by the
// intermediary verifying and covering every header block and the body.
func check(t testing.TB, order osci.Order, status int, out []byte) *answer {
	t.Helper()
	if status != http.StatusOK {
		t.Fatalf("HTTP %d: %s", status, out)
	}
	// An answer to an encrypted request is encrypted to the client's
	// cipher certificate: alice's or bob's.
	inner, enc, err := osci.DecryptTransport(out, []*keys.KeyPair{oscitest.Key(t, "alice_cipher_4096"), oscitest.Key(t, "bob_cipher_4096")})
	if err != nil {
		t.Fatal(err)
	}
	if enc != nil {
		outer, err := osci.ParseMIME(out)
		if err != nil {
			t.Fatal(err)
		}
		if err := osciSchemas(t).Validate(xmlschema.OSCI12("MessageEncrypted"), outer.Root().Body); err != nil {
			t.Errorf("transport layer: %v", err)
		}
	}
	msg, err := osci.ParseMIME(inner)
	if err != nil {
		t.Fatal(err)
	}
	set := xmlschema.OSCI12(strings.Replace(order.ResponseElement(), "responseTo", "ResponseTo", 1))
	if err := osciSchemas(t).Validate(set, msg.Root().Body); err != nil {
		t.Errorf("%s: %v", set, err)
	}
	env, err := xmldsig.ParseDocument(bytes.NewReader(msg.Root().Body))
	if err != nil {
		t.Fatal(err)
	}
	a := &answer{msg: msg, env: env, control: env.Root.FindAll(osci.Namespace, "ControlBlock")[0]}
	if enc != nil {
		a.encryptedTo = enc.Recipient.Certificate().Subject.CommonName
	}
	var supplier *xmlsafe.Element
	for _, sig := range env.Root.FindAll(xmldsig.Namespace, "Signature") {
		if sig.Parent.Name.Local == "SupplierSignature" {
			supplier = sig
		}
	}
	if supplier == nil {
		t.Fatal("no SupplierSignature")
	}
	// The test intermediaries sign as the OSCI-Manager, or as carol.
	v := &xmldsig.Verifier{Trust: keys.NewTrustStore([]*x509.Certificate{oscitest.Certificate(t, "osci_manager_signature_4096"), oscitest.Certificate(t, "carol_signature_4096")}), Resolve: msg.Resolve}
	res, err := v.Verify(env, supplier)
	if err != nil {
		t.Fatalf("SupplierSignature: %v", err)
	}
	signed := map[*xmlsafe.Element]bool{}
	for _, ref := range res.References {
		signed[ref.Element] = true
	}
	for _, block := range append(env.Root.Children[0].Children, env.Root.Children[1]) {
		if block.Name.Local != "SupplierSignature" && !signed[block] {
			t.Errorf("<%s> is not covered by the SupplierSignature", block.Name.Local)
		}
	}
	for _, c := range env.Root.FindAll(osci.Namespace, "Code") {
		a.feedback = append(a.feedback, c.TrimmedText())
	}
	return a
}

// prepareDialog sets up the explicit dialog 4711 the Governikus samples
// continue (SequenceNumber 2, Response PrevChallengeFromIntermediary),
// opened by the signer with the cipher certificate; a delivery the dialog
// fetched before stays recorded.
func (ix *intermediary) prepareDialog(t *testing.T, signer, cipher string) {
	t.Helper()
	client := sha256.Sum256(oscitest.Certificate(t, signer).Raw)
	err := db.InTenant(t.Context(), ix.Pool, "bremen", func(tx pgx.Tx) error {
		_, err := tx.Exec(t.Context(), `INSERT INTO osci_dialog (tenant_id, conversation_id, sequence_number, challenge, client, cipher)
			VALUES ('bremen', '4711', 1, 'PrevChallengeFromIntermediary', $1, $2)
			ON CONFLICT (tenant_id, conversation_id) DO UPDATE SET sequence_number = 1, challenge = 'PrevChallengeFromIntermediary',
				client = $1, cipher = $2, closed_at = NULL, last_at = now()`, client[:], oscitest.Certificate(t, cipher).Raw)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// issue makes the intermediary know MessageIds as if it had handed them
// out (the samples use fixed ones).
func (ix *intermediary) issue(t testing.TB, ids ...string) {
	t.Helper()
	err := db.InTenant(t.Context(), ix.Pool, "bremen", func(tx pgx.Tx) error {
		for _, id := range ids {
			if _, err := tx.Exec(t.Context(), `INSERT INTO osci_message_id (tenant_id, message_id) VALUES ('bremen', $1)`, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestIntermediarySamples replays every Governikus sample request over
// real TLS to a node running the demo intermediary, in the order of a
// delivery's life: each answer validates against its official response
// schema, carries a verifying SupplierSignature and the feedback the
// request calls for. The delivery alice stores for bob comes back to bob
// with alice's content signature intact, and its process card shows
// creation, forwarding and, once bob's next request confirmed it,
// reception.
func TestIntermediarySamples(t *testing.T) {
	ix := startIntermediary(t)
	// Plain requests name the intermediary in the URL; encrypted ones
	// are found by the cipher certificate they are encrypted to.
	encrypted := func(prefix string) request {
		return request{"/osci", oscitest.Sample(t, prefix+".transport-encrypted.mime")}
	}
	plain := func(prefix string) request { return request{"/osci/bremen", oscitest.Sample(t, prefix+".plain.mime")} }
	send := func(order osci.Order, r request) *answer {
		t.Helper()
		status, out := ix.post(t, r.path, r.body)
		a := check(t, order, status, out)
		// Encrypted requests get encrypted answers, to the client that
		// signed them.
		signer := "Alice"
		if order == osci.OrderFetchDelivery {
			signer = "Bob"
		}
		if want := map[bool]string{true: signer + " Cipher 4096"}[r.path == "/osci"]; a.encryptedTo != want {
			t.Errorf("%s answer encrypted to %q, want %q", order, a.encryptedTo, want)
		}
		return a
	}
	wantFeedback := func(a *answer, codes ...string) {
		t.Helper()
		if strings.Join(a.feedback, " ") != strings.Join(codes, " ") {
			t.Errorf("feedback %v, want %v", a.feedback, codes)
		}
	}

	for _, form := range []func(string) request{plain, encrypted} {
		a := send(osci.OrderInitDialog, form("01-InitDialog"))
		wantFeedback(a, "0801")
		if id, _ := a.control.Attribute("ConversationId"); len(id) != 18 || a.text("Challenge") == "" || a.text("Response") == "" {
			t.Errorf("initDialog answered with ConversationId %q, Challenge %q, Response %q", id, a.text("Challenge"), a.text("Response"))
		}
		a = send(osci.OrderGetMessageID, form("02-GetMessageId"))
		wantFeedback(a, "0800")
		if a.text("MessageId") == "" {
			t.Error("getMessageId handed out no MessageId")
		}
	}

	// storeDelivery: mock-msgid-0001 (bob, with dave as another reader)
	// goes in; the same MessageId again is refused; 0003 brings the XTA
	// MessageMetaData. The sample MessageIds are known as issued.
	ix.issue(t, "mock-msgid-0001", "mock-msgid-0003")
	// dave, another reader, is not among the intermediary's trusted
	// certificates: his inspection is indeterminate, and 3707 says so.
	a := send(osci.OrderStoreDelivery, encrypted("03-StoreDelivery"))
	wantFeedback(a, "0800", "3707")
	if a.text("Subject") != "Testnachricht OSCI 1.2" || a.time("Creation") == "" {
		t.Errorf("process card: subject %q, creation %q", a.text("Subject"), a.time("Creation"))
	}
	var verdicts []string
	for _, in := range a.env.Root.FindAll(osci.Namespace, "Inspection") {
		cn := strings.TrimPrefix(strings.Split(in.Child(osci.Namespace, "X509SubjectName").TrimmedText(), ",")[0], "CN=")
		math, _ := in.Child(osci.Namespace, "MathResult").Attribute("Result")
		offline, _ := in.Child(osci.Namespace, "OfflineResult").Attribute("Result")
		verdicts = append(verdicts, cn+" "+math+"/"+offline)
	}
	if got := strings.Join(verdicts, "; "); got != "Bob Cipher 4096 ok/valid; Alice Cipher 4096 ok/valid; Dave Cipher 4096 indeterminate/indeterminate; Alice Signature 4096 ok/valid" {
		t.Errorf("inspections: %s", got)
	}
	wantFeedback(send(osci.OrderStoreDelivery, plain("03-StoreDelivery")), "9801")
	wantFeedback(send(osci.OrderStoreDelivery, plain("08-StoreDelivery-XTA-MessageMetaData")), "0800")

	// fetchDelivery by bob in dialog 4711: mock-msgid-0001 with its
	// content package, attachments and alice's content signature.
	ix.prepareDialog(t, "bob_signature_4096", "bob_cipher_4096")
	a = send(osci.OrderFetchDelivery, plain("04-FetchDelivery"))
	wantFeedback(a, "0801")
	if got := a.text("MessageId"); got != "bW9jay1tc2dpZC0wMDAx" {
		t.Errorf("fetched MessageId %q", got)
	}
	if a.msg.Part("test.txt") == nil || a.msg.Part("enc_test.txt") == nil || len(a.env.Root.FindAll(osci.Namespace, "NonIntermediaryCertificates")) != 1 {
		t.Error("the fetched delivery lacks its attachments or the author's certificates")
	}
	v := &xmldsig.Verifier{Trust: keys.NewTrustStore([]*x509.Certificate{oscitest.Certificate(t, "alice_signature_4096")}), Resolve: a.msg.Resolve}
	contentSignatures := 0
	for _, sig := range a.env.Root.FindAll(xmldsig.Namespace, "Signature") {
		if sig.Parent.Name.Local == "ContentContainer" {
			contentSignatures++
			if _, err := v.Verify(a.env, sig); err != nil {
				t.Errorf("alice's content signature no longer verifies in the fetch response: %v", err)
			}
		}
	}
	if contentSignatures != 1 {
		t.Errorf("%d content signatures in the fetched delivery, want 1", contentSignatures)
	}

	// Forwarded, not yet received (alice's report in the boxes: her
	// requests would continue dialog 4711 too).
	alice := "osci:" + fmt.Sprintf("%x", sha256.Sum256(oscitest.Certificate(t, "alice_signature_4096").Raw))
	if out, err := ix.Box.Report(t.Context(), "bremen", alice, "mock-msgid-0001"); err != nil || out.Fetched == nil || out.Closed != nil {
		t.Fatalf("report after the fetch: %+v, %v", out, err)
	}

	// bob's next request in the dialog confirms the reception: fetching
	// mock-msgid-0001 again finds nothing (9803).
	ix.prepareDialog(t, "bob_signature_4096", "bob_cipher_4096")
	wantFeedback(send(osci.OrderFetchDelivery, encrypted("04-FetchDelivery")), "9803")

	// alice's process card shows creation, forwarding and reception.
	for _, form := range []func(string) request{plain, encrypted} {
		ix.prepareDialog(t, "alice_signature_4096", "alice_cipher_4096")
		a = send(osci.OrderFetchProcessCard, form("05-FetchProcessCard"))
		wantFeedback(a, "0801")
		if a.time("Creation") == "" || a.time("Forwarding") == "" || a.time("Reception") == "" || a.text("Subject") == "" || len(a.env.Root.FindAll(osci.Namespace, "Inspection")) != 4 {
			t.Errorf("process card: creation %q, forwarding %q, reception %q, subject %q", a.time("Creation"), a.time("Forwarding"), a.time("Reception"), a.text("Subject"))
		}
	}

	// forwardDelivery goes to passive recipients only; bob collects (9809).
	wantFeedback(send(osci.OrderForwardDelivery, plain("06-ForwardDelivery")), "9809")

	for _, form := range []func(string) request{plain, encrypted} {
		ix.prepareDialog(t, "alice_signature_4096", "alice_cipher_4096")
		a := send(osci.OrderExitDialog, form("07-ExitDialog"))
		wantFeedback(a, "0800")
		r := form("07-ExitDialog")
		status, out := ix.post(t, r.path, r.body)
		wantFault(t, status, out, osci.CodeWrongDialog)
	}

	// A new signing key in the tenant file signs the next answer, without
	// a restart.
	file := filepath.Join(ix.Dir, "tenants", "bremen.yaml")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	data = bytes.Replace(data, []byte("osci_manager_signature_4096.p12"), []byte("bob_signature_4096.p12"), 1)
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if rep, err := ix.Tenants.Reload(t.Context()); err != nil || len(rep.Applied) != 1 {
		t.Fatalf("reload: %+v %v", rep, err)
	}
	rotated, body := ix.post(t, "/osci/bremen", oscitest.Sample(t, "01-InitDialog.plain.mime"))
	msg, err := osci.ParseMIME(body)
	if err != nil || rotated != http.StatusOK {
		t.Fatalf("HTTP %d %v", rotated, err)
	}
	env, err := xmldsig.ParseDocument(bytes.NewReader(msg.Root().Body))
	if err != nil {
		t.Fatal(err)
	}
	v = &xmldsig.Verifier{Trust: keys.NewTrustStore([]*x509.Certificate{oscitest.Certificate(t, "bob_signature_4096")})}
	if _, err := v.Verify(env, env.Root.FindAll(xmldsig.Namespace, "Signature")[0]); err != nil {
		t.Errorf("the answer after the key rotation is not signed with the new key: %v", err)
	}
}

// wantFault checks a SOAP fault: HTTP 500, valid against the OSCI fault
// schema, with the code.
func wantFault(t *testing.T, status int, out []byte, code osci.Code) {
	t.Helper()
	msg, err := osci.ParseMIME(out)
	if err != nil {
		t.Fatalf("HTTP %d: %v\n%s", status, err, out)
	}
	if err := osciSchemas(t).Validate(xmlschema.OSCI12("MessageFault"), msg.Root().Body); err != nil {
		t.Errorf("fault: %v", err)
	}
	if status != http.StatusInternalServerError || !bytes.Contains(out, []byte("<osci:Code>"+string(code)+"</osci:Code>")) {
		t.Errorf("want fault %s, got HTTP %d %s", code, status, out)
	}
}
