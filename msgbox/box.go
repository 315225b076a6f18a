package msgbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parzelle/parzelle/db"
)

// Selector says which entries of a box a request means.
type Selector struct {
	IDs      []string   `json:"ids,omitempty"`
	From     *time.Time `json:"from,omitempty"`
	To       *time.Time `json:"to,omitempty"`
	NewEntry bool       `json:"new,omitempty"`
}

// Entry is a message in a reader's box.
type Entry struct {
	// ID is the message's row: the position of a listing.
	ID                                            int64
	MessageID, Author, Metadata, BusinessScenario string
	Size                                          int64
	Sent, Delivered                               time.Time
	Fetched                                       *time.Time
	peerTenant                                    *string
	peerID                                        *int64
}

// List returns up to limit open entries of the account's box (of the
// tenant) after the row id after, and how many more match.
func (s *Store) List(ctx context.Context, tenantID, account string, sel Selector, after int64, limit int) ([]Entry, int64, error) {
	var out []Entry
	var pending int64
	err := db.InTenant(ctx, s.pool, tenantID, func(tx pgx.Tx) error {
		var err error
		out, pending, err = listBox(ctx, tx, account, sel, after, limit)
		return err
	})
	return out, pending, err
}

func listBox(ctx context.Context, tx pgx.Tx, account string, sel Selector, after int64, limit int) ([]Entry, int64, error) {
	rows, err := tx.Query(ctx, `SELECT id, message_id, author, metadata, business_scenario, content_size, sent_at, delivered_at, fetched_at, peer_tenant, peer_id, count(*) OVER ()
		FROM xta_message
		WHERE box = 'inbox' AND account = $1 AND delivered_at IS NOT NULL AND closed_at IS NULL AND id > $2
		  AND ($3::text[] IS NULL OR message_id = ANY($3))
		  AND ($4::timestamptz IS NULL OR delivered_at >= $4) AND ($5::timestamptz IS NULL OR delivered_at <= $5)
		  AND (NOT $6 OR fetched_at IS NULL)
		ORDER BY id LIMIT $7`, account, after, sel.IDs, sel.From, sel.To, sel.NewEntry, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("msgbox: list box: %w", err)
	}
	defer rows.Close()
	var out []Entry
	var total int64
	for rows.Next() {
		var e Entry
		if err := rows.Scan(&e.ID, &e.MessageID, &e.Author, &e.Metadata, &e.BusinessScenario, &e.Size, &e.Sent, &e.Delivered, &e.Fetched, &e.peerTenant, &e.peerID, &total); err != nil {
			return nil, 0, fmt.Errorf("msgbox: list box: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("msgbox: list box: %w", err)
	}
	return out, total - int64(len(out)), nil
}

// StoredPart is a content part as stored.
type StoredPart struct {
	No                                                      int
	Attachment                                              bool
	ContentType, Encoding, Filename, Ref, Description, Lang string
	Size                                                    int64
}

// Fetched is the message Fetch hands its writer: the entry, how many more
// match, its parts, and Content to stream a part's bytes to a writer
// (opened chunk by chunk, never whole in memory).
type Fetched struct {
	Entry   Entry
	Pending int64
	Parts   []StoredPart
	Content func(part int, w io.Writer) error
}

// Fetch gives write the first open entry of the account's box after the
// row id after, within the transaction that marks it fetched (the author's
// report says so); received are closed first (an acknowledgement that
// stands even when no message follows). No entry is an *Error of
// KindNoMessage.
func (s *Store) Fetch(ctx context.Context, tenantID, account string, sel Selector, after int64, received []string, write func(Fetched) error) error {
	if len(received) > 0 {
		if err := s.Close(ctx, tenantID, account, received); err != nil {
			return err
		}
	}
	return db.InTenant(ctx, s.pool, tenantID, func(tx pgx.Tx) error {
		entries, pending, err := listBox(ctx, tx, account, sel, after, 1)
		if err != nil {
			return err
		}
		if len(entries) == 0 {
			if len(sel.IDs) > 0 {
				return refuse(KindNoMessage, "no open message %s in the box of %s", strings.Join(sel.IDs, ", "), account)
			}
			return refuse(KindNoMessage, "no further message in the box of %s", account)
		}
		e := entries[0]
		now := s.now()
		if e.Fetched == nil {
			e.Fetched = &now
			if _, err := tx.Exec(ctx, `UPDATE xta_message SET fetched_at = $2 WHERE id = $1`, e.ID, now); err != nil {
				return fmt.Errorf("msgbox: mark fetched: %w", err)
			}
			if err := s.peerRecord(ctx, tx, tenantID, e, `fetched_at = $2`, Record{now, "info", RecordFetched, "Nachricht von " + account + " abgeholt (noch nicht quittiert)"}); err != nil {
				return err
			}
		}
		parts, err := loadParts(ctx, tx, e.ID)
		if err != nil {
			return err
		}
		return write(Fetched{Entry: e, Pending: pending, Parts: parts, Content: func(part int, w io.Writer) error {
			return s.copyChunks(ctx, tx, tenantID, w, e.ID, part)
		}})
	})
}

// peerRecord adds a record to the report of the entry's outbox row (in the
// author's tenant) and sets one of its timestamps; it returns to the
// reader's tenant afterwards.
func (s *Store) peerRecord(ctx context.Context, tx pgx.Tx, tenantID string, e Entry, set string, r Record) error {
	if e.peerTenant == nil || e.peerID == nil {
		return nil
	}
	keys, err := s.keysFor(ctx, *e.peerTenant)
	if err != nil {
		return err
	}
	if err := db.EnterTenant(ctx, tx, *e.peerTenant); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `UPDATE xta_message SET `+set+` WHERE id = $1 AND box = 'outbox'`, *e.peerID, r.At); err != nil {
		return fmt.Errorf("msgbox: update report: %w", err)
	}
	if err := addRecords(ctx, tx, keys[*e.peerTenant], *e.peerID, r); err != nil {
		return err
	}
	return db.EnterTenant(ctx, tx, tenantID)
}

func loadParts(ctx context.Context, tx pgx.Tx, message int64) ([]StoredPart, error) {
	rows, err := tx.Query(ctx, `SELECT part, attachment, content_type, coalesce(encoding,''), coalesce(filename,''), coalesce(part_ref,''),
		coalesce(description,''), coalesce(lang,''), size FROM xta_part WHERE message = $1 ORDER BY part`, message)
	if err != nil {
		return nil, fmt.Errorf("msgbox: load parts: %w", err)
	}
	defer rows.Close()
	var out []StoredPart
	for rows.Next() {
		var p StoredPart
		if err := rows.Scan(&p.No, &p.Attachment, &p.ContentType, &p.Encoding, &p.Filename, &p.Ref, &p.Description, &p.Lang, &p.Size); err != nil {
			return nil, fmt.Errorf("msgbox: load parts: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// copyChunks writes a part's bytes, one chunk row at a time, opened with
// the tenant's data key. tx must be in the tenant.
func (s *Store) copyChunks(ctx context.Context, tx pgx.Tx, tenantID string, w io.Writer, message int64, partNo int) error {
	for seq := 0; ; seq++ {
		var data []byte
		var version int
		err := tx.QueryRow(ctx, `SELECT data, key_version FROM xta_chunk WHERE message = $1 AND part = $2 AND seq = $3`, message, partNo, seq).Scan(&data, &version)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("msgbox: read content: %w", err)
		}
		if data, err = s.keyring.OpenOrPlain(ctx, tx, tenantID, version, chunkAAD(tenantID, message, partNo, seq), data); err != nil {
			return fmt.Errorf("msgbox: content of message %d: %w", message, err)
		}
		if _, err := w.Write(data); err != nil {
			return err
		}
	}
}

// Close marks fetched messages received, tells their authors' reports,
// and deletes their content: once received, the node has no business
// keeping it. A message that is not open in the account's box is an
// *Error of KindNoMessage (and nothing is closed).
func (s *Store) Close(ctx context.Context, tenantID, account string, ids []string) error {
	return db.InTenant(ctx, s.pool, tenantID, func(tx pgx.Tx) error {
		now := s.now()
		for _, id := range ids {
			var e Entry
			err := tx.QueryRow(ctx, `UPDATE xta_message SET closed_at = $3 WHERE box = 'inbox' AND account = $1 AND message_id = $2
				AND delivered_at IS NOT NULL AND closed_at IS NULL RETURNING id, peer_tenant, peer_id`, account, id, now).Scan(&e.ID, &e.peerTenant, &e.peerID)
			if errors.Is(err, pgx.ErrNoRows) {
				return refuse(KindNoMessage, "no open message %q in the box of %s", id, account)
			}
			if err != nil {
				return fmt.Errorf("msgbox: close: %w", err)
			}
			if _, err := tx.Exec(ctx, `DELETE FROM xta_part WHERE message = $1`, e.ID); err != nil {
				return fmt.Errorf("msgbox: close: %w", err)
			}
			if err := s.peerRecord(ctx, tx, tenantID, e, `closed_at = $2`, Record{now, "info", RecordClosed, "Empfang durch " + account + " quittiert (close)"}); err != nil {
				return err
			}
		}
		return nil
	})
}
