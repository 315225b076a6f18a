package msgbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parzelle/parzelle/db"
)

// Delivery is a message delivered into the message box of a reader hosted
// here, as a Consumer sees it.
type Delivery struct {
	// ReaderTenant owns the reader's box; Inbox is the message's row there.
	ReaderTenant string
	Inbox        int64
	Reader       string
	Author       string
	MessageID    string
	MessageType  string
	// Validated is true when the transport validated the message's content
	// against its installed schema on acceptance.
	Validated bool
}

// Consumer takes over messages delivered to some readers (register
// inboxes, evidence identities) instead of leaving them for the reader to
// fetch.
type Consumer interface {
	// Claims reports whether the consumer takes over messages to the
	// reader, an identity of the tenant.
	Claims(readerTenant, reader string) bool
	// Consume takes over messages it claims, in the transaction that
	// stores or delivers them (in no tenant), say by enqueuing their
	// processing there: the messages accepted together are handed over
	// together. The authors' reports stay open until the consumer settles
	// the messages.
	Consume(ctx context.Context, tx pgx.Tx, ds []Delivery) error
}

// Consumers are several consumers as one: each message goes to the first
// that claims its reader.
type Consumers []Consumer

// Claims implements Consumer.
func (cs Consumers) Claims(readerTenant, reader string) bool {
	return cs.of(readerTenant, reader) != nil
}

func (cs Consumers) of(readerTenant, reader string) Consumer {
	for _, c := range cs {
		if c.Claims(readerTenant, reader) {
			return c
		}
	}
	return nil
}

// Consume implements Consumer: each consumer gets its messages in one
// call.
func (cs Consumers) Consume(ctx context.Context, tx pgx.Tx, ds []Delivery) error {
	for _, c := range cs {
		var mine []Delivery
		for _, d := range ds {
			if cs.of(d.ReaderTenant, d.Reader) == c {
				mine = append(mine, d)
			}
		}
		if len(mine) > 0 {
			if err := c.Consume(ctx, tx, mine); err != nil {
				return err
			}
		}
	}
	return nil
}

// MaxConsumedContent bounds the content a consumer reads into memory: a
// process message is small, a 40 MB container is not a register message.
const MaxConsumedContent = 16 << 20

// ErrContentGone is returned for a message whose content was deleted (it
// was settled or closed).
var ErrContentGone = errors.New("msgbox: the message's content is no longer stored")

// InboxMessage is a consumed message's box row and content.
type InboxMessage struct {
	// Inbox is the message's row in the reader's box.
	Inbox                                  int64
	MessageID, Author, Reader, MessageType string
	SentAt                                 time.Time
	// Settled is true once the message was settled (closed).
	Settled bool
	// Content is the first content part (the xta:Message).
	Content []byte
}

// Load reads consumed messages' rows and first content parts in tx, which
// must be in the readers' tenant: small messages all in one round trip. A
// message that is gone (its content deleted, or no such message) is left
// out.
func (s *Store) Load(ctx context.Context, tx pgx.Tx, tenantID string, inboxes []int64) ([]InboxMessage, error) {
	// Each row is found by its key from the list of ids, whatever the
	// planner believes of the tables' sizes: a register inbox's rows are
	// deleted once applied, so its statistics often say it is empty, and a
	// join planned for empty tables scans every row a burst has left.
	rows, err := tx.Query(ctx, `SELECT m.id, m.message_id, m.author, m.reader, m.message_type, m.sent_at, m.closed_at IS NOT NULL, p.size, c.data, c.key_version
		FROM (SELECT DISTINCT unnest($1::bigint[])) AS i(id)
		JOIN LATERAL (SELECT * FROM xta_message m WHERE m.id = i.id AND m.box = 'inbox') m ON true
		JOIN LATERAL (SELECT size FROM xta_part p WHERE p.message = i.id AND p.part = 0) p ON true
		LEFT JOIN LATERAL (SELECT data, key_version FROM xta_chunk c WHERE c.message = i.id AND c.part = 0 AND c.seq = 0) c ON true
		ORDER BY m.id`, inboxes)
	if err != nil {
		return nil, fmt.Errorf("msgbox: load messages: %w", err)
	}
	defer rows.Close()
	var out []InboxMessage
	var sizes []int64
	var versions []*int
	for rows.Next() {
		var m InboxMessage
		var size int64
		var keyVersion *int
		if err := rows.Scan(&m.Inbox, &m.MessageID, &m.Author, &m.Reader, &m.MessageType, &m.SentAt, &m.Settled, &size, &m.Content, &keyVersion); err != nil {
			return nil, fmt.Errorf("msgbox: load messages: %w", err)
		}
		out, sizes, versions = append(out, m), append(sizes, size), append(versions, keyVersion)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("msgbox: load messages: %w", err)
	}
	// The first chunk read with the row is opened; a content larger than
	// its first chunk is read chunk by chunk.
	for i := range out {
		m := &out[i]
		if versions[i] != nil {
			if m.Content, err = s.keyring.OpenOrPlain(ctx, tx, tenantID, *versions[i], chunkAAD(tenantID, m.Inbox, 0, 0), m.Content); err != nil {
				return nil, fmt.Errorf("msgbox: content of message %d: %w", m.Inbox, err)
			}
		}
		if int64(len(m.Content)) != sizes[i] && !m.Settled {
			if m.Content, err = s.ReadContent(ctx, tx, tenantID, m.Inbox); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// ReadContent reads a consumed message's first content part (the xta:Message)
// in tx, which must be in the reader's tenant.
func (s *Store) ReadContent(ctx context.Context, tx pgx.Tx, tenantID string, inbox int64) ([]byte, error) {
	var size int64
	err := tx.QueryRow(ctx, `SELECT size FROM xta_part WHERE message = $1 AND part = 0`, inbox).Scan(&size)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrContentGone
	}
	if err != nil {
		return nil, fmt.Errorf("msgbox: content of message %d: %w", inbox, err)
	}
	if size > MaxConsumedContent {
		return nil, fmt.Errorf("msgbox: content of message %d is %d bytes, more than the %d a register message may have", inbox, size, MaxConsumedContent)
	}
	var buf bytes.Buffer
	buf.Grow(int(size))
	if err := s.copyChunks(ctx, tx, tenantID, &buf, inbox, 0); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Settlement is how a consumed message ended: applied (green), or refused
// for good (red, with the reason a clerk reads in the author's report).
type Settlement struct {
	// Inbox is the message's row in the reader's box.
	Inbox   int64
	Applied bool
	// Code and Reason become a record of the author's report.
	Code, Reason string
}

// Settle ends consumed messages of one reader tenant: the authors'
// reports get the settlements' records and statuses. An applied message's
// box row is deleted with its content (the node has no business keeping
// it: the register holds its facts, the author's report says it was
// applied); a refused one's row counts as received and keeps its content
// for the dead-letter console. tx must be in the reader's tenant and is
// left there. It returns the inboxes it settled, leaving out those settled
// before (for which the call changed nothing). However many messages, it
// costs a few statements.
func (s *Store) Settle(ctx context.Context, tx pgx.Tx, readerTenant string, sts ...Settlement) ([]int64, error) {
	byInbox := make(map[int64]Settlement, len(sts))
	var applied, refused []int64
	for _, st := range sts {
		byInbox[st.Inbox] = st
		if st.Applied {
			applied = append(applied, st.Inbox)
		} else {
			refused = append(refused, st.Inbox)
		}
	}
	rows, err := tx.Query(ctx, `WITH applied AS (
			DELETE FROM xta_message WHERE id = ANY($1) AND box = 'inbox' AND closed_at IS NULL RETURNING id, peer_tenant, peer_id),
		refused AS (
			UPDATE xta_message SET fetched_at = coalesce(fetched_at, now()), closed_at = now()
			WHERE id = ANY($2) AND box = 'inbox' AND closed_at IS NULL RETURNING id, peer_tenant, peer_id)
		SELECT * FROM applied UNION ALL SELECT * FROM refused`, applied, refused)
	if err != nil {
		return nil, fmt.Errorf("msgbox: settle messages: %w", err)
	}
	defer rows.Close()
	type pendingRecord struct {
		message int64
		record  Record
	}
	type peerReport struct {
		ids, statuses []int64
		pending       []pendingRecord
	}
	var settled []int64
	peers := map[string]*peerReport{}
	var peerOrder []string
	now := s.now()
	for rows.Next() {
		var id int64
		var peerTenant *string
		var peerID *int64
		if err := rows.Scan(&id, &peerTenant, &peerID); err != nil {
			return nil, fmt.Errorf("msgbox: settle messages: %w", err)
		}
		settled = append(settled, id)
		st := byInbox[id]
		if peerTenant == nil || peerID == nil {
			continue
		}
		pr := peers[*peerTenant]
		if pr == nil {
			pr = &peerReport{}
			peers[*peerTenant] = pr
			peerOrder = append(peerOrder, *peerTenant)
		}
		level, status := "info", int64(StatusGreen)
		if !st.Applied {
			level, status = "error", StatusRed
		}
		pr.ids, pr.statuses = append(pr.ids, *peerID), append(pr.statuses, status)
		pr.pending = append(pr.pending, pendingRecord{*peerID, Record{now, level, st.Code, st.Reason}})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("msgbox: settle messages: %w", err)
	}
	if len(peerOrder) == 0 {
		return settled, nil
	}
	// The reports in one round trip, their texts sealed under the authors'
	// keys (known to this node from the messages it stored: no query).
	keys, err := s.keysFor(ctx, peerOrder...)
	if err != nil {
		return nil, err
	}
	b := &batch{}
	for _, peerTenant := range peerOrder {
		pr := peers[peerTenant]
		var records recordCols
		for _, p := range pr.pending {
			if err := records.add(keys[peerTenant], p.message, p.record); err != nil {
				return nil, err
			}
		}
		if err := db.EnterTenant(ctx, b, peerTenant); err != nil {
			return nil, err
		}
		// A warning recorded on the way (a missing schema) keeps an
		// applied message's report yellow.
		// Each message's status is found by its position in the arrays:
		// the primary key finds the rows, whatever the planner knows of
		// the table.
		b.Queue(`UPDATE xta_message m SET status = CASE WHEN ($2::int[])[array_position($1::bigint[], m.id)] = 1 AND EXISTS (SELECT 1 FROM xta_report_record r
			WHERE r.message = m.id AND r.level = 'warning') THEN 2 ELSE ($2::int[])[array_position($1::bigint[], m.id)] END
			WHERE m.id = ANY($1) AND m.box = 'outbox'`, pr.ids, pr.statuses)
		if err := records.insert(ctx, b, peerTenant); err != nil {
			return nil, err
		}
	}
	if err := db.EnterTenant(ctx, b, readerTenant); err != nil {
		return nil, err
	}
	if err := tx.SendBatch(ctx, &b.Batch).Close(); err != nil {
		return nil, fmt.Errorf("msgbox: settle messages: %w", err)
	}
	return settled, nil
}

// Reopen puts a settled message back for its consumer (an operator retries
// a dead letter): its box row is open again and the author's report open,
// with a record saying why. The message is an inbox row of the reader, or
// an outbox row whose forwarding failed (the report is its own). tx must
// be in the tenant of that row and is left there. It reports false when
// the message is not settled or its content is gone.
func (s *Store) Reopen(ctx context.Context, tx pgx.Tx, readerTenant string, inbox int64, reason string) (bool, error) {
	var peerTenant *string
	var peerID *int64
	err := tx.QueryRow(ctx, `UPDATE xta_message SET closed_at = NULL
		WHERE id = $1 AND box = 'inbox' AND closed_at IS NOT NULL AND EXISTS (SELECT 1 FROM xta_part p WHERE p.message = $1)
		RETURNING peer_tenant, peer_id`, inbox).Scan(&peerTenant, &peerID)
	if errors.Is(err, pgx.ErrNoRows) {
		return s.reopenOutbox(ctx, tx, readerTenant, inbox, reason)
	}
	if err != nil {
		return false, fmt.Errorf("msgbox: reopen message %d: %w", inbox, err)
	}
	if peerTenant == nil || peerID == nil {
		return true, nil
	}
	keys, err := s.keysFor(ctx, *peerTenant)
	if err != nil {
		return false, err
	}
	if err := db.EnterTenant(ctx, tx, *peerTenant); err != nil {
		return false, err
	}
	if _, err := tx.Exec(ctx, `UPDATE xta_message SET status = $2 WHERE id = $1 AND box = 'outbox'`, *peerID, StatusOpen); err != nil {
		return false, fmt.Errorf("msgbox: reopen message %d: %w", inbox, err)
	}
	if err := addRecords(ctx, tx, keys[*peerTenant], *peerID, Record{s.now(), "info", RecordRetried, reason}); err != nil {
		return false, err
	}
	return true, db.EnterTenant(ctx, tx, readerTenant)
}

// Discard deletes a settled message's content (an operator discards its
// dead letter); the author's report keeps its red status and gets a record
// saying why. The message is an inbox row or a failed forwarding's outbox
// row, as for Reopen; tx must be in its tenant and is left there.
func (s *Store) Discard(ctx context.Context, tx pgx.Tx, readerTenant string, inbox int64, reason string) error {
	var box string
	var peerTenant *string
	var peerID *int64
	err := tx.QueryRow(ctx, `SELECT box, peer_tenant, peer_id FROM xta_message WHERE id = $1`, inbox).Scan(&box, &peerTenant, &peerID)
	if err != nil {
		return fmt.Errorf("msgbox: discard message %d: %w", inbox, err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM xta_part WHERE message = $1`, inbox); err != nil {
		return fmt.Errorf("msgbox: discard message %d: %w", inbox, err)
	}
	if box == "outbox" {
		peerTenant, peerID = &readerTenant, &inbox
	}
	if peerTenant == nil || peerID == nil {
		return nil
	}
	keys, err := s.keysFor(ctx, *peerTenant)
	if err != nil {
		return err
	}
	if err := db.EnterTenant(ctx, tx, *peerTenant); err != nil {
		return err
	}
	if err := addRecords(ctx, tx, keys[*peerTenant], *peerID, Record{s.now(), "error", RecordDiscarded, reason}); err != nil {
		return err
	}
	return db.EnterTenant(ctx, tx, readerTenant)
}

// reopenOutbox reopens an outbox message whose forwarding failed (red, not
// cancelled, its content kept), with a record saying why.
func (s *Store) reopenOutbox(ctx context.Context, tx pgx.Tx, tenantID string, outbox int64, reason string) (bool, error) {
	tag, err := tx.Exec(ctx, `UPDATE xta_message SET status = $2 WHERE id = $1 AND box = 'outbox' AND status = $3 AND cancelled_at IS NULL
		AND EXISTS (SELECT 1 FROM xta_part p WHERE p.message = $1)`, outbox, StatusOpen, StatusRed)
	if err != nil {
		return false, fmt.Errorf("msgbox: reopen message %d: %w", outbox, err)
	}
	if tag.RowsAffected() == 0 {
		return false, nil
	}
	key, err := s.keyring.Current(ctx, s.pool, tenantID)
	if err != nil {
		return false, err
	}
	return true, addRecords(ctx, tx, key, outbox, Record{s.now(), "info", RecordRetried, reason})
}
