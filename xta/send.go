package xta

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/riverqueue/river"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/tenant"
	"github.com/parzelle/parzelle/xmlsafe"
	"github.com/parzelle/parzelle/xmlschema"
)

// chunkSize is the size of the stored content chunks.
const chunkSize = 1 << 20

// Report record codes (our own code list: XTA leaves record types to the
// operator's code list).
const (
	recordListURI     = "urn:parzelle:codeliste:xta-record-type"
	recordListVersion = "1"

	RecordAccepted   = "ACCEPTED"
	RecordValidated  = "VALIDATED"
	RecordDelivered  = "DELIVERED"
	RecordForwarding = "FORWARDING_PENDING"
	RecordFetched    = "FETCHED"
	RecordClosed     = "CLOSED"
	RecordCancelled  = "CANCELLED"
	RecordFailed     = "FAILED"
	// Records of messages a register inbox consumes.
	RecordApplied    = "APPLIED"
	RecordDeadLetter = "DEAD_LETTER"
	RecordRetried    = "RETRIED"
	RecordDiscarded  = "DISCARDED"
	// RecordAnswered: the node answered the message (an evidence
	// request) with a message of its own.
	RecordAnswered = "ANSWERED"
	// RecordSchemaMissing warns that the content's schema is not installed
	// and the author tenant's policy accepted it unvalidated.
	RecordSchemaMissing = "SCHEMA_MISSING"
)

// maxCheckedContent bounds the XML content that is schema-checked on
// sendMessage; larger content is accepted unchecked (noted in the report).
const maxCheckedContent = 16 << 20

// Report status values.
const (
	StatusOpen   = 0
	StatusGreen  = 1
	StatusYellow = 2
	StatusRed    = 3
)

func name(space, local string) xml.Name { return xml.Name{Space: space, Local: local} }

// sendMeta is what sendMessage reads from oscimeta:MessageMetaData.
type sendMeta struct {
	author, reader                         *Party
	messageID                              string
	service, businessScenario, messageType string
	notBefore                              *time.Time
	test                                   bool
}

func readSendMeta(m *xmlsafe.Element) (*sendMeta, *Fault) {
	if m == nil {
		return nil, xtaFault(CodeNoParameter, "the oscimeta:MessageMetaData header is missing")
	}
	sm := &sendMeta{}
	if a := m.Path(name(NSOSCIMeta, "Originators"), name(NSOSCIMeta, "Author")); a != nil {
		sm.author = partyFrom(a)
	}
	if r := m.Path(name(NSOSCIMeta, "Destinations"), name(NSOSCIMeta, "Reader")); r != nil {
		sm.reader = partyFrom(r)
	}
	sm.messageID = m.Path(name(NSOSCIMeta, "MsgIdentification"), name(NSWSA, "MessageID")).TrimmedText()
	q := m.Child(NSOSCIMeta, "Qualifier")
	if q != nil {
		sm.service = q.Child(NSOSCIMeta, "Service").TrimmedText()
		if bs := q.Child(NSOSCIMeta, "BusinessScenario"); bs != nil {
			if d := bs.Child(NSOSCIMeta, "Defined"); d != nil {
				sm.businessScenario = d.Child("", "code").TrimmedText()
			} else {
				sm.businessScenario = bs.Child(NSOSCIMeta, "Undefined").TrimmedText()
			}
		}
		if mt := q.Child(NSOSCIMeta, "MessageType"); mt != nil {
			sm.messageType = mt.Child("", "code").TrimmedText()
		}
	}
	if nb := m.Path(name(NSOSCIMeta, "DeliveryAttributes"), name(NSOSCIMeta, "NotBefore")); nb != nil {
		t, err := time.Parse(time.RFC3339, nb.TrimmedText())
		if err != nil {
			return nil, xtaFault(CodeBadParameters, "NotBefore %q is not a date and time", nb.TrimmedText())
		}
		sm.notBefore = &t
	}
	if v, ok := m.Attribute("TestMsg"); ok {
		sm.test = v == "true" || v == "1"
	}
	switch {
	case sm.author == nil || sm.author.ID == "":
		return nil, xtaFault(CodeNoParameter, "MessageMetaData names no Author")
	case sm.reader == nil || sm.reader.ID == "":
		return nil, xtaFault(CodeNoParameter, "MessageMetaData names no Reader")
	case sm.messageID == "":
		return nil, xtaFault(CodeNoParameter, "MessageMetaData carries no MsgIdentification/wsa:MessageID")
	case q == nil || sm.service == "" || sm.businessScenario == "" || sm.messageType == "":
		return nil, xtaFault(CodeNoParameter, "MessageMetaData lacks the Qualifier's Service, BusinessScenario or MessageType")
	}
	return sm, nil
}

// DeliverArgs is the River job that delivers an accepted message: into the
// reader's message box when the reader is hosted here, else (later) to
// OSCI forwarding.
type DeliverArgs struct {
	Tenant string `json:"tenant"`
	Outbox int64  `json:"outbox"`
}

// Kind names the job.
func (DeliverArgs) Kind() string { return "xta_deliver" }

// sendMessage accepts a message in two steps: prepareSend checks it and
// describes the rows it becomes, then a small message (its contents held
// in memory) is stored together with the others accepted at the same time
// (commit.go), a large one alone, its contents streamed from their spools.
// The client is answered once its message is committed.
func (s *Server) sendMessage(ctx context.Context, c *call) error {
	m, err := s.prepareSend(c)
	if err != nil {
		return err
	}
	if m.small {
		err = s.commit(m)
	} else {
		err = s.store(ctx, []*accepted{m})
	}
	if messageIDUsed(err) {
		return xtaFault(CodeMessageIDUsed, "the MessageID %q was already used", m.row.messageID)
	}
	if err != nil {
		return err
	}
	c.reply("", "")
	return nil
}

// messageIDUsed reports whether err is the unique violation of a MessageID
// that an earlier message (or another message of the same transaction)
// used.
func messageIDUsed(err error) bool { return db.IsUniqueViolation(err) }

// accepted is a sendMessage that passed every check, described as the
// rows that store writes for it.
type accepted struct {
	// readerTenant is "" for a reader hosted elsewhere (the message waits
	// for forwarding with the author's tenant).
	authorTenant, readerTenant string
	// row is the outbox row; the inbox row differs in box, account and
	// peer (addRows).
	row messageRow
	// records are the first records of the author's report.
	records  []record
	contents []*Content
	// small contents (at most chunkSize in all) are held in memory as one
	// chunk per part (nil for an empty part); larger ones are streamed
	// from their spools.
	small  bool
	chunks [][]byte
	// consumed messages are handed to the register inbox consumer in the
	// transaction that stores them; the others get a delivery job,
	// scheduled for NotBefore when that is in the future.
	consumed, scheduled bool
	// validated is true when the first part was checked against its
	// installed schema.
	validated bool
	// outbox and inbox are the rows' ids, allocated by store.
	outbox, inbox int64
}

// prepareSend does everything of sendMessage that comes before the
// transaction: it reads and checks the metadata, the account and the
// contents, and returns the message's rows and report records, or the
// fault to answer with.
func (s *Server) prepareSend(c *call) (*accepted, error) {
	sm, f := readSendMeta(c.req.Metadata)
	if f != nil {
		return nil, f
	}
	author, f := s.account(c, sm.author)
	if f != nil {
		return nil, f
	}
	if len(c.req.Contents) == 0 {
		return nil, xtaFault(CodeBadParameters, "only a plain ContentContainer is accepted; encrypted containers (xenc:EncryptedData) are not supported by this node")
	}
	var size int64
	for _, ct := range c.req.Contents {
		size += ct.Size()
		if ct.DeclaredSize != 0 && ct.DeclaredSize != ct.Size() {
			c.warnings = append(c.warnings, fmt.Sprintf("content %q declares size %d but carries %d bytes", ct.Filename, ct.DeclaredSize, ct.Size()))
		}
	}
	var readerTenant *tenant.Config
	if owner := s.tenants().Owner(sm.reader.ID); owner != nil {
		for _, id := range owner.Identities {
			if id.ID == sm.reader.ID && slices.Contains(id.Transports, "xta") {
				readerTenant = owner
			}
		}
	}
	if c.op.name == "sendMessageSync" {
		// This node offers no synchronous services: every reader it hosts
		// fetches from its message box.
		return nil, xtaFault(CodeOnlyAsync, "the reader %q is served asynchronously; use sendMessage", sm.reader.ID)
	}
	now := s.now()
	contentRecords, err := s.checkContents(c, author, now)
	if err != nil {
		return nil, err
	}
	var metaXML bytes.Buffer
	if err := c.req.Metadata.Write(&metaXML, prefixes); err != nil {
		return nil, fmt.Errorf("xta: serialize metadata: %w", err)
	}
	m := &accepted{
		authorTenant: author.ID,
		row: messageRow{
			messageID: sm.messageID, author: sm.author.ID, reader: sm.reader.ID, service: sm.service,
			businessScenario: sm.businessScenario, messageType: sm.messageType, metadata: metaXML.String(),
			size: size, test: sm.test, notBefore: sm.notBefore, sentAt: now,
		},
		contents:  c.req.Contents,
		small:     size <= chunkSize,
		validated: c.validated[0],
	}
	// A message for a register inbox is handed to its consumer at once,
	// in the transaction that stores it, unless it waits for its NotBefore.
	m.scheduled = sm.notBefore != nil && sm.notBefore.After(now)
	m.consumed = readerTenant != nil && s.inbox != nil && !m.scheduled && s.inbox.Claims(readerTenant.ID, sm.reader.ID)
	if readerTenant != nil {
		m.readerTenant = readerTenant.ID
	}
	if m.consumed {
		m.row.deliveredAt = &now
	}
	m.records = []record{{now, "info", RecordAccepted, "Nachricht angenommen (sendMessage)"}}
	if len(c.warnings) == 0 {
		m.records = append(m.records, record{now, "info", RecordValidated, "Nachricht gegen die XTA-2-V3-Schemata geprüft"})
	}
	for _, w := range c.warnings {
		m.records = append(m.records, record{now, "warning", RecordValidated, w})
	}
	m.records = append(m.records, contentRecords...)
	if m.consumed {
		m.records = append(m.records, record{now, "info", RecordDelivered, "Nachricht an den Registerposteingang " + sm.reader.ID + " übergeben; die Einarbeitung steht aus"})
	}
	if readerTenant == nil {
		m.records = append(m.records, record{now, "info", RecordForwarding, fmt.Sprintf("Leser %s wird nicht von diesem Knoten bedient; Weiterleitung über OSCI steht aus", sm.reader.ID)})
	}
	if err := m.holdContents(); err != nil {
		return nil, err
	}
	return m, nil
}

// holdContents reads a small message's contents into memory (chunks), so
// that it can be stored with others.
func (m *accepted) holdContents() error {
	if !m.small {
		return nil
	}
	m.chunks = make([][]byte, len(m.contents))
	for i, ct := range m.contents {
		if ct.Size() == 0 {
			continue
		}
		var err error
		if m.chunks[i], err = ct.data.Bytes(); err != nil {
			return err
		}
	}
	return nil
}

// store writes messages in one transaction: their ids with one statement;
// per tenant one switch into it and one INSERT per table for all its rows,
// all in one round trip; the chunks of large contents one by one from
// their spools; then, outside any tenant, the delivery jobs with one
// statement and the messages for register inboxes with one call of the
// consumer. It sets the messages' ids.
func (s *Server) store(ctx context.Context, ms []*accepted) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return s.storeIn(ctx, tx, ms) })
}

// storeIn is store in the caller's transaction (in no tenant).
func (s *Server) storeIn(ctx context.Context, tx pgx.Tx, ms []*accepted) error {
	if err := allocateIDs(ctx, tx, ms); err != nil {
		return err
	}
	var rows rowSet
	for _, m := range ms {
		m.addRows(&rows)
	}
	b := &batch{}
	if err := rows.queue(ctx, b); err != nil {
		return err
	}
	if err := tx.SendBatch(ctx, &b.Batch).Close(); err != nil {
		return fmt.Errorf("xta: store messages: %w", err)
	}
	for _, m := range ms {
		if !m.small {
			if err := m.streamContents(ctx, tx); err != nil {
				return err
			}
		}
	}
	return s.handOver(ctx, tx, ms)
}

// allocateIDs sets the ids of the messages' rows, allocated in one
// statement.
func allocateIDs(ctx context.Context, tx pgx.Tx, ms []*accepted) error {
	n := 0
	for _, m := range ms {
		n++
		if m.readerTenant != "" {
			n++
		}
	}
	rows, _ := tx.Query(ctx, `SELECT nextval('xta_message_id_seq') FROM generate_series(1, $1)`, n)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err == nil && len(ids) != n {
		err = fmt.Errorf("got %d ids for %d rows", len(ids), n)
	}
	if err != nil {
		return fmt.Errorf("xta: allocate ids: %w", err)
	}
	for _, m := range ms {
		m.outbox, ids = ids[0], ids[1:]
		if m.readerTenant != "" {
			m.inbox, ids = ids[0], ids[1:]
		}
	}
	return nil
}

// addRows adds the message's rows to set: the outbox row and the author's
// report in the author's tenant, the inbox row (when the reader is hosted
// here) in the reader's, and the parts, with a small message's chunks,
// beside the row that holds the contents.
func (m *accepted) addRows(set *rowSet) {
	out, in := m.row, m.row
	if m.readerTenant != "" {
		readerTenant, inbox, authorTenant, outbox := m.readerTenant, m.inbox, m.authorTenant, m.outbox
		out.peerTenant, out.peerID = &readerTenant, &inbox
		in.peerTenant, in.peerID = &authorTenant, &outbox
	}
	author := set.tenant(m.authorTenant)
	author.messages.add(m.outbox, "outbox", m.row.author, out)
	author.records.add(m.outbox, m.records...)
	if m.readerTenant != "" {
		set.tenant(m.readerTenant).messages.add(m.inbox, "inbox", m.row.reader, in)
	}
	tenantID, message := m.contentHolder()
	holder := set.tenant(tenantID)
	for i, ct := range m.contents {
		holder.parts.add(message, i, ct)
		if m.small && len(m.chunks[i]) > 0 {
			holder.chunks.add(message, i, 0, m.chunks[i])
		}
	}
}

// contentHolder returns the tenant and row that hold the message's
// contents.
func (m *accepted) contentHolder() (string, int64) {
	if m.readerTenant != "" {
		return m.readerTenant, m.inbox
	}
	return m.authorTenant, m.outbox
}

// streamContents writes a large message's contents in chunks read from
// their spools, one statement each, so that they are never whole in
// memory. Its parts must be stored.
func (m *accepted) streamContents(ctx context.Context, tx pgx.Tx) error {
	tenantID, message := m.contentHolder()
	if err := db.EnterTenant(ctx, tx, tenantID); err != nil {
		return err
	}
	for i, ct := range m.contents {
		r, err := ct.data.Reader()
		if err != nil {
			return err
		}
		// One buffer for the part's chunks: each is written before the
		// next is read.
		buf := make([]byte, min(chunkSize, max(ct.Size(), 1)))
		for seq := 0; ; seq++ {
			n, err := io.ReadFull(r, buf)
			if n > 0 {
				var chunk chunkCols
				chunk.add(message, i, seq, buf[:n])
				if err := chunk.insert(ctx, tx, tenantID); err != nil {
					return err
				}
			}
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			if err != nil {
				return fmt.Errorf("xta: read spooled content: %w", err)
			}
		}
	}
	return db.LeaveTenant(ctx, tx)
}

// handOver passes the stored messages on, outside any tenant: those for a
// register inbox to its consumer in one call, the others to delivery jobs
// inserted with one statement.
func (s *Server) handOver(ctx context.Context, tx pgx.Tx, ms []*accepted) error {
	var jobs []river.InsertManyParams
	var ds []Delivery
	for _, m := range ms {
		if m.consumed {
			d := Delivery{ReaderTenant: m.readerTenant, Inbox: m.inbox, Reader: m.row.reader, Author: m.row.author,
				MessageID: m.row.messageID, MessageType: m.row.messageType, Validated: m.validated}
			if m.small && len(m.chunks) > 0 {
				d.Content = m.chunks[0]
			}
			ds = append(ds, d)
			continue
		}
		opts := &river.InsertOpts{}
		if m.scheduled {
			opts.ScheduledAt = *m.row.notBefore
		}
		jobs = append(jobs, river.InsertManyParams{Args: DeliverArgs{Tenant: m.authorTenant, Outbox: m.outbox}, InsertOpts: opts})
	}
	if len(jobs) > 0 {
		if _, err := s.river.InsertManyTx(ctx, tx, jobs); err != nil {
			return fmt.Errorf("xta: enqueue delivery: %w", err)
		}
	}
	if len(ds) > 0 {
		if err := s.inbox.Consume(ctx, tx, ds); err != nil {
			return fmt.Errorf("xta: hand over to the register inbox: %w", err)
		}
	}
	return nil
}

// checkContents applies the schema registry and the author tenant's schema
// policy to the message's XML content (xta:Message parts whose first
// non-blank byte is '<'; attachments and other content are not subject).
// Content whose schema is installed must be valid (else 9050, with line and
// column of each problem); for content without an installed schema the
// author's policy refuses the message (9050) or accepts it with a warning
// record. It returns the report records to add.
func (s *Server) checkContents(c *call, author *tenant.Config, now time.Time) ([]record, error) {
	var records []record
	for i, ct := range c.req.Contents {
		if ct.Attachment || ct.Size() == 0 {
			continue
		}
		name := ct.Filename
		if name == "" {
			name = fmt.Sprintf("Teil %d", i+1)
		}
		if ct.Size() > maxCheckedContent {
			if looksLikeXML(ct.data.head()) {
				records = append(records, record{now, "info", RecordValidated, fmt.Sprintf("Inhalt %s ist größer als %d MiB und wurde nicht gegen ein Fachschema geprüft", name, maxCheckedContent>>20)})
			}
			continue
		}
		if !looksLikeXML(ct.data.head()) {
			continue
		}
		doc, err := ct.data.Bytes()
		if err != nil {
			return nil, err
		}
		ns, ok := xmlschema.RootNamespace(doc)
		if !ok {
			// Not XML after all (or not well-formed up to its root):
			// transported as opaque content.
			continue
		}
		set, installed := s.schemas.ForNamespace(ns)
		if !installed {
			what := fmt.Sprintf("namespace %s", ns)
			if ns == "" {
				what = "documents without a namespace"
			}
			if author.Schemas.RefusesMissing() {
				return nil, xtaFault(CodeSchemaViolation, "no schema is installed on this node for %s (root element of content %q), and the policy of tenant %s refuses such messages", what, name, author.ID)
			}
			whatDE := "den Namensraum " + ns
			if ns == "" {
				whatDE = "Dokumente ohne Namensraum"
			}
			records = append(records, record{now, "warning", RecordSchemaMissing,
				fmt.Sprintf("Kein Schema für %s installiert (Inhalt %s): Nachricht ungeprüft angenommen (Richtlinie des Mandanten: warnen)", whatDE, name)})
			continue
		}
		err = s.schemas.Validate(set, doc)
		var ve *xmlschema.ValidationError
		if errors.As(err, &ve) {
			return nil, xtaFault(CodeSchemaViolation, "content %q is not valid against %s: %s", name, set, ve.Summary(10))
		}
		if err != nil {
			return nil, fmt.Errorf("xta: validate content %q against %s: %w", name, set, err)
		}
		records = append(records, record{now, "info", RecordValidated, fmt.Sprintf("Inhalt %s gegen das Schema %s geprüft", name, set)})
		if c.validated == nil {
			c.validated = map[int]bool{}
		}
		c.validated[i] = true
	}
	return records, nil
}

// looksLikeXML reports whether content begins, after white space and a
// UTF-8 byte order mark, with '<'.
func looksLikeXML(head []byte) bool {
	head = bytes.TrimPrefix(head, []byte("\xef\xbb\xbf"))
	head = bytes.TrimLeft(head, " \t\r\n")
	return len(head) > 0 && head[0] == '<'
}

// messageRow is an xta_message row.
type messageRow struct {
	messageID, author, reader                        string
	service, businessScenario, messageType, metadata string
	size                                             int64
	test                                             bool
	notBefore                                        *time.Time
	sentAt                                           time.Time
	deliveredAt                                      *time.Time
	peerTenant                                       *string
	peerID                                           *int64
}

// record is one transport report record.
type record struct {
	at     time.Time
	level  string // info, warning, error
	code   string
	reason string
}

// addRecords adds records to the report of message, a row of the tenant
// that q is in, with one statement.
func addRecords(ctx context.Context, q db.Execer, tenantID string, message int64, records ...record) error {
	var rs recordCols
	rs.add(message, records...)
	return rs.insert(ctx, q, tenantID)
}

// DeliverWorker delivers accepted messages.
type DeliverWorker struct {
	river.WorkerDefaults[DeliverArgs]
	Server *Server
}

// Work makes the message visible in the reader's box and turns the report
// green (yellow with warnings). It is idempotent: a delivered or cancelled
// message is left alone.
func (w *DeliverWorker) Work(ctx context.Context, job *river.Job[DeliverArgs]) error {
	s := w.Server
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := db.EnterTenant(ctx, tx, job.Args.Tenant); err != nil {
			return err
		}
		var readerTenant *string
		var inbox *int64
		var reader string
		var delivered, cancelled *time.Time
		var warnings int
		err := tx.QueryRow(ctx, `SELECT reader, peer_tenant, peer_id, delivered_at, cancelled_at,
			(SELECT count(*) FROM xta_report_record r WHERE r.message = m.id AND r.level <> 'info')
			FROM xta_message m WHERE id = $1 AND box = 'outbox' FOR UPDATE`, job.Args.Outbox).
			Scan(&reader, &readerTenant, &inbox, &delivered, &cancelled, &warnings)
		if errors.Is(err, pgx.ErrNoRows) {
			return river.JobCancel(fmt.Errorf("xta: outbox message %d of %s is gone", job.Args.Outbox, job.Args.Tenant))
		}
		if err != nil {
			return fmt.Errorf("xta: load message: %w", err)
		}
		if delivered != nil || cancelled != nil || readerTenant == nil {
			// Forwarding to readers elsewhere is OSCI's job; until it
			// exists the report stays open with its FORWARDING_PENDING record.
			return nil
		}
		now := s.now()
		if err := db.EnterTenant(ctx, tx, *readerTenant); err != nil {
			return err
		}
		var messageID, author, messageType string
		if err := tx.QueryRow(ctx, `UPDATE xta_message SET delivered_at = $2 WHERE id = $1 AND box = 'inbox' AND delivered_at IS NULL
			RETURNING message_id, author, message_type`, *inbox, now).Scan(&messageID, &author, &messageType); err != nil {
			return fmt.Errorf("xta: deliver: %w", err)
		}
		// A scheduled message for a register inbox is handed over now.
		consumed := s.inbox != nil && s.inbox.Claims(*readerTenant, reader)
		if consumed {
			if err := db.LeaveTenant(ctx, tx); err != nil {
				return err
			}
			d := Delivery{ReaderTenant: *readerTenant, Inbox: *inbox, Reader: reader, Author: author, MessageID: messageID, MessageType: messageType}
			if err := s.inbox.Consume(ctx, tx, []Delivery{d}); err != nil {
				return fmt.Errorf("xta: hand over to the register inbox: %w", err)
			}
		}
		if err := db.EnterTenant(ctx, tx, job.Args.Tenant); err != nil {
			return err
		}
		status := StatusGreen
		if warnings > 0 {
			status = StatusYellow
		}
		note := record{now, "info", RecordDelivered, "Nachricht in das Postfach von " + reader + " zugestellt"}
		if consumed {
			// The report turns green or red once the register applied the
			// message or refused it.
			status = StatusOpen
			note.reason = "Nachricht an den Registerposteingang " + reader + " übergeben; die Einarbeitung steht aus"
		}
		if _, err := tx.Exec(ctx, `UPDATE xta_message SET delivered_at = $2, status = $3 WHERE id = $1`, job.Args.Outbox, now, status); err != nil {
			return fmt.Errorf("xta: deliver: %w", err)
		}
		return addRecords(ctx, tx, job.Args.Tenant, job.Args.Outbox, note)
	})
}

// batch queues statements to send in one round trip.
type batch struct{ pgx.Batch }

func (b *batch) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	b.Queue(sql, args...)
	return pgconn.CommandTag{}, nil
}

// head returns the first bytes of the spooled content (up to 512), without
// moving the read position.
func (s *spool) head() []byte {
	if s.file == nil {
		b := s.mem.Bytes()
		return b[:min(len(b), 512)]
	}
	buf := make([]byte, min(s.size, 512))
	n, _ := s.file.ReadAt(buf, 0)
	return buf[:n]
}

// Bytes returns the whole spooled content: the memory buffer itself while
// small, else a copy read from the file (without moving the read position).
func (s *spool) Bytes() ([]byte, error) {
	if s.file == nil {
		return s.mem.Bytes(), nil
	}
	buf := make([]byte, s.size)
	if _, err := s.file.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("xta: read spooled content: %w", err)
	}
	return buf, nil
}
