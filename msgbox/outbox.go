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
		rows, err := tx.Query(ctx, `SELECT at, level, code, reason, key_version FROM xta_report_record WHERE message = $1 ORDER BY id`, m.id)
		if err != nil {
			return fmt.Errorf("msgbox: load report: %w", err)
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
			return fmt.Errorf("msgbox: load report: %w", err)
		}
		for _, rec := range all {
			reason, err := s.keyring.OpenOrPlain(ctx, tx, tenantID, rec.version, recordAAD(tenantID, m.id), rec.reason)
			if err != nil {
				return fmt.Errorf("msgbox: report of %s: %w", messageID, err)
			}
			rec.r.Reason = string(reason)
			m.Records = append(m.Records, rec.r)
		}
		return nil
	})
	return m, err
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
