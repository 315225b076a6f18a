package osci

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/parzelle/parzelle/c14n"
	"github.com/parzelle/parzelle/xmlsafe"
)

// Delivery is a delivery as the intermediary keeps it for its addressee:
// the author's header blocks that travel on with it (the
// NonIntermediaryCertificates first, then custom headers such as the XTA
// MessageMetaData) and its ContentPackage, each canonical (inclusive C14N
// in the context it had, so that the author's content signatures still
// verify where the fetch response places them), and its attachments, as
// received: content stays end-to-end encrypted to its readers.
type Delivery struct {
	MessageID string `json:"messageId"`
	// Author is who stored it (its box entry's author), once fetched.
	Author      string       `json:"-"`
	Subject     string       `json:"subject,omitempty"`
	Headers     []Header     `json:"headers"`
	Content     []byte       `json:"content"`
	Attachments []Attachment `json:"-"`
}

// Header is a header block of a delivery: its Id and canonical XML.
type Header struct {
	ID  string `json:"id"`
	XML []byte `json:"xml"`
}

// DeliveryContentType names a delivery's first stored part, the JSON of
// Delivery; the attachments follow as parts of their own.
const DeliveryContentType = "application/vnd.parzelle.osci-delivery+json"

// orderHeaders are the header blocks of the OSCI protocol itself, which
// do not travel on with a delivery.
var orderHeaders = map[string]bool{"ControlBlock": true, "ClientSignature": true, "DesiredLanguages": true, "IntermediaryCertificates": true,
	"QualityOfTimestamp": true, "FeatureDescription": true, "ChunkInformation": true}

// DeliveryOf reads the delivery a storeDelivery (or forwardDelivery)
// request carries: its MessageId and Subject from the order, the header
// blocks that travel on and the ContentPackage from the body, and every
// attachment (to be streamed from the message when ScanMIME read it). A
// delivery without MessageId is refused with 9800.
func DeliveryOf(r *Request) (*Delivery, error) {
	d := &Delivery{}
	var err error
	if d.MessageID, err = messageIDOf(r.OrderElement); err != nil {
		return nil, err
	}
	if d.MessageID == "" && r.Order != OrderMediateDelivery { // the intermediary names a mediated request
		return nil, refuse(CodeNoMessageID, "the %s names no MessageId: ask for one with getMessageId", r.Order)
	}
	if s := r.OrderElement.Child(Namespace, "Subject"); s != nil {
		d.Subject = s.Text
	}
	var others []Header
	for _, h := range r.Headers {
		if h == r.OrderElement || (h.Name.Space == Namespace || h.Name.Space == Namespace2017) && orderHeaders[h.Name.Local] {
			continue
		}
		id, _ := h.Attribute("Id")
		if id == "" {
			return nil, refuse(CodeNoValidRequest, "the header block <%s> has no Id", h.Name.Local)
		}
		hd := Header{ID: id, XML: canonical(h)}
		if h.Name.Space == Namespace && h.Name.Local == "NonIntermediaryCertificates" {
			d.Headers = append(d.Headers, hd)
		} else {
			others = append(others, hd)
		}
	}
	d.Headers = append(d.Headers, others...)
	pkg := r.Body.Child(Namespace, "ContentPackage")
	if pkg == nil || len(r.Body.Children) != 1 {
		return nil, refuse(CodeNoValidRequest, "the body of a %s holds one ContentPackage and nothing else", r.Order)
	}
	d.Content = canonical(pkg)
	for _, p := range r.MIME.Parts {
		if p == r.MIME.Root() {
			continue
		}
		ct := p.Header.Get("Content-Type")
		if ct == "" {
			ct = "application/octet-stream"
		}
		a := Attachment{ContentID: p.ContentID, ContentType: ct, Data: p.Body, Size: int64(len(p.Body))}
		if p.streamed {
			a.Size, a.Open = p.Size, func() (io.Reader, error) { return r.MIME.Open(p) }
		}
		d.Attachments = append(d.Attachments, a)
	}
	return d, nil
}

// messageIDOf reads an order's MessageId (base64 on the wire), "" when
// it names none.
func messageIDOf(order *xmlsafe.Element) (string, error) {
	el := order.Child(Namespace, "MessageId")
	if el == nil {
		if rule := order.Child(Namespace, "SelectionRule"); rule != nil {
			el = rule.Child(Namespace, "MessageId")
		}
	}
	if el == nil {
		return "", nil
	}
	id, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(el.Text), ""))
	if err != nil || len(id) == 0 {
		return "", refuse(CodeIllegalMessageID, "the MessageId %q is not base64", el.TrimmedText())
	}
	return string(id), nil
}

// canonical is an element's inclusive C14N in the context it had.
func canonical(el *xmlsafe.Element) []byte {
	var b bytes.Buffer
	_ = c14n.Subtree(&b, el, c14n.Method{}, nil) // writes to memory
	return b.Bytes()
}

// Marshal is the delivery's first stored part (DeliveryContentType).
func (d *Delivery) Marshal() []byte {
	b, _ := json.Marshal(d) // strings and bytes only
	return b
}

// UnmarshalDelivery reads a stored delivery's first part.
func UnmarshalDelivery(data []byte) (*Delivery, error) {
	var d Delivery
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("osci: stored delivery: %w", err)
	}
	return &d, nil
}
