package xta

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/parzelle/parzelle/xmlsafe"
)

// esc escapes text for element content and attribute values.
func esc(s string) string {
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// needsEscape reports whether xml.EscapeText would change s: it holds
// markup characters, white space other than blanks, control characters
// or bytes beyond ASCII (which EscapeText checks as UTF-8).
func needsEscape(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < ' ' || c >= utf8.RuneSelf, c == '"', c == '\'', c == '&', c == '<', c == '>':
			return true
		}
	}
	return false
}

// uuid returns a random (version 4) UUID in its 8-4-4-4-12 hex form.
func uuid() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

func xsTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

const envelopeOpen = `<s12:Envelope xmlns:s12="` + NSSOAP + `" xmlns:wsa="` + NSWSA + `" xmlns:xta="` + NSXTA +
	`" xmlns:oscimeta="` + NSOSCIMeta + `" xmlns:osci="` + NSOSCI + `">`

// addressing returns the WS-Addressing headers of a response to action,
// relating to the request's MessageID.
func addressing(action, relatesTo string) string {
	return `<wsa:Action>` + esc(action) + `</wsa:Action><wsa:MessageID>urn:uuid:` + uuid() +
		`</wsa:MessageID><wsa:RelatesTo>` + esc(relatesTo) + `</wsa:RelatesTo>`
}

// envelope is a response: extra header blocks and a body, both XML text.
type envelope struct {
	action, relatesTo string
	headers, body     string
}

func (e envelope) String() string {
	return `<?xml version="1.0" encoding="UTF-8"?>` + envelopeOpen + `<s12:Header>` + addressing(e.action, e.relatesTo) + e.headers +
		`</s12:Header><s12:Body>` + e.body + `</s12:Body></s12:Envelope>`
}

const soapContentType = `application/soap+xml; charset=utf-8`

func writeEnvelope(w http.ResponseWriter, status int, e envelope) int {
	s := e.String()
	w.Header().Set("Content-Type", soapContentType+`; action="`+e.action+`"`)
	w.WriteHeader(status)
	_, _ = io.WriteString(w, s)
	return len(s)
}

// body renders the SOAP 1.2 Fault element.
func (f *Fault) body() string {
	var b strings.Builder
	b.WriteString(`<s12:Fault><s12:Code><s12:Value>s12:` + f.SOAPCode + `</s12:Value>`)
	if f.Subcode.Local != "" {
		prefix := prefixes[f.Subcode.Space]
		fmt.Fprintf(&b, `<s12:Subcode><s12:Value xmlns:%s="%s">%s:%s</s12:Value></s12:Subcode>`, prefix, f.Subcode.Space, prefix, f.Subcode.Local)
	}
	b.WriteString(`</s12:Code><s12:Reason><s12:Text xml:lang="de">` + esc(f.Reason) + `</s12:Text></s12:Reason>`)
	switch {
	case f.Code.Number != "":
		fmt.Fprintf(&b, `<s12:Detail><xta:%s><xta:errorCode listURI="urn:de:xta:webservice:codeliste:fehlernummer" listVersionID="1.0"><code>%s</code><name>%s</name></xta:errorCode></xta:%s></s12:Detail>`,
			f.Code.Exception, f.Code.Number, esc(f.Code.Name), f.Code.Exception)
	case f.ProblemHeader != "":
		b.WriteString(`<s12:Detail><wsa:ProblemHeaderQName>` + esc(f.ProblemHeader) + `</wsa:ProblemHeaderQName></s12:Detail>`)
	case f.ProblemAction != "":
		b.WriteString(`<s12:Detail><wsa:ProblemAction><wsa:Action>` + esc(f.ProblemAction) + `</wsa:Action></wsa:ProblemAction></s12:Detail>`)
	}
	b.WriteString(`</s12:Fault>`)
	return b.String()
}

// faultAction is the Action of a fault response: the request's Action, as
// the WSDL binds every fault to it, or the WS-Addressing fault action when
// the request had none.
func faultAction(f *Fault, reqAction string) string {
	if reqAction != "" && f.Subcode.Space != NSWSA {
		return reqAction
	}
	return "http://www.w3.org/2005/08/addressing/soap/fault"
}

// mtomWriter writes a multipart/related XOP response: the root part, then
// one part per content, streamed.
type mtomWriter struct {
	mw *multipart.Writer
	bw *bufio.Writer
}

func newMTOMWriter(w http.ResponseWriter, action string) *mtomWriter {
	bw := bufio.NewWriterSize(w, 64<<10)
	mw := multipart.NewWriter(bw)
	w.Header().Set("Content-Type", fmt.Sprintf(`multipart/related; type="application/xop+xml"; boundary="%s"; start="<root@parzelle>"; start-info="application/soap+xml"; action="%s"`, mw.Boundary(), action))
	w.WriteHeader(http.StatusOK)
	return &mtomWriter{mw: mw, bw: bw}
}

func (m *mtomWriter) part(contentType, cid string) (io.Writer, error) {
	h := textproto.MIMEHeader{}
	h.Set("Content-Type", contentType)
	h.Set("Content-Transfer-Encoding", "binary")
	h.Set("Content-ID", "<"+cid+">")
	return m.mw.CreatePart(h)
}

func (m *mtomWriter) close() error {
	if err := m.mw.Close(); err != nil {
		return err
	}
	return m.bw.Flush()
}

// Metadata is the oscimeta:MessageMetaData of a message the node itself
// sends, as sendMessage stores a client's (with its namespace
// declarations): for the message boxes, which show it to the reader.
func Metadata(messageID, author, reader, service, businessScenario, messageType, payloadSchema string, sent time.Time) string {
	m := &OutgoingMessage{MessageID: messageID, Author: Party{ID: author}, Reader: Party{ID: reader}, Service: service,
		BusinessScenario: businessScenario, MessageType: messageType, MessageTypeSchema: payloadSchema}
	el, err := xmlsafe.Parse(strings.NewReader(`<w xmlns:oscimeta="`+NSOSCIMeta+`" xmlns:wsa="`+NSWSA+`">`+m.metadataAt(sent)+`</w>`), xmlsafe.Options{})
	if err != nil {
		panic("xta: the metadata the node writes does not parse: " + err.Error())
	}
	var b strings.Builder
	if err := el.Children[0].Write(&b, prefixes); err != nil {
		panic("xta: the metadata the node writes does not serialize: " + err.Error())
	}
	return b.String()
}
