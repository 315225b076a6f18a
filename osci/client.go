package osci

import (
	"bytes"
	"cmp"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/parzelle/parzelle/c14n"
	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/xmldsig"
	"github.com/parzelle/parzelle/xmlenc"
	"github.com/parzelle/parzelle/xmlsafe"
)

// Client is the OSCI 1.2 client role towards one intermediary: it opens
// explicit dialogs, signs every request with its signature key, encrypts
// it to the intermediary's cipher certificate (unless Plain), and checks
// every answer: transport-decrypted with its cipher key, signed by the
// intermediary's signature certificate, answering the request's challenge.
type Client struct {
	// URL is the intermediary's address (a Parzelle node: https://…/osci,
	// or …/osci/{tenant} for a plain dialog).
	URL  string
	HTTP *http.Client
	// IntermediaryCipher encrypts the requests; IntermediarySignature
	// must have signed the answers.
	IntermediaryCipher, IntermediarySignature *x509.Certificate
	// Signer signs the requests (SignatureCertificateOriginator); Cipher
	// opens the encrypted answers and is the CipherCertificateOriginator
	// (the postbox a dialog collects).
	Signer, Cipher *keys.KeyPair
	// Plain sends requests without transport encryption.
	Plain bool
	// MaxBytes bounds an answer (default 64 MiB).
	MaxBytes int64
}

// Session is the client's side of an explicit dialog with the
// intermediary, opened by initDialog and ended by exitDialog.
type Session struct {
	c            *Client
	conversation string
	seq          int
	challenge    string // the intermediary's last Challenge
	// customHeaders are the custom header blocks of the request being
	// built.
	customHeaders []string
}

// Answer is an intermediary's checked answer: its feedback codes (the
// order's, the inside feedback of a partial delivery first), the process
// cards, and the MIME message and envelope it came in.
type Answer struct {
	Feedback     []Code
	MessageID    string
	ProcessCards []ProcessCard
	MIME         *MIMEMessage
	Envelope     *xmlsafe.Document
	// Plain is the MIME message as received, its transport encryption
	// undone (ReadAnswer reads it again).
	Plain []byte
}

// ReadAnswer reads an answer kept as its Plain bytes (a fetched delivery
// held for a dead letter): its MIME message, envelope, feedback and
// process cards. The intermediary's signature was checked when it came.
func ReadAnswer(plain []byte) (*Answer, error) {
	msg, env, err := parseEnvelope(plain)
	if err != nil {
		return nil, fmt.Errorf("osci: the kept answer: %w", err)
	}
	return answerOf(msg, env, plain), nil
}

// answerOf is the answer in msg, with its feedback and process cards.
func answerOf(msg *MIMEMessage, env *xmlsafe.Document, plain []byte) *Answer {
	a := &Answer{MIME: msg, Envelope: env, Plain: plain}
	for _, code := range env.Root.FindAll(Namespace, "Code") {
		a.Feedback = append(a.Feedback, Code(code.TrimmedText()))
	}
	a.ProcessCards = readProcessCards(env)
	return a
}

// ErrAuthorSignature marks a content whose author's signature is missing,
// fails or is not trusted (OpenContent).
var ErrAuthorSignature = errors.New("the author's signature")

// OK reports whether the first feedback code is a success (0xxx).
func (a *Answer) OK() bool { return len(a.Feedback) > 0 && a.Feedback[0][0] == '0' }

// Has reports whether the answer carries the code.
func (a *Answer) Has(code Code) bool {
	for _, c := range a.Feedback {
		if c == code {
			return true
		}
	}
	return false
}

// Open opens an explicit dialog (initDialog).
func (c *Client) Open(ctx context.Context) (*Session, error) {
	d := &Session{c: c}
	a, err := d.do(ctx, OrderInitDialog, "", `<osci:initDialog></osci:initDialog>`, "", nil)
	if err != nil {
		return nil, err
	}
	if !a.OK() {
		return nil, fmt.Errorf("osci: initDialog: %s", a.describe())
	}
	return d, nil
}

// Close ends the dialog (exitDialog); it confirms the reception of what
// the dialog fetched last.
func (d *Session) Close(ctx context.Context) error {
	a, err := d.do(ctx, OrderExitDialog, "", `<osci:exitDialog></osci:exitDialog>`, "", nil)
	if err == nil && !a.OK() {
		err = fmt.Errorf("osci: exitDialog: %s", a.describe())
	}
	d.conversation = ""
	return err
}

// MessageID asks the intermediary for a MessageId (getMessageId).
func (d *Session) MessageID(ctx context.Context) (string, error) {
	a, err := d.do(ctx, OrderGetMessageID, "", `<osci:getMessageId></osci:getMessageId>`, "", nil)
	if err != nil {
		return "", err
	}
	if !a.OK() || a.MessageID == "" {
		return "", fmt.Errorf("osci: getMessageId: %s", a.describe())
	}
	return a.MessageID, nil
}

// Outgoing is a delivery to store: its MessageId (from MessageID), its
// subject, the reader's cipher certificate (its postbox), custom header
// blocks (each with an Id, such as the XTA MessageMetaData), and the
// content package and attachments (SealContent makes them). With a
// ContentReceiver, the reader is a passive recipient at that address and
// the delivery is forwarded (forwardDelivery).
type Outgoing struct {
	MessageID, Subject, ContentReceiver string
	Reader                              *x509.Certificate
	CustomHeaders                       []string
	Content                             []byte
	Attachments                         []Attachment
}

// Store stores a delivery in the reader's postbox (storeDelivery), or
// forwards it to a passive recipient (forwardDelivery, when
// ContentReceiver is set); the answer carries its feedback and process
// card.
func (d *Session) Store(ctx context.Context, o Outgoing) (*Answer, error) {
	order := OrderStoreDelivery
	if o.ContentReceiver != "" {
		order = OrderForwardDelivery
	}
	var b strings.Builder
	b.WriteString(`<osci:QualityOfTimestamp Id="qualityoftimestamp_creation" Quality="plain" Service="creation" ` + actorNext + `></osci:QualityOfTimestamp>`)
	b.WriteString(`<osci:QualityOfTimestamp Id="qualityoftimestamp_reception" Quality="plain" Service="reception" ` + actorNext + `></osci:QualityOfTimestamp>`)
	b.WriteString(`<osci:` + string(order) + ` Id="` + strings.ToLower(string(order)) + `" ` + actorNext + `>`)
	if o.ContentReceiver != "" {
		b.WriteString(`<osci:ContentReceiver URI="`)
		_ = xmlEscape(&b, o.ContentReceiver)
		b.WriteString(`"></osci:ContentReceiver>`)
	}
	writeElement(&b, "osci:MessageId", base64.StdEncoding.EncodeToString([]byte(o.MessageID)))
	if o.Subject != "" {
		writeElement(&b, "osci:Subject", o.Subject)
	}
	b.WriteString(`</osci:` + string(order) + `>`)
	certs := certificateElement("CipherCertificateAddressee", "addressee_cipher", o.Reader)
	d.customHeaders = o.CustomHeaders
	defer func() { d.customHeaders = nil }()
	return d.do(ctx, order, b.String(), string(o.Content), certs, o.Attachments)
}

// Fetch collects the next delivery of the dialog's postbox (the one with
// the MessageId when messageID is set): nil when there is none (9803).
// more reports 3800, further deliveries waiting. The delivery counts as
// received with the dialog's next request.
func (d *Session) Fetch(ctx context.Context, messageID string) (*Answer, bool, error) {
	order := `<osci:fetchDelivery Id="fetchdelivery" ` + actorNext + `>`
	if messageID != "" {
		order += `<osci:SelectionRule><osci:MessageId>` + base64.StdEncoding.EncodeToString([]byte(messageID)) + `</osci:MessageId></osci:SelectionRule>`
	}
	order += `</osci:fetchDelivery>`
	a, err := d.do(ctx, OrderFetchDelivery, order, "", "", nil)
	switch {
	case err != nil:
		return nil, false, err
	case a.Has(CodeNoDelivery):
		return nil, false, nil
	case !a.OK():
		return nil, false, fmt.Errorf("osci: fetchDelivery: %s", a.describe())
	}
	return a, a.Has(CodeMoreDeliveries), nil
}

// ProcessCard fetches the process card of a delivery the client stored.
func (d *Session) ProcessCard(ctx context.Context, messageID string) (ProcessCard, error) {
	body := `<osci:fetchProcessCard><osci:SelectionRule><osci:MessageId>` + base64.StdEncoding.EncodeToString([]byte(messageID)) +
		`</osci:MessageId></osci:SelectionRule></osci:fetchProcessCard>`
	a, err := d.do(ctx, OrderFetchProcessCard, "", body, "", nil)
	if err != nil {
		return ProcessCard{}, err
	}
	if !a.OK() || len(a.ProcessCards) == 0 {
		return ProcessCard{}, fmt.Errorf("osci: fetchProcessCard %s: %s", messageID, a.describe())
	}
	return a.ProcessCards[0], nil
}

const actorNext = `soap:actor="` + soapActorNext + `" soap:mustUnderstand="1"`

// do builds, signs, encrypts and sends one request of the dialog and
// checks the answer; the dialog moves on with it.
func (d *Session) do(ctx context.Context, order Order, headerOrder, body, certs string, attachments []Attachment) (*Answer, error) {
	c := d.c
	challenge := newToken(12)
	var env strings.Builder
	env.WriteString(`<soap:Envelope xmlns:soap="` + SOAPNamespace + `" xmlns:osci="` + Namespace + `" xmlns:ds="` + xmldsig.Namespace +
		`" xmlns:xenc="` + xmlenc.Namespace + `" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soap:Header>`)
	env.WriteString(`<osci:ControlBlock Id="controlblock" ` + actorNext)
	if order != OrderInitDialog {
		env.WriteString(` ConversationId="` + d.conversation + `" SequenceNumber="` + strconv.Itoa(d.seq+1) + `"`)
	}
	env.WriteString(`>`)
	if d.challenge != "" {
		writeElement(&env, "osci:Response", d.challenge)
	}
	writeElement(&env, "osci:Challenge", challenge)
	env.WriteString(`</osci:ControlBlock><osci:ClientSignature Id="clientsignature" ` + actorNext + `></osci:ClientSignature>`)
	env.WriteString(`<osci:DesiredLanguages Id="desiredlanguages" LanguagesList="de" ` + actorNext + `></osci:DesiredLanguages>`)
	ids := []string{"controlblock", "desiredlanguages"}
	env.WriteString(headerOrder)
	ids = append(ids, blockIDs(headerOrder)...)
	env.WriteString(`<osci:NonIntermediaryCertificates Id="nonintermediarycertificates" soap:actor="http://www.w3.org/2001/12/soap-envelope/actor/none" soap:mustUnderstand="1">`)
	if order == OrderInitDialog || order == OrderGetMessageID || order == OrderStoreDelivery || order == OrderForwardDelivery {
		env.WriteString(certificateElement("CipherCertificateOriginator", "originator_cipher", c.Cipher.Certificate()))
	}
	env.WriteString(certs)
	env.WriteString(certificateElement("SignatureCertificateOriginator", "originator_signature", c.Signer.Certificate()))
	env.WriteString(`</osci:NonIntermediaryCertificates>`)
	ids = append(ids, "nonintermediarycertificates")
	for _, h := range d.customHeaders {
		env.WriteString(h)
		ids = append(ids, blockIDs(h)...)
	}
	env.WriteString(`</soap:Header><soap:Body Id="body">` + body + `</soap:Body></soap:Envelope>`)
	ids = append(ids, "body")
	var external []xmldsig.External
	for _, a := range attachments {
		external = append(external, xmldsig.External{URI: "cid:" + a.ContentID, Data: a.Data})
	}
	signer := &xmldsig.Signer{Key: c.Signer.Key, Certificates: c.Signer.Chain[:min(1, len(c.Signer.Chain))]}
	signed, err := signer.SignDetached([]byte(env.String()), "clientsignature", ids, external, c14n.Method{})
	if err != nil {
		return nil, fmt.Errorf("osci: sign %s: %w", order, err)
	}
	msg := packMIME(signed, attachments...)
	if !c.Plain {
		if msg, err = EncryptTransport(msg, c.IntermediaryCipher); err != nil {
			return nil, err
		}
	}
	a, err := c.exchange(ctx, order, msg, challenge)
	if err != nil {
		return nil, err
	}
	if order == OrderInitDialog {
		d.conversation, d.seq = controlOf(a.Envelope, "ConversationId"), 0
	} else {
		d.seq++
	}
	d.challenge = controlText(a.Envelope, "Challenge")
	return a, nil
}

// exchange posts a request and checks the answer: an OSCI fault is an
// *Error with its code; an answer must be encrypted to the client when
// the request was, signed by the intermediary over every header block and
// the body, and answer the challenge.
func (c *Client) exchange(ctx context.Context, order Order, msg []byte, challenge string) (*Answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(msg))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "Multipart/Related")
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("osci: %s to %s: %w", order, c.URL, err)
	}
	defer resp.Body.Close()
	limit := c.MaxBytes
	if limit == 0 {
		limit = maxMessageDefault
	}
	out, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("osci: answer to %s: %w", order, err)
	}
	if int64(len(out)) > limit {
		return nil, fmt.Errorf("osci: the answer to %s is larger than %d bytes", order, limit)
	}
	plain, enc, err := DecryptTransport(out, []*keys.KeyPair{c.Cipher})
	if err != nil {
		return nil, fmt.Errorf("osci: answer to %s (HTTP %d): %w", order, resp.StatusCode, err)
	}
	msgIn, env, err := parseEnvelope(plain)
	if err != nil {
		return nil, fmt.Errorf("osci: answer to %s (HTTP %d): %w", order, resp.StatusCode, err)
	}
	if fault := env.Root.Child(SOAPNamespace, "Body").Child(SOAPNamespace, "Fault"); fault != nil {
		e := &Error{Code: CodeInternal}
		for _, code := range fault.FindAll(Namespace, "Code") {
			e.Code = Code(code.TrimmedText())
		}
		if s := fault.Child("", "faultstring"); s != nil {
			e.Detail = s.TrimmedText()
		}
		return nil, fmt.Errorf("osci: %s refused: %w", order, e)
	}
	if !c.Plain && enc == nil {
		return nil, fmt.Errorf("osci: the answer to the encrypted %s came unencrypted", order)
	}
	var supplier *xmlsafe.Element
	for _, sig := range env.Root.FindAll(xmldsig.Namespace, "Signature") {
		if sig.Parent != nil && sig.Parent.Name.Local == "SupplierSignature" {
			supplier = sig
		}
	}
	if supplier == nil {
		return nil, fmt.Errorf("osci: the answer to %s is not signed by the intermediary", order)
	}
	v := &xmldsig.Verifier{Trust: keys.NewTrustStore([]*x509.Certificate{c.IntermediarySignature}), Resolve: msgIn.Resolve}
	res, err := v.Verify(env, supplier)
	if err != nil {
		return nil, fmt.Errorf("osci: the intermediary's signature over the answer to %s: %w", order, err)
	}
	for _, block := range append(env.Root.Child(SOAPNamespace, "Header").Children, env.Root.Child(SOAPNamespace, "Body")) {
		if block.Name.Local != "SupplierSignature" && !covers(res, block) {
			return nil, fmt.Errorf("osci: the intermediary's signature leaves <%s> of the answer to %s out", block.Name.Local, order)
		}
	}
	if got := controlText(env, "Response"); got != challenge {
		return nil, fmt.Errorf("osci: the answer to %s does not answer its challenge", order)
	}
	a := answerOf(msgIn, env, plain)
	if order == OrderGetMessageID {
		if el := env.Root.FindAll(Namespace, "MessageId"); len(el) > 0 {
			id, _ := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(el[0].Text), ""))
			a.MessageID = string(id)
		}
	}
	return a, nil
}

// describe is an answer's feedback for an error message.
func (a *Answer) describe() string {
	var parts []string
	for _, c := range a.Feedback {
		parts = append(parts, string(c)+" "+c.Text("en"))
	}
	if len(parts) == 0 {
		return "no feedback"
	}
	return strings.Join(parts, "; ")
}

// readProcessCards reads the process cards of an answer.
func readProcessCards(env *xmlsafe.Document) []ProcessCard {
	var cards []ProcessCard
	for _, name := range []string{"ProcessCardBundle", "procard", "RequestProcessCardBundle", "ReplyProcessCardBundle"} {
		for _, b := range env.Root.FindAll(Namespace, name) {
			var c ProcessCard
			if id := b.Child(Namespace, "MessageId"); id != nil {
				raw, _ := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(id.Text), ""))
				c.MessageID = string(raw)
			}
			card := b.Child(Namespace, "ProcessCard")
			if card == nil {
				continue
			}
			if v, ok := card.Attribute("RecentModification"); ok {
				c.RecentModification, _ = time.Parse(time.RFC3339, v)
			}
			stamp := func(name string) *time.Time {
				if el := card.Child(Namespace, name); el != nil {
					if p := el.Child(Namespace, "Plain"); p != nil {
						if t, err := time.Parse(time.RFC3339, p.TrimmedText()); err == nil {
							return &t
						}
					}
				}
				return nil
			}
			if t := stamp("Creation"); t != nil {
				c.Creation = *t
			}
			c.Forwarding, c.Reception = stamp("Forwarding"), stamp("Reception")
			if s := card.Child(Namespace, "Subject"); s != nil {
				c.Subject = s.Text
			}
			cards = append(cards, c)
		}
	}
	return cards
}

// controlOf is an attribute of the answer's ControlBlock.
func controlOf(env *xmlsafe.Document, name string) string {
	if cb := env.Root.FindAll(Namespace, "ControlBlock"); len(cb) > 0 {
		v, _ := cb[0].Attribute(name)
		return v
	}
	return ""
}

// controlText is the text of a child of the answer's ControlBlock.
func controlText(env *xmlsafe.Document, name string) string {
	if cb := env.Root.FindAll(Namespace, "ControlBlock"); len(cb) > 0 {
		if el := cb[0].Child(Namespace, name); el != nil {
			return el.TrimmedText()
		}
	}
	return ""
}

// blockIDs are the Ids of the header blocks in a piece of markup: the Id
// attributes of its top-level elements.
func blockIDs(markup string) []string {
	if markup == "" {
		return nil
	}
	doc, err := xmldsig.ParseDocument(strings.NewReader(`<x xmlns:soap="` + SOAPNamespace + `" xmlns:osci="` + Namespace + `" xmlns:osci2017="` + Namespace2017 + `">` + markup + `</x>`))
	if err != nil {
		return nil
	}
	var ids []string
	for _, el := range doc.Root.Children {
		if id, ok := el.Attribute("Id"); ok {
			ids = append(ids, id)
		}
	}
	return ids
}

// certificateElement is a certificate of NonIntermediaryCertificates.
func certificateElement(name, id string, cert *x509.Certificate) string {
	return `<osci:` + name + ` Id="` + id + `"><ds:X509Data><ds:X509Certificate>` + base64.StdEncoding.EncodeToString(cert.Raw) +
		`</ds:X509Certificate></ds:X509Data></osci:` + name + `>`
}

// writeElement writes an element with escaped text.
func writeElement(b *strings.Builder, name, text string) {
	var x xmlWriter
	x.element(name, text)
	b.Write(x.Bytes())
}

// SealContent makes a delivery's content: a ContentContainer with the
// document (Base64Content) and the attachments (Content href="cid:…"),
// signed by the author over all of them, encrypted to the readers (AES-256-GCM,
// RSA-OAEP); it returns the ContentPackage and the attachments to send
// with it. The attachments travel as they are: encrypt them first where
// they must not be readable on the way.
func SealContent(document []byte, attachments []Attachment, author *keys.KeyPair, readers []*x509.Certificate) ([]byte, []Attachment, error) {
	var x xmlWriter
	x.raw(`<osci:ContentContainer xmlns:osci="` + Namespace + `" Id="contentcontainer"><osci:Content><osci:Base64Content Id="content0">`)
	x.raw(base64.StdEncoding.EncodeToString(document))
	x.raw(`</osci:Base64Content></osci:Content>`)
	var external []xmldsig.External
	for i, a := range attachments {
		x.raw(`<osci:Content Id="attachment` + strconv.Itoa(i) + `" href="cid:`)
		_ = xmlEscape(&x, a.ContentID)
		x.raw(`"></osci:Content>`)
		external = append(external, xmldsig.External{URI: "cid:" + a.ContentID, Data: a.Data})
	}
	x.raw(`</osci:ContentContainer>`)
	signer := &xmldsig.Signer{Key: author.Key, Certificates: author.Chain[:min(1, len(author.Chain))]}
	signed, err := signer.SignDetached(x.Bytes(), "contentcontainer", []string{"content0"}, external, c14n.Method{})
	if err != nil {
		return nil, nil, fmt.Errorf("osci: sign the content: %w", err)
	}
	enc, err := xmlenc.Encrypt(signed, readers, xmlenc.EncryptOptions{MimeType: "text/xml", ID: "encdata_0", OSCIIvLength: true})
	if err != nil {
		return nil, nil, fmt.Errorf("osci: encrypt the content: %w", err)
	}
	return append(append([]byte(`<osci:ContentPackage>`), enc.XML...), `</osci:ContentPackage>`...), attachments, nil
}

// Content is a delivery's content as its reader opened it.
type Content struct {
	// Document is the first content (Base64Content).
	Document []byte
	// Author signed the content container (nil when unsigned).
	Author *x509.Certificate
	// Attachments are the attachments its other contents name
	// (href="cid:…"), as received.
	Attachments []Attachment
}

// OpenContent decrypts a fetched delivery's content with the reader's
// keys and verifies the author's signatures over it and its attachments
// (trust decides whose); an unsigned container is refused unless trust is
// nil.
func OpenContent(a *Answer, pairs []*keys.KeyPair, trust xmldsig.Trust) (*Content, error) {
	pkg := a.Envelope.Root.FindAll(Namespace, "ContentPackage")
	if len(pkg) != 1 || len(pkg[0].Children) != 1 {
		return nil, fmt.Errorf("osci: the delivery holds no single content container")
	}
	container, doc := pkg[0].Children[0], a.Envelope
	if container.Name.Space == xmlenc.Namespace && container.Name.Local == "EncryptedData" {
		res, err := xmlenc.Decrypt(container, xmlenc.DecryptOptions{Keys: pairs, Resolve: a.MIME.Resolve})
		if err != nil {
			return nil, fmt.Errorf("osci: decrypt the content: %w", err)
		}
		if doc, err = xmldsig.ParseDocument(bytes.NewReader(res.Plaintext)); err != nil {
			return nil, fmt.Errorf("osci: the decrypted content: %w", err)
		}
		container = doc.Root
	}
	out := &Content{}
	sigs := container.ChildrenNamed(xmldsig.Namespace, "Signature")
	if len(sigs) == 0 && trust != nil {
		return nil, fmt.Errorf("osci: %w: the content container is not signed", ErrAuthorSignature)
	}
	for _, sig := range sigs {
		if trust == nil {
			break
		}
		res, err := (&xmldsig.Verifier{Trust: trust, Resolve: a.MIME.Resolve}).Verify(doc, sig)
		if err != nil {
			return nil, fmt.Errorf("osci: %w over the content: %w", ErrAuthorSignature, err)
		}
		out.Author = res.Certificate
	}
	b64 := container.FindAll(Namespace, "Base64Content")
	if len(b64) == 0 {
		return nil, fmt.Errorf("osci: the content container holds no Base64Content")
	}
	data, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(b64[0].Text), ""))
	if err != nil {
		return nil, fmt.Errorf("osci: Base64Content: %w", err)
	}
	out.Document = data
	for _, c := range container.ChildrenNamed(Namespace, "Content") {
		href, _ := c.Attribute("href")
		if !strings.HasPrefix(href, "cid:") {
			continue
		}
		p, err := a.MIME.partOf(href)
		if err != nil {
			return nil, fmt.Errorf("osci: the content names %s: %w", href, err)
		}
		out.Attachments = append(out.Attachments, Attachment{ContentID: p.ContentID, ContentType: cmp.Or(p.Header.Get("Content-Type"), "application/octet-stream"),
			Data: p.Body, Size: int64(len(p.Body))})
	}
	return out, nil
}

// xmlEscape writes s escaped for an attribute or text.
func xmlEscape(w io.Writer, s string) error { return xml.EscapeText(w, []byte(s)) }
