package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/msgbox"
	"github.com/parzelle/parzelle/register"
	"github.com/parzelle/parzelle/sealing"
	"github.com/parzelle/parzelle/tenant"
)

// DeadLetter is a register inbox message the pipeline could not apply.
type DeadLetter struct {
	ID     int64  `json:"id"`
	Tenant string `json:"tenant"`
	// Inbox is the message's row in the tenant's message box; 0 once the
	// message was applied (its row is gone).
	Inbox       int64  `json:"inbox,omitempty"`
	MessageID   string `json:"messageId"`
	Author      string `json:"author"`
	Reader      string `json:"reader"`
	MessageType string `json:"messageType"`
	Step        string `json:"step"`
	// Cause is one of the Cause codes: why, without personal data.
	Cause      string     `json:"cause"`
	Reason     string     `json:"reason"`
	Problems   []string   `json:"problems,omitempty"`
	Attempts   int        `json:"attempts"`
	CreatedAt  time.Time  `json:"createdAt"`
	ResolvedAt *time.Time `json:"resolvedAt,omitempty"`
	Resolution string     `json:"resolution,omitempty"`
	// History holds every failure of the message, oldest first (Show
	// fills it).
	History []Attempt `json:"history,omitempty"`
}

// Attempt is one failure of a dead letter's message: the first, and one
// after each retry that failed again.
type Attempt struct {
	At       time.Time `json:"at"`
	Step     string    `json:"step"`
	Cause    string    `json:"cause"`
	Attempts int       `json:"attempts"`
	Reason   string    `json:"reason"`
	Problems []string  `json:"problems,omitempty"`
}

// DeadLetters are the operations on a tenant's dead letters; every one is
// confined to the tenant and those that change something are audited in
// its audit log.
type DeadLetters struct {
	Pool *pgxpool.Pool
	// Box holds the dead letters' messages.
	Box *msgbox.Store
	// Keyring opens the dead letters' sealed reasons.
	Keyring *sealing.Keyring
	// Jobs inserts the pipeline job of a retried message (an insert-only
	// client will do: the node's workers run it).
	Jobs *river.Client[pgx.Tx]
	// Retriers enqueue the work of a retried message of a step outside the
	// pipeline (StepForward, StepSend, StepCollect), in tx, which is in no
	// tenant.
	Retriers map[string]func(ctx context.Context, tx pgx.Tx, tenantID string, d DeadLetter) error
}

// recordDeadLetter records a dead letter with its attempt. A retried
// message that fails again reopens its dead letter: one identifier through
// every retry, each failure an attempt. Arguments: tenant, inbox,
// message id, author, reader, message type, step, sealed reason, sealed
// problems, key version, attempts, cause.
const recordDeadLetter = `WITH reopened AS (
		UPDATE pipeline_dead_letter SET resolved_at = NULL, resolution = NULL, step = $7, cause = $12, reason = $8, problems = $9,
			key_version = $10, attempts = attempts + $11
		WHERE id = (SELECT max(id) FROM pipeline_dead_letter WHERE tenant_id = $1 AND inbox = $2 AND (resolved_at IS NULL OR resolution = 'retried'))
		RETURNING id),
	inserted AS (
		INSERT INTO pipeline_dead_letter (tenant_id, inbox, message_id, author, reader, message_type, step, cause, reason, problems, key_version, attempts)
		SELECT $1, $2, $3, $4, $5, $6, $7, $12, $8, $9, $10, $11 WHERE NOT EXISTS (SELECT FROM reopened)
		RETURNING id)
	INSERT INTO pipeline_dead_letter_attempt (tenant_id, dead_letter, message_id, step, cause, attempts, key_version, reason, problems)
	SELECT $1, id, $3, $7, $12, $11, $10, $8, $9 FROM (SELECT id FROM reopened UNION ALL SELECT id FROM inserted) l`

// Failure is a message that became a dead letter outside the register
// pipeline (an OSCI delivery its passive recipient or the reader's
// intermediary did not accept).
type Failure struct {
	Inbox                                  int64
	MessageID, Author, Reader, MessageType string
	// Step is where it failed, Cause one of the Cause codes; Reason the
	// text an operator reads (sealed).
	Step, Cause, Reason string
	Attempts            int
}

// RecordDeadLetter records a failure as a dead letter of the tenant in tx
// (in the tenant), its reason sealed under key; a message retried before
// reopens its dead letter.
func RecordDeadLetter(ctx context.Context, tx pgx.Tx, key *sealing.DataKey, tenantID string, f Failure) error {
	reason, problems, err := sealDeadLetter(key, f.MessageID, f.Reason, nil)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, recordDeadLetter, tenantID, f.Inbox, f.MessageID, f.Author, f.Reader, f.MessageType, f.Step, reason, problems, key.Version, f.Attempts, f.Cause); err != nil {
		return fmt.Errorf("jobs: record dead letter of %s: %w", f.MessageID, err)
	}
	return nil
}

// ErrNoDeadLetter is returned for a dead letter the tenant does not have,
// or that is resolved already.
var ErrNoDeadLetter = errors.New("jobs: no such open dead letter")

const deadLetterColumns = `id, tenant_id, coalesce(inbox, 0), message_id, author, reader, message_type, step, cause, reason, problems, key_version, attempts, created_at, resolved_at, coalesce(resolution, '')`

// deadLetterAAD binds a dead letter's sealed reason or problems to its
// tenant and message.
func deadLetterAAD(tenantID, messageID, field string) []byte {
	return []byte("parzelle/dead-letter/v1\x00" + tenantID + "\x00" + messageID + "\x00" + field)
}

// sealedLetter is a dead letter as stored, its reason and problems sealed.
type sealedLetter struct {
	DeadLetter
	reason, problems []byte
	version          int
}

func scanSealed(row pgx.Row) (sealedLetter, error) {
	var l sealedLetter
	d := &l.DeadLetter
	err := row.Scan(&d.ID, &d.Tenant, &d.Inbox, &d.MessageID, &d.Author, &d.Reader, &d.MessageType, &d.Step, &d.Cause, &l.reason, &l.problems, &l.version,
		&d.Attempts, &d.CreatedAt, &d.ResolvedAt, &d.Resolution)
	return l, err
}

// open opens the reason and problems in tx (of the dead letter's tenant).
func (l sealedLetter) open(ctx context.Context, tx pgx.Tx, k *sealing.Keyring) (DeadLetter, error) {
	d := l.DeadLetter
	reason, err := k.OpenOrPlain(ctx, tx, d.Tenant, l.version, deadLetterAAD(d.Tenant, d.MessageID, "reason"), l.reason)
	if err != nil {
		return d, fmt.Errorf("dead letter %d: %w", d.ID, err)
	}
	problems, err := k.OpenOrPlain(ctx, tx, d.Tenant, l.version, deadLetterAAD(d.Tenant, d.MessageID, "problems"), l.problems)
	if err != nil {
		return d, fmt.Errorf("dead letter %d: %w", d.ID, err)
	}
	d.Reason = string(reason)
	return d, json.Unmarshal(problems, &d.Problems)
}

// scanDeadLetter reads one dead letter in tx and opens it.
func scanDeadLetter(ctx context.Context, tx pgx.Tx, k *sealing.Keyring, row pgx.Row) (DeadLetter, error) {
	l, err := scanSealed(row)
	if err != nil {
		return l.DeadLetter, err
	}
	return l.open(ctx, tx, k)
}

// sealDeadLetter seals a dead letter's reason and problems under the key.
func sealDeadLetter(key *sealing.DataKey, messageID, reason string, problems []string) (sealedReason, sealedProblems []byte, err error) {
	p, err := json.Marshal(append([]string{}, problems...))
	if err != nil {
		return nil, nil, err
	}
	if sealedReason, err = key.Seal(deadLetterAAD(key.Tenant, messageID, "reason"), []byte(reason)); err != nil {
		return nil, nil, err
	}
	sealedProblems, err = key.Seal(deadLetterAAD(key.Tenant, messageID, "problems"), p)
	return sealedReason, sealedProblems, err
}

// DeadLetterTables are the dead letters' sealed tables (the letters and
// their attempts), for key rotation and for sealing what an earlier
// version stored in plaintext.
func DeadLetterTables() []sealing.Table {
	return []sealing.Table{
		{Name: "dead letters", SQL: "pipeline_dead_letter", Reseal: resealer("pipeline_dead_letter")},
		{Name: "dead letter attempts", SQL: "pipeline_dead_letter_attempt", Reseal: resealer("pipeline_dead_letter_attempt")},
	}
}

// resealer re-encrypts the reasons and problems of a table of dead letters
// or their attempts.
func resealer(table string) func(ctx context.Context, tx pgx.Tx, k *sealing.Keyring, tenant string, version, limit int) (int, error) {
	return sealing.Rows[letterRow]{
		Select: `SELECT id, message_id, key_version, reason, problems FROM ` + table + `
			WHERE tenant_id = $1 AND key_version < $2 LIMIT $3 FOR UPDATE SKIP LOCKED`,
		Fields: func(tenant string, l letterRow) (int, []sealing.Field) {
			return l.Key, []sealing.Field{
				{AAD: deadLetterAAD(tenant, l.MessageID, "reason"), Sealed: l.Reason},
				{AAD: deadLetterAAD(tenant, l.MessageID, "problems"), Sealed: l.Problems},
			}
		},
		Update: func(b *pgx.Batch, _ string, l letterRow, version int, sealed [][]byte) {
			b.Queue(`UPDATE `+table+` SET key_version = $2, reason = $3, problems = $4 WHERE id = $1`, l.ID, version, sealed[0], sealed[1])
		},
		Name: func(l letterRow) string { return fmt.Sprintf("%s %d", table, l.ID) },
	}.Reseal
}

// letterRow is a dead letter or attempt as key rotation reads it.
type letterRow struct {
	ID               int64
	MessageID        string
	Key              int
	Reason, Problems []byte
}

// List returns the tenant's dead letters, newest first: the open ones, or
// with all also the resolved.
func (o *DeadLetters) List(ctx context.Context, tenantID string, all bool) ([]DeadLetter, error) {
	var out []DeadLetter
	err := db.InTenant(ctx, o.Pool, tenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+deadLetterColumns+` FROM pipeline_dead_letter
			WHERE tenant_id = $1 AND ($2 OR resolved_at IS NULL) ORDER BY id DESC LIMIT 1000`, tenantID, all)
		if err != nil {
			return err
		}
		defer rows.Close()
		// The rows first, then their opening (which may read a key).
		letters, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (sealedLetter, error) { return scanSealed(r) })
		if err != nil {
			return err
		}
		for _, l := range letters {
			d, err := l.open(ctx, tx, o.Keyring)
			if err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: dead letters of %s: %w", tenantID, err)
	}
	return out, nil
}

// Show returns one of the tenant's dead letters.
func (o *DeadLetters) Show(ctx context.Context, tenantID string, id int64) (DeadLetter, error) {
	var d DeadLetter
	err := db.InTenant(ctx, o.Pool, tenantID, func(tx pgx.Tx) error {
		var err error
		d, err = scanDeadLetter(ctx, tx, o.Keyring, tx.QueryRow(ctx, `SELECT `+deadLetterColumns+` FROM pipeline_dead_letter WHERE tenant_id = $1 AND id = $2`, tenantID, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNoDeadLetter
		}
		if err != nil {
			return err
		}
		d.History, err = o.history(ctx, tx, d)
		return err
	})
	if err != nil {
		return d, fmt.Errorf("jobs: dead letter %d of %s: %w", id, tenantID, err)
	}
	return d, nil
}

// history reads and opens the dead letter's attempts.
func (o *DeadLetters) history(ctx context.Context, tx pgx.Tx, d DeadLetter) ([]Attempt, error) {
	rows, err := tx.Query(ctx, `SELECT at, step, cause, attempts, key_version, reason, problems FROM pipeline_dead_letter_attempt
		WHERE dead_letter = $1 ORDER BY id`, d.ID)
	if err != nil {
		return nil, err
	}
	type attemptRow struct {
		At               time.Time
		Step, Cause      string
		Attempts, Key    int
		Reason, Problems []byte
	}
	sealed, err := pgx.CollectRows(rows, pgx.RowToStructByPos[attemptRow])
	if err != nil {
		return nil, err
	}
	out := make([]Attempt, len(sealed))
	for i, r := range sealed {
		out[i] = Attempt{At: r.At, Step: r.Step, Cause: r.Cause, Attempts: r.Attempts}
		l := sealedLetter{DeadLetter: DeadLetter{ID: d.ID, Tenant: d.Tenant, MessageID: d.MessageID}, reason: r.Reason, problems: r.Problems, version: r.Key}
		opened, err := l.open(ctx, tx, o.Keyring)
		if err != nil {
			return nil, err
		}
		out[i].Reason, out[i].Problems = opened.Reason, opened.Problems
	}
	return out, nil
}

// Retry sends an open dead letter's message through the pipeline again,
// with the tenant's current mapping specs (or, for a step outside the
// pipeline, to its retrier): the message is reopened, its author's report
// open again, and its job enqueued, in one transaction.
func (o *DeadLetters) Retry(ctx context.Context, a tenant.Actor, tenantID string, id int64) error {
	return o.resolve(ctx, a, tenantID, id, "retried", func(tx pgx.Tx, d DeadLetter) error {
		ok, err := o.Box.Reopen(ctx, tx, tenantID, d.Inbox, fmt.Sprintf("Erneute Einarbeitung durch %s angestoßen (Dead Letter %d)", a.Subject, d.ID))
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: the message of dead letter %d is no longer stored", ErrNoDeadLetter, d.ID)
		}
		if err := db.LeaveTenant(ctx, tx); err != nil {
			return err
		}
		if retry, ok := o.Retriers[d.Step]; ok {
			if err := retry(ctx, tx, tenantID, d); err != nil {
				return fmt.Errorf("enqueue: %w", err)
			}
		} else if _, err := o.Jobs.InsertTx(ctx, tx, PipelineArgs{Tenant: tenantID, Messages: []PipelineMessage{{Inbox: d.Inbox}}}, nil); err != nil {
			return fmt.Errorf("enqueue: %w", err)
		}
		return db.EnterTenant(ctx, tx, tenantID)
	})
}

// Discard gives up an open dead letter: the message's content is deleted
// and its author's report stays red, with the reason.
func (o *DeadLetters) Discard(ctx context.Context, a tenant.Actor, tenantID string, id int64, reason string) error {
	if reason == "" {
		return errors.New("jobs: discarding a dead letter needs a reason")
	}
	return o.resolve(ctx, a, tenantID, id, "discarded", func(tx pgx.Tx, d DeadLetter) error {
		return o.Box.Discard(ctx, tx, tenantID, d.Inbox, fmt.Sprintf("Verworfen durch %s: %s", a.Subject, reason))
	})
}

// resolve marks an open dead letter resolved, runs fn and audits it, in one
// transaction of the tenant.
func (o *DeadLetters) resolve(ctx context.Context, a tenant.Actor, tenantID string, id int64, resolution string, fn func(pgx.Tx, DeadLetter) error) error {
	err := db.InTenant(ctx, o.Pool, tenantID, func(tx pgx.Tx) error {
		d, err := scanDeadLetter(ctx, tx, o.Keyring, tx.QueryRow(ctx, `UPDATE pipeline_dead_letter SET resolved_at = now(), resolution = $3
			WHERE tenant_id = $1 AND id = $2 AND resolved_at IS NULL RETURNING `+deadLetterColumns, tenantID, id, resolution))
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNoDeadLetter
		}
		if err != nil {
			return err
		}
		if err := fn(tx, d); err != nil {
			return err
		}
		return register.AuditTx(ctx, tx, a, tenantID, "dead-letter "+resolution,
			fmt.Sprintf("dead letter %d (message %s from %s, step %s) %s", d.ID, d.MessageID, d.Author, d.Step, resolution))
	})
	if err != nil {
		return fmt.Errorf("jobs: %s dead letter %d of %s: %w", resolution, id, tenantID, err)
	}
	return nil
}

// Expire deletes the tenants' dead letters resolved before before, with
// their attempts and the sealed error texts that may quote the message,
// and audits in each tenant how many went. It returns how many.
func (o *DeadLetters) Expire(ctx context.Context, tenantIDs []string, before time.Time) (int64, error) {
	var total int64
	for _, t := range tenantIDs {
		err := db.InTenant(ctx, o.Pool, t, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, `DELETE FROM pipeline_dead_letter WHERE tenant_id = $1 AND resolved_at < $2`, t, before)
			if err != nil || tag.RowsAffected() == 0 {
				return err
			}
			total += tag.RowsAffected()
			return register.AuditTx(ctx, tx, register.RetentionActor(t), t, "dead-letter expired",
				fmt.Sprintf("%d dead letters resolved before %s deleted", tag.RowsAffected(), before.UTC().Format(time.RFC3339)))
		})
		if err != nil {
			return total, fmt.Errorf("jobs: expire dead letters of %s: %w", t, err)
		}
	}
	return total, nil
}
