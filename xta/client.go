package xta

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/parzelle/parzelle/xmlsafe"
)

// Client speaks XTA 2 Version 3 to any XTA server: Parzelle or another.
type Client struct {
	// HTTP carries the requests; configure its TLS client certificate.
	HTTP *http.Client
	// BaseURL is the server's address; the ports are at BaseURL +
	// PortManagement, PortSend and PortMsgBox unless the URLs below say
	// otherwise.
	BaseURL                           string
	ManagementURL, SendURL, MsgBoxURL string
	// MTOM sends content as MIME parts (and asks for it back that way);
	// without it, content travels inline as base64.
	MTOM bool
	// Account is the oscimeta:Author of management and message box
	// requests; empty leaves the header out.
	Account string
	// MaxContent bounds what a response may carry; MaxContent by default.
	MaxContent int64
}

func (c *Client) url(port string) string {
	switch {
	case port == PortManagement && c.ManagementURL != "":
		return c.ManagementURL
	case port == PortSend && c.SendURL != "":
		return c.SendURL
	case port == PortMsgBox && c.MsgBoxURL != "":
		return c.MsgBoxURL
	}
	return strings.TrimSuffix(c.BaseURL, "/") + port
}

func (c *Client) authorHeader() string {
	if c.Account == "" {
		return ""
	}
	return `<oscimeta:Author><oscimeta:Identifier type="xoev">` + esc(c.Account) + `</oscimeta:Identifier></oscimeta:Author>`
}

// OutgoingContent is one content part to send.
type OutgoingContent struct {
	ContentType string // e.g. text/xml
	Encoding    string // e.g. UTF-8
	Filename    string
	ID          string
	Data        io.Reader
	Size        int64 // written as the size attribute when > 0
}

// OutgoingMessage is a message to send with sendMessage.
type OutgoingMessage struct {
	MessageID               string // from CreateMessageID
	Author, Reader          Party
	Service                 string
	BusinessScenario        string // a code of urn:de:xta:codeliste:business.scenario
	BusinessScenarioVersion string // list version, e.g. 3.6
	MessageType             string
	MessageTypeSchema       string // payloadSchema, the namespace of the message
	NotBefore               *time.Time
	Test                    bool
	Message                 OutgoingContent
	Attachments             []OutgoingContent
}

func partyXML(el string, p Party) string {
	attrs := ` type="` + esc(orDefault(p.Type, "xoev")) + `"`
	if p.Name != "" {
		attrs += ` name="` + esc(p.Name) + `"`
	}
	if p.Category != "" {
		attrs += ` category="` + esc(p.Category) + `"`
	}
	return `<oscimeta:` + el + `><oscimeta:Identifier` + attrs + `>` + esc(p.ID) + `</oscimeta:Identifier></oscimeta:` + el + `>`
}

func (m *OutgoingMessage) metadata() string { return m.metadataAt(time.Now()) }

// metadataAt is the MessageMetaData with Origin at the time.
func (m *OutgoingMessage) metadataAt(origin time.Time) string {
	var b strings.Builder
	b.WriteString(`<oscimeta:MessageMetaData`)
	if m.Test {
		b.WriteString(` TestMsg="true"`)
	}
	b.WriteString(`><oscimeta:DeliveryAttributes><oscimeta:Origin>` + xsTime(origin) + `</oscimeta:Origin>`)
	if m.NotBefore != nil {
		b.WriteString(`<oscimeta:NotBefore>` + xsTime(*m.NotBefore) + `</oscimeta:NotBefore>`)
	}
	b.WriteString(`</oscimeta:DeliveryAttributes><oscimeta:Originators>` + partyXML("Author", m.Author) + `</oscimeta:Originators>`)
	b.WriteString(`<oscimeta:Destinations>` + partyXML("Reader", m.Reader) + `</oscimeta:Destinations>`)
	b.WriteString(`<oscimeta:MsgIdentification><wsa:MessageID>` + esc(m.MessageID) + `</wsa:MessageID></oscimeta:MsgIdentification>`)
	b.WriteString(`<oscimeta:Qualifier><oscimeta:Service>` + esc(m.Service) + `</oscimeta:Service><oscimeta:BusinessScenario><oscimeta:Defined listURI="urn:de:xta:codeliste:business.scenario" listVersionID="` +
		esc(orDefault(m.BusinessScenarioVersion, "3.6")) + `"><code>` + esc(m.BusinessScenario) + `</code></oscimeta:Defined></oscimeta:BusinessScenario>`)
	b.WriteString(`<oscimeta:MessageType listURI="urn:de:payloadSchema:elementName" listVersionID="1.0" payloadSchema="` + esc(orDefault(m.MessageTypeSchema, "urn:unknown")) + `"><code>` +
		esc(m.MessageType) + `</code></oscimeta:MessageType></oscimeta:Qualifier></oscimeta:MessageMetaData>`)
	return b.String()
}

func contentOpen(el string, ct OutgoingContent) string {
	var b strings.Builder
	b.WriteString(`<xta:` + el + ` contentType="` + esc(orDefault(ct.ContentType, "application/octet-stream")) + `"`)
	for _, a := range [][2]string{{"encoding", ct.Encoding}, {"filename", ct.Filename}, {"id", ct.ID}} {
		if a[1] != "" {
			b.WriteString(` ` + a[0] + `="` + esc(a[1]) + `"`)
		}
	}
	if ct.Size > 0 {
		b.WriteString(` size="` + strconv.FormatInt(ct.Size, 10) + `"`)
	}
	b.WriteString(`>`)
	return b.String()
}

// maxBuffered bounds the content that Send encodes in memory before it
// sends it (see Send).
const maxBuffered = 256 << 10

// Send calls sendMessage. Content that the caller holds in memory already
// (readers with a Len method: bytes.Reader, strings.Reader, bytes.Buffer),
// at most 256 KB in all, is encoded into one buffer and sent with a
// Content-Length; other content is streamed, so that neither inline base64
// nor MTOM holds it in memory. (A streamed request goes out chunked, one
// chunk and TLS record per write of the encoder; for a small message that
// cost more CPU, on both sides, than the message itself.)
func (c *Client) Send(ctx context.Context, m *OutgoingMessage) error {
	contents := append([]OutgoingContent{m.Message}, m.Attachments...)
	action := operationNamed("sendMessage").action
	contentType := func(mw *multipart.Writer) string {
		if mw == nil {
			return soapContentType + `; action="` + action + `"`
		}
		return fmt.Sprintf(`multipart/related; type="application/xop+xml"; boundary="%s"; start="<root@client>"; start-info="application/soap+xml"; action="%s"`, mw.Boundary(), action)
	}
	if size, ok := heldSize(contents); ok && size <= maxBuffered {
		var buf bytes.Buffer
		buf.Grow(int(size)*4/3 + 4<<10) // base64 and the envelope around it
		var mw *multipart.Writer
		if c.MTOM {
			mw = multipart.NewWriter(&buf)
		}
		if err := c.writeSend(&buf, mw, action, m, contents); err != nil {
			return fmt.Errorf("xta client: %w", err)
		}
		_, err := c.do(ctx, PortSend, contentType(mw), &buf, false)
		return err
	}
	pr, pw := io.Pipe()
	var mw *multipart.Writer
	if c.MTOM {
		mw = multipart.NewWriter(pw)
	}
	go func() {
		pw.CloseWithError(c.writeSend(pw, mw, action, m, contents))
	}()
	_, err := c.do(ctx, PortSend, contentType(mw), pr, false)
	return err
}

// heldSize returns the bytes of the contents when each is held in memory
// (its reader tells its length).
func heldSize(contents []OutgoingContent) (int64, bool) {
	var n int64
	for _, ct := range contents {
		l, ok := ct.Data.(interface{ Len() int })
		if !ok {
			return 0, false
		}
		n += int64(l.Len())
	}
	return n, true
}

func (c *Client) writeSend(w io.Writer, mw *multipart.Writer, action string, m *OutgoingMessage, contents []OutgoingContent) error {
	head := `<?xml version="1.0" encoding="UTF-8"?>` + envelopeOpen + `<s12:Header><wsa:Action>` + action + `</wsa:Action><wsa:MessageID>urn:uuid:` + uuid() +
		`</wsa:MessageID>` + m.metadata() + `</s12:Header><s12:Body><xta:GenericContentContainer><xta:ContentContainer>`
	tail := `</xta:ContentContainer></xta:GenericContentContainer></s12:Body></s12:Envelope>`
	el := func(i int) string {
		if i == 0 {
			return "Message"
		}
		return "Attachment"
	}
	if mw == nil {
		io.WriteString(w, head)
		for i, ct := range contents {
			io.WriteString(w, contentOpen(el(i), ct))
			enc := base64.NewEncoder(base64.StdEncoding, w)
			if _, err := io.Copy(enc, ct.Data); err != nil {
				return err
			}
			enc.Close()
			io.WriteString(w, `</xta:`+el(i)+`>`)
		}
		_, err := io.WriteString(w, tail)
		return err
	}
	h := textproto.MIMEHeader{}
	h.Set("Content-Type", `application/xop+xml; charset=UTF-8; type="application/soap+xml"; action="`+action+`"`)
	h.Set("Content-Transfer-Encoding", "binary")
	h.Set("Content-ID", "<root@client>")
	root, err := mw.CreatePart(h)
	if err != nil {
		return err
	}
	io.WriteString(root, head)
	for i, ct := range contents {
		io.WriteString(root, contentOpen(el(i), ct)+`<xop:Include xmlns:xop="`+NSXOP+`" href="cid:c`+strconv.Itoa(i)+`@client"/></xta:`+el(i)+`>`)
	}
	io.WriteString(root, tail)
	for i, ct := range contents {
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", orDefault(ct.ContentType, "application/octet-stream"))
		h.Set("Content-Transfer-Encoding", "binary")
		h.Set("Content-ID", "<c"+strconv.Itoa(i)+"@client>")
		p, err := mw.CreatePart(h)
		if err != nil {
			return err
		}
		if _, err := io.Copy(p, ct.Data); err != nil {
			return err
		}
	}
	return mw.Close()
}

func operationNamed(name string) *operation {
	op := findOperation(func(o *operation) bool { return o.name == name })
	if op == nil {
		panic("xta: no operation " + name)
	}
	return op
}

// call sends a request whose body is XML text and returns the parsed
// response; a SOAP fault comes back as *Fault.
func (c *Client) call(ctx context.Context, op, body string) (*soapMessage, error) {
	port, action := operationNamed(op).port, operationNamed(op).action
	env := `<?xml version="1.0" encoding="UTF-8"?>` + envelopeOpen + `<s12:Header><wsa:Action>` + action + `</wsa:Action><wsa:MessageID>urn:uuid:` + uuid() +
		`</wsa:MessageID>` + c.authorHeader() + `</s12:Header><s12:Body>` + body + `</s12:Body></s12:Envelope>`
	if c.MTOM {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", `application/xop+xml; charset=UTF-8; type="application/soap+xml"; action="`+action+`"`)
		h.Set("Content-ID", "<root@client>")
		p, _ := mw.CreatePart(h)
		io.WriteString(p, env)
		mw.Close()
		ct := fmt.Sprintf(`multipart/related; type="application/xop+xml"; boundary="%s"; start="<root@client>"; start-info="application/soap+xml"; action="%s"`, mw.Boundary(), action)
		return c.do(ctx, port, ct, &buf, true)
	}
	return c.do(ctx, port, soapContentType+`; action="`+action+`"`, strings.NewReader(env), true)
}

func (c *Client) do(ctx context.Context, port, contentType string, body io.Reader, keep bool) (*soapMessage, error) {
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url(port), body)
	if err != nil {
		return nil, fmt.Errorf("xta client: %w", err)
	}
	hr.Header.Set("Content-Type", contentType)
	resp, err := c.HTTP.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("xta client: %w", err)
	}
	defer resp.Body.Close()
	max := c.MaxContent
	if max == 0 {
		max = MaxContent
	}
	m, f := readMessage(resp.Header.Get("Content-Type"), resp.Body, limits{contentBytes: max}, false)
	if f != nil {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("xta client: HTTP %s, unreadable response: %v %s", resp.Status, f, b)
	}
	if m.Body != nil && m.Body.Name.Space == NSSOAP && m.Body.Name.Local == "Fault" {
		m.Close()
		return nil, parseFault(m.Body)
	}
	if resp.StatusCode != http.StatusOK {
		m.Close()
		return nil, fmt.Errorf("xta client: HTTP %s without a SOAP fault", resp.Status)
	}
	if !keep {
		m.Close()
		return nil, nil
	}
	return m, nil
}

// parseFault reads a SOAP 1.2 Fault element.
func parseFault(el *xmlsafe.Element) *Fault {
	f := &Fault{}
	code := el.Child(NSSOAP, "Code")
	f.SOAPCode = strings.TrimPrefix(code.Child(NSSOAP, "Value").TrimmedText(), "s12:")
	if _, local, ok := strings.Cut(code.Path(name(NSSOAP, "Subcode"), name(NSSOAP, "Value")).TrimmedText(), ":"); ok {
		f.Subcode.Local = local
	}
	f.Reason = el.Path(name(NSSOAP, "Reason"), name(NSSOAP, "Text")).TrimmedText()
	if d := el.Child(NSSOAP, "Detail"); d != nil && len(d.Children) > 0 {
		ex := d.Children[0]
		if ec := ex.Child(NSXTA, "errorCode"); ec != nil {
			f.Code = Code{Number: ec.Child("", "code").TrimmedText(), Exception: ex.Name.Local, Name: ec.Child("", "name").TrimmedText()}
		}
	}
	return f
}

// CheckAccountActive calls checkAccountActive for the client's account.
func (c *Client) CheckAccountActive(ctx context.Context) error {
	m, err := c.call(ctx, "checkAccountActive", "")
	if m != nil {
		m.Close()
	}
	return err
}

// CreateMessageID asks the server for a new MessageID.
func (c *Client) CreateMessageID(ctx context.Context) (string, error) {
	m, err := c.call(ctx, "createMessageId", "")
	if err != nil {
		return "", err
	}
	defer m.Close()
	if m.Body == nil || m.Body.Name != name(NSWSA, "MessageID") {
		return "", fmt.Errorf("xta client: createMessageId answered without a wsa:MessageID")
	}
	return m.Body.TrimmedText(), nil
}

// LookupResult is the answer of lookupService for one reader and service.
type LookupResult struct {
	Known, Available bool
	Parameters       map[string][]byte
}

// LookupService asks whether the reader offers the service.
func (c *Client) LookupService(ctx context.Context, reader Party, service string) (*LookupResult, error) {
	m, err := c.call(ctx, "lookupService", `<xta:LookupServiceRequest><xta:LookupServiceRequestList><xta:LookupService>`+partyXML("Reader", reader)+
		`<xta:ServiceType>`+esc(service)+`</xta:ServiceType></xta:LookupService></xta:LookupServiceRequestList></xta:LookupServiceRequest>`)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	r := m.Body.Path(name(NSXTA, "LookupServiceResultList"), name(NSXTA, "LookupServiceResult"))
	if r == nil {
		return nil, fmt.Errorf("xta client: lookupService answered without a result")
	}
	v := r.Child(NSXTA, "IsServiceAvailableValue")
	out := &LookupResult{Parameters: map[string][]byte{}}
	if a := v.Child(NSXTA, "ServiceIsAvailable"); a != nil {
		out.Known, out.Available = true, a.TrimmedText() == "true"
	}
	for _, p := range r.ChildrenNamed(NSXTA, "ServiceParameter") {
		data, _ := base64.StdEncoding.DecodeString(p.Child(NSXTA, "Resource").TrimmedText())
		out.Parameters[p.Child(NSXTA, "ParameterType").Child("", "code").TrimmedText()] = data
	}
	return out, nil
}

// StatusEntry is one message in a status list.
type StatusEntry struct {
	MessageID string
	// Metadata is the entry's oscimeta:MessageMetaData (ListForm
	// MessageMetaData), nil for the MsgAtrributes form.
	Metadata *xmlsafe.Element
	Size     int64
}

// StatusList is a page of the message box listing.
type StatusList struct {
	RequestID string
	Pending   int64
	Entries   []StatusEntry
}

// ListOptions narrow a status list.
type ListOptions struct {
	Max        int
	Attributes bool // ListForm MsgAtrributes instead of MessageMetaData
	NewOnly    bool
	MessageIDs []string
}

// StatusList calls getStatusList for the client's account.
func (c *Client) StatusList(ctx context.Context, o ListOptions) (*StatusList, error) {
	attrs := ""
	if o.Max > 0 {
		attrs += ` maxListItems="` + strconv.Itoa(o.Max) + `"`
	}
	if o.Attributes {
		attrs += ` ListForm="MsgAtrributes"`
	} else {
		attrs += ` ListForm="MessageMetaData"`
	}
	sel := ""
	if o.NewOnly || len(o.MessageIDs) > 0 {
		sel = `<osci:MsgSelector`
		if o.NewOnly {
			sel += ` newEntry="true"`
		}
		sel += `>`
		for _, id := range o.MessageIDs {
			sel += `<wsa:MessageID>` + esc(id) + `</wsa:MessageID>`
		}
		sel += `</osci:MsgSelector>`
	}
	m, err := c.call(ctx, "getStatusList", `<osci:MsgBoxStatusListRequest`+attrs+`>`+sel+`</osci:MsgBoxStatusListRequest>`)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	return readStatusList(m)
}

// NextStatusList continues a status list.
func (c *Client) NextStatusList(ctx context.Context, requestID string) (*StatusList, error) {
	m, err := c.call(ctx, "getNextStatusList", `<osci:MsgBoxGetNextRequest MsgBoxRequestID="`+esc(requestID)+`"/>`)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	return readStatusList(m)
}

func readStatusList(m *soapMessage) (*StatusList, error) {
	l := &StatusList{}
	l.RequestID, l.Pending = msgBoxResponseOf(m)
	if m.Body == nil {
		return nil, fmt.Errorf("xta client: status list response without a body")
	}
	for _, e := range m.Body.Children {
		switch e.Name {
		case name(NSOSCIMeta, "MessageMetaData"):
			size, _ := strconv.ParseInt(e.Child(NSOSCIMeta, "MsgSize").TrimmedText(), 10, 64)
			l.Entries = append(l.Entries, StatusEntry{Metadata: e, Size: size,
				MessageID: e.Path(name(NSOSCIMeta, "MsgIdentification"), name(NSWSA, "MessageID")).TrimmedText()})
		case name(NSOSCI, "MsgAttributes"):
			size, _ := strconv.ParseInt(e.Child(NSOSCI, "MsgSize").TrimmedText(), 10, 64)
			l.Entries = append(l.Entries, StatusEntry{MessageID: e.Child(NSWSA, "MessageID").TrimmedText(), Size: size})
		}
	}
	return l, nil
}

func msgBoxResponseOf(m *soapMessage) (string, int64) {
	if m.Header == nil {
		return "", 0
	}
	r := m.Header.Child(NSOSCI, "MsgBoxResponse")
	if r == nil {
		return "", 0
	}
	id, _ := r.Attribute("MsgBoxRequestID")
	n, _ := strconv.ParseInt(r.Child(NSOSCI, "ItemsPending").TrimmedText(), 10, 64)
	return id, n
}

// ReceivedContent is a fetched content part.
type ReceivedContent struct {
	Attachment                      bool
	ContentType, Encoding, Filename string
	ID                              string
	Data                            []byte
}

// ReceivedMessage is a fetched message.
type ReceivedMessage struct {
	MessageID string
	Metadata  *xmlsafe.Element
	RequestID string
	Pending   int64
	Contents  []ReceivedContent
}

// GetMessage fetches one message by its MessageID, or the first open one
// when id is empty.
func (c *Client) GetMessage(ctx context.Context, id string) (*ReceivedMessage, error) {
	sel := ""
	if id != "" {
		sel = `<osci:MsgSelector><wsa:MessageID>` + esc(id) + `</wsa:MessageID></osci:MsgSelector>`
	}
	return c.fetched(c.call(ctx, "getMessage", `<osci:MsgBoxFetchRequest>`+sel+`</osci:MsgBoxFetchRequest>`))
}

// GetNextMessage continues a getMessage iteration; received acknowledges
// messages fetched before (like Close).
func (c *Client) GetNextMessage(ctx context.Context, requestID string, received ...string) (*ReceivedMessage, error) {
	var b strings.Builder
	for _, r := range received {
		b.WriteString(`<osci:LastMsgReceived>` + esc(r) + `</osci:LastMsgReceived>`)
	}
	return c.fetched(c.call(ctx, "getNextMessage", `<osci:MsgBoxGetNextRequest MsgBoxRequestID="`+esc(requestID)+`">`+b.String()+`</osci:MsgBoxGetNextRequest>`))
}

func (c *Client) fetched(m *soapMessage, err error) (*ReceivedMessage, error) {
	if err != nil {
		return nil, err
	}
	defer m.Close()
	out := &ReceivedMessage{}
	out.RequestID, out.Pending = msgBoxResponseOf(m)
	if m.Header != nil {
		out.Metadata = m.Header.Child(NSOSCIMeta, "MessageMetaData")
		out.MessageID = out.Metadata.Path(name(NSOSCIMeta, "MsgIdentification"), name(NSWSA, "MessageID")).TrimmedText()
	}
	for _, ct := range m.Contents {
		r, err := ct.data.Reader()
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(r)
		if err != nil {
			return nil, err
		}
		out.Contents = append(out.Contents, ReceivedContent{Attachment: ct.Attachment, ContentType: ct.ContentType, Encoding: ct.Encoding, Filename: ct.Filename, ID: ct.ID, Data: data})
	}
	return out, nil
}

// Close acknowledges fetched messages: they count as received.
func (c *Client) Close(ctx context.Context, ids ...string) error {
	var b strings.Builder
	for _, id := range ids {
		b.WriteString(`<osci:LastMsgReceived>` + esc(id) + `</osci:LastMsgReceived>`)
	}
	m, err := c.call(ctx, "close", `<osci:MsgBoxCloseRequest MsgBoxRequestID="urn:parzelle:client:close">`+b.String()+`</osci:MsgBoxCloseRequest>`)
	if m != nil {
		m.Close()
	}
	return err
}

// Cancel withdraws a message whose NotBefore has not come yet.
func (c *Client) Cancel(ctx context.Context, id string) error {
	m, err := c.call(ctx, "cancelMessage", `<wsa:MessageID>`+esc(id)+`</wsa:MessageID>`)
	if m != nil {
		m.Close()
	}
	return err
}

// ReportRecord is one record of a transport report.
type ReportRecord struct {
	Level  string // Error, Warning or Info
	Time   time.Time
	Code   string
	Reason string
}

// Report is a transport report.
type Report struct {
	Status  int
	Records []ReportRecord
}

// TransportReport fetches the transport report of a sent message.
func (c *Client) TransportReport(ctx context.Context, id string) (*Report, error) {
	m, err := c.call(ctx, "getTransportReport", `<wsa:MessageID>`+esc(id)+`</wsa:MessageID>`)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	st := m.Body.Child(NSXTA, "MessageStatus")
	if st == nil {
		return nil, fmt.Errorf("xta client: transport report without MessageStatus")
	}
	r := &Report{}
	r.Status, _ = strconv.Atoi(st.Child(NSXTA, "Status").TrimmedText())
	for _, list := range st.Children {
		for _, rec := range list.Children {
			at, _ := time.Parse(time.RFC3339, rec.Child(NSXTA, "Timestamp").TrimmedText())
			r.Records = append(r.Records, ReportRecord{Level: rec.Name.Local, Time: at,
				Code: rec.Child(NSXTA, "Code").Child("", "code").TrimmedText(), Reason: rec.Child(NSXTA, "Reason").TrimmedText()})
		}
	}
	return r, nil
}
