package msgbox

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/riverqueue/river"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/sealing"
)

// Message is a message for the boxes: its routing metadata, the first
// records of its author's report, and its content parts.
type Message struct {
	// AuthorTenant owns the author's account; the reader's tenant is the
	// one that owns the reader with the transport Transport, or none (the
	// message waits for forwarding).
	AuthorTenant                                                      string
	MessageID, Author, Reader, Service, BusinessScenario, MessageType string
	// Account is the outbox the author's report is kept in, when it is
	// not Author's own (OSCI: the signer's, while Author is the XTA author
	// the reader's tenant knows).
	Account string
	// Transport names the transport the reader must be reachable by
	// ("xta").
	Transport string
	// Metadata is the transport's description of the message, stored as
	// given and shown to the reader (XTA: oscimeta:MessageMetaData).
	Metadata  string
	Test      bool
	NotBefore *time.Time
	SentAt    time.Time
	// Records are the first records of the author's report; Accept adds
	// those of the hand-over (delivered to a consumer, forwarding).
	Records []Record
	Parts   []Part
	// Validated is true when the first part was checked against its
	// installed schema.
	Validated bool
	// held messages (Hold) are stored settled, for a dead letter.
	held bool
}

// Part is one content part (XTA: the xta:Message, then the attachments).
type Part struct {
	Attachment                                              bool
	ContentType, Encoding, Filename, Ref, Description, Lang string
	Size                                                    int64
	// Data is the content when it is held in memory; else Open reads it
	// (streamed chunk by chunk, never whole).
	Data []byte
	Open func() (io.Reader, error)
}

// accepted is a message on its way into the boxes.
type accepted struct {
	*Message
	size int64
	// readerTenant is "" for a reader hosted elsewhere.
	readerTenant string
	// small contents (at most ChunkSize in all, each part held in memory)
	// are stored with others in one transaction, as one chunk per part;
	// larger ones are streamed.
	small bool
	// consumed messages are handed to the consumer in the transaction that
	// stores them; direct ones (a reader hosted here, no NotBefore ahead)
	// are in the reader's box with it, the author's report green (yellow
	// with warnings); the others get a delivery job, scheduled for
	// NotBefore when that is in the future.
	consumed, direct, scheduled bool
	deliveredAt                 *time.Time
	// outbox and inbox are the rows' ids, allocated by store.
	outbox, inbox int64
}

// prepare describes the message's rows: where it goes and the records of
// its hand-over.
func (s *Store) prepare(m *Message) *accepted {
	a := &accepted{Message: m, small: true}
	for _, p := range m.Parts {
		a.size += p.Size
		if p.Data == nil && p.Size > 0 {
			a.small = false
		}
	}
	a.small = a.small && a.size <= ChunkSize
	transport := m.Transport
	if transport == "" {
		transport = "xta"
	}
	if owner := s.tenants().Owner(m.Reader); owner != nil {
		for _, id := range owner.Identities {
			if id.ID == m.Reader && slices.Contains(id.Transports, transport) {
				a.readerTenant = owner.ID
			}
		}
	}
	now := m.SentAt
	a.scheduled = m.NotBefore != nil && m.NotBefore.After(now)
	a.consumed = a.readerTenant != "" && s.consumer != nil && !a.scheduled && !m.held && s.consumer.Claims(a.readerTenant, m.Reader)
	a.direct = a.readerTenant != "" && !a.scheduled && !a.consumed && !m.held
	switch {
	case a.consumed:
		a.deliveredAt = &now
		m.Records = append(m.Records, Record{now, "info", RecordDelivered, "Nachricht an " + m.Reader + " übergeben; die Verarbeitung steht aus"})
	case a.direct:
		a.deliveredAt = &now
		m.Records = append(m.Records, Record{now, "info", RecordDelivered, "Nachricht in das Postfach von " + m.Reader + " zugestellt"})
	}
	if a.readerTenant == "" {
		m.Records = append(m.Records, Record{now, "info", RecordForwarding, fmt.Sprintf("Leser %s wird nicht von diesem Knoten bedient; Weiterleitung über OSCI steht aus", m.Reader)})
	}
	return a
}

// Accept stores a message the author's transport accepted: in the
// author's outbox with its transport report, and in the reader's box when
// the reader is hosted here — delivered there in the same transaction, or
// handed over to a consumer; one with a NotBefore ahead gets a delivery
// job, and one for a reader elsewhere goes to the forwarder. A small message is
// stored together with the others accepted at the same time (commit.go),
// a large one alone, its content streamed. It returns once the message is
// committed; a MessageID used before is an *Error of KindMessageIDUsed.
func (s *Store) Accept(ctx context.Context, m *Message) error {
	a := s.prepare(m)
	var err error
	if a.small {
		err = s.commit(a)
	} else {
		err = s.store(ctx, []*accepted{a})
	}
	if db.IsUniqueViolation(err) {
		return refuse(KindMessageIDUsed, "the MessageID %q was already used", m.MessageID)
	}
	return err
}

// Hold stores a message its reader's node took but cannot hand to the
// reader (a delivery collected from another intermediary that cannot be
// opened) as the message of a dead letter: in the reader's box, settled at
// once with the reason — never listed, fetched or handed to a consumer —
// its author's report red; then fn runs in the same transaction, in the
// reader's tenant, with the inbox row (to record the dead letter). Reopen
// and Settle take it from there. A MessageID used before is an *Error of
// KindMessageIDUsed.
func (s *Store) Hold(ctx context.Context, m *Message, reason string, fn func(tx pgx.Tx, inbox int64) error) error {
	m.held = true
	a := s.prepare(m)
	if a.readerTenant == "" {
		return fmt.Errorf("msgbox: hold %s: no tenant hosts the reader %s", m.MessageID, m.Reader)
	}
	keys, err := s.keysOf(ctx, []*accepted{a})
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := s.storeWith(ctx, tx, keys, []*accepted{a}); err != nil {
			return err
		}
		if err := db.EnterTenant(ctx, tx, a.readerTenant); err != nil {
			return err
		}
		if _, err := s.Settle(ctx, tx, a.readerTenant, Settlement{Inbox: a.inbox, Code: RecordDeadLetter, Reason: reason}); err != nil {
			return err
		}
		return fn(tx, a.inbox)
	})
	if db.IsUniqueViolation(err) {
		return refuse(KindMessageIDUsed, "the MessageID %q was already used", m.MessageID)
	}
	return err
}

// Post stores a message the node itself sends from one of a tenant's
// identities (an answer to a message a consumer took over) in tx, which is
// in no tenant and left in none, as Accept would. It reports false,
// storing nothing, when a message with the MessageID is there already (an
// answer posted before).
func (s *Store) Post(ctx context.Context, tx pgx.Tx, m *Message) (bool, error) {
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM xta_message WHERE message_id = $1)`, m.MessageID).Scan(&exists); err != nil {
		return false, fmt.Errorf("msgbox: post: %w", err)
	}
	if exists {
		return false, nil
	}
	a := s.prepare(m)
	if err := s.storeIn(ctx, tx, []*accepted{a}); err != nil {
		return false, fmt.Errorf("msgbox: post: %w", err)
	}
	return true, nil
}

// store writes messages in one transaction (storeIn).
func (s *Store) store(ctx context.Context, ms []*accepted) error {
	keys, err := s.keysOf(ctx, ms)
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return s.storeWith(ctx, tx, keys, ms) })
}

// storeIn is store in the caller's transaction (in no tenant).
func (s *Store) storeIn(ctx context.Context, tx pgx.Tx, ms []*accepted) error {
	keys, err := s.keysOf(ctx, ms)
	if err != nil {
		return err
	}
	return s.storeWith(ctx, tx, keys, ms)
}

// keysOf returns the data keys of the tenants the messages' rows go to.
func (s *Store) keysOf(ctx context.Context, ms []*accepted) (map[string]*sealing.DataKey, error) {
	var tenants []string
	for _, m := range ms {
		tenants = append(tenants, m.AuthorTenant, m.readerTenant)
	}
	return s.keysFor(ctx, tenants...)
}

// storeWith writes messages in tx: their ids with one statement; per
// tenant one switch into it and one INSERT per table for all its rows, all
// in one round trip; the chunks of large contents one by one; then,
// outside any tenant, the hand-over (handOver).
func (s *Store) storeWith(ctx context.Context, tx pgx.Tx, keys map[string]*sealing.DataKey, ms []*accepted) error {
	if err := allocateIDs(ctx, tx, ms); err != nil {
		return err
	}
	var rows rowSet
	for _, m := range ms {
		if err := m.addRows(&rows, keys); err != nil {
			return err
		}
	}
	b := &batch{}
	if err := rows.queue(ctx, b); err != nil {
		return err
	}
	if err := tx.SendBatch(ctx, &b.Batch).Close(); err != nil {
		return fmt.Errorf("msgbox: store messages: %w", err)
	}
	for _, m := range ms {
		if !m.small {
			tenantID, _ := m.contentHolder()
			if err := m.streamContents(ctx, tx, keys[tenantID]); err != nil {
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
		return fmt.Errorf("msgbox: allocate ids: %w", err)
	}
	for _, m := range ms {
		m.outbox, ids = ids[0], ids[1:]
		if m.readerTenant != "" {
			m.inbox, ids = ids[0], ids[1:]
		}
	}
	return nil
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
	status                                           int16
	peerTenant                                       *string
	peerID                                           *int64
}

// addRows adds the message's rows to set: the outbox row and the author's
// report in the author's tenant, the inbox row (when the reader is hosted
// here) in the reader's, and the parts, with a small message's chunks,
// beside the row that holds the contents.
func (m *accepted) addRows(set *rowSet, keys map[string]*sealing.DataKey) error {
	row := messageRow{messageID: m.MessageID, author: m.Author, reader: m.Reader, service: m.Service, businessScenario: m.BusinessScenario,
		messageType: m.MessageType, metadata: m.Metadata, size: m.size, test: m.Test, notBefore: m.NotBefore, sentAt: m.SentAt, deliveredAt: m.deliveredAt}
	out, in := row, row
	if m.direct {
		out.status = StatusGreen
		for _, r := range m.Records {
			if r.Level != "info" {
				out.status = StatusYellow
			}
		}
	}
	if m.readerTenant != "" {
		readerTenant, inbox, authorTenant, outbox := m.readerTenant, m.inbox, m.AuthorTenant, m.outbox
		out.peerTenant, out.peerID = &readerTenant, &inbox
		in.peerTenant, in.peerID = &authorTenant, &outbox
	}
	author := set.tenant(m.AuthorTenant)
	account := m.Account
	if account == "" {
		account = m.Author
	}
	author.messages.add(m.outbox, "outbox", account, out)
	if err := author.records.add(keys[m.AuthorTenant], m.outbox, m.Records...); err != nil {
		return err
	}
	if m.readerTenant != "" {
		set.tenant(m.readerTenant).messages.add(m.inbox, "inbox", m.Reader, in)
	}
	tenantID, message := m.contentHolder()
	holder := set.tenant(tenantID)
	for i := range m.Parts {
		p := &m.Parts[i]
		holder.parts.add(message, i, p)
		if m.small && len(p.Data) > 0 {
			if err := holder.chunks.add(keys[tenantID], message, i, 0, p.Data); err != nil {
				return err
			}
		}
	}
	return nil
}

// contentHolder returns the tenant and row that hold the message's
// contents: the inbox row for a reader hosted here, else the outbox row.
func (m *accepted) contentHolder() (string, int64) {
	if m.readerTenant != "" {
		return m.readerTenant, m.inbox
	}
	return m.AuthorTenant, m.outbox
}

// streamContents writes a large message's contents in chunks read from
// their sources, sealed one by one, one statement each, so that they are
// never whole in memory. Its parts must be stored.
func (m *accepted) streamContents(ctx context.Context, tx pgx.Tx, key *sealing.DataKey) error {
	tenantID, message := m.contentHolder()
	if err := db.EnterTenant(ctx, tx, tenantID); err != nil {
		return err
	}
	for i, p := range m.Parts {
		if p.Size == 0 {
			continue
		}
		var r io.Reader
		if p.Data != nil {
			r = &byteReader{b: p.Data}
		} else {
			var err error
			if r, err = p.Open(); err != nil {
				return err
			}
		}
		// One buffer for the part's chunks: each is written before the
		// next is read.
		buf := make([]byte, min(ChunkSize, max(p.Size, 1)))
		for seq := 0; ; seq++ {
			n, err := io.ReadFull(r, buf)
			if n > 0 {
				var chunk chunkCols
				if err := chunk.add(key, message, i, seq, buf[:n]); err != nil {
					return err
				}
				if err := chunk.insert(ctx, tx, tenantID); err != nil {
					return err
				}
			}
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			if err != nil {
				return fmt.Errorf("msgbox: read content: %w", err)
			}
		}
	}
	return db.LeaveTenant(ctx, tx)
}

// byteReader reads a held content.
type byteReader struct {
	b []byte
}

func (r *byteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// handOver passes the stored messages on, outside any tenant: those for
// the consumer in one call, those for readers elsewhere to the forwarder,
// the scheduled ones to delivery jobs inserted with one statement.
func (s *Store) handOver(ctx context.Context, tx pgx.Tx, ms []*accepted) error {
	var jobs []river.InsertManyParams
	var ds []Delivery
	var fs []Forwarding
	for _, m := range ms {
		if m.held || m.direct {
			continue
		}
		if m.readerTenant == "" && s.forwarder != nil {
			fs = append(fs, Forwarding{AuthorTenant: m.AuthorTenant, Outbox: m.outbox, MessageID: m.MessageID, Reader: m.Reader, NotBefore: m.NotBefore})
			continue
		}
		if m.consumed {
			d := Delivery{ReaderTenant: m.readerTenant, Inbox: m.inbox, Reader: m.Reader, Author: m.Author,
				MessageID: m.MessageID, MessageType: m.MessageType, Validated: m.Validated}
			ds = append(ds, d)
			continue
		}
		opts := &river.InsertOpts{}
		if m.scheduled {
			opts.ScheduledAt = *m.NotBefore
		}
		jobs = append(jobs, river.InsertManyParams{Args: DeliverArgs{Tenant: m.AuthorTenant, Outbox: m.outbox}, InsertOpts: opts})
	}
	if len(jobs) > 0 {
		if _, err := s.river.InsertManyTx(ctx, tx, jobs); err != nil {
			return fmt.Errorf("msgbox: enqueue delivery: %w", err)
		}
	}
	if len(ds) > 0 {
		if err := s.consumer.Consume(ctx, tx, ds); err != nil {
			return fmt.Errorf("msgbox: hand over to the consumer: %w", err)
		}
	}
	if len(fs) > 0 {
		if err := s.forwarder.Forward(ctx, tx, fs); err != nil {
			return fmt.Errorf("msgbox: hand over for forwarding: %w", err)
		}
	}
	return nil
}

// addRecords adds records to the report of message, a row of the tenant
// that q is in, with one statement.
func addRecords(ctx context.Context, q db.Execer, key *sealing.DataKey, message int64, records ...Record) error {
	var rs recordCols
	if err := rs.add(key, message, records...); err != nil {
		return err
	}
	return rs.insert(ctx, q, key.Tenant)
}

// batch queues statements to send in one round trip.
type batch struct{ pgx.Batch }

func (b *batch) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	b.Queue(sql, args...)
	return pgconn.CommandTag{}, nil
}
