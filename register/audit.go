package register

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/tenant"
)

// Audit outcomes.
const (
	OutcomeGranted = "granted"
	OutcomeDenied  = "denied"
	// OutcomeFailed is an authorized operation that did not succeed: no
	// such record, invalid input, a conflict.
	OutcomeFailed = "failed"
)

// AuditEntry is one entry of a tenant's audit log: who did what to which
// register data, when, for which purpose and on which legal basis, and
// whether it was granted. It holds no personal data of the subjects: a
// record appears by its id.
type AuditEntry struct {
	Tenant     string       `json:"tenant"`
	Seq        int64        `json:"seq"`
	At         time.Time    `json:"at"`
	Actor      tenant.Actor `json:"actor"`
	LegalBasis string       `json:"legalBasis,omitempty"`
	Operation  string       `json:"operation"`
	Register   string       `json:"register"`
	RecordID   string       `json:"recordId,omitempty"`
	Outcome    string       `json:"outcome"`
	Detail     string       `json:"detail,omitempty"`
	PrevHash   []byte       `json:"-"`
	Hash       []byte       `json:"-"`
}

// genesis is the previous hash of a tenant's first entry.
var genesis = make([]byte, sha256.Size)

// digest is the entry's hash: SHA-256 over a version tag, the previous
// entry's hash and every field, each length-prefixed so that no two
// different entries encode alike. The time is taken at PostgreSQL's
// microsecond precision, in UTC.
func (e *AuditEntry) digest() []byte {
	h := sha256.New()
	h.Write([]byte("parzelle/audit/v1"))
	h.Write(e.PrevHash)
	var n [8]byte
	field := func(s string) {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	field(e.Tenant)
	binary.BigEndian.PutUint64(n[:], uint64(e.Seq))
	h.Write(n[:])
	field(e.At.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano))
	for _, s := range []string{e.Actor.Kind, e.Actor.Subject, e.Actor.Tenant, e.Actor.Role, e.Actor.Purpose,
		e.LegalBasis, e.Operation, e.Register, e.RecordID, e.Outcome, e.Detail} {
		field(s)
	}
	return h.Sum(nil)
}

// appendAudit adds e to the end of its tenant's chain inside tx, which must
// be in the tenant (db.EnterTenant). Appends of one tenant serialize on the
// chain's head row until tx ends, so everything that can be done before is
// done before: also, if given, queues its statements that need the
// entry's seq and time into the batch that writes the entry. e gets its
// seq, time and hashes.
func appendAudit(ctx context.Context, tx pgx.Tx, e *AuditEntry, also func(*pgx.Batch)) error {
	var seq int64
	var prev []byte
	lock := func() error {
		return tx.QueryRow(ctx, `SELECT seq, hash, now() FROM audit_head WHERE tenant_id = $1 FOR UPDATE`, e.Tenant).Scan(&seq, &prev, &e.At)
	}
	err := lock()
	if err == pgx.ErrNoRows {
		if _, err = tx.Exec(ctx, `INSERT INTO audit_head (tenant_id, seq, hash) VALUES ($1, 0, $2) ON CONFLICT DO NOTHING`, e.Tenant, genesis); err != nil {
			return fmt.Errorf("register: audit chain of %s: %w", e.Tenant, err)
		}
		err = lock()
	}
	if err != nil {
		return fmt.Errorf("register: audit chain of %s: %w", e.Tenant, err)
	}
	e.Seq, e.PrevHash = seq+1, prev
	e.At = e.At.UTC().Truncate(time.Microsecond)
	e.Hash = e.digest()
	var recordID *string
	if e.RecordID != "" {
		recordID = &e.RecordID
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO audit_entry (tenant_id, seq, at, actor_kind, actor, actor_tenant, role, purpose, legal_basis,
		operation, register, record_id, outcome, detail, prev_hash, hash)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
		e.Tenant, e.Seq, e.At, e.Actor.Kind, e.Actor.Subject, e.Actor.Tenant, e.Actor.Role, e.Actor.Purpose, e.LegalBasis,
		e.Operation, e.Register, recordID, e.Outcome, e.Detail, e.PrevHash, e.Hash)
	b.Queue(`UPDATE audit_head SET seq = $2, hash = $3 WHERE tenant_id = $1`, e.Tenant, e.Seq, e.Hash)
	if also != nil {
		also(b)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("register: append audit entry %d of %s: %w", e.Seq, e.Tenant, err)
	}
	return nil
}

// ChainReport is the result of checking a tenant's audit chain.
type ChainReport struct {
	Tenant  string `json:"tenant"`
	Entries int64  `json:"entries"`
	// FirstBad is the seq of the first entry that breaks the chain (0 when
	// the chain is intact), Problem says how.
	FirstBad int64  `json:"firstBad,omitempty"`
	Problem  string `json:"problem,omitempty"`
	// Head is the hash of the last entry, hex; an operator who keeps it
	// elsewhere can later prove the log was not cut back behind it.
	Head string `json:"head"`
}

// OK reports whether the chain is intact.
func (r ChainReport) OK() bool { return r.FirstBad == 0 }

// VerifyAudit reads a tenant's audit log in seq order and checks that each
// entry's hash matches its content, that each commits to its predecessor,
// that no seq is missing, and that the chain ends at the recorded head. It
// names the first entry that fails: an edited entry fails its own hash, a
// deleted one leaves a gap, a reordered one fails its own hash (the seq is
// hashed) or its successor's link.
func VerifyAudit(ctx context.Context, pool *pgxpool.Pool, tenantID string) (ChainReport, error) {
	r := ChainReport{Tenant: tenantID}
	err := db.InTenant(ctx, pool, tenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT seq, at, actor_kind, actor, actor_tenant, role, purpose, legal_basis,
			operation, register, coalesce(record_id::text, ''), outcome, detail, prev_hash, hash
			FROM audit_entry WHERE tenant_id = $1 ORDER BY seq`, tenantID)
		if err != nil {
			return err
		}
		defer rows.Close()
		prev := genesis
		var want int64 = 1
		for rows.Next() {
			e := AuditEntry{Tenant: tenantID}
			if err := rows.Scan(&e.Seq, &e.At, &e.Actor.Kind, &e.Actor.Subject, &e.Actor.Tenant, &e.Actor.Role, &e.Actor.Purpose,
				&e.LegalBasis, &e.Operation, &e.Register, &e.RecordID, &e.Outcome, &e.Detail, &e.PrevHash, &e.Hash); err != nil {
				return err
			}
			r.Entries++
			if r.FirstBad != 0 {
				continue
			}
			stored := e.Hash
			switch {
			case e.Seq != want:
				r.FirstBad, r.Problem = want, fmt.Sprintf("entry %d is missing (the next entry is %d): deleted", want, e.Seq)
			case !bytes.Equal(e.PrevHash, prev):
				r.FirstBad, r.Problem = e.Seq, fmt.Sprintf("entry %d does not link to entry %d: entries were reordered, replaced or deleted", e.Seq, e.Seq-1)
			case !bytes.Equal(e.digest(), stored):
				r.FirstBad, r.Problem = e.Seq, fmt.Sprintf("entry %d does not match its hash: edited, or moved from another position", e.Seq)
			}
			prev, want = stored, e.Seq+1
		}
		if err := rows.Err(); err != nil {
			return err
		}
		r.Head = hex.EncodeToString(prev)
		var headSeq int64
		var headHash []byte
		err = tx.QueryRow(ctx, `SELECT seq, hash FROM audit_head WHERE tenant_id = $1`, tenantID).Scan(&headSeq, &headHash)
		if err == pgx.ErrNoRows {
			headSeq, headHash, err = 0, genesis, nil
		}
		if err != nil {
			return err
		}
		switch last := want - 1; {
		case r.FirstBad != 0:
		case headSeq > last:
			r.FirstBad = want
			r.Problem = fmt.Sprintf("the chain ends at entry %d but its head records entry %d: entries at the end were deleted", last, headSeq)
		case headSeq < last:
			r.FirstBad = headSeq + 1
			r.Problem = fmt.Sprintf("the chain goes on to entry %d but its head records entry %d: the head was altered or entries were added around it", last, headSeq)
		case !bytes.Equal(headHash, prev):
			r.FirstBad = max(last, 1)
			r.Problem = fmt.Sprintf("the head's hash does not match entry %d: the head was altered, or entries were rewritten and their hashes recomputed", last)
		}
		return nil
	})
	if err != nil {
		return r, fmt.Errorf("register: verify audit log of %s: %w", tenantID, err)
	}
	return r, nil
}

// AuditTx appends an entry for an operation outside the register's own
// (an operator retrying a dead letter) to the tenant's audit log, in tx,
// which must be in the tenant.
func AuditTx(ctx context.Context, tx pgx.Tx, a tenant.Actor, tenantID, operation, detail string) error {
	return appendAudit(ctx, tx, &AuditEntry{Tenant: tenantID, Actor: a, Operation: operation, Register: "-", Outcome: OutcomeGranted, Detail: detail}, nil)
}

// Audit appends an entry with the given outcome to the tenant's audit
// chain, in a transaction of its own: for what happens outside the
// register's own operations, such as a console sign-in or a refused page.
func (s *Store) Audit(ctx context.Context, a tenant.Actor, tenantID, operation, outcome, detail string) error {
	return db.InTenant(ctx, s.pool, tenantID, func(tx pgx.Tx) error {
		return appendAudit(ctx, tx, &AuditEntry{Tenant: tenantID, Actor: a, Operation: operation, Register: "-", Outcome: outcome, Detail: detail}, nil)
	})
}
