package osci_test

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parzelle/parzelle/jobs"
	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/msgbox"
	"github.com/parzelle/parzelle/node/nodetest"
	"github.com/parzelle/parzelle/osci"
	"github.com/parzelle/parzelle/osci/oscitest"
	"github.com/parzelle/parzelle/tenant"
	"github.com/parzelle/parzelle/xmldsig"
	"github.com/parzelle/parzelle/xmlschema"
)

// passiveRecipient is carol as a passive recipient behind TLS: she takes
// acceptDelivery requests, checks them (transport layer encrypted to her,
// valid against the schema, signed by the intermediary, content she can
// decrypt and alice signed) and answers with a signed
// responseToAcceptDelivery encrypted to the intermediary; answer decides
// her feedback code ("" for HTTP 503, out of reach).
type passiveRecipient struct {
	t      *testing.T
	server *httptest.Server
	answer func(n int) osci.Code

	mu       sync.Mutex
	requests int
	received []string
	problems []string
	// signer signs her answers (default carol's signature key); noReply
	// leaves the reply out of an accepted processDelivery.
	signer  string
	noReply bool
}

func newPassiveRecipient(t *testing.T, answer func(n int) osci.Code) *passiveRecipient {
	p := &passiveRecipient{t: t, answer: answer}
	p.server = httptest.NewTLSServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.server.Close)
	return p
}

// caPEM is the recipient's TLS certificate, for the tenant's passiveCA.
func (p *passiveRecipient) caPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.server.Certificate().Raw})
}

func (p *passiveRecipient) problem(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.problems = append(p.problems, fmt.Sprintf(format, args...))
}

func (p *passiveRecipient) serve(w http.ResponseWriter, r *http.Request) {
	t := p.t
	p.mu.Lock()
	p.requests++
	n := p.requests
	p.mu.Unlock()
	code := p.answer(n)
	if code == "" {
		http.Error(w, "wartungsfenster", http.StatusServiceUnavailable)
		return
	}
	body, _ := io.ReadAll(r.Body)
	inner, enc, err := osci.DecryptTransport(body, []*keys.KeyPair{oscitest.Key(t, "carol_cipher_4096")})
	if err != nil || enc == nil {
		p.problem("transport layer not encrypted to carol: %v", err)
		http.Error(w, "undecryptable", http.StatusBadRequest)
		return
	}
	msg, err := osci.ParseMIME(inner)
	if err != nil {
		p.problem("MIME: %v", err)
		return
	}
	env, err := xmldsig.ParseDocument(bytes.NewReader(msg.Root().Body))
	if err != nil {
		p.problem("envelope: %v", err)
		return
	}
	order := osci.OrderAcceptDelivery
	if len(env.Root.FindAll(osci.Namespace, "processDelivery")) == 1 {
		order = osci.OrderProcessDelivery
	}
	if err := osciSchemas(t).Validate(xmlschema.OSCI12(strings.ToUpper(string(order[:1]))+string(order[1:])), msg.Root().Body); err != nil {
		p.problem("%s: %v", order, err)
	}
	v := &xmldsig.Verifier{Trust: keys.NewTrustStore([]*x509.Certificate{oscitest.Certificate(t, "osci_manager_signature_4096")}), Resolve: msg.Resolve}
	if _, err := v.Verify(env, env.Root.FindAll(xmldsig.Namespace, "Signature")[0]); err != nil {
		p.problem("the intermediary's signature: %v", err)
	}
	a := &answer{msg: msg, env: env}
	text := opened(t, a, oscitest.Key(t, "carol_cipher_4096"), oscitest.Certificate(t, "alice_signature_4096"))
	var intermediary *x509.Certificate
	if els := env.Root.FindAll(osci.Namespace, "CipherCertificateIntermediary"); len(els) == 1 {
		der, _ := base64.StdEncoding.DecodeString(els[0].FindAll(xmldsig.Namespace, "X509Certificate")[0].TrimmedText())
		intermediary, _ = x509.ParseCertificate(der)
	}
	if intermediary == nil {
		p.problem("no CipherCertificateIntermediary to answer to")
		return
	}
	p.mu.Lock()
	p.received = append(p.received, text)
	p.mu.Unlock()
	p.mu.Lock()
	signer, noReply := cmp.Or(p.signer, "carol_signature_4096"), p.noReply
	p.mu.Unlock()
	signing := oscitest.Key(t, signer)
	resp := &osci.Response{Order: order, Control: osci.ControlBlock{Response: a.text("Challenge")}, Feedback: []osci.Code{code}}
	if order == osci.OrderProcessDelivery && code[0] == '0' && !noReply {
		// The reply: for the author (the originator's cipher certificate
		// the request carries), signed by carol, with an attachment.
		var author *x509.Certificate
		for _, el := range env.Root.FindAll(osci.Namespace, "CipherCertificateOriginator") {
			der, _ := base64.StdEncoding.DecodeString(el.FindAll(xmldsig.Namespace, "X509Certificate")[0].TrimmedText())
			author, _ = x509.ParseCertificate(der)
		}
		if author == nil {
			p.problem("processDelivery without the originator's cipher certificate")
			return
		}
		reply := []byte("Antwort-Anlage")
		resp.Delivery = &osci.Delivery{Content: []byte(newClient(t, nil, "carol").content(t, "Antwort auf: "+text, reply, author)),
			Attachments: []osci.Attachment{{ContentID: "anlage", ContentType: "application/octet-stream", Data: reply, Size: int64(len(reply))}}}
	}
	out, err := resp.Build(&xmldsig.Signer{Key: signing.Key, Certificates: signing.Chain[:1]})
	if err == nil {
		out, err = osci.EncryptTransport(out, intermediary)
	}
	if err != nil {
		p.problem("answer: %v", err)
		return
	}
	_, _ = w.Write(out)
}

// withPassiveCarol adds carol to an intermediary tenant file as a passive
// recipient at her server (its TLS certificate in the file carol-tls.pem
// of the node's directory).
func withPassiveCarol(file string, carol *passiveRecipient) string {
	return strings.Replace(file, "trust:\n", fmt.Sprintf(`  - id: osci:carol
    type: osci
    category: Postfach
    transports: [osci]
    osci:
      cipherCertificate: %[1]s/carol_cipher_4096.cer
      signatureCertificate: %[1]s/carol_signature_4096.cer
      passive: %[2]s/osci
      passiveCA: "{{DIR}}/carol-tls.pem"
trust:
`, oscitest.Certs, carol.server.URL), 1)
}

// forwardDelivery sends a delivery for a passive recipient.
func (c *testClient) forwardDelivery(t *testing.T, receiver, messageID, subject, text string, attachment []byte, reader *x509.Certificate) *answer {
	order := qualityOfTimestamps + `<osci:forwardDelivery Id="forwarddelivery" ` + next + `><osci:ContentReceiver URI="` + receiver + `"></osci:ContentReceiver><osci:MessageId>` +
		base64.StdEncoding.EncodeToString([]byte(messageID)) + `</osci:MessageId><osci:Subject>` + subject + `</osci:Subject></osci:forwardDelivery>`
	certs := certElement("CipherCertificateOriginator", "originator_cipher", c.cipher.Certificate()) + certElement("CipherCertificateAddressee", "addressee_cipher", reader)
	return c.do(t, osci.OrderForwardDelivery, c.build(t, order, c.content(t, text, attachment, reader), certs, map[string][]byte{"anlage": attachment}))
}

// mediateDelivery sends a request for a passive recipient's reply.
func (c *testClient) mediateDelivery(t *testing.T, receiver, subject, text string, attachment []byte, reader *x509.Certificate) *answer {
	order := `<osci:QualityOfTimestamp Id="qualityoftimestamp_creation" Quality="plain" Service="creation" ` + next + `></osci:QualityOfTimestamp>` +
		`<osci:mediateDelivery Id="mediatedelivery" ` + next + `><osci:ContentReceiver URI="` + receiver + `"></osci:ContentReceiver></osci:mediateDelivery>`
	certs := certElement("CipherCertificateOriginator", "originator_cipher", c.cipher.Certificate()) + certElement("CipherCertificateAddressee", "addressee_cipher", reader)
	return c.do(t, osci.OrderMediateDelivery, c.build(t, order, c.content(t, text, attachment, reader), certs, map[string][]byte{"anlage": attachment}))
}

// TestPassiveRecipient: carol is a passive recipient of the bremen
// intermediary. alice forwards a delivery to her; the intermediary takes
// it (0801) and pushes it as acceptDelivery, as a River job: carol is in
// maintenance the first time (HTTP 503), the job retries, carol accepts;
// alice's process card then shows the reception, and the delivery's
// content is gone from the node. A delivery carol refuses (9805) turns
// red with her code and becomes a dead letter, which an operator's retry
// delivers once carol accepts again; a ContentReceiver other than carol's known address
// is refused (9809) and nothing is stored. A mediateDelivery goes to carol
// at once as processDelivery; her reply, encrypted to alice and signed by
// carol, comes back in the response with both process cards; her refusal
// is 9805, her answer signed by another 9807, one without the reply 9806.
// Every request carol gets is valid against the OSCI schemas.
func TestPassiveRecipient(t *testing.T) {
	var refuse bool
	carol := newPassiveRecipient(t, func(n int) osci.Code {
		switch {
		case n == 1:
			return ""
		case refuse:
			return osci.CodeNotAccepted
		}
		return osci.CodeDoneDialogClosed
	})
	certs := oscitest.Certs
	file := withPassiveCarol(fmt.Sprintf(intermediaryTenant, certs), carol)
	file = strings.Replace(file, "bob_cipher_4096.cer]", fmt.Sprintf("bob_cipher_4096.cer, %[1]s/carol_cipher_4096.cer]", certs), 1)
	n := nodetest.Start(t, nodetest.Options{Tenants: map[string]string{"bremen": file},
		Files: map[string][]byte{"pin": []byte("123456\n"), "carol-tls.pem": carol.caPEM()}, Clients: []string{"osci-client"}, Schemas: osciSchemas(t)})
	ix := &intermediary{Node: n, client: n.HTTP("osci-client")}
	carolCipher := oscitest.Certificate(t, "carol_cipher_4096")
	alice := newClient(t, ix, "alice")
	alice.initDialog(t)

	id := alice.getMessageID(t)
	if a := alice.forwardDelivery(t, carol.server.URL+"/osci", id, "An carol", "Inhalt für carol", []byte("Anlage"), carolCipher); strings.Join(a.feedback, " ") != "0801" {
		t.Fatalf("forwardDelivery: feedback %v", a.feedback)
	}
	card := waitForCard(t, alice, id)
	if card.time("Forwarding") == "" || card.time("Reception") == "" {
		t.Errorf("process card: forwarding %q reception %q", card.time("Forwarding"), card.time("Reception"))
	}
	carol.mu.Lock()
	if carol.requests != 2 || strings.Join(carol.received, "|") != "Inhalt für carol" || len(carol.problems) > 0 {
		t.Errorf("carol saw %d requests, received %q, problems %v", carol.requests, carol.received, carol.problems)
	}
	carol.mu.Unlock()

	refuse = true
	id2 := alice.getMessageID(t)
	alice.forwardDelivery(t, carol.server.URL+"/osci", id2, "Abgelehnt", "wird abgelehnt", []byte("x"), carolCipher)
	signer := fmt.Sprintf("osci:%x", sha256.Sum256(alice.sign.Certificate().Raw))
	if out := awaitReport(t, ix.Node, "bremen", signer, id2, settled); out.Status != msgbox.StatusRed || !strings.Contains(records(out), string(osci.CodeNotAccepted)) {
		t.Errorf("the refused delivery's report: status %d\n%s", out.Status, records(out))
	}
	// It is a dead letter of the intermediary tenant; once carol accepts
	// again, an operator's retry delivers it.
	letters, err := n.Letters.List(t.Context(), "bremen", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(letters) != 1 || letters[0].MessageID != id2 || letters[0].Step != jobs.StepForward || letters[0].Cause != jobs.CauseNotAccepted || !strings.Contains(letters[0].Reason, "9805") {
		t.Fatalf("dead letters: %+v", letters)
	}
	refuse = false
	operator := tenant.Actor{Tenant: "bremen", Kind: "operator", Subject: "ops@test", Role: "operator", Purpose: "betrieb"}
	if err := n.Letters.Retry(t.Context(), operator, "bremen", letters[0].ID); err != nil {
		t.Fatal(err)
	}
	if card := waitForCard(t, alice, id2); card.time("Reception") == "" {
		t.Error("the retried delivery was not received")
	}
	refuse = true

	// mediateDelivery: carol's reply comes back in the response, for alice
	// to decrypt, signed by carol; nothing is stored on the way.
	refuse = false
	before := countMessages(t, ix.Node, "bremen")
	a := alice.mediateDelivery(t, carol.server.URL+"/osci", "Anfrage", "Frage an carol", []byte("Frage-Anlage"), carolCipher)
	if strings.Join(a.feedback, " ") != "0801" {
		t.Fatalf("mediateDelivery: feedback %v", a.feedback)
	}
	if text := opened(t, a, oscitest.Key(t, "alice_cipher_4096"), oscitest.Certificate(t, "carol_signature_4096")); text != "Antwort auf: Frage an carol" {
		t.Errorf("alice read the reply %q", text)
	}
	if len(a.env.Root.FindAll(osci.Namespace, "RequestProcessCardBundle")) != 1 || len(a.env.Root.FindAll(osci.Namespace, "ReplyProcessCardBundle")) != 1 || a.time("Reception") == "" {
		t.Error("the response lacks the request's process card (with its reception) or the reply's")
	}
	if countMessages(t, ix.Node, "bremen") != before {
		t.Error("the mediated delivery was stored")
	}
	refuse = true
	if a := alice.mediateDelivery(t, carol.server.URL+"/osci", "Anfrage", "abgelehnt", []byte("x"), carolCipher); strings.Join(a.feedback, " ") != "9805" {
		t.Errorf("mediateDelivery carol refuses: feedback %v, want 9805", a.feedback)
	}
	refuse = false
	// An answer signed by another than carol's signature certificate
	// (9807), and one without the reply (9806); nothing stored.
	for _, c := range []struct {
		name    string
		signer  string
		noReply bool
		code    string
	}{
		{"signed by another", "bob_signature_4096", false, "9807"},
		{"no reply", "", true, "9806"},
	} {
		carol.mu.Lock()
		carol.signer, carol.noReply = c.signer, c.noReply
		carol.mu.Unlock()
		if a := alice.mediateDelivery(t, carol.server.URL+"/osci", "Anfrage", c.name, []byte("x"), carolCipher); strings.Join(a.feedback, " ") != c.code {
			t.Errorf("mediateDelivery, carol's answer %s: feedback %v, want %s", c.name, a.feedback, c.code)
		}
	}
	carol.mu.Lock()
	carol.signer, carol.noReply = "", false
	carol.mu.Unlock()
	if countMessages(t, ix.Node, "bremen") != before {
		t.Error("a refused mediateDelivery stored a message")
	}
	refuse = true

	id3 := alice.getMessageID(t)
	if a := alice.forwardDelivery(t, "https://elsewhere.example/osci", id3, "Umgeleitet", "x", []byte("x"), carolCipher); strings.Join(a.feedback, " ") != "9809" {
		t.Errorf("a ContentReceiver that is not carol's address: feedback %v, want 9809", a.feedback)
	}
	if countMessages(t, ix.Node, "bremen") != before {
		t.Error("the refused forwardDelivery stored a message")
	}
	alice.exitDialog(t)
	// Operators see the pushes by outcome.
	mf, err := ix.Metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	pushes := map[string]float64{}
	for _, f := range mf {
		if f.GetName() == "parzelle_osci_passive_total" {
			for _, m := range f.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				pushes[labels["order"]+" "+labels["outcome"]] += m.GetCounter().GetValue()
			}
		}
	}
	if want := map[string]float64{"acceptDelivery retry": 1, "acceptDelivery accepted": 2, "acceptDelivery refused": 1, "processDelivery accepted": 2, "processDelivery refused": 2}; fmt.Sprint(pushes) != fmt.Sprint(want) {
		t.Errorf("parzelle_osci_passive_total: %v, want %v", pushes, want)
	}
	carol.mu.Lock()
	defer carol.mu.Unlock()
	if len(carol.problems) > 0 {
		t.Errorf("carol found problems in what the intermediary sent: %v", carol.problems)
	}
}

// waitForCard fetches the delivery's process card until it shows the
// reception (a minute at most).
func waitForCard(t *testing.T, c *testClient, messageID string) *answer {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		a := c.fetchProcessCard(t, messageID)
		if a.time("Reception") != "" || time.Now().After(deadline) {
			return a
		}
		time.Sleep(200 * time.Millisecond)
	}
}
