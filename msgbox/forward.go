package msgbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/sealing"
)

// Forwarder takes over the messages whose reader no tenant of this node
// hosts for their transport (an OSCI sender), in the transaction that
// stores them (in no tenant): say by enqueuing their delivery there. The
// authors' reports stay open with FORWARDING_PENDING until it reports
// progress.
type Forwarder interface {
	Forward(ctx context.Context, tx pgx.Tx, fs []Forwarding) error
}

// Forwarding is a message to forward: its outbox row in the author's
// tenant, and when it may go (NotBefore).
type Forwarding struct {
	AuthorTenant      string
	Outbox            int64
	MessageID, Reader string
	NotBefore         *time.Time
}

// Outgoing is a message to forward as its author's outbox holds it: the
// routing metadata, the transport's description (XTA MessageMetaData),
// the parts, and Content to stream a part's bytes.
type Outgoing struct {
	MessageID, Author, Reader, Service, MessageType, Metadata string
	Status                                                    int
	Parts                                                     []StoredPart
	Content                                                   func(part int, w io.Writer) error
}

// ReadOutgoing gives fn the outbox message of the tenant, inside the
// transaction that reads it; a message that is gone is an *Error of
// KindNoMessage.
func (s *Store) ReadOutgoing(ctx context.Context, tenantID string, outbox int64, fn func(*Outgoing) error) error {
	return db.InTenant(ctx, s.pool, tenantID, func(tx pgx.Tx) error {
		m := &Outgoing{}
		err := tx.QueryRow(ctx, `SELECT message_id, author, reader, service, message_type, metadata, status FROM xta_message WHERE id = $1 AND box = 'outbox'`, outbox).
			Scan(&m.MessageID, &m.Author, &m.Reader, &m.Service, &m.MessageType, &m.Metadata, &m.Status)
		if errors.Is(err, pgx.ErrNoRows) {
			return refuse(KindNoMessage, "outbox message %d of %s is gone", outbox, tenantID)
		}
		if err != nil {
			return fmt.Errorf("msgbox: load outgoing message: %w", err)
		}
		if m.Parts, err = loadParts(ctx, tx, outbox); err != nil {
			return err
		}
		m.Content = func(part int, w io.Writer) error { return s.copyChunks(ctx, tx, tenantID, w, outbox, part) }
		return fn(m)
	})
}

// Progress is what a forwarder learnt of a message it forwards: a record
// for the author's report and, when set, its new status and the times it
// was delivered (to the reader's postbox elsewhere), fetched and
// received there.
type Progress struct {
	Record                     Record
	Status                     *int
	Delivered, Fetched, Closed *time.Time
}

// Forwarded records progress in the author's report of an outbox message.
func (s *Store) Forwarded(ctx context.Context, tenantID string, outbox int64, p Progress) error {
	key, err := s.keyring.Current(ctx, s.pool, tenantID)
	if err != nil {
		return err
	}
	return db.InTenant(ctx, s.pool, tenantID, func(tx pgx.Tx) error { return forwarded(ctx, tx, key, tenantID, outbox, p) })
}

// ForwardedTx is Forwarded in tx, which must be in the author's tenant.
func (s *Store) ForwardedTx(ctx context.Context, tx pgx.Tx, tenantID string, outbox int64, p Progress) error {
	key, err := s.keyring.Current(ctx, s.pool, tenantID)
	if err != nil {
		return err
	}
	return forwarded(ctx, tx, key, tenantID, outbox, p)
}

// forwarded records the progress in tx. A message delivered (green)
// loses its content: it is at the reader's intermediary now, and the node
// has no business keeping it.
func forwarded(ctx context.Context, tx pgx.Tx, key *sealing.DataKey, tenantID string, outbox int64, p Progress) error {
	tag, err := tx.Exec(ctx, `UPDATE xta_message SET status = coalesce($2, status), delivered_at = coalesce($3, delivered_at),
		fetched_at = coalesce($4, fetched_at), closed_at = coalesce($5, closed_at) WHERE id = $1 AND box = 'outbox'`,
		outbox, p.Status, p.Delivered, p.Fetched, p.Closed)
	if err != nil {
		return fmt.Errorf("msgbox: forwarding progress: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return refuse(KindNoMessage, "outbox message %d of %s is gone", outbox, tenantID)
	}
	if p.Status != nil && *p.Status == StatusGreen {
		if _, err := tx.Exec(ctx, `DELETE FROM xta_part WHERE message = $1`, outbox); err != nil {
			return fmt.Errorf("msgbox: forwarding progress: %w", err)
		}
	}
	return addRecords(ctx, tx, key, outbox, p.Record)
}
