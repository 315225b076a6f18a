package xta

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/xmlsafe"
)

// selector is an osci:MsgSelector: which box entries a request means.
type selector struct {
	IDs      []string   `json:"ids,omitempty"`
	From     *time.Time `json:"from,omitempty"`
	To       *time.Time `json:"to,omitempty"`
	NewEntry bool       `json:"new,omitempty"`
}

func readSelector(el *xmlsafe.Element) (selector, *Fault) {
	var sel selector
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
	Kind  string   `json:"k"` // list or fetch
	After int64    `json:"a"`
	Form  string   `json:"f,omitempty"`
	Max   int      `json:"m,omitempty"`
	Sel   selector `json:"s"`
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

// boxEntry is an inbox row as the message box shows it.
type boxEntry struct {
	id                            int64
	messageID, metadata, scenario string
	size                          int64
	sent                          time.Time
	delivered                     time.Time
	fetched                       *time.Time
	peerTenant                    *string
	peerID                        *int64
}

// listBox returns up to limit open entries of the account's box after the
// given row id, and how many more match.
func listBox(ctx context.Context, tx pgx.Tx, account string, sel selector, after int64, limit int) ([]boxEntry, int64, error) {
	rows, err := tx.Query(ctx, `SELECT id, message_id, metadata, business_scenario, content_size, sent_at, delivered_at, fetched_at, peer_tenant, peer_id, count(*) OVER ()
		FROM xta_message
		WHERE box = 'inbox' AND account = $1 AND delivered_at IS NOT NULL AND closed_at IS NULL AND id > $2
		  AND ($3::text[] IS NULL OR message_id = ANY($3))
		  AND ($4::timestamptz IS NULL OR delivered_at >= $4) AND ($5::timestamptz IS NULL OR delivered_at <= $5)
		  AND (NOT $6 OR fetched_at IS NULL)
		ORDER BY id LIMIT $7`, account, after, sel.IDs, sel.From, sel.To, sel.NewEntry, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("xta: list box: %w", err)
	}
	defer rows.Close()
	var out []boxEntry
	var total int64
	for rows.Next() {
		var e boxEntry
		if err := rows.Scan(&e.id, &e.messageID, &e.metadata, &e.scenario, &e.size, &e.sent, &e.delivered, &e.fetched, &e.peerTenant, &e.peerID, &total); err != nil {
			return nil, 0, fmt.Errorf("xta: list box: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("xta: list box: %w", err)
	}
	return out, total - int64(len(out)), nil
}

// deliveryTimes are the timestamps a message has collected.
type deliveryTimes struct {
	initialSend, delivery, initialFetch, reception *time.Time
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
	var b bytes.Buffer
	if err := m.Write(&b, prefixes); err != nil {
		return "", err
	}
	return b.String(), nil
}

func (e boxEntry) metadataXML() (string, error) {
	return metadataWithTimes(e.metadata, deliveryTimes{initialSend: &e.sent, delivery: &e.delivered, initialFetch: e.fetched})
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
	var entries []boxEntry
	var pending int64
	err := db.InTenant(ctx, s.pool, tenantID, func(tx pgx.Tx) error {
		var err error
		entries, pending, err = listBox(ctx, tx, c.account, it.Sel, it.After, it.Max)
		return err
	})
	if err != nil {
		return err
	}
	var body strings.Builder
	body.WriteString(`<osci:MsgStatusList>`)
	for _, e := range entries {
		if it.Form == "MsgAtrributes" {
			body.WriteString(`<osci:MsgAttributes><wsa:MessageID>` + esc(e.messageID) + `</wsa:MessageID><osci:TypeOfBusinessScenario>` + esc(e.scenario) +
				`</osci:TypeOfBusinessScenario><osci:MsgSize>` + itoa(e.size) + `</osci:MsgSize><osci:DeliveryTime>` + xsTime(e.delivered) + `</osci:DeliveryTime>`)
			if e.fetched != nil {
				body.WriteString(`<osci:InitialFetchedTime>` + xsTime(*e.fetched) + `</osci:InitialFetchedTime>`)
			}
			body.WriteString(`</osci:MsgAttributes>`)
			continue
		}
		m, err := e.metadataXML()
		if err != nil {
			return err
		}
		body.WriteString(m)
	}
	body.WriteString(`</osci:MsgStatusList>`)
	if len(entries) > 0 {
		it.After = entries[len(entries)-1].id
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
// the iteration's position, with its content, streamed from the database.
// Messages listed in received are closed first (getNextMessage's
// acknowledgement).
func (s *Server) fetch(ctx context.Context, c *call, tenantID string, it iteration, received []string) error {
	account := c.account
	if len(received) > 0 {
		// The acknowledgement stands even when no further message follows.
		err := db.InTenant(ctx, s.pool, tenantID, func(tx pgx.Tx) error {
			return s.closeMessages(ctx, tx, tenantID, account, received)
		})
		if err != nil {
			return err
		}
	}
	return db.InTenant(ctx, s.pool, tenantID, func(tx pgx.Tx) error {
		entries, pending, err := listBox(ctx, tx, account, it.Sel, it.After, 1)
		if err != nil {
			return err
		}
		if len(entries) == 0 {
			if len(it.Sel.IDs) > 0 {
				return xtaFault(CodeUnknownMessageID, "no open message %s in the box of %s", strings.Join(it.Sel.IDs, ", "), account)
			}
			return xtaFault(CodeUnknownMessageID, "no further message in the box of %s", account)
		}
		e := entries[0]
		now := s.now()
		if e.fetched == nil {
			e.fetched = &now
			if _, err := tx.Exec(ctx, `UPDATE xta_message SET fetched_at = $2 WHERE id = $1`, e.id, now); err != nil {
				return fmt.Errorf("xta: mark fetched: %w", err)
			}
			if err := s.peerRecord(ctx, tx, tenantID, e, `fetched_at = $2`, record{now, "info", RecordFetched, "Nachricht von " + account + " abgeholt (noch nicht quittiert)"}); err != nil {
				return err
			}
		}
		parts, err := loadParts(ctx, tx, e.id)
		if err != nil {
			return err
		}
		meta, err := e.metadataXML()
		if err != nil {
			return err
		}
		it.After = e.id
		headers := meta + msgBoxResponse(it.id(), pending, false)
		return s.writeContent(ctx, tx, c, headers, e.id, parts)
	})
}

// peerRecord adds a record to the report of the message's outbox row (in
// the author's tenant) and sets one of its timestamps; it returns to the
// reader's tenant afterwards.
func (s *Server) peerRecord(ctx context.Context, tx pgx.Tx, tenantID string, e boxEntry, set string, r record) error {
	if e.peerTenant == nil || e.peerID == nil {
		return nil
	}
	if err := db.EnterTenant(ctx, tx, *e.peerTenant); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `UPDATE xta_message SET `+set+` WHERE id = $1 AND box = 'outbox'`, *e.peerID, r.at); err != nil {
		return fmt.Errorf("xta: update report: %w", err)
	}
	if err := addRecords(ctx, tx, *e.peerTenant, *e.peerID, r); err != nil {
		return err
	}
	return db.EnterTenant(ctx, tx, tenantID)
}

// part is a stored content part.
type part struct {
	no                                                      int
	attachment                                              bool
	contentType, encoding, filename, ref, description, lang string
	size                                                    int64
}

func loadParts(ctx context.Context, tx pgx.Tx, message int64) ([]part, error) {
	rows, err := tx.Query(ctx, `SELECT part, attachment, content_type, coalesce(encoding,''), coalesce(filename,''), coalesce(part_ref,''),
		coalesce(description,''), coalesce(lang,''), size FROM xta_part WHERE message = $1 ORDER BY part`, message)
	if err != nil {
		return nil, fmt.Errorf("xta: load parts: %w", err)
	}
	defer rows.Close()
	var out []part
	for rows.Next() {
		var p part
		if err := rows.Scan(&p.no, &p.attachment, &p.contentType, &p.encoding, &p.filename, &p.ref, &p.description, &p.lang, &p.size); err != nil {
			return nil, fmt.Errorf("xta: load parts: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

func (p part) open(include string) string {
	el := "Message"
	if p.attachment {
		el = "Attachment"
	}
	var b strings.Builder
	b.WriteString(`<xta:` + el + ` contentType="` + esc(p.contentType) + `"`)
	for _, a := range [][2]string{{"encoding", p.encoding}, {"filename", p.filename}, {"id", p.ref}, {"contentDescription", p.description}, {"lang", p.lang}} {
		if a[1] != "" {
			b.WriteString(` ` + a[0] + `="` + esc(a[1]) + `"`)
		}
	}
	if p.size > 0 {
		b.WriteString(` size="` + itoa(p.size) + `"`)
	}
	b.WriteString(`>` + include)
	return b.String()
}

func (p part) closeTag() string {
	if p.attachment {
		return `</xta:Attachment>`
	}
	return `</xta:Message>`
}

// writeContent streams a getMessage response: MTOM when the request came as
// MTOM, inline base64 otherwise. The bytes come chunk by chunk from the
// database.
func (s *Server) writeContent(ctx context.Context, tx pgx.Tx, c *call, headers string, message int64, parts []part) error {
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
		for _, p := range parts {
			io.WriteString(cw, p.open(`<xop:Include xmlns:xop="`+NSXOP+`" href="cid:part`+strconv.Itoa(p.no)+`@parzelle"/>`)+p.closeTag())
		}
		io.WriteString(cw, tail)
		for _, p := range parts {
			w, err := m.part("application/octet-stream", "part"+strconv.Itoa(p.no)+"@parzelle")
			if err != nil {
				return abort(err)
			}
			cw.w = w
			if err := copyChunks(ctx, tx, cw, message, p.no); err != nil {
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
	for _, p := range parts {
		io.WriteString(cw, p.open(""))
		enc := base64.NewEncoder(base64.StdEncoding, cw)
		if err := copyChunks(ctx, tx, enc, message, p.no); err != nil {
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

// copyChunks writes a part's bytes, one chunk row at a time.
func copyChunks(ctx context.Context, tx pgx.Tx, w io.Writer, message int64, partNo int) error {
	for seq := 0; ; seq++ {
		var data []byte
		err := tx.QueryRow(ctx, `SELECT data FROM xta_chunk WHERE message = $1 AND part = $2 AND seq = $3`, message, partNo, seq).Scan(&data)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("xta: read content: %w", err)
		}
		if _, err := w.Write(data); err != nil {
			return err
		}
	}
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
	err := db.InTenant(ctx, s.pool, owner.ID, func(tx pgx.Tx) error {
		return s.closeMessages(ctx, tx, owner.ID, c.account, ids)
	})
	if err != nil {
		return err
	}
	c.reply("", "")
	return nil
}

// closeMessages marks fetched messages received, tells their authors'
// reports, and deletes their content: once received, the node has no
// business keeping it.
func (s *Server) closeMessages(ctx context.Context, tx pgx.Tx, tenantID, account string, ids []string) error {
	now := s.now()
	for _, id := range ids {
		var e boxEntry
		err := tx.QueryRow(ctx, `UPDATE xta_message SET closed_at = $3 WHERE box = 'inbox' AND account = $1 AND message_id = $2
			AND delivered_at IS NOT NULL AND closed_at IS NULL RETURNING id, peer_tenant, peer_id`, account, id, now).Scan(&e.id, &e.peerTenant, &e.peerID)
		if errors.Is(err, pgx.ErrNoRows) {
			return xtaFault(CodeUnknownMessageID, "no open message %q in the box of %s", id, account)
		}
		if err != nil {
			return fmt.Errorf("xta: close: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM xta_part WHERE message = $1`, e.id); err != nil {
			return fmt.Errorf("xta: close: %w", err)
		}
		if err := s.peerRecord(ctx, tx, tenantID, e, `closed_at = $2`, record{now, "info", RecordClosed, "Empfang durch " + account + " quittiert (close)"}); err != nil {
			return err
		}
	}
	return nil
}
