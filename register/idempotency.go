package register

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// idempotencyTTL is how long a write's idempotency key is remembered.
const idempotencyTTL = 24 * time.Hour

// replay looks up the idempotency key: ok is true when an earlier write
// with the same key and request answered already, and rec is that write's
// record (for a delete, empty). The lookup locks the key, so a concurrent
// write with the same key waits for this one and then replays it.
func (s *Store) replay(ctx context.Context, o *op, idem Idempotency, operation string) (rec Record, ok bool, err error) {
	if idem.Key == "" {
		return Record{}, false, nil
	}
	if len(idem.Key) > 255 {
		return Record{}, false, refuse(KindInvalid, "the idempotency key is longer than 255 characters")
	}
	if _, err := o.tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1 || ' ' || $2, 0))`, o.tenant, idem.Key); err != nil {
		return Record{}, false, fmt.Errorf("register: idempotency key: %w", err)
	}
	var hash []byte
	var prevOp, id string
	var revision int
	err = o.tx.QueryRow(ctx, `SELECT request_hash, operation, record_id::text, revision FROM register_idempotency
		WHERE tenant_id = $1 AND key = $2 AND created_at > now() - make_interval(secs => $3)`, o.tenant, idem.Key, idempotencyTTL.Seconds()).Scan(&hash, &prevOp, &id, &revision)
	if errors.Is(err, pgx.ErrNoRows) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, fmt.Errorf("register: idempotency key: %w", err)
	}
	if prevOp != operation || !bytes.Equal(hash, idem.RequestHash) {
		return Record{}, false, refuse(KindConflict, "idempotency key %q was used for another request (%s)", idem.Key, prevOp)
	}
	o.recordID = id
	o.detail = fmt.Sprintf("%s replayed for idempotency key", operation)
	if operation == "delete" {
		return Record{Replayed: true}, true, nil
	}
	rows, err := s.revision(ctx, o, id, revision)
	if err != nil {
		return Record{}, false, err
	}
	rec = s.view(o, id, revision, rows, s.today())
	rec.Replayed = true
	return rec, true, nil
}

// revision reads the rows of the record that were current right after the
// given revision was written.
func (s *Store) revision(ctx context.Context, o *op, id string, revision int) ([]*row, error) {
	var at time.Time
	err := o.tx.QueryRow(ctx, `SELECT max(recorded_at) FROM register_version WHERE tenant_id = $1 AND record_id = $2 AND revision <= $3`,
		o.tenant, id, revision).Scan(&at)
	if err != nil {
		return nil, fmt.Errorf("register: revision %d of %s: %w", revision, id, err)
	}
	rows, err := s.rows(ctx, o, id, at, "")
	if err == nil && len(rows) == 0 {
		err = refuse(KindGone, "record %s has no versions at revision %d", id, revision)
	}
	return rows, err
}

// queueRemember queues storing the idempotency key of a write into the
// write's batch, so that it commits with the write.
func (s *Store) queueRemember(b *pgx.Batch, o *op, idem Idempotency, operation, id string, revision int) {
	if idem.Key == "" {
		return
	}
	b.Queue(`INSERT INTO register_idempotency (tenant_id, key, request_hash, operation, record_id, revision)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (tenant_id, key) DO UPDATE SET request_hash = $3, operation = $4, record_id = $5, revision = $6, created_at = now()`,
		o.tenant, idem.Key, idem.RequestHash, operation, id, revision)
}
