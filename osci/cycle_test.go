package osci_test

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parzelle/parzelle/c14n"
	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/node/nodetest"
	"github.com/parzelle/parzelle/osci"
	"github.com/parzelle/parzelle/osci/oscitest"
	"github.com/parzelle/parzelle/register"
	"github.com/parzelle/parzelle/tenant"
	"github.com/parzelle/parzelle/xmldsig"
	"github.com/parzelle/parzelle/xmlenc"
)

// testClient is an OSCI client written for the tests, as a Fachverfahren
// would: it builds its requests from text and signs them with the
// signature key (only the XML signature and encryption libraries are
// shared with the intermediary).
type testClient struct {
	ix             *intermediary
	sign, cipher   *keys.KeyPair
	plain          bool // no transport encryption, to /osci/bremen
	conversation   string
	seq            int
	lastChallenge  string
	tamperSigned   bool // change a signed byte after signing
	unsigned       bool
	encryptToOther *x509.Certificate
	// intermediary is the tenant plain requests go to.
	intermediary string
	// customHeaders are header blocks after the certificates (the XTA
	// MessageMetaData), signed like the others.
	customHeaders string
}

func newClient(t testing.TB, ix *intermediary, who string) *testClient {
	return &testClient{ix: ix, sign: oscitest.Key(t, who+"_signature_4096"), cipher: oscitest.Key(t, who+"_cipher_4096"), intermediary: "bremen"}
}

const ns = `xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:osci="http://www.osci.de/2002/04/osci" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" xmlns:xenc="http://www.w3.org/2001/04/xmlenc#" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"`

const next = `soap:actor="http://schemas.xmlsoap.org/soap/actor/next" soap:mustUnderstand="1"`

func certElement(name, id string, cert *x509.Certificate) string {
	return `<osci:` + name + ` Id="` + id + `"><ds:X509Data><ds:X509Certificate>` + base64.StdEncoding.EncodeToString(cert.Raw) +
		`</ds:X509Certificate></ds:X509Data></osci:` + name + `>`
}

func randomToken() string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// mime writes an OSCI MIME message: the envelope, then the attachments.
func mime(envelope []byte, attachments map[string][]byte) []byte {
	var b bytes.Buffer
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: Multipart/Related; boundary=test-boundary-4711; type=text/xml\r\n\r\n")
	b.WriteString("--test-boundary-4711\r\nContent-Type: text/xml; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\nContent-ID: <osci@message>\r\n\r\n")
	b.Write(envelope)
	for id, data := range attachments {
		b.WriteString("\r\n--test-boundary-4711\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <" + id + ">\r\n\r\n")
		b.Write(data)
	}
	b.WriteString("\r\n--test-boundary-4711--\r\n")
	return b.Bytes()
}

// blockID finds the Ids of header blocks.
var blockID = regexp.MustCompile(`<[a-z0-9]+:[A-Za-z]+ [^>]*Id="([^"]+)"`)

// build makes a signed request: the order block in the header (headerOrder)
// or the body, the client's certificates (certs: the addressee's, which
// the schema places between the originator's two), and attachments.
func (c *testClient) build(t testing.TB, headerOrder, body string, certs string, attachments map[string][]byte) []byte {
	t.Helper()
	var env strings.Builder
	env.WriteString(`<soap:Envelope ` + ns + `><soap:Header><osci:ControlBlock Id="controlblock" ` + next)
	if c.conversation != "" {
		env.WriteString(` ConversationId="` + c.conversation + `" SequenceNumber="` + strconv.Itoa(c.seq) + `"`)
	} else if headerOrder != "" || !strings.Contains(body, "initDialog") {
		env.WriteString(` SequenceNumber="0"`)
	}
	env.WriteString(">")
	if c.lastChallenge != "" {
		env.WriteString("<osci:Response>" + c.lastChallenge + "</osci:Response>")
	}
	env.WriteString("<osci:Challenge>" + randomToken() + "</osci:Challenge></osci:ControlBlock>")
	ids := []string{"controlblock", "desiredlanguages"}
	if !c.unsigned {
		env.WriteString(`<osci:ClientSignature Id="clientsignature" ` + next + `></osci:ClientSignature>`)
	}
	env.WriteString(`<osci:DesiredLanguages Id="desiredlanguages" LanguagesList="de" ` + next + `></osci:DesiredLanguages>`)
	env.WriteString(headerOrder)
	for _, m := range blockID.FindAllStringSubmatch(headerOrder, -1) {
		ids = append(ids, m[1])
	}
	env.WriteString(`<osci:NonIntermediaryCertificates Id="nonintermediarycertificates" soap:actor="http://www.w3.org/2001/12/soap-envelope/actor/none" soap:mustUnderstand="1">`)
	// The originator's cipher certificate goes with the orders whose
	// schema has it: the intermediary answers (and collects) with it.
	if strings.Contains(body, "initDialog") || strings.Contains(body, "getMessageId") || strings.Contains(headerOrder, "storeDelivery") {
		env.WriteString(certElement("CipherCertificateOriginator", "originator_cipher", c.cipher.Certificate()))
	}
	env.WriteString(certs)
	env.WriteString(certElement("SignatureCertificateOriginator", "originator_signature", c.sign.Certificate()))
	env.WriteString(`</osci:NonIntermediaryCertificates>` + c.customHeaders)
	ids = append(ids, "nonintermediarycertificates")
	for _, m := range blockID.FindAllStringSubmatch(c.customHeaders, -1) {
		ids = append(ids, m[1])
	}
	ids = append(ids, "body")
	env.WriteString(`</soap:Header><soap:Body Id="body">` + body + `</soap:Body></soap:Envelope>`)
	doc := []byte(env.String())
	if !c.unsigned {
		var external []xmldsig.External
		for id, data := range attachments {
			external = append(external, xmldsig.External{URI: "cid:" + id, Data: data})
		}
		var err error
		signer := &xmldsig.Signer{Key: c.sign.Key, Certificates: c.sign.Chain[:1]}
		if doc, err = signer.SignDetached(doc, "clientsignature", ids, external, c14n.Method{}); err != nil {
			t.Fatal(err)
		}
	}
	if c.tamperSigned {
		doc = bytes.Replace(doc, []byte(`LanguagesList="de"`), []byte(`LanguagesList="en"`), 1)
	}
	msg := mime(doc, attachments)
	if c.plain {
		return msg
	}
	to := oscitest.Certificate(t, "osci_manager_cipher_4096")
	if c.encryptToOther != nil {
		to = c.encryptToOther
	}
	enc, err := xmlenc.Encrypt(msg, []*x509.Certificate{to}, xmlenc.EncryptOptions{MimeType: "Multipart/Related", CipherReference: "cid:osci_enc", OSCIIvLength: true})
	if err != nil {
		t.Fatal(err)
	}
	return mime([]byte(`<soap:Envelope `+ns+`><soap:Body>`+string(enc.XML)+`</soap:Body></soap:Envelope>`), map[string][]byte{"osci_enc": enc.Cipher})
}

// do sends a request and checks the answer; it follows the dialog.
func (c *testClient) do(t testing.TB, order osci.Order, req []byte) *answer {
	t.Helper()
	path := "/osci"
	if c.plain {
		path = "/osci/" + c.intermediary
	}
	status, out := c.ix.post(t, path, req)
	a := check(t, order, status, out)
	if c.plain != (a.encryptedTo == "") {
		t.Errorf("answer encrypted to %q", a.encryptedTo)
	}
	if order == osci.OrderInitDialog {
		c.conversation, _ = a.control.Attribute("ConversationId")
		c.seq = 0
	}
	if order == osci.OrderExitDialog {
		c.conversation, c.lastChallenge = "", ""
	} else if c.conversation != "" {
		c.lastChallenge = a.text("Challenge")
		c.seq++
	}
	return a
}

func (c *testClient) initDialog(t testing.TB) *answer {
	return c.do(t, osci.OrderInitDialog, c.build(t, "", `<osci:initDialog></osci:initDialog>`, "", nil))
}

func (c *testClient) exitDialog(t testing.TB) *answer {
	return c.do(t, osci.OrderExitDialog, c.build(t, "", `<osci:exitDialog></osci:exitDialog>`, "", nil))
}

func (c *testClient) getMessageID(t testing.TB) string {
	t.Helper()
	a := c.do(t, osci.OrderGetMessageID, c.build(t, "", `<osci:getMessageId></osci:getMessageId>`, "", nil))
	id, err := base64.StdEncoding.DecodeString(a.text("MessageId"))
	if err != nil || len(id) == 0 {
		t.Fatalf("getMessageId: %q %v (feedback %v)", a.text("MessageId"), err, a.feedback)
	}
	return string(id)
}

// content is a delivery's content: a ContentContainer with a text and an
// attachment, signed by the author, encrypted to the reader.
func (c *testClient) content(t testing.TB, text string, attachment []byte, reader *x509.Certificate) string {
	t.Helper()
	container := `<osci:ContentContainer ` + ns + ` Id="contentcontainer0"><osci:Content><osci:Base64Content Id="content0">` +
		base64.StdEncoding.EncodeToString([]byte(text)) + `</osci:Base64Content></osci:Content><osci:Content Id="content1" href="cid:anlage"></osci:Content></osci:ContentContainer>`
	signer := &xmldsig.Signer{Key: c.sign.Key, Certificates: c.sign.Chain[:1]}
	signed, err := signer.SignDetached([]byte(container), "contentcontainer0", []string{"content0"}, []xmldsig.External{{URI: "cid:anlage", Data: attachment}}, c14n.Method{})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := xmlenc.Encrypt(signed, []*x509.Certificate{reader}, xmlenc.EncryptOptions{MimeType: "text/xml", ID: "encdata_0", OSCIIvLength: true})
	if err != nil {
		t.Fatal(err)
	}
	return `<osci:ContentPackage>` + string(enc.XML) + `</osci:ContentPackage>`
}

// qualityOfTimestamps ask for plain creation and reception times, as a
// storeDelivery must.
const qualityOfTimestamps = `<osci:QualityOfTimestamp Id="qualityoftimestamp_creation" Quality="plain" Service="creation" ` + next + `></osci:QualityOfTimestamp>` +
	`<osci:QualityOfTimestamp Id="qualityoftimestamp_reception" Quality="plain" Service="reception" ` + next + `></osci:QualityOfTimestamp>`

// storeDelivery stores a delivery for the reader's postbox.
func (c *testClient) storeDelivery(t *testing.T, messageID, subject, text string, attachment []byte, reader *x509.Certificate) *answer {
	t.Helper()
	return c.do(t, osci.OrderStoreDelivery, c.storeRequest(t, messageID, subject, text, attachment, reader))
}

// storeRequest is a storeDelivery request.
func (c *testClient) storeRequest(t testing.TB, messageID, subject, text string, attachment []byte, reader *x509.Certificate) []byte {
	order := qualityOfTimestamps + `<osci:storeDelivery Id="storedelivery" ` + next + `><osci:MessageId>` + base64.StdEncoding.EncodeToString([]byte(messageID)) +
		`</osci:MessageId><osci:Subject>` + subject + `</osci:Subject></osci:storeDelivery>`
	certs := certElement("CipherCertificateAddressee", "addressee_cipher", reader)
	return c.build(t, order, c.content(t, text, attachment, reader), certs, map[string][]byte{"anlage": attachment})
}

func (c *testClient) fetchDelivery(t *testing.T) *answer {
	return c.do(t, osci.OrderFetchDelivery, c.build(t, `<osci:fetchDelivery Id="fetchdelivery" `+next+`></osci:fetchDelivery>`, "", "", nil))
}

func (c *testClient) fetchProcessCard(t *testing.T, messageID string) *answer {
	body := `<osci:fetchProcessCard><osci:SelectionRule><osci:MessageId>` + base64.StdEncoding.EncodeToString([]byte(messageID)) +
		`</osci:MessageId></osci:SelectionRule></osci:fetchProcessCard>`
	return c.do(t, osci.OrderFetchProcessCard, c.build(t, "", body, "", nil))
}

// opened decrypts a fetched delivery's content with the reader's key and
// verifies the author's signature over it and the attachment: the text.
func opened(t testing.TB, a *answer, reader *keys.KeyPair, author *x509.Certificate) string {
	t.Helper()
	eds := a.env.Root.FindAll(xmlenc.Namespace, "EncryptedData")
	if len(eds) != 1 {
		t.Fatalf("%d EncryptedData in the delivery", len(eds))
	}
	res, err := xmlenc.Decrypt(eds[0], xmlenc.DecryptOptions{Keys: []*keys.KeyPair{reader}})
	if err != nil {
		t.Fatalf("the reader cannot decrypt the content: %v", err)
	}
	doc, err := xmldsig.ParseDocument(bytes.NewReader(res.Plaintext))
	if err != nil {
		t.Fatal(err)
	}
	v := &xmldsig.Verifier{Trust: keys.NewTrustStore([]*x509.Certificate{author}), Resolve: a.msg.Resolve}
	if _, err := v.Verify(doc, doc.Root.FindAll(xmldsig.Namespace, "Signature")[0]); err != nil {
		t.Fatalf("the author's content signature: %v", err)
	}
	text, _ := base64.StdEncoding.DecodeString(doc.Root.FindAll(osci.Namespace, "Base64Content")[0].TrimmedText())
	return string(text)
}

// TestIntermediaryCycle runs a delivery's whole life with the test client:
// alice opens a dialog, gets MessageIds and stores two deliveries with
// signed content encrypted to bob and an attachment; bob collects them
// (3800 while more wait) until none is left, decrypting each and checking
// alice's signature; alice's process card shows creation, forwarding and
// reception. Then the bad-input table: each refusal has its code and
// changes nothing.
func TestIntermediaryCycle(t *testing.T) {
	ix := startIntermediary(t)
	bobCipher := oscitest.Certificate(t, "bob_cipher_4096")
	alice, bob := newClient(t, ix, "alice"), newClient(t, ix, "bob")

	alice.initDialog(t)
	first, second := alice.getMessageID(t), alice.getMessageID(t)
	attachment := []byte("%PDF-1.4 Anlage zur Meldung\x00\xff binary")
	if a := alice.storeDelivery(t, first, "Meldung 1", "Inhalt der ersten Zustellung", attachment, bobCipher); strings.Join(a.feedback, " ") != "0801" {
		t.Fatalf("storeDelivery: %v", a.feedback)
	}
	if a := alice.storeDelivery(t, second, "Meldung 2", "Inhalt der zweiten Zustellung", attachment, bobCipher); strings.Join(a.feedback, " ") != "0801" {
		t.Fatalf("storeDelivery: %v", a.feedback)
	}
	alice.exitDialog(t)

	bob.plain = true // plain dialogs work the same
	bob.initDialog(t)
	var got []string
	for i := 0; ; i++ {
		a := bob.fetchDelivery(t)
		if a.feedback[0] == "9803" {
			break
		}
		if i > 2 {
			t.Fatal("bob keeps fetching")
		}
		wantMore := map[bool]string{true: "0801 3800", false: "0801"}[i == 0]
		if strings.Join(a.feedback, " ") != wantMore {
			t.Errorf("fetch %d: feedback %v, want %s", i, a.feedback, wantMore)
		}
		if a.msg.Part("anlage") == nil || !bytes.Equal(a.msg.Part("anlage").Body, attachment) {
			t.Error("the attachment did not come back as sent")
		}
		got = append(got, opened(t, a, oscitest.Key(t, "bob_cipher_4096"), oscitest.Certificate(t, "alice_signature_4096")))
	}
	bob.exitDialog(t)
	if strings.Join(got, "|") != "Inhalt der ersten Zustellung|Inhalt der zweiten Zustellung" {
		t.Errorf("bob received %q", got)
	}

	alice.initDialog(t)
	a := alice.fetchProcessCard(t, first)
	if a.time("Creation") == "" || a.time("Forwarding") == "" || a.time("Reception") == "" || a.text("Subject") != "Meldung 1" {
		t.Errorf("process card: creation %q forwarding %q reception %q subject %q", a.time("Creation"), a.time("Forwarding"), a.time("Reception"), a.text("Subject"))
	}
	alice.exitDialog(t)

	// Operators see each order's outcome per tenant.
	mf, err := ix.Metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	stored := 0.0
	for _, f := range mf {
		if f.GetName() != "parzelle_osci_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["tenant"] == "bremen" && labels["order"] == "storeDelivery" && labels["code"] == "0801" {
				stored = m.GetCounter().GetValue()
			}
		}
	}
	if stored != 2 {
		t.Errorf("parzelle_osci_requests_total{tenant=bremen,order=storeDelivery,code=0801} = %v, want 2", stored)
	}

	t.Run("bad input", func(t *testing.T) { badInput(t, ix) })

	// A day later, unused MessageIds and ended dialogs are gone.
	count := func() (ids, dialogs int) {
		err := db.InTenant(t.Context(), ix.Pool, "bremen", func(tx pgx.Tx) error {
			return tx.QueryRow(t.Context(), `SELECT (SELECT count(*) FROM osci_message_id), (SELECT count(*) FROM osci_dialog WHERE closed_at IS NOT NULL)`).Scan(&ids, &dialogs)
		})
		if err != nil {
			t.Fatal(err)
		}
		return ids, dialogs
	}
	if ids, dialogs := count(); ids == 0 || dialogs == 0 {
		t.Fatalf("nothing to expire: %d MessageIds, %d ended dialogs", ids, dialogs)
	}
	ix.OSCI.Dialogs.Now = func() time.Time { return time.Now().Add(25 * time.Hour) }
	if err := ix.OSCI.Expire(t.Context(), []string{"bremen"}); err != nil {
		t.Fatal(err)
	}
	if ids, dialogs := count(); ids != 0 || dialogs != 0 {
		t.Errorf("after expiry: %d MessageIds, %d ended dialogs", ids, dialogs)
	}
}

// badInput sends one bad request of each kind: each gets its code, as a
// SOAP fault or as feedback, and leaves the boxes, the dialogs and the
// handed-out MessageIds as they were.
func badInput(t *testing.T, ix *intermediary) {
	bobCipher := oscitest.Certificate(t, "bob_cipher_4096")
	// A delivery for bob waits; alice has a dialog open.
	alice := newClient(t, ix, "alice")
	alice.initDialog(t)
	waiting := alice.getMessageID(t)
	alice.storeDelivery(t, waiting, "wartet", "wartet auf bob", []byte("x"), bobCipher)
	issued := alice.getMessageID(t)

	state := func() string {
		var s string
		err := db.InTenant(t.Context(), ix.Pool, "bremen", func(tx pgx.Tx) error {
			return tx.QueryRow(t.Context(), `SELECT concat_ws(' ', (SELECT count(*) FROM xta_message), (SELECT count(*) FROM xta_part),
			(SELECT string_agg(conversation_id || ':' || sequence_number || ':' || challenge || ':' || (closed_at IS NULL), ',' ORDER BY conversation_id) FROM osci_dialog),
			(SELECT string_agg(message_id, ',' ORDER BY message_id) FROM osci_message_id))`).Scan(&s)
		})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// copyOf is a client in alice's dialog, changed by the case.
	copyOf := func(change func(c *testClient)) *testClient {
		c := *alice
		change(&c)
		return &c
	}
	fetchOrder := `<osci:fetchDelivery Id="fetchdelivery" ` + next + `></osci:fetchDelivery>`
	storeOrder := func(id string) string {
		return qualityOfTimestamps + `<osci:storeDelivery Id="storedelivery" ` + next + `><osci:MessageId>` + base64.StdEncoding.EncodeToString([]byte(id)) + `</osci:MessageId></osci:storeDelivery>`
	}
	addressee := certElement("CipherCertificateAddressee", "addressee_cipher", bobCipher)
	content := `<osci:ContentPackage><osci:ContentContainer Id="cc"><osci:Content><osci:Base64Content Id="c0">eA==</osci:Base64Content></osci:Content></osci:ContentContainer></osci:ContentPackage>`
	exit := `<osci:exitDialog></osci:exitDialog>`
	for _, c := range []struct {
		name  string
		req   func(t *testing.T) []byte
		code  osci.Code
		fault bool
	}{
		{"wrong ConversationId", func(t *testing.T) []byte {
			return copyOf(func(c *testClient) { c.conversation = "123456789012345678" }).build(t, "", exit, "", nil)
		}, osci.CodeWrongDialog, true},
		{"wrong SequenceNumber", func(t *testing.T) []byte {
			return copyOf(func(c *testClient) { c.seq += 5 }).build(t, "", exit, "", nil)
		}, osci.CodeWrongDialog, true},
		{"wrong Response to the Challenge", func(t *testing.T) []byte {
			return copyOf(func(c *testClient) { c.lastChallenge = randomToken() }).build(t, "", exit, "", nil)
		}, osci.CodeWrongDialog, true},
		{"unsigned storeDelivery", func(t *testing.T) []byte {
			return copyOf(func(c *testClient) { c.conversation, c.lastChallenge, c.unsigned = "", "", true }).build(t, storeOrder(issued), content, addressee, nil)
		}, osci.CodeUnsigned, false},
		{"broken signature", func(t *testing.T) []byte {
			return copyOf(func(c *testClient) { c.conversation, c.lastChallenge, c.tamperSigned = "", "", true }).build(t, storeOrder(issued), content, addressee, nil)
		}, osci.CodeSignatureInvalid, false},
		{"transport layer encrypted to another", func(t *testing.T) []byte {
			return copyOf(func(c *testClient) { c.encryptToOther = bobCipher }).build(t, "", exit, "", nil)
		}, osci.CodeNoDecryptionKey, true},
		{"MessageId not handed out", func(t *testing.T) []byte {
			return copyOf(func(c *testClient) { c.conversation, c.lastChallenge = "", "" }).build(t, storeOrder("erfunden"), content, addressee, nil)
		}, osci.CodeIllegalMessageID, false},
		{"fetch from another's postbox", func(t *testing.T) []byte {
			// alice opens a dialog presenting bob's (public) cipher
			// certificate: she still cannot collect his postbox.
			thief := newClient(t, ix, "alice")
			thief.cipher = oscitest.Key(t, "bob_cipher_4096")
			thief.plain = true
			thief.initDialog(t)
			return thief.build(t, fetchOrder, "", "", nil)
		}, osci.CodeNoDelivery, false},
		{"not valid against the schema", func(t *testing.T) []byte {
			order := strings.Replace(storeOrder(issued), "</osci:storeDelivery>", "<osci:Bogus></osci:Bogus></osci:storeDelivery>", 1)
			return copyOf(func(c *testClient) { c.conversation, c.lastChallenge = "", "" }).build(t, order, content, addressee, nil)
		}, osci.CodeNoValidRequest, true},
		{"oversize", func(t *testing.T) []byte { return bytes.Repeat([]byte("x"), 65<<20) }, osci.CodeMessageTooLarge, true},
		{"malformed MIME", func(t *testing.T) []byte {
			return []byte("MIME-Version: 1.0\r\nContent-Type: Multipart/Related; boundary=b\r\n\r\n--b\r\nContent-Type: text/xml\r\n\r\n<soap:Envelope")
		}, osci.CodeNoOSCIMessage, true},
		{"XXE", func(t *testing.T) []byte {
			return mime([]byte(`<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><soap:Envelope `+ns+`><soap:Body>&e;</soap:Body></soap:Envelope>`), nil)
		}, osci.CodeNoOSCIMessage, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			req := c.req(t) // may open a dialog of its own
			before := state()
			path := "/osci"
			if bytes.HasPrefix(req, []byte("MIME")) && !bytes.Contains(req, []byte("osci_enc")) {
				path = "/osci/bremen"
			}
			status, out := ix.post(t, path, req)
			if c.fault {
				wantFault(t, status, out, c.code)
				// A fault tells the client what it did wrong, not which
				// keys (and so which tenants) this node holds.
				if bytes.Contains(out, []byte("OSCI-Manager Cipher")) {
					t.Errorf("the fault names the intermediary's own cipher certificate: %s", truncated(out))
				}
			} else {
				inner, _, err := osci.DecryptTransport(out, []*keys.KeyPair{oscitest.Key(t, "alice_cipher_4096"), oscitest.Key(t, "bob_cipher_4096")})
				if err != nil {
					t.Fatal(err)
				}
				if status != http.StatusOK || !bytes.Contains(inner, []byte("<osci:Code>"+string(c.code)+"</osci:Code>")) {
					t.Errorf("want feedback %s, got HTTP %d %s", c.code, status, truncated(inner))
				}
			}
			after := state()
			if c.name == "fetch from another's postbox" {
				// The dialog moved on; nothing else changed.
				before, after = before[:strings.Index(before, " ")], after[:strings.Index(after, " ")]
			}
			if before != after {
				t.Errorf("the refusal changed what is stored:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
	// bob's delivery is still there for him.
	bob := newClient(t, ix, "bob")
	bob.initDialog(t)
	if a := bob.fetchDelivery(t); a.feedback[0] != "0801" || opened(t, a, oscitest.Key(t, "bob_cipher_4096"), oscitest.Certificate(t, "alice_signature_4096")) != "wartet auf bob" {
		t.Errorf("bob's waiting delivery: %v", a.feedback)
	}
}

func truncated(b []byte) string {
	if len(b) > 1600 {
		return fmt.Sprintf("%s … (%d bytes)", b[:1600], len(b))
	}
	return string(b)
}

// metaData is an XTA MessageMetaData custom header for a delivery.
func metaData(author, reader, messageType string) string {
	return `<oscimeta:MessageMetaData xmlns:oscimeta="http://www.osci.eu/ws/2014/10/transport" xmlns:wsa="http://www.w3.org/2005/08/addressing" Id="MetaData">` +
		`<oscimeta:Originators><oscimeta:Author><oscimeta:Identifier type="xoev">` + author + `</oscimeta:Identifier></oscimeta:Author></oscimeta:Originators>` +
		`<oscimeta:Destinations><oscimeta:Reader><oscimeta:Identifier type="xoev">` + reader + `</oscimeta:Identifier></oscimeta:Reader></oscimeta:Destinations>` +
		`<oscimeta:MsgIdentification><wsa:MessageID>urn:de:xta:messageid:osci-test:` + randomToken() + `</wsa:MessageID></oscimeta:MsgIdentification>` +
		`<oscimeta:Qualifier><oscimeta:Service>urn:xoev-de:xmeld</oscimeta:Service><oscimeta:BusinessScenario><oscimeta:Defined listURI="urn:de:xta:codeliste:business.scenario" listVersionID="3.6"><code>XMELD_DATA</code></oscimeta:Defined></oscimeta:BusinessScenario>` +
		`<oscimeta:MessageType listURI="urn:de:payloadSchema:elementName" listVersionID="1.0" payloadSchema="` + nodetest.XMeldNS + `"><code>` + messageType + `</code></oscimeta:MessageType></oscimeta:Qualifier></oscimeta:MessageMetaData>`
}

// TestIntermediaryRegisterInbox: a Fachverfahren delivers an XMeld message
// over OSCI to Düsseldorf's register inbox, content signed by its author
// and encrypted to the register's key (here the demo PKI's carol), with the
// XTA MessageMetaData naming author and message type: the person appears
// in the register, as over XTA. A client whose signature the tenant does
// not trust for the author is refused (9700) and nothing is stored, so is a
// process message its schema refuses (9300); the process card of the
// applied message shows the register's applying as its reception.
func TestIntermediaryRegisterInbox(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{Tenants: map[string]string{"duesseldorf": registerOverOSCI(t)}, Files: map[string][]byte{"pin": []byte("123456\n")},
		Clients: []string{"osci-client"}, Schemas: nodetest.Schemas(t)})
	ix := &intermediary{Node: n, client: n.HTTP("osci-client")}
	carol := oscitest.Certificate(t, "carol_cipher_4096")
	typ, doc := nodetest.XMeld(t, "01")
	client := func(who string) *testClient {
		c := newClient(t, ix, who)
		c.plain, c.intermediary = true, "duesseldorf"
		c.customHeaders = metaData("ags:05111000", "register:05111000", typ)
		return c
	}
	var id string
	deliver := func(who string) *answer {
		c := client(who)
		id = c.getMessageID(t)
		return c.do(t, osci.OrderStoreDelivery, c.storeRequest(t, id, "Rückmeldung", string(doc), []byte("Anlage"), carol))
	}
	before := countMessages(t, ix.Node, "duesseldorf")
	// A process message its schema refuses is refused at the intermediary
	// (9300, with the problem), as over XTA.
	c := client("alice")
	root := bytes.Index(doc, []byte("<xmeld:"))
	end := root + bytes.IndexByte(doc[root:], '>') + 1
	invalid := slices.Concat(doc[:end], []byte("<ungueltig/>"), doc[end:])
	status, out := ix.post(t, "/osci/duesseldorf", c.storeRequest(t, c.getMessageID(t), "ungültig", string(invalid), []byte("Anlage"), carol))
	wantFault(t, status, out, osci.CodeNoValidRequest)
	if !bytes.Contains(out, []byte("ungueltig")) {
		t.Errorf("the fault does not name the schema problem: %s", truncated(out))
	}
	if a := deliver("bob"); strings.Join(a.feedback, " ") != "9700" {
		t.Errorf("bob, not trusted for ags:05111000: feedback %v, want 9700", a.feedback)
	}
	if after := countMessages(t, ix.Node, "duesseldorf"); after != before {
		t.Errorf("the refused delivery left %d messages, want %d", after, before)
	}
	// 3707: the tenant trusts alice for one author (keys.trust.counterparts),
	// not as an OSCI party in general (keys.trust.signers), so her
	// certificates' inspection stays indeterminate.
	if a := deliver("alice"); strings.Join(a.feedback, " ") != "0800 3707" {
		t.Fatalf("alice's delivery: feedback %v", a.feedback)
	}
	clerk := tenant.Actor{Tenant: "duesseldorf", Kind: tenant.ActorCertificate, Subject: "test", Role: "fachverfahren", Purpose: "meldewesen"}
	deadline := time.Now().Add(time.Minute)
	for {
		found, err := n.Store.Search(t.Context(), clerk, "duesseldorf", "melderegister", register.Query{Familienname: "Ćosić", Vornamen: "Mirela Ana", Geburtsdatum: "1987-04"})
		if err != nil {
			t.Fatal(err)
		}
		if len(found) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the person delivered over OSCI is not in the register after a minute (%d records)", len(found))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// alice's process card shows the register's applying as the reception.
	c = client("alice")
	c.customHeaders = ""
	c.initDialog(t)
	deadline = time.Now().Add(time.Minute)
	for {
		a := c.fetchProcessCard(t, id)
		if a.time("Reception") != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reception on the process card a minute after the register applied the message (feedback %v)", a.feedback)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.exitDialog(t)
}

// registerOverOSCI is Düsseldorf's Melderegister tenant whose register
// inbox is an OSCI postbox too (carol's demo keys are the tenant's), and
// which trusts alice's OSCI signature for its Fachverfahren ags:05111000.
func registerOverOSCI(t testing.TB) string {
	certs := oscitest.Certs
	file := nodetest.MelderegisterTenant(t, "duesseldorf", "zuzug")
	file = strings.Replace(file, `  - {id: "register:05111000", type: xoev, category: Melderegister, transports: [xta]}`,
		`  - {id: "register:05111000", type: xoev, category: Melderegister, transports: [xta, osci], osci: {cipherCertificate: `+certs+`/carol_cipher_4096.cer, signatureCertificate: `+certs+`/carol_signature_4096.cer}}`, 1)
	return file + fmt.Sprintf(`keys:
  signing: [{pkcs12: %[1]s/carol_signature_4096.p12, passwordFile: "{{DIR}}/pin"}]
  decryption: [{pkcs12: %[1]s/carol_cipher_4096.p12, passwordFile: "{{DIR}}/pin"}]
  trust:
    # alice's OSCI signature speaks for the Fachverfahren ags:05111000.
    counterparts: [{identity: "ags:05111000", signers: [%[1]s/alice_signature_4096.cer]}]
`, certs)
}

// countMessages counts the tenant's message rows on the node.
func countMessages(t *testing.T, n *nodetest.Node, tenantID string) int {
	var count int
	err := db.InTenant(t.Context(), n.Pool, tenantID, func(tx pgx.Tx) error {
		return tx.QueryRow(t.Context(), `SELECT count(*) FROM xta_message`).Scan(&count)
	})
	if err != nil {
		t.Fatal(err)
	}
	return count
}
