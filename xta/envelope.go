package xta

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"

	"github.com/parzelle/parzelle/xmlsafe"
)

// Party is an oscimeta Author or Reader identifier.
type Party struct {
	ID       string
	Type     string
	Name     string
	Category string
}

func partyFrom(el *xmlsafe.Element) *Party {
	id := el.Child(NSOSCIMeta, "Identifier")
	if id == nil {
		return nil
	}
	p := &Party{ID: id.TrimmedText()}
	p.Type, _ = id.Attribute("type")
	p.Name, _ = id.Attribute("name")
	p.Category, _ = id.Attribute("category")
	return p
}

// Content is one xta:Message or xta:Attachment of a content container.
type Content struct {
	Attachment  bool
	ContentType string
	Encoding    string
	Filename    string
	ID          string
	Description string
	Lang        string
	// DeclaredSize is the size attribute, 0 when absent.
	DeclaredSize int64

	cid  string // xop:Include reference, when the bytes travel as a MIME part
	data *spool
}

// Size is the number of content bytes received.
func (c *Content) Size() int64 {
	if c.data == nil {
		return 0
	}
	return c.data.size
}

// soapMessage is one parsed SOAP message: a request on the server, a
// response in the client. Its content parts are spooled; Close releases
// them.
type soapMessage struct {
	Action, MessageID, To string
	Author                *Party
	Metadata              *xmlsafe.Element
	Envelope              *xmlsafe.Element
	Header                *xmlsafe.Element
	Body                  *xmlsafe.Element // the first body child, nil for an empty body
	Contents              []*Content
	MTOM                  bool
	spools                []*spool
}

func (r *soapMessage) Close() {
	for _, s := range r.spools {
		s.Close()
	}
}

// limits of one request.
type limits struct {
	contentBytes int64 // decoded content of one message (the container limit)
	spoolDir     string
}

// readRequest parses an HTTP request body: a SOAP 1.2 envelope, or an
// MTOM/XOP multipart/related package whose root part is one.
func readRequest(hr *http.Request, lim limits) (*soapMessage, *Fault) {
	return readMessage(hr.Header.Get("Content-Type"), hr.Body, lim, true)
}

// readMessage parses a SOAP message of the given Content-Type. Requests
// must carry wsa:Action and wsa:MessageID. What is wrong with a message
// comes back as the fault that names it.
func readMessage(contentType string, body io.Reader, lim limits, isRequest bool) (*soapMessage, *Fault) {
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil, protocolFault("Sender", NSParzelle, "UnsupportedMediaType", "Content-Type %q is not a SOAP 1.2 or MTOM media type", contentType)
	}
	m := &soapMessage{}
	b := &budget{max: lim.contentBytes}
	switch mediaType {
	case "application/soap+xml":
		err = m.parseEnvelope(body, b, lim.spoolDir)
	case "multipart/related":
		m.MTOM = true
		err = m.parseMTOM(body, params, b, lim.spoolDir)
	case "text/xml":
		return nil, protocolFault("VersionMismatch", "", "", "Content-Type text/xml is SOAP 1.1; XTA 2 Version 3 speaks SOAP 1.2 (application/soap+xml)")
	default:
		return nil, protocolFault("Sender", NSParzelle, "UnsupportedMediaType", "Content-Type %s is not a SOAP 1.2 or MTOM media type", mediaType)
	}
	if err == nil {
		err = m.readHeaders(isRequest)
	}
	if err != nil {
		m.Close()
		return nil, requestFault(err)
	}
	return m, nil
}

// requestFault turns a parse error into the fault that names it.
func requestFault(err error) *Fault {
	var f *Fault
	var le *xmlsafe.LimitError
	var se *xmlsafe.SyntaxError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &f):
		return f
	case errors.Is(err, errTooLarge), errors.As(err, &mbe):
		return xtaFault(CodeTooLarge, "the message is larger than the container limit")
	case errors.As(err, &le) && le.Limit == "size":
		return xtaFault(CodeTooLarge, "the SOAP envelope is larger than %d bytes", le.Max)
	case errors.As(err, &le):
		f := xtaFault(CodeBadParameters, "%s", le.Error())
		f.Subcode.Space, f.Subcode.Local = NSParzelle, "LimitExceeded"
		return f
	case errors.Is(err, xmlsafe.ErrDTD):
		f := xtaFault(CodeBadParameters, "a DOCTYPE (DTD) is not allowed in a SOAP message")
		f.Subcode.Space, f.Subcode.Local = NSParzelle, "DTDNotAllowed"
		return f
	case errors.As(err, &se):
		f := xtaFault(CodeBadParameters, "malformed XML: %s", se.Error())
		f.Subcode.Space, f.Subcode.Local = NSParzelle, "MalformedXML"
		return f
	}
	f = xtaFault(CodeBadParameters, "%s", err.Error())
	f.Subcode.Space, f.Subcode.Local = NSParzelle, "MalformedRequest"
	return f
}

// parseEnvelope reads a SOAP 1.2 envelope, streaming the text of content
// elements (xta:Message, xta:Attachment) through a base64 decoder into
// spools.
func (r *soapMessage) parseEnvelope(body io.Reader, b *budget, dir string) error {
	decoders := map[*xmlsafe.Element]*base64Writer{}
	env, err := xmlsafe.Parse(body, xmlsafe.Options{
		Stream: func(el *xmlsafe.Element, depth int) io.Writer {
			// Envelope(0)/Body(1)/GenericContentContainer(2)/ContentContainer(3)/Message(4)
			if depth != 4 || el.Name.Space != NSXTA || (el.Name.Local != "Message" && el.Name.Local != "Attachment") {
				return nil
			}
			s := &spool{dir: dir, budget: b}
			r.spools = append(r.spools, s)
			w := &base64Writer{dst: s}
			decoders[el] = w
			r.Contents = append(r.Contents, contentFrom(el, s))
			return w
		},
	})
	if err != nil {
		return err
	}
	for el, w := range decoders {
		if err := w.Close(); err != nil {
			return fmt.Errorf("%s: %w", el.Name.Local, err)
		}
	}
	r.Envelope = env
	// Content elements keep their xop:Include reference (MTOM).
	for i, c := range r.contentElements() {
		if inc := c.Child(NSXOP, "Include"); inc != nil {
			href, _ := inc.Attribute("href")
			cid, err := cidOf(href)
			if err != nil {
				return err
			}
			r.Contents[i].cid = cid
		}
	}
	return nil
}

func (r *soapMessage) contentElements() []*xmlsafe.Element {
	body := r.Envelope.Child(NSSOAP, "Body")
	if body == nil {
		return nil
	}
	cc := body.Path(xml.Name{Space: NSXTA, Local: "GenericContentContainer"}, xml.Name{Space: NSXTA, Local: "ContentContainer"})
	if cc == nil {
		return nil
	}
	var out []*xmlsafe.Element
	for _, c := range cc.Children {
		if c.Name.Space == NSXTA && (c.Name.Local == "Message" || c.Name.Local == "Attachment") {
			out = append(out, c)
		}
	}
	return out
}

func contentFrom(el *xmlsafe.Element, s *spool) *Content {
	c := &Content{Attachment: el.Name.Local == "Attachment", data: s}
	c.ContentType, _ = el.Attribute("contentType")
	c.Encoding, _ = el.Attribute("encoding")
	c.Filename, _ = el.Attribute("filename")
	c.ID, _ = el.Attribute("id")
	c.Description, _ = el.Attribute("contentDescription")
	c.Lang, _ = el.Attribute("lang")
	if v, ok := el.Attribute("size"); ok {
		fmt.Sscan(v, &c.DeclaredSize)
	}
	return c
}

func cidOf(href string) (string, error) {
	if !strings.HasPrefix(href, "cid:") {
		return "", fmt.Errorf("xop:Include href %q is not a cid: URL", href)
	}
	cid, err := url.PathUnescape(href[len("cid:"):])
	if err != nil {
		return "", fmt.Errorf("xop:Include href %q: %w", href, err)
	}
	return cid, nil
}

// readHeaders checks the envelope and picks out the headers XTA uses.
func (r *soapMessage) readHeaders(isRequest bool) error {
	env := r.Envelope
	switch {
	case env.Name.Space == NSSOAP11 && env.Name.Local == "Envelope":
		return protocolFault("VersionMismatch", "", "", "this is a SOAP 1.1 envelope; XTA 2 Version 3 speaks SOAP 1.2 (%s)", NSSOAP)
	case env.Name.Local != "Envelope" || env.Name.Space != NSSOAP:
		return protocolFault("VersionMismatch", "", "", "the root element {%s}%s is not a SOAP 1.2 Envelope", env.Name.Space, env.Name.Local)
	}
	var header, body *xmlsafe.Element
	for i, c := range env.Children {
		switch {
		case c.Name.Space == NSSOAP && c.Name.Local == "Header" && i == 0:
			header = c
		case c.Name.Space == NSSOAP && c.Name.Local == "Body" && body == nil:
			body = c
		default:
			return protocolFault("Sender", NSParzelle, "MalformedEnvelope", "unexpected element {%s}%s in the SOAP envelope", c.Name.Space, c.Name.Local)
		}
	}
	if body == nil {
		return protocolFault("Sender", NSParzelle, "MalformedEnvelope", "the SOAP envelope has no Body")
	}
	if len(body.Children) > 1 {
		return xtaFault(CodeBadParameters, "the SOAP Body holds %d elements; XTA requests carry at most one", len(body.Children))
	}
	if len(body.Children) == 1 {
		r.Body = body.Children[0]
	}
	r.Header = header
	if header == nil && !isRequest {
		return nil
	}
	if header == nil {
		return protocolFault("Sender", NSWSA, "MessageAddressingHeaderRequired", "the SOAP envelope has no Header; WS-Addressing is mandatory").withProblemHeader("wsa:Action")
	}
	for _, h := range header.Children {
		switch {
		case h.Name.Space == NSWSA && h.Name.Local == "Action":
			r.Action = h.TrimmedText()
		case h.Name.Space == NSWSA && h.Name.Local == "MessageID":
			r.MessageID = h.TrimmedText()
		case h.Name.Space == NSWSA && h.Name.Local == "To":
			r.To = h.TrimmedText()
		case h.Name.Space == NSWSA:
		case h.Name.Space == NSOSCIMeta && h.Name.Local == "Author":
			r.Author = partyFrom(h)
		case h.Name.Space == NSOSCIMeta && h.Name.Local == "MessageMetaData":
			r.Metadata = h
		case h.Name.Space == NSOSCI && h.Name.Local == "X509TokenContainer":
		default:
			for _, a := range h.Attr {
				if a.Name.Space == NSSOAP && a.Name.Local == "mustUnderstand" && (a.Value == "true" || a.Value == "1") {
					f := protocolFault("MustUnderstand", "", "", "header block {%s}%s is marked mustUnderstand and not understood", h.Name.Space, h.Name.Local)
					return f
				}
			}
		}
	}
	switch {
	case !isRequest:
		return nil
	case r.Action == "":
		return protocolFault("Sender", NSWSA, "MessageAddressingHeaderRequired", "the wsa:Action header is missing").withProblemHeader("wsa:Action")
	case r.MessageID == "":
		return protocolFault("Sender", NSWSA, "MessageAddressingHeaderRequired", "the wsa:MessageID header is missing; a request that expects a reply must carry one").withProblemHeader("wsa:MessageID")
	}
	return nil
}

func (f *Fault) withProblemHeader(qname string) *Fault {
	f.ProblemHeader = qname
	return f
}

// parseMTOM reads a multipart/related XOP package: the root part is the
// envelope, the other parts are spooled and bound to the xop:Include
// references of the content elements.
func (r *soapMessage) parseMTOM(body io.Reader, params map[string]string, b *budget, dir string) error {
	boundary := params["boundary"]
	if boundary == "" {
		return protocolFault("Sender", NSParzelle, "MalformedMTOM", "multipart/related without a boundary")
	}
	start := strings.Trim(params["start"], "<>")
	mr := multipart.NewReader(bufio.NewReaderSize(body, 64<<10), boundary)
	parts := map[string]*spool{}
	rootSeen := false
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return protocolFault("Sender", NSParzelle, "MalformedMTOM", "the MIME package is truncated or malformed: %v", err)
		}
		cid := strings.Trim(p.Header.Get("Content-ID"), "<> ")
		var rd io.Reader = p
		if strings.EqualFold(p.Header.Get("Content-Transfer-Encoding"), "base64") {
			rd = base64.NewDecoder(base64.StdEncoding, p)
		}
		if !rootSeen && (start == "" || cid == start) {
			rootSeen = true
			if err := checkRootType(p.Header); err != nil {
				return err
			}
			if err := r.parseEnvelope(rd, b, dir); err != nil {
				return err
			}
			if _, err := io.Copy(io.Discard, p); err != nil {
				return protocolFault("Sender", NSParzelle, "MalformedMTOM", "the MIME package is truncated: %v", err)
			}
			continue
		}
		s := &spool{dir: dir, budget: b}
		r.spools = append(r.spools, s)
		if _, err := io.Copy(s, rd); err != nil {
			if errors.Is(err, errTooLarge) {
				return err
			}
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return err
			}
			return protocolFault("Sender", NSParzelle, "MalformedMTOM", "MIME part <%s> is truncated: %v", cid, err)
		}
		parts[cid] = s
	}
	if !rootSeen {
		return protocolFault("Sender", NSParzelle, "MalformedMTOM", "the MIME package has no root part <%s>", start)
	}
	for _, c := range r.Contents {
		if c.cid == "" {
			continue
		}
		s, ok := parts[c.cid]
		if !ok {
			return protocolFault("Sender", NSParzelle, "MalformedMTOM", "xop:Include refers to MIME part <%s>, which the package does not contain", c.cid)
		}
		c.data = s
	}
	return nil
}

func checkRootType(h textproto.MIMEHeader) error {
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || (mt != "application/xop+xml" && mt != "application/soap+xml") {
		return protocolFault("Sender", NSParzelle, "MalformedMTOM", "the root part has Content-Type %q, not application/xop+xml", h.Get("Content-Type"))
	}
	return nil
}

// skeleton serializes the envelope for schema validation: content elements
// lose their bytes (streamed elsewhere) and xop:Include children, which
// leaves them valid empty base64Binary.
func (r *soapMessage) skeleton() []byte {
	saved := map[*xmlsafe.Element][]*xmlsafe.Element{}
	for _, c := range r.contentElements() {
		saved[c] = c.Children
		c.Children = nil
	}
	var buf bytes.Buffer
	_ = r.Envelope.Write(&buf, prefixes)
	for c, ch := range saved {
		c.Children = ch
	}
	return buf.Bytes()
}
