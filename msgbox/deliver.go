package msgbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/parzelle/parzelle/db"
)

// DeliverArgs is the River job that delivers an accepted message that
// waited for its NotBefore into the reader's message box (a message due at
// once is there as it is stored).
type DeliverArgs struct {
	Tenant string `json:"tenant"`
	Outbox int64  `json:"outbox"`
}

// Kind names the job (as when XTA owned the boxes: jobs in flight during
// an upgrade keep running).
func (DeliverArgs) Kind() string { return "xta_deliver" }

// DeliverWorker delivers accepted messages.
type DeliverWorker struct {
	river.WorkerDefaults[DeliverArgs]
	Store *Store
}

// Work makes the message visible in the reader's box and turns the report
// green (yellow with warnings); a consumer's message (one scheduled for
// later) is handed over instead. It is idempotent: a delivered or
// cancelled message is left alone.
func (w *DeliverWorker) Work(ctx context.Context, job *river.Job[DeliverArgs]) error {
	s := w.Store
	keys, err := s.keysFor(ctx, job.Args.Tenant)
	if err != nil {
		return err
	}
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
			return river.JobCancel(fmt.Errorf("msgbox: outbox message %d of %s is gone", job.Args.Outbox, job.Args.Tenant))
		}
		if err != nil {
			return fmt.Errorf("msgbox: load message: %w", err)
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
			return fmt.Errorf("msgbox: deliver: %w", err)
		}
		// A scheduled message for a consumer is handed over now.
		consumed := s.consumer != nil && s.consumer.Claims(*readerTenant, reader)
		if consumed {
			if err := db.LeaveTenant(ctx, tx); err != nil {
				return err
			}
			d := Delivery{ReaderTenant: *readerTenant, Inbox: *inbox, Reader: reader, Author: author, MessageID: messageID, MessageType: messageType}
			if err := s.consumer.Consume(ctx, tx, []Delivery{d}); err != nil {
				return fmt.Errorf("msgbox: hand over to the consumer: %w", err)
			}
		}
		if err := db.EnterTenant(ctx, tx, job.Args.Tenant); err != nil {
			return err
		}
		status := StatusGreen
		if warnings > 0 {
			status = StatusYellow
		}
		note := Record{now, "info", RecordDelivered, "Nachricht in das Postfach von " + reader + " zugestellt"}
		if consumed {
			// The report turns green or red once the consumer settles
			// the message.
			status = StatusOpen
			note.Reason = "Nachricht an " + reader + " übergeben; die Verarbeitung steht aus"
		}
		if _, err := tx.Exec(ctx, `UPDATE xta_message SET delivered_at = $2, status = $3 WHERE id = $1`, job.Args.Outbox, now, status); err != nil {
			return fmt.Errorf("msgbox: deliver: %w", err)
		}
		return addRecords(ctx, tx, keys[job.Args.Tenant], job.Args.Outbox, note)
	})
}
