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
	"io"
	"strconv"
	"strings"
	"time"

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
	// ProcessCards are the process cards the response carries: the
	// stored delivery's, the fetched delivery's, or those fetchProcessCard
	// selected.
	ProcessCards []ProcessCard
	// Selection is the fetch order's selection, echoed in the response
	// (fetchDelivery, fetchProcessCard): the order element's children,
	// canonical.
	Selection []byte
	// Delivery is the delivery a fetchDelivery response hands out.
	Delivery *Delivery
	// Chunk is a partial order's ChunkInformation in its response;
	// InsideFeedback the feedback of the storeDelivery the last chunk of a
	// partialStoreDelivery completed; ChunkBlob the bytes a
	// partialFetchDelivery response carries, of the delivery
	// ChunkMessageID.
	Chunk          *ChunkInformation
	InsideFeedback []Code
	ChunkBlob      []byte
	ChunkMessageID string
	// ReplyCard is the process card of the passive recipient's reply a
	// mediateDelivery response carries (the request's is ProcessCards[0]).
	ReplyCard *ProcessCard
}

// ProcessCard is a delivery's process card (Laufzettel): when the
// intermediary received it (Creation), handed it to its addressee
// (Forwarding) and the addressee confirmed it (Reception), its subject,
// and the inspections of the certificates it carried.
type ProcessCard struct {
	MessageID             string
	RecentModification    time.Time
	Creation              time.Time
	Forwarding, Reception *time.Time
	Subject               string
	Inspections           []Inspection
}

// Inspection is the intermediary's check of one certificate of a
// delivery, as its InspectionReport shows it.
type Inspection struct {
	At                      time.Time `json:"at"`
	Subject, Issuer, Serial string
	// Math is the check of the issuer's signature over the certificate,
	// Offline its validity and chain ("valid", "invalid" or
	// "indeterminate").
	Math, Offline string
}

// The ControlBlock attributes a response of each order carries, as the
// response schemas require them, for the orders Build answers so far
// (the others need process cards and deliveries in their answers).
var responseControl = map[Order]struct{ conversation, sequence, challenge bool }{
	OrderInitDialog:       {true, false, true},
	OrderExitDialog:       {true, true, false},
	OrderGetMessageID:     {true, true, false},
	OrderStoreDelivery:    {true, true, false},
	OrderForwardDelivery:  {true, true, false},
	OrderFetchDelivery:    {true, true, true},
	OrderFetchProcessCard: {true, true, true},
	// The intermediary's order to a passive recipient: the challenge is in
	// the request, its answer has the Response alone.
	OrderAcceptDelivery:  {false, false, false},
	OrderProcessDelivery: {false, false, false},
	OrderMediateDelivery: {true, true, true},
	// The partial orders, as the order they are part of.
	OrderPartialStoreDelivery: {true, true, false},
	OrderPartialFetchDelivery: {true, true, true},
}

// cardElements are the process card elements each response schema
// allows after Creation: a stored delivery was neither forwarded nor
// received yet, a fetched one not received.
var cardElements = map[Order]struct{ forwarding, reception bool }{
	OrderStoreDelivery:        {false, false},
	OrderForwardDelivery:      {true, true},
	OrderFetchDelivery:        {true, false},
	OrderFetchProcessCard:     {true, true},
	OrderPartialStoreDelivery: {false, false},
	OrderAcceptDelivery:       {true, false},
	OrderProcessDelivery:      {true, false},
	OrderMediateDelivery:      {true, true},
}

// ResponseElement is the name of the order's response element
// (responseToInitDialog, …).
func (o Order) ResponseElement() string { return "responseTo" + o.schemaName() }

// schemaName is the order's name in the OSCI schema files (InitDialog …).
func (o Order) schemaName() string { return strings.ToUpper(string(o[:1])) + string(o[1:]) }

// Build returns the response as an OSCI MIME message. With a signer it
// carries a SupplierSignature over every header block and the body
// (inclusive C14N in document context, as OSCI clients verify it).
func (r *Response) Build(signer *xmldsig.Signer) ([]byte, error) {
	envelope, err := r.envelope(signer)
	if err != nil {
		return nil, err
	}
	var attachments []Attachment
	if r.Delivery != nil {
		attachments = r.Delivery.Attachments
	}
	if r.ChunkBlob != nil {
		attachments = []Attachment{{ContentID: chunkBlobFetch, ContentType: "application/octet-stream", Data: r.ChunkBlob, Size: int64(len(r.ChunkBlob))}}
	}
	return packMIME(envelope, attachments...), nil
}

// envelope is the response's SOAP envelope, signed.
func (r *Response) envelope(signer *xmldsig.Signer) ([]byte, error) {
	rules, ok := responseControl[r.Order]
	if !ok {
		return nil, fmt.Errorf("osci: no response to %s is built yet", r.Order)
	}
	if len(r.Feedback) == 0 {
		return nil, fmt.Errorf("osci: a response to %s needs feedback", r.Order)
	}
	var x xmlWriter
	x.raw(`<soap:Envelope xmlns:soap="` + SOAPNamespace + `" xmlns:osci="` + Namespace + `" xmlns:ds="` + xmldsig.Namespace +
		`" xmlns:xenc="http://www.w3.org/2001/04/xmlenc#" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"`)
	if r.Order.partial() {
		x.raw(` xmlns:osci2017="` + Namespace2017 + `"`)
	}
	x.raw(`><soap:Header>`)
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
	prefix := "osci:"
	if r.Order.partial() {
		prefix = "osci2017:"
	}
	if !r.Order.InBody() {
		id := strings.ToLower(block)
		ids = append(ids, id)
		x.raw(`<` + prefix + block + ` Id="` + id + `" soap:actor="` + soapActorNext + `" soap:mustUnderstand="1">`)
		r.writeContent(&x)
		x.raw(`</` + prefix + block + `>`)
	}
	if r.Certificate != nil {
		ids = append(ids, "intermediarycertificates")
		x.raw(`<osci:IntermediaryCertificates Id="intermediarycertificates" soap:actor="http://www.w3.org/2001/12/soap-envelope/actor/none" soap:mustUnderstand="1">`)
		x.raw(`<osci:SignatureCertificateIntermediary Id="intermediary_signature_` + fingerprint(r.Certificate) + `"><ds:X509Data>`)
		x.element("ds:X509Certificate", base64.StdEncoding.EncodeToString(r.Certificate.Raw))
		x.raw(`</ds:X509Data></osci:SignatureCertificateIntermediary></osci:IntermediaryCertificates>`)
	}
	if r.Order.partial() {
		ids = append(ids, "featuredescription")
		writeFeatures(&x)
	}
	if d := r.Delivery; d != nil {
		for _, h := range d.Headers {
			ids = append(ids, h.ID)
			x.Write(h.XML)
		}
	}
	x.raw(`</soap:Header><soap:Body Id="body">`)
	ids = append(ids, "body")
	if r.Order.InBody() {
		x.raw(`<osci:` + block + `>`)
		r.writeContent(&x)
		x.raw(`</osci:` + block + `>`)
	}
	if r.Delivery != nil {
		x.Write(r.Delivery.Content)
	}
	if r.ChunkBlob != nil {
		x.raw(`<osci:ContentPackage><osci:ContentContainer Id="ChunkContentContainer"><osci:Content Id="ChunkContent" href="cid:` + chunkBlobFetch + `"></osci:Content></osci:ContentContainer></osci:ContentPackage>`)
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
	return envelope, nil
}

// writeContent writes the response element's content: the feedback and
// what the order hands out.
func (r *Response) writeContent(x *xmlWriter) {
	if r.Order == OrderPartialStoreDelivery && len(r.InsideFeedback) > 0 {
		r.writeFeedback(x, "osci2017:InsideFeedback", r.InsideFeedback)
	}
	r.writeFeedback(x, "osci:Feedback", r.Feedback)
	if r.Order == OrderGetMessageID && r.MessageID != "" {
		x.element("osci:MessageId", base64.StdEncoding.EncodeToString([]byte(r.MessageID)))
	}
	switch r.Order {
	case OrderFetchDelivery, OrderFetchProcessCard:
		x.raw("<osci:" + string(r.Order) + ">")
		x.Write(r.Selection)
		x.raw("</osci:" + string(r.Order) + ">")
	case OrderPartialFetchDelivery:
		// The selection, as it resolved: the delivery handed out.
		x.raw("<osci:fetchDelivery>")
		x.element("osci:MessageId", base64.StdEncoding.EncodeToString([]byte(r.ChunkMessageID)))
		x.raw("</osci:fetchDelivery>")
	}
	bundle := "osci:ProcessCardBundle"
	switch r.Order {
	case OrderPartialStoreDelivery:
		bundle = "osci:procard"
	case OrderMediateDelivery:
		bundle = "osci:RequestProcessCardBundle"
	}
	allowed := cardElements[r.Order]
	for _, c := range r.ProcessCards {
		writeCard(x, c, bundle, allowed.forwarding, allowed.reception)
	}
	if r.Order == OrderMediateDelivery && r.ReplyCard != nil {
		writeCard(x, *r.ReplyCard, "osci:ReplyProcessCardBundle", true, false)
	}
	if c := r.Chunk; c != nil {
		x.raw(`<osci2017:ChunkInformation ChunkNumber="` + strconv.Itoa(c.Number) + `"`)
		if r.Order == OrderPartialStoreDelivery {
			received := make([]string, len(c.Received))
			for i, n := range c.Received {
				received[i] = strconv.Itoa(n)
			}
			if len(received) == 0 {
				received = []string{"-1"} // none, as the Governikus library writes it
			}
			x.attr("ReceivedChunks", strings.Join(received, " "))
		}
		x.raw(` TotalChunkNumbers="` + strconv.Itoa(c.Total) + `"`)
		if r.Order == OrderPartialFetchDelivery {
			x.raw(` TotalMessageSize="` + strconv.FormatInt(c.MessageKB, 10) + `"`)
		}
		x.raw(`></osci2017:ChunkInformation>`)
	}
	if r.Order == OrderPartialFetchDelivery {
		x.element("osci:MessageId", base64.StdEncoding.EncodeToString([]byte(r.ChunkMessageID)))
	}
}

// writeFeedback writes a feedback element with an entry per code in the
// response's language.
func (r *Response) writeFeedback(x *xmlWriter, name string, codes []Code) {
	lang := r.Language
	if lang != "en" {
		lang = "de"
	}
	x.raw("<" + name + ">")
	for _, c := range codes {
		x.raw(`<osci:Entry xml:lang="` + lang + `">`)
		x.element("osci:Code", string(c))
		x.element("osci:Text", c.Text(lang))
		x.raw("</osci:Entry>")
	}
	x.raw("</" + name + ">")
}

// partial reports whether the order is one of the partial orders of the
// 2017 namespace.
func (o Order) partial() bool {
	return o == OrderPartialStoreDelivery || o == OrderPartialFetchDelivery
}

// chunkBlobFetch is the Content-ID of the chunk a partialFetchDelivery
// response carries.
const chunkBlobFetch = "ChunkBlobFetchDelivery"

// writeFeatures writes the FeatureDescription partial responses carry:
// the chunk sizes this intermediary takes (KiB).
func writeFeatures(x *xmlWriter) {
	x.raw(`<osci2017:FeatureDescription Id="featuredescription" MaxChunkSize="` + strconv.Itoa(MaxChunkKB) + `" MinChunkSize="` + strconv.Itoa(MinChunkKB) +
		`" MaxMessageSize="` + strconv.Itoa(DefaultMaxPartialKB) + `"><osci2017:SupportedFeatures><osci2017:Feature Key="PartialMessages" Version="1.0"></osci2017:Feature></osci2017:SupportedFeatures></osci2017:FeatureDescription>`)
}

// writeCard writes a process card bundle (bundle names its element) with
// the elements its schema allows.
func writeCard(x *xmlWriter, c ProcessCard, bundle string, forwarding, reception bool) {
	x.raw("<" + bundle + ">")
	x.element("osci:MessageId", base64.StdEncoding.EncodeToString([]byte(c.MessageID)))
	x.raw(`<osci:ProcessCard RecentModification="` + c.RecentModification.UTC().Format(time.RFC3339) + `">`)
	timestamp := func(name string, at time.Time) {
		x.raw("<osci:" + name + ">")
		x.element("osci:Plain", at.UTC().Format(time.RFC3339))
		x.raw("</osci:" + name + ">")
	}
	timestamp("Creation", c.Creation)
	if c.Forwarding != nil && forwarding {
		timestamp("Forwarding", *c.Forwarding)
	}
	if c.Reception != nil && reception {
		timestamp("Reception", *c.Reception)
	}
	if c.Subject != "" {
		x.element("osci:Subject", c.Subject)
	}
	x.raw("</osci:ProcessCard><osci:InspectionReport>")
	for _, in := range c.Inspections {
		x.raw("<osci:Inspection>")
		timestamp("Timestamp", in.At)
		x.element("osci:X509SubjectName", in.Subject)
		x.element("osci:X509IssuerName", in.Issuer)
		x.element("osci:X509SerialNumber", in.Serial)
		x.raw(`<osci:CertType Type="unknown"></osci:CertType>`)
		x.raw(`<osci:MathResult Result="` + in.Math + `"></osci:MathResult><osci:OfflineResult Result="` + in.Offline + `"></osci:OfflineResult>`)
		x.raw("</osci:Inspection>")
	}
	x.raw("</osci:InspectionReport></" + bundle + ">")
}

// Attachment is a MIME part of a delivery beside the envelope, named by
// its Content-ID, its bytes as the author sent them.
type Attachment struct {
	ContentID, ContentType string
	// Data holds the bytes, or Open streams them, or Write writes them;
	// Size counts them.
	Data  []byte                    `json:"data,omitempty"`
	Open  func() (io.Reader, error) `json:"-"`
	Write func(w io.Writer) error   `json:"-"`
	Size  int64                     `json:"size"`
}

// packMIME wraps an envelope as an OSCI MIME message: the MIME headers as
// the first lines, the envelope as the root part, then the attachments
// (binary), which it holds.
func packMIME(envelope []byte, attachments ...Attachment) []byte {
	var out bytes.Buffer
	_ = writeMIME(&out, newBoundary(), envelope, attachments) // held in memory
	return out.Bytes()
}

// newBoundary is a fresh MIME boundary.
func newBoundary() string {
	var b [18]byte
	_, _ = rand.Read(b[:])
	return "MIME_boundary_" + base64.RawURLEncoding.EncodeToString(b[:])
}

// skipper is a writer that can take n bytes without seeing them: the
// window of a message cut into chunks, for the parts before it.
type skipper interface {
	Skip(n int64) bool
}

// writeMIME writes an OSCI MIME message with the boundary: the same bytes
// for the same envelope and attachments, so that a message can be written
// again to cut another chunk from it. Attachments that Open are streamed;
// a writer that is a skipper is offered each attachment to skip unread.
func writeMIME(w io.Writer, boundary string, envelope []byte, attachments []Attachment) error {
	head := "MIME-Version: 1.0\r\nContent-Type: Multipart/Related; boundary=" + boundary + "; type=text/xml\r\n\r\n" +
		"--" + boundary + "\r\nContent-Type: text/xml; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\nContent-ID: <osci@message>\r\n\r\n" +
		`<?xml version="1.0" encoding="UTF-8"?>` + "\r\n"
	if _, err := io.WriteString(w, head); err != nil {
		return err
	}
	if _, err := w.Write(envelope); err != nil {
		return err
	}
	for _, a := range attachments {
		if _, err := io.WriteString(w, "\r\n--"+boundary+"\r\nContent-Type: "+a.ContentType+"\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <"+a.ContentID+">\r\n\r\n"); err != nil {
			return err
		}
		if s, ok := w.(skipper); ok && a.Size > 0 && s.Skip(a.Size) {
			continue
		}
		if a.Open == nil && a.Write == nil {
			if _, err := w.Write(a.Data); err != nil {
				return err
			}
			continue
		}
		var n int64
		var err error
		if a.Write != nil {
			cw := &countingWriter{w: w}
			err, n = a.Write(cw), cw.n
		} else {
			var r io.Reader
			if r, err = a.Open(); err == nil {
				n, err = io.Copy(w, r)
			}
		}
		if err != nil {
			return err
		}
		if n != a.Size {
			return fmt.Errorf("osci: attachment <%s> has %d bytes, not %d", a.ContentID, n, a.Size)
		}
	}
	_, err := io.WriteString(w, "\r\n--"+boundary+"--\r\n")
	return err
}

// countingWriter counts what it passes on.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
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
