package xta

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/parzelle/parzelle/msgbox"
	"github.com/parzelle/parzelle/xmlsafe"
)

// readSelector reads an osci:MsgSelector: which box entries a request
// means.
func readSelector(el *xmlsafe.Element) (msgbox.Selector, *Fault) {
	var sel msgbox.Selector
	if el == nil {
		return sel, nil
	}
	for _, id := range el.ChildrenNamed(NSWSA, "MessageID") {
		sel.IDs = append(sel.IDs, id.TrimmedText())
	}
	for _, b := range []struct {
		name string
		dst  **time.Time
	}{{"MsgBoxEntryTimeFrom", &sel.From}, {"MsgBoxEntryTimeTo", &sel.To}} {
		if e := el.Child(NSOSCI, b.name); e != nil {
			t, err := time.Parse(time.RFC3339, e.TrimmedText())
			if err != nil {
				return sel, xtaFault(CodeBadParameters, "%s %q is not a date and time", b.name, e.TrimmedText())
			}
			*b.dst = &t
		}
	}
	if v, ok := el.Attribute("newEntry"); ok {
		sel.NewEntry = v == "true" || v == "1"
	}
	return sel, nil
}

// iteration is the state behind a MsgBoxRequestID: what was asked and how
// far the answer got. It travels inside the id, so the node keeps no
// per-client state; the account is taken from the request each time, so a
// forged id can only ever show the caller's own box.
type iteration struct {
	Kind  string          `json:"k"` // list or fetch
	After int64           `json:"a"`
	Form  string          `json:"f,omitempty"`
	Max   int             `json:"m,omitempty"`
	Sel   msgbox.Selector `json:"s"`
}

const requestIDPrefix = "urn:parzelle:msgbox:"

func (it iteration) id() string {
	b, _ := json.Marshal(it)
	return requestIDPrefix + base64.RawURLEncoding.EncodeToString(b)
}

func parseIteration(id, kind string) (iteration, bool) {
	var it iteration
	raw, ok := strings.CutPrefix(id, requestIDPrefix)
	if !ok {
		return it, false
	}
	b, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil || json.Unmarshal(b, &it) != nil || it.Kind != kind {
		return it, false
	}
	return it, true
}

// deliveryTimes are the timestamps a message has collected.
type deliveryTimes struct {
	initialSend, delivery, initialFetch, reception *time.Time
	// size, when set, is the content's size as stored: MsgSize.
	size int64
}

// deliveryOrder is the sequence of oscimeta:DeliveryAttributes.
var deliveryOrder = []string{"Origin", "InitialSend", "NotBefore", "ObsoleteAfter", "Delivery", "InitialFetch", "Reception", "ServiceQuality", "ReceiptRequests"}

// metadataWithTimes returns the stored MessageMetaData with the node's
// timestamps set in its DeliveryAttributes.
func metadataWithTimes(stored string, t deliveryTimes) (string, error) {
	m, err := xmlsafe.Parse(strings.NewReader(stored), xmlsafe.Options{})
	if err != nil {
		return "", fmt.Errorf("xta: stored metadata: %w", err)
	}
	da := m.Child(NSOSCIMeta, "DeliveryAttributes")
	if da == nil {
		da = &xmlsafe.Element{Name: name(NSOSCIMeta, "DeliveryAttributes")}
		m.Children = append([]*xmlsafe.Element{da}, m.Children...)
	}
	set := map[string]*time.Time{"InitialSend": t.initialSend, "Delivery": t.delivery, "InitialFetch": t.initialFetch, "Reception": t.reception}
	var kids []*xmlsafe.Element
	for _, n := range deliveryOrder {
		if v, ok := set[n]; ok {
			if v != nil {
				kids = append(kids, &xmlsafe.Element{Name: name(NSOSCIMeta, n), Text: xsTime(*v)})
			}
			continue
		}
		kids = append(kids, da.ChildrenNamed(NSOSCIMeta, n)...)
	}
	da.Children, da.Text = kids, ""
	if t.size > 0 {
		// The size the node stored, whether or not the author stated one
		// (MsgSize is the sequence's last element).
		var rest []*xmlsafe.Element
		for _, ch := range m.Children {
			if ch.Name != name(NSOSCIMeta, "MsgSize") {
				rest = append(rest, ch)
			}
		}
		m.Children = append(rest, &xmlsafe.Element{Name: name(NSOSCIMeta, "MsgSize"), Text: itoa(t.size)})
	}
	var b bytes.Buffer
	if err := m.Write(&b, prefixes); err != nil {
		return "", err
	}
	return b.String(), nil
}

// entryMetadata is an entry's MessageMetaData with the node's timestamps.
func entryMetadata(e msgbox.Entry) (string, error) {
	return metadataWithTimes(e.Metadata, deliveryTimes{initialSend: &e.Sent, delivery: &e.Delivered, initialFetch: e.Fetched, size: e.Size})
}

func msgBoxResponse(requestID string, pending int64, empty bool) string {
	inner := `<osci:ItemsPending>` + itoa(pending) + `</osci:ItemsPending>`
	if empty {
		inner = `<osci:NoMessageAvailable reason="http://www.osci.eu/ws/2008/05/transport/MsgBox/reasons/NoMatch"/>`
	}
	return `<osci:MsgBoxResponse MsgBoxRequestID="` + esc(requestID) + `">` + inner + `</osci:MsgBoxResponse>`
}

func noRequestID(requestID string) string {
	return `<osci:MsgBoxResponse MsgBoxRequestID="` + esc(requestID) + `"><osci:NoMessageAvailable reason="http://www.osci.eu/ws/2008/05/transport/MsgBox/reasons/RequestIdInvalid"/></osci:MsgBoxResponse>`
}

const (
	defaultListItems = 100
	maxListItems     = 1000
)

func (s *Server) getStatusList(ctx context.Context, c *call) error {
	owner, f := s.account(c, c.req.Author)
	if f != nil {
		return f
	}
	sel, f := readSelector(c.req.Body.Child(NSOSCI, "MsgSelector"))
	if f != nil {
		return f
	}
	it := iteration{Kind: "list", Sel: sel, Max: defaultListItems, Form: "MessageMetaData"}
	if v, ok := c.req.Body.Attribute("maxListItems"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return xtaFault(CodeBadParameters, "maxListItems %q is not a positive number", v)
		}
		it.Max = min(n, maxListItems)
	}
	if v, ok := c.req.Body.Attribute("ListForm"); ok {
		it.Form = v
	}
	return s.statusList(ctx, c, owner.ID, it)
}

func (s *Server) getNextStatusList(ctx context.Context, c *call) error {
	owner, f := s.account(c, c.req.Author)
	if f != nil {
		return f
	}
	rid, _ := c.req.Body.Attribute("MsgBoxRequestID")
	it, ok := parseIteration(rid, "list")
	if !ok {
		c.reply(noRequestID(rid), `<osci:MsgStatusList/>`)
		return nil
	}
	return s.statusList(ctx, c, owner.ID, it)
}

func (s *Server) statusList(ctx context.Context, c *call, tenantID string, it iteration) error {
	entries, pending, err := s.box.List(ctx, tenantID, c.account, it.Sel, it.After, it.Max)
	if err != nil {
		return err
	}
	var body strings.Builder
	body.WriteString(`<osci:MsgStatusList>`)
	for _, e := range entries {
		if it.Form == "MsgAtrributes" {
			body.WriteString(`<osci:MsgAttributes><wsa:MessageID>` + esc(e.MessageID) + `</wsa:MessageID><osci:TypeOfBusinessScenario>` + esc(e.BusinessScenario) +
				`</osci:TypeOfBusinessScenario><osci:MsgSize>` + itoa(e.Size) + `</osci:MsgSize><osci:DeliveryTime>` + xsTime(e.Delivered) + `</osci:DeliveryTime>`)
			if e.Fetched != nil {
				body.WriteString(`<osci:InitialFetchedTime>` + xsTime(*e.Fetched) + `</osci:InitialFetchedTime>`)
			}
			body.WriteString(`</osci:MsgAttributes>`)
			continue
		}
		m, err := entryMetadata(e)
		if err != nil {
			return err
		}
		body.WriteString(m)
	}
	body.WriteString(`</osci:MsgStatusList>`)
	if len(entries) > 0 {
		it.After = entries[len(entries)-1].ID
	}
	c.reply(msgBoxResponse(it.id(), pending, len(entries) == 0), body.String())
	return nil
}

func (s *Server) getMessage(ctx context.Context, c *call) error {
	owner, f := s.account(c, c.req.Author)
	if f != nil {
		return f
	}
	sel, f := readSelector(c.req.Body.Child(NSOSCI, "MsgSelector"))
	if f != nil {
		return f
	}
	return s.fetch(ctx, c, owner.ID, iteration{Kind: "fetch", Sel: sel}, nil)
}

func (s *Server) getNextMessage(ctx context.Context, c *call) error {
	owner, f := s.account(c, c.req.Author)
	if f != nil {
		return f
	}
	rid, _ := c.req.Body.Attribute("MsgBoxRequestID")
	it, ok := parseIteration(rid, "fetch")
	if !ok {
		return xtaFault(CodeUnknownMessageID, "MsgBoxRequestID %q does not continue a getMessage of this node", rid)
	}
	var received []string
	for _, e := range c.req.Body.ChildrenNamed(NSOSCI, "LastMsgReceived") {
		received = append(received, e.TrimmedText())
	}
	return s.fetch(ctx, c, owner.ID, it, received)
}

// fetch answers getMessage and getNextMessage: the first open entry after
// the iteration's position, with its content, streamed from the boxes.
// Messages listed in received are closed first (getNextMessage's
// acknowledgement).
func (s *Server) fetch(ctx context.Context, c *call, tenantID string, it iteration, received []string) error {
	err := s.box.Fetch(ctx, tenantID, c.account, it.Sel, it.After, received, func(f msgbox.Fetched) error {
		meta, err := entryMetadata(f.Entry)
		if err != nil {
			return err
		}
		it.After = f.Entry.ID
		return s.writeContent(c, meta+msgBoxResponse(it.id(), f.Pending, false), f)
	})
	return boxFault(err)
}

// part is a stored part as XTA writes it.
type part msgbox.StoredPart

func (p part) open(include string) string {
	el := "Message"
	if p.Attachment {
		el = "Attachment"
	}
	var b strings.Builder
	b.WriteString(`<xta:` + el + ` contentType="` + esc(p.ContentType) + `"`)
	for _, a := range [][2]string{{"encoding", p.Encoding}, {"filename", p.Filename}, {"id", p.Ref}, {"contentDescription", p.Description}, {"lang", p.Lang}} {
		if a[1] != "" {
			b.WriteString(` ` + a[0] + `="` + esc(a[1]) + `"`)
		}
	}
	if p.Size > 0 {
		b.WriteString(` size="` + itoa(p.Size) + `"`)
	}
	b.WriteString(`>` + include)
	return b.String()
}

func (p part) closeTag() string {
	if p.Attachment {
		return `</xta:Attachment>`
	}
	return `</xta:Message>`
}

// writeContent streams a getMessage response: MTOM when the request came as
// MTOM, inline base64 otherwise. The bytes come chunk by chunk from the
// database.
func (s *Server) writeContent(c *call, headers string, f msgbox.Fetched) error {
	head := `<?xml version="1.0" encoding="UTF-8"?>` + envelopeOpen + `<s12:Header>` + addressing(c.op.action, c.req.MessageID) + headers +
		`</s12:Header><s12:Body><xta:GenericContentContainer><xta:ContentContainer>`
	tail := `</xta:ContentContainer></xta:GenericContentContainer></s12:Body></s12:Envelope>`
	cw := &countWriter{}
	if c.req.MTOM {
		m := newMTOMWriter(c.w, c.op.action)
		root, err := m.part(`application/xop+xml; charset=UTF-8; type="application/soap+xml"`, "root@parzelle")
		if err != nil {
			return err
		}
		cw.w = root
		io.WriteString(cw, head)
		for _, sp := range f.Parts {
			p := part(sp)
			io.WriteString(cw, p.open(`<xop:Include xmlns:xop="`+NSXOP+`" href="cid:part`+strconv.Itoa(p.No)+`@parzelle"/>`)+p.closeTag())
		}
		io.WriteString(cw, tail)
		for _, p := range f.Parts {
			w, err := m.part("application/octet-stream", "part"+strconv.Itoa(p.No)+"@parzelle")
			if err != nil {
				return abort(err)
			}
			cw.w = w
			if err := f.Content(p.No, cw); err != nil {
				return abort(err)
			}
		}
		c.bytesOut = cw.n
		return abort(m.close())
	}
	c.w.Header().Set("Content-Type", soapContentType+`; action="`+c.op.action+`"`)
	c.w.WriteHeader(http.StatusOK)
	cw.w = c.w
	io.WriteString(cw, head)
	for _, sp := range f.Parts {
		p := part(sp)
		io.WriteString(cw, p.open(""))
		enc := base64.NewEncoder(base64.StdEncoding, cw)
		if err := f.Content(p.No, enc); err != nil {
			return abort(err)
		}
		enc.Close()
		io.WriteString(cw, p.closeTag())
	}
	_, err := io.WriteString(cw, tail)
	c.bytesOut = cw.n
	return abort(err)
}

// abort ends a response whose status line is already sent: the client sees
// a broken connection rather than a truncated message that looks whole.
func abort(err error) error {
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += n
	return n, err
}

func (s *Server) close(ctx context.Context, c *call) error {
	owner, f := s.account(c, c.req.Author)
	if f != nil {
		return f
	}
	var ids []string
	for _, e := range c.req.Body.ChildrenNamed(NSOSCI, "LastMsgReceived") {
		ids = append(ids, e.TrimmedText())
	}
	if len(ids) == 0 {
		return xtaFault(CodeNoParameter, "close names no LastMsgReceived")
	}
	if err := s.box.Close(ctx, owner.ID, c.account, ids); err != nil {
		return boxFault(err)
	}
	c.reply("", "")
	return nil
}
