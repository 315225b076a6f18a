package msgbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parzelle/parzelle/db"
)

// Outbox is the author's view of a sent message: what its transport report
// shows.
type Outbox struct {
	Metadata                                         string
	Status                                           int
	Sent                                             time.Time
	NotBefore, Delivered, Fetched, Closed, Cancelled *time.Time
	Records                                          []Record

	id         int64
	peerTenant *string
	peerID     *int64
}

func loadOutbox(ctx context.Context, tx pgx.Tx, account, messageID string, lock bool) (*Outbox, error) {
	q := `SELECT id, metadata, status, sent_at, not_before, delivered_at, fetched_at, closed_at, cancelled_at, peer_tenant, peer_id
		FROM xta_message WHERE box = 'outbox' AND account = $1 AND message_id = $2`
	if lock {
		q += ` FOR UPDATE`
	}
	m := &Outbox{}
	err := tx.QueryRow(ctx, q, account, messageID).Scan(&m.id, &m.Metadata, &m.Status, &m.Sent, &m.NotBefore, &m.Delivered, &m.Fetched, &m.Closed, &m.Cancelled, &m.peerTenant, &m.peerID)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, refuse(KindNoMessage, "the account %s sent no message %q", account, messageID)
	}
	if err != nil {
		return nil, fmt.Errorf("msgbox: load message: %w", err)
	}
	return m, nil
}

// Report returns a message the account (of the tenant) sent, with its
// transport report's records in their order; a message it did not send is
// an *Error of KindNoMessage.
func (s *Store) Report(ctx context.Context, tenantID, account, messageID string) (*Outbox, error) {
	var m *Outbox
	err := db.InTenant(ctx, s.pool, tenantID, func(tx pgx.Tx) error {
		var err error
		if m, err = loadOutbox(ctx, tx, account, messageID, false); err != nil {
			return err
		}
		m.Records, err = s.loadRecords(ctx, tx, tenantID, m.id, true)
		if err != nil {
			return fmt.Errorf("msgbox: report of %s: %w", messageID, err)
		}
		return nil
	})
	return m, err
}

// loadRecords reads a message's report records in their order, with their
// reasons opened if open is set.
func (s *Store) loadRecords(ctx context.Context, tx pgx.Tx, tenantID string, message int64, open bool) ([]Record, error) {
	rows, err := tx.Query(ctx, `SELECT at, level, code, reason, key_version FROM xta_report_record WHERE message = $1 ORDER BY id`, message)
	if err != nil {
		return nil, err
	}
	type sealed struct {
		r       Record
		reason  []byte
		version int
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (sealed, error) {
		var rec sealed
		err := r.Scan(&rec.r.At, &rec.r.Level, &rec.r.Code, &rec.reason, &rec.version)
		return rec, err
	})
	if err != nil {
		return nil, err
	}
	out := make([]Record, len(all))
	for i, rec := range all {
		out[i] = rec.r
		if open {
			reason, err := s.keyring.OpenOrPlain(ctx, tx, tenantID, rec.version, recordAAD(tenantID, message), rec.reason)
			if err != nil {
				return nil, err
			}
			out[i].Reason = string(reason)
		}
	}
	return out, nil
}

// Traced is a message as a tenant's boxes hold it: its routing metadata,
// times and report records (codes and times; their texts stay sealed).
type Traced struct {
	Box, Account, Author, Reader, MessageType string
	Size                                      int64
	Status                                    int
	Sent                                      time.Time
	Delivered, Fetched, Closed, Cancelled     *time.Time
	Records                                   []Record
}

// Trace returns the rows of the tenant's boxes that hold the message (its
// author's outbox row, its reader's inbox row while stored), outbox first.
func (s *Store) Trace(ctx context.Context, tenantID, messageID string) ([]Traced, error) {
	var out []Traced
	err := db.InTenant(ctx, s.pool, tenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, box, account, author, reader, message_type, content_size, status, sent_at, delivered_at, fetched_at, closed_at, cancelled_at
			FROM xta_message WHERE tenant_id = $1 AND message_id = $2 ORDER BY box DESC, id`, tenantID, messageID)
		if err != nil {
			return err
		}
		var ids []int64
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Traced, error) {
			var t Traced
			var id int64
			err := r.Scan(&id, &t.Box, &t.Account, &t.Author, &t.Reader, &t.MessageType, &t.Size, &t.Status, &t.Sent, &t.Delivered, &t.Fetched, &t.Closed, &t.Cancelled)
			ids = append(ids, id)
			return t, err
		})
		if err != nil {
			return err
		}
		for i, id := range ids {
			if out[i].Records, err = s.loadRecords(ctx, tx, tenantID, id, false); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("msgbox: trace %s in %s: %w", messageID, tenantID, err)
	}
	return out, nil
}

// Cancel withdraws a message whose NotBefore has not come yet: its report
// turns red and the reader never sees it. A message sent without
// NotBefore, or whose NotBefore passed, is an *Error of KindNotBeforeUnset
// or KindNotBeforePassed.
func (s *Store) Cancel(ctx context.Context, tenantID, account, messageID string) error {
	keys, err := s.keysFor(ctx, tenantID)
	if err != nil {
		return err
	}
	return db.InTenant(ctx, s.pool, tenantID, func(tx pgx.Tx) error {
		m, err := loadOutbox(ctx, tx, account, messageID, true)
		if err != nil {
			return err
		}
		now := s.now()
		switch {
		case m.Cancelled != nil:
			return nil
		case m.NotBefore == nil:
			return refuse(KindNotBeforeUnset, "the message %q was sent without NotBefore and is delivered at once", messageID)
		case !m.NotBefore.After(now) || m.Delivered != nil:
			return refuse(KindNotBeforePassed, "NotBefore %s of message %q has passed", m.NotBefore.UTC().Format("2006-01-02T15:04:05.000Z"), messageID)
		}
		if _, err := tx.Exec(ctx, `UPDATE xta_message SET cancelled_at = $2, status = $3 WHERE id = $1`, m.id, now, StatusRed); err != nil {
			return fmt.Errorf("msgbox: cancel: %w", err)
		}
		if err := addRecords(ctx, tx, keys[tenantID], m.id, Record{now, "error", RecordCancelled, "Transportauftrag vom Absender zurückgezogen (cancelMessage)"}); err != nil {
			return err
		}
		if m.peerTenant != nil && m.peerID != nil {
			if err := db.EnterTenant(ctx, tx, *m.peerTenant); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE xta_message SET cancelled_at = $2 WHERE id = $1 AND delivered_at IS NULL`, *m.peerID, now); err != nil {
				return fmt.Errorf("msgbox: cancel: %w", err)
			}
			if _, err := tx.Exec(ctx, `DELETE FROM xta_part WHERE message = $1`, *m.peerID); err != nil {
				return fmt.Errorf("msgbox: cancel: %w", err)
			}
		}
		return nil
	})
}
