package osci

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"strconv"
	"strings"

	"github.com/parzelle/parzelle/c14n"
	"github.com/parzelle/parzelle/xmldsig"
)

// Response is an intermediary's answer to one request. Build writes it as
// the OSCI message the HTTP response carries.
type Response struct {
	// Order is the order answered.
	Order Order
	// Control is the dialog control Dialogs.Step returned.
	Control ControlBlock
	// Feedback are the order-level codes: the outcome first, then
	// warnings.
	Feedback []Code
	// Language of the feedback texts: "de" or "en" (the client's first
	// desired language the intermediary speaks).
	Language string
	// MessageID is the id a getMessageId response hands out.
	MessageID string
	// Certificate is the intermediary's signature certificate, sent in
	// IntermediaryCertificates (optional).
	Certificate *x509.Certificate
}

// The ControlBlock attributes a response of each order carries, as the
// response schemas require them, for the orders Build answers so far
// (the others need process cards and deliveries in their answers).
var responseControl = map[Order]struct{ conversation, sequence, challenge bool }{
	OrderInitDialog:      {true, false, true},
	OrderExitDialog:      {true, true, false},
	OrderGetMessageID:    {true, true, false},
	OrderStoreDelivery:   {true, true, false},
	OrderForwardDelivery: {true, true, false},
}

// ResponseElement is the name of the order's response element
// (responseToInitDialog, …).
func (o Order) ResponseElement() string {
	return "responseTo" + strings.ToUpper(string(o[:1])) + string(o[1:])
}

// Build returns the response as an OSCI MIME message. With a signer it
// carries a SupplierSignature over every header block and the body
// (inclusive C14N in document context, as OSCI clients verify it).
func (r *Response) Build(signer *xmldsig.Signer) ([]byte, error) {
	rules, ok := responseControl[r.Order]
	if !ok {
		return nil, fmt.Errorf("osci: no response to %s is built yet", r.Order)
	}
	if len(r.Feedback) == 0 {
		return nil, fmt.Errorf("osci: a response to %s needs feedback", r.Order)
	}
	var x xmlWriter
	x.raw(`<soap:Envelope xmlns:soap="` + SOAPNamespace + `" xmlns:osci="` + Namespace + `" xmlns:ds="` + xmldsig.Namespace +
		`" xmlns:xenc="http://www.w3.org/2001/04/xmlenc#" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soap:Header>`)
	ids := []string{"controlblock"}
	x.raw(`<osci:ControlBlock Id="controlblock" soap:actor="` + soapActorNext + `" soap:mustUnderstand="1"`)
	if rules.conversation {
		if r.Control.ConversationID == "" {
			return nil, fmt.Errorf("osci: a response to %s names its conversation", r.Order)
		}
		x.attr("ConversationId", r.Control.ConversationID)
	}
	if rules.sequence {
		x.attr("SequenceNumber", strconv.Itoa(max(r.Control.SequenceNumber, 0)))
	}
	x.raw(">")
	x.element("osci:Response", r.Control.Response)
	if rules.challenge || r.Control.Challenge != "" {
		x.element("osci:Challenge", r.Control.Challenge)
	}
	x.raw("</osci:ControlBlock>")
	if signer != nil {
		x.raw(`<osci:SupplierSignature Id="suppliersignature" soap:actor="` + soapActorNext + `" soap:mustUnderstand="1"></osci:SupplierSignature>`)
	}
	block := r.Order.ResponseElement()
	if !r.Order.InBody() {
		id := strings.ToLower(block)
		ids = append(ids, id)
		x.raw(`<osci:` + block + ` Id="` + id + `" soap:actor="` + soapActorNext + `" soap:mustUnderstand="1">`)
		r.writeContent(&x)
		x.raw(`</osci:` + block + `>`)
	}
	if r.Certificate != nil {
		ids = append(ids, "intermediarycertificates")
		x.raw(`<osci:IntermediaryCertificates Id="intermediarycertificates" soap:actor="http://www.w3.org/2001/12/soap-envelope/actor/none" soap:mustUnderstand="1">`)
		x.raw(`<osci:SignatureCertificateIntermediary Id="intermediary_signature_` + fingerprint(r.Certificate) + `"><ds:X509Data>`)
		x.element("ds:X509Certificate", base64.StdEncoding.EncodeToString(r.Certificate.Raw))
		x.raw(`</ds:X509Data></osci:SignatureCertificateIntermediary></osci:IntermediaryCertificates>`)
	}
	x.raw(`</soap:Header><soap:Body Id="body">`)
	ids = append(ids, "body")
	if r.Order.InBody() {
		x.raw(`<osci:` + block + `>`)
		r.writeContent(&x)
		x.raw(`</osci:` + block + `>`)
	}
	x.raw(`</soap:Body></soap:Envelope>`)
	envelope := x.Bytes()
	if signer != nil {
		// OSCI's KeyInfo holds one certificate: the signer's.
		leaf := *signer
		leaf.Certificates = signer.Certificates[:min(1, len(signer.Certificates))]
		var err error
		if envelope, err = leaf.SignDetached(envelope, "suppliersignature", ids, nil, c14n.Method{}); err != nil {
			return nil, fmt.Errorf("osci: sign the response to %s: %w", r.Order, err)
		}
	}
	return packMIME(envelope), nil
}

// writeContent writes the response element's content: the feedback and
// what the order hands out.
func (r *Response) writeContent(x *xmlWriter) {
	x.raw("<osci:Feedback>")
	for _, c := range r.Feedback {
		lang := r.Language
		if lang != "en" {
			lang = "de"
		}
		x.raw(`<osci:Entry xml:lang="` + lang + `">`)
		x.element("osci:Code", string(c))
		x.element("osci:Text", c.Text(lang))
		x.raw("</osci:Entry>")
	}
	x.raw("</osci:Feedback>")
	if r.Order == OrderGetMessageID && r.MessageID != "" {
		x.element("osci:MessageId", base64.StdEncoding.EncodeToString([]byte(r.MessageID)))
	}
}

// packMIME wraps an envelope as an OSCI MIME message: the MIME headers as
// the first lines, the envelope as the root part.
func packMIME(envelope []byte) []byte {
	var b [18]byte
	_, _ = rand.Read(b[:])
	boundary := "MIME_boundary_" + base64.RawURLEncoding.EncodeToString(b[:])
	var out bytes.Buffer
	out.WriteString("MIME-Version: 1.0\r\nContent-Type: Multipart/Related; boundary=" + boundary + "; type=text/xml\r\n\r\n")
	out.WriteString("--" + boundary + "\r\nContent-Type: text/xml; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\nContent-ID: <osci@message>\r\n\r\n")
	out.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\r\n")
	out.Write(envelope)
	out.WriteString("\r\n--" + boundary + "--\r\n")
	return out.Bytes()
}

// fingerprint is a certificate's SHA-256 in hex, for element Ids.
func fingerprint(c *x509.Certificate) string {
	h := sha256.Sum256(c.Raw)
	return hex.EncodeToString(h[:])
}

// xmlWriter builds an envelope from trusted markup and escaped values.
type xmlWriter struct{ bytes.Buffer }

func (x *xmlWriter) raw(s string) { x.WriteString(s) }

func (x *xmlWriter) attr(name, value string) {
	x.WriteString(" " + name + `="`)
	_ = xml.EscapeText(x, []byte(value))
	x.WriteString(`"`)
}

func (x *xmlWriter) element(name, text string) {
	x.WriteString("<" + name + ">")
	_ = xml.EscapeText(x, []byte(text))
	x.WriteString("</" + name + ">")
}
