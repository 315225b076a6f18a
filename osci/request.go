package osci

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/xmldsig"
	"github.com/parzelle/parzelle/xmlenc"
	"github.com/parzelle/parzelle/xmlsafe"
)

// Namespaces of OSCI-Transport 1.2 messages.
const (
	SOAPNamespace     = "http://schemas.xmlsoap.org/soap/envelope/"
	Namespace         = "http://www.osci.de/2002/04/osci"
	Namespace2017     = "http://xoev.de/transport/osci12/7"
	XTAMetaNamespace  = "http://www.osci.eu/ws/2014/10/transport"
	soapActorNext     = "http://schemas.xmlsoap.org/soap/actor/next"
	maxMessageDefault = 64 << 20
)

// Order is an OSCI order type, named as its order element.
type Order string

// The order types a client sends to an intermediary (and an intermediary
// to a passive recipient).
const (
	OrderInitDialog           Order = "initDialog"
	OrderExitDialog           Order = "exitDialog"
	OrderGetMessageID         Order = "getMessageId"
	OrderStoreDelivery        Order = "storeDelivery"
	OrderFetchDelivery        Order = "fetchDelivery"
	OrderFetchProcessCard     Order = "fetchProcessCard"
	OrderForwardDelivery      Order = "forwardDelivery"
	OrderAcceptDelivery       Order = "acceptDelivery"
	OrderMediateDelivery      Order = "mediateDelivery"
	OrderProcessDelivery      Order = "processDelivery"
	OrderPartialStoreDelivery Order = "partialStoreDelivery"
	OrderPartialFetchDelivery Order = "partialFetchDelivery"
)

// InBody reports whether the order's element is the SOAP body's content
// (initDialog, exitDialog, getMessageId, fetchProcessCard) rather than a
// header block.
func (o Order) InBody() bool {
	switch o {
	case OrderInitDialog, OrderExitDialog, OrderGetMessageID, OrderFetchProcessCard:
		return true
	}
	return false
}

// orders are the known order types by element name; the partial orders
// live in the 2017 namespace (and in the old one before that).
var orders = map[string]Order{}

func init() {
	for _, o := range []Order{OrderInitDialog, OrderExitDialog, OrderGetMessageID, OrderStoreDelivery, OrderFetchDelivery, OrderFetchProcessCard,
		OrderForwardDelivery, OrderAcceptDelivery, OrderMediateDelivery, OrderProcessDelivery, OrderPartialStoreDelivery, OrderPartialFetchDelivery} {
		orders[string(o)] = o
	}
}

// ControlBlock is the dialog control of a message: the conversation it
// belongs to (none in an implicit dialog's first message), its place in
// it (SequenceNumber, -1 when the block has none, as in initDialog), the
// Challenge the receiver answers in its next message and the
// Response to the other side's previous Challenge.
type ControlBlock struct {
	ConversationID string
	SequenceNumber int
	Challenge      string
	Response       string
}

// Transport describes the transport encryption a request came in.
type Transport struct {
	Algorithm string
	// Recipient is the intermediary key pair that decrypted it.
	Recipient *keys.KeyPair
}

// Request is a parsed OSCI request: the order, its dialog control, the
// header blocks and body, the certificates it carries and, when signed,
// what the client signature covers and by whom.
type Request struct {
	Order   Order
	Control ControlBlock
	// Transport is the transport encryption, nil for a plain request.
	Transport *Transport
	// MIME is the (decrypted) message; Envelope its SOAP envelope.
	MIME     *MIMEMessage
	Envelope *xmlsafe.Document
	// OrderElement is the order's element; Headers every SOAP header block
	// in order; Body the SOAP body.
	OrderElement *xmlsafe.Element
	Headers      []*xmlsafe.Element
	Body         *xmlsafe.Element
	// Languages are the client's desired languages (DesiredLanguages).
	Languages []string
	// MetaData is the XTA MessageMetaData custom header (Id="MetaData"),
	// nil when there is none.
	MetaData *xmlsafe.Element
	// Certificates are the non-intermediary certificates by element name
	// (SignatureCertificateOriginator, CipherCertificateAddressee, …).
	Certificates map[string][]*x509.Certificate
	// Signature is the verified ClientSignature, nil when the request is
	// unsigned.
	Signature *xmldsig.Result
}

// Options bound and key the parse of a request.
type Options struct {
	// Keys are the intermediary's cipher key pairs a transport-encrypted
	// request may be encrypted to.
	Keys []*keys.KeyPair
	// MaxBytes bounds the message (default 64 MiB).
	MaxBytes int64
	// At is the signing time (zero: now). Whether the client's
	// certificates are trusted and valid then is the certificate check's
	// question, not the parse's.
	At time.Time
	// SkipSignature leaves the client signature unchecked (Signature stays
	// nil), for tools that show a refused request.
	SkipSignature bool
}

// ParseRequest reads an OSCI request as the HTTP body carries it: it
// decrypts the transport layer with the intermediary's keys, identifies
// the order and its dialog control, collects the certificates and verifies
// the client signature, which must cover every header block, the body and
// every attachment. It refuses a request with an *Error whose code is the
// one the specification assigns: 9100 for what is no OSCI message, 9200 and
// 9202 for what cannot be decrypted, 9300 for what is no valid request,
// 9601 and 9602 for a signature that fails or leaves something out.
func ParseRequest(data []byte, opt Options) (*Request, error) {
	if opt.MaxBytes == 0 {
		opt.MaxBytes = maxMessageDefault
	}
	if int64(len(data)) > opt.MaxBytes {
		return nil, refuse(CodeMessageTooLarge, "the message has %d bytes, more than the %d this intermediary takes", len(data), opt.MaxBytes)
	}
	msg, env, err := parseEnvelope(data)
	if err != nil {
		return nil, err
	}
	res, err := decryptTransport(msg, env, opt.Keys)
	if err != nil {
		return nil, err
	}
	if res != nil {
		inner, innerEnv, err := parseEnvelope(res.Plaintext)
		if err != nil {
			return nil, err
		}
		if b := innerEnv.Root.Child(SOAPNamespace, "Body"); b != nil && b.Child(xmlenc.Namespace, "EncryptedData") != nil {
			return nil, refuse(CodeNoOSCIMessage, "the transport layer is encrypted twice")
		}
		r, err := parseOrder(inner, innerEnv, opt)
		if err != nil {
			return nil, err
		}
		r.Transport = &Transport{Algorithm: res.Algorithm, Recipient: res.Recipient}
		return r, nil
	}
	return parseOrder(msg, env, opt)
}

// decryptTransport decrypts a transport-encrypted message with one of the
// keys; it returns nil for a plain message.
func decryptTransport(msg *MIMEMessage, env *xmlsafe.Document, pairs []*keys.KeyPair) (*xmlenc.Result, error) {
	body := env.Root.Child(SOAPNamespace, "Body")
	ed := body.Child(xmlenc.Namespace, "EncryptedData")
	if ed == nil {
		return nil, nil
	}
	if len(body.Children) != 1 || env.Root.Child(SOAPNamespace, "Header") != nil {
		return nil, refuse(CodeNoOSCIMessage, "a transport-encrypted message carries only the EncryptedData in its body")
	}
	if len(pairs) == 0 {
		return nil, refuse(CodeNoDecryptionKey, "the message is transport-encrypted and there is no cipher key to decrypt it")
	}
	res, err := xmlenc.Decrypt(ed, xmlenc.DecryptOptions{Keys: pairs, Resolve: msg.Resolve, Document: env.Root})
	switch {
	case errors.Is(err, xmlenc.ErrNoKey):
		// The detail goes back to the client: it names no key of this
		// node (which would tell who else is hosted here); the log has it.
		return nil, &Error{Code: CodeNoDecryptionKey, Detail: "the message is encrypted to none of the cipher certificates here", Err: err}
	case err != nil:
		return nil, refuse(CodeUndecryptable, "%v", err)
	}
	return res, nil
}

// parseEnvelope reads the MIME message and its root part's SOAP 1.1
// envelope.
func parseEnvelope(data []byte) (*MIMEMessage, *xmlsafe.Document, error) {
	msg, err := ParseMIME(data)
	if err != nil {
		return nil, nil, refuse(CodeNoOSCIMessage, "%v", err)
	}
	env, err := envelopeOf(msg)
	return msg, env, err
}

// envelopeOf parses the SOAP 1.1 envelope in the message's root part.
func envelopeOf(msg *MIMEMessage) (*xmlsafe.Document, error) {
	root := msg.Root()
	if root == nil {
		return nil, refuse(CodeNoOSCIMessage, "the MIME message has no root part")
	}
	env, err := xmldsig.ParseDocument(bytes.NewReader(root.Body))
	if err != nil {
		return nil, refuse(CodeNoOSCIMessage, "the root part is no well-formed XML a hardened parser takes: %v", err)
	}
	if env.Root.Name.Space != SOAPNamespace || env.Root.Name.Local != "Envelope" {
		return nil, refuse(CodeNoOSCIMessage, "the root part is <%s> in %q, not a SOAP 1.1 envelope", env.Root.Name.Local, env.Root.Name.Space)
	}
	if env.Root.Child(SOAPNamespace, "Body") == nil {
		return nil, refuse(CodeNoOSCIMessage, "the SOAP envelope has no body")
	}
	return env, nil
}

// parseOrder reads a plain request's order, dialog control, certificates
// and signature.
func parseOrder(msg *MIMEMessage, env *xmlsafe.Document, opt Options) (*Request, error) {
	r := &Request{MIME: msg, Envelope: env, Body: env.Root.Child(SOAPNamespace, "Body"), Certificates: map[string][]*x509.Certificate{}}
	var control, clientSig *xmlsafe.Element
	if h := env.Root.Child(SOAPNamespace, "Header"); h != nil {
		r.Headers = h.Children
	}
	for _, h := range r.Headers {
		switch {
		case h.Name.Space == Namespace && h.Name.Local == "ControlBlock":
			control = h
		case h.Name.Space == Namespace && h.Name.Local == "ClientSignature":
			clientSig = h
		case h.Name.Space == Namespace && h.Name.Local == "DesiredLanguages":
			v, _ := h.Attribute("LanguagesList")
			r.Languages = strings.Fields(v)
		case h.Name.Space == Namespace && h.Name.Local == "NonIntermediaryCertificates":
			if err := r.collectCertificates(h); err != nil {
				return nil, err
			}
		case h.Name.Space == XTAMetaNamespace && h.Name.Local == "MessageMetaData":
			r.MetaData = h
		}
		if o, ok := orderOf(h); ok {
			if o.InBody() {
				return nil, refuse(CodeNoValidRequest, "%s belongs in the SOAP body, not in the header", o)
			}
			if r.OrderElement != nil {
				return nil, refuse(CodeNoValidRequest, "the request holds two orders, %s and %s", r.Order, o)
			}
			r.Order, r.OrderElement = o, h
		}
	}
	for _, b := range r.Body.Children {
		if o, ok := orderOf(b); ok {
			if !o.InBody() {
				return nil, refuse(CodeNoValidRequest, "%s belongs in the SOAP header, not in the body", o)
			}
			if r.OrderElement != nil {
				return nil, refuse(CodeNoValidRequest, "the request holds two orders, %s and %s", r.Order, o)
			}
			r.Order, r.OrderElement = o, b
		}
	}
	if r.OrderElement == nil {
		return nil, refuse(CodeNoValidRequest, "the message holds no OSCI order (initDialog, getMessageId, storeDelivery, …)")
	}
	if control == nil {
		return nil, refuse(CodeNoValidRequest, "the %s request has no ControlBlock", r.Order)
	}
	var err error
	if r.Control, err = parseControlBlock(control); err != nil {
		return nil, err
	}
	if clientSig != nil && !opt.SkipSignature {
		if r.Signature, err = verifyClientSignature(msg, env, clientSig, r.Headers, opt.At); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// orderOf reports the order an element is, if it is one.
func orderOf(el *xmlsafe.Element) (Order, bool) {
	if el.Name.Space != Namespace && el.Name.Space != Namespace2017 {
		return "", false
	}
	o, ok := orders[el.Name.Local]
	if ok && el.Name.Space == Namespace2017 && o != OrderPartialStoreDelivery && o != OrderPartialFetchDelivery {
		return "", false
	}
	return o, ok
}

// parseControlBlock reads the ControlBlock's attributes and children.
func parseControlBlock(el *xmlsafe.Element) (ControlBlock, error) {
	var c ControlBlock
	c.ConversationID, _ = el.Attribute("ConversationId")
	if v, ok := el.Attribute("SequenceNumber"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return c, refuse(CodeWrongDialog, "SequenceNumber %q is not a number from 0 on", v)
		}
		c.SequenceNumber = n
	} else {
		c.SequenceNumber = -1
	}
	for _, ch := range el.Children {
		switch {
		case ch.Name.Space == Namespace && ch.Name.Local == "Challenge":
			c.Challenge = ch.TrimmedText()
		case ch.Name.Space == Namespace && ch.Name.Local == "Response":
			c.Response = ch.TrimmedText()
		default:
			return c, refuse(CodeNoValidRequest, "the ControlBlock holds an unknown element <%s>", ch.Name.Local)
		}
	}
	return c, nil
}

// collectCertificates reads the X.509 certificates of
// NonIntermediaryCertificates by their elements' names.
func (r *Request) collectCertificates(el *xmlsafe.Element) error {
	for _, c := range el.Children {
		x := c.Path(xml.Name{Space: xmldsig.Namespace, Local: "X509Data"}, xml.Name{Space: xmldsig.Namespace, Local: "X509Certificate"})
		if x == nil {
			return refuse(CodeNoValidRequest, "<%s> holds no ds:X509Data/ds:X509Certificate", c.Name.Local)
		}
		der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(x.Text), ""))
		if err != nil {
			return refuse(CodeNoValidRequest, "<%s>: the certificate is not base64: %v", c.Name.Local, err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return refuse(CodeNoValidRequest, "<%s>: %v", c.Name.Local, err)
		}
		r.Certificates[c.Name.Local] = append(r.Certificates[c.Name.Local], cert)
	}
	return nil
}

// anyCertificate lets the signature check take the certificate the
// message names: whether that certificate is trusted, in time and not
// revoked is the certificate check's question (37xx, 97xx), not the
// signature's.
type anyCertificate struct{}

func (anyCertificate) Verify(leaf *x509.Certificate, _ []*x509.Certificate, _ time.Time) ([]*x509.Certificate, error) {
	return []*x509.Certificate{leaf}, nil
}

// verifyClientSignature checks the ClientSignature and that it covers
// every header block (itself excepted), the body and every attachment.
func verifyClientSignature(msg *MIMEMessage, env *xmlsafe.Document, el *xmlsafe.Element, headers []*xmlsafe.Element, at time.Time) (*xmldsig.Result, error) {
	sig := el.Child(xmldsig.Namespace, "Signature")
	if sig == nil {
		return nil, refuse(CodeSignatureInvalid, "the ClientSignature holds no ds:Signature")
	}
	v := &xmldsig.Verifier{Trust: anyCertificate{}, At: at, Resolve: msg.Resolve, Digest: msg.streamedDigest}
	res, err := v.Verify(env, sig)
	if err != nil {
		return nil, refuse(CodeSignatureInvalid, "%v", err)
	}
	for _, h := range headers {
		if h == el {
			continue
		}
		if !covers(res, h) {
			return nil, refuse(CodeNotAllSigned, "the header block <%s> is not covered by the client signature", h.Name.Local)
		}
	}
	if body := env.Root.Child(SOAPNamespace, "Body"); !covers(res, body) {
		return nil, refuse(CodeNotAllSigned, "the SOAP body is not covered by the client signature")
	}
	for _, p := range msg.Parts {
		if p == msg.Root() {
			continue
		}
		if !coversPart(res, p.ContentID) {
			return nil, refuse(CodeNotAllSigned, "the attachment cid:%s is not covered by the client signature", p.ContentID)
		}
	}
	return res, nil
}

// covers reports whether a reference of the signature is exactly el.
func covers(res *xmldsig.Result, el *xmlsafe.Element) bool {
	for _, ref := range res.References {
		if ref.Element == el {
			return true
		}
	}
	return false
}

// coversPart reports whether a reference of the signature is the MIME part.
func coversPart(res *xmldsig.Result, contentID string) bool {
	for _, ref := range res.References {
		if id, ok := strings.CutPrefix(ref.URI, "cid:"); ok && id == contentID {
			return true
		}
	}
	return false
}

// Signer returns the certificate the client signed with, nil when the
// request is unsigned.
func (r *Request) Signer() *x509.Certificate {
	if r.Signature == nil {
		return nil
	}
	return r.Signature.Certificate
}

// String describes the request for logs: order, conversation and
// sequence number.
func (r *Request) String() string {
	s := fmt.Sprintf("%s (SequenceNumber %d", r.Order, r.Control.SequenceNumber)
	if r.Control.ConversationID != "" {
		s += ", ConversationId " + r.Control.ConversationID
	}
	if r.Transport != nil {
		s += ", transport-encrypted"
	}
	return s + ")"
}
