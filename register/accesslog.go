package register

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/tenant"
)

// AccessLogRetention is how long disclosures by IDNr are kept (§ 9 IDNrG:
// two years).
const AccessLogRetention = 2 * 365 * 24 * time.Hour

// accessEntry is one access-log row made ready outside the audit lock:
// its id, the IDNr's blind index and ciphertext.
type accessEntry struct {
	id         int64
	recordID   string
	index      []byte
	keyVersion int
	idnr       []byte
}

// prepareDisclosures makes the access-log rows of the operation's IDNr
// disclosures ready: who, when and the audit entry are filled in when they
// are queued (queueDisclosures). The IDNr is stored encrypted, with a
// blind index to find a subject's entries.
func (s *Store) prepareDisclosures(ctx context.Context, o *op) ([]accessEntry, error) {
	// An evidence request by IDNr is logged whatever it found: the IDNr
	// asked for, with the record if there was one.
	if ev := o.evidence; ev != nil && len(o.disclosed) == 0 && ev.idnr != "" {
		o.disclosed = []disclosure{{o.recordID, ev.idnr}}
	}
	if len(o.disclosed) == 0 {
		return nil, nil
	}
	rows, err := o.tx.Query(ctx, `SELECT nextval('register_access_log_id_seq') FROM generate_series(1, $1)`, len(o.disclosed))
	if err != nil {
		return nil, fmt.Errorf("register: access log: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("register: access log: %w", err)
	}
	out := make([]accessEntry, len(o.disclosed))
	for i, d := range o.disclosed {
		e := &out[i]
		e.id, e.recordID = ids[i], d.recordID
		if e.index, err = s.sealer.blind(ctx, o.tx, o.tenant, o.register.Name, "idnr", d.idnr); err != nil {
			return nil, err
		}
		if e.keyVersion, e.idnr, err = s.sealer.seal(ctx, o.tx, o.tenant, accessAAD(o.tenant, e.id), []byte(d.idnr)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// queueDisclosures queues the access-log rows for the audit entry a, in one
// statement however many there are.
func queueDisclosures(b *pgx.Batch, o *op, a *AuditEntry, entries []accessEntry) {
	if len(entries) == 0 {
		return
	}
	n := len(entries)
	ids, records, indexes, kvs, idnrs := make([]int64, n), make([]string, n), make([][]byte, n), make([]int, n), make([][]byte, n)
	for i, e := range entries {
		ids[i], records[i], indexes[i], kvs[i], idnrs[i] = e.id, e.recordID, e.index, e.keyVersion, e.idnr
	}
	var tokenID, evidenceType, result *string
	if ev := o.evidence; ev != nil {
		tokenID, evidenceType, result = nonEmpty(ev.TokenID), nonEmpty(ev.EvidenceType), nonEmpty(ev.result)
	}
	b.Queue(`INSERT INTO register_access_log (id, tenant_id, at, register, record_id, idnr_index, key_version, idnr,
			actor, actor_tenant, role, purpose, legal_basis, operation, audit_seq, token_id, evidence_type, result)
		SELECT e.id, $1, $2, $3, nullif(e.record_id, '')::uuid, e.idnr_index, e.key_version, e.idnr, $4, $5, $6, $7, $8, $9, $10, $16, $17, $18
		FROM unnest($11::bigint[], $12::text[], $13::bytea[], $14::int[], $15::bytea[]) AS e(id, record_id, idnr_index, key_version, idnr)`,
		o.tenant, a.At, o.register.Name, o.actor.Subject, o.actor.Tenant, o.actor.Role, o.actor.Purpose, o.decision.LegalBasis, o.action, a.Seq,
		ids, records, indexes, kvs, idnrs, tokenID, evidenceType, result)
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// accessAAD binds an access-log IDNr to its tenant and entry.
func accessAAD(tenantID string, id int64) []byte {
	return []byte("parzelle/access-log/v1\x00" + tenantID + "\x00" + strconv.FormatInt(id, 10))
}

// Disclosure is one entry of the access log as the Datenschutzcockpit
// export writes it (one JSON object per line).
type Disclosure struct {
	At          time.Time `json:"zeitpunkt"`
	IDNr        string    `json:"idnr"`
	Tenant      string    `json:"datenhaltendeStelle"`
	Register    string    `json:"register"`
	RecordID    string    `json:"recordId,omitempty"`
	Recipient   string    `json:"empfaenger"`
	RecipientOf string    `json:"empfaengerMandant"`
	Role        string    `json:"rolle"`
	Purpose     string    `json:"zweck"`
	LegalBasis  string    `json:"rechtsgrundlage"`
	Operation   string    `json:"vorgang"`
	AuditSeq    int64     `json:"auditSeq"`
	// For evidence requests (XNachweis): the IssuedToken's id, the
	// evidence type and how the request ended (answered, no-match,
	// ambiguous, auskunftssperre, denied, or the code of its refusal).
	TokenID      string `json:"tokenId,omitempty"`
	EvidenceType string `json:"nachweistyp,omitempty"`
	Result       string `json:"ergebnis,omitempty"`
}

// AccessFilter selects access-log entries: one subject's (by IDNr) and/or
// a time range [From, To); zero values do not restrict.
type AccessFilter struct {
	IDNr     string
	From, To time.Time
}

// ExportAccessLog writes the register's access-log entries the filter
// selects as JSON Lines, oldest first, and returns how many it wrote. It
// is the export operation: authorized and audited like any access.
func (s *Store) ExportAccessLog(ctx context.Context, a tenant.Actor, tenantID, register string, f AccessFilter, w io.Writer) (int, error) {
	n := 0
	err := s.run(ctx, a, tenantID, register, tenant.OpExport, "", func(o *op) error {
		q := `SELECT id, at, coalesce(record_id::text, ''), key_version, idnr, actor, actor_tenant, role, purpose, legal_basis, operation, audit_seq,
				coalesce(token_id, ''), coalesce(evidence_type, ''), coalesce(result, '')
			FROM register_access_log WHERE tenant_id = $1 AND register = $2 AND at >= $3 AND at < $4`
		to := f.To
		if to.IsZero() {
			to = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
		}
		args := []any{tenantID, register, f.From, to}
		if f.IDNr != "" {
			if !ValidIDNr(f.IDNr) {
				return refuse(KindInvalid, "the idnr to export is not a valid Identifikationsnummer (11 digits, check digit per § 139b AO)")
			}
			index, err := s.sealer.blind(ctx, o.tx, tenantID, register, "idnr", f.IDNr)
			if err != nil {
				return err
			}
			q += ` AND idnr_index = $5`
			args = append(args, index)
		}
		rows, err := o.tx.Query(ctx, q+` ORDER BY at, id`, args...)
		if err != nil {
			return fmt.Errorf("register: export access log: %w", err)
		}
		defer rows.Close()
		enc := json.NewEncoder(w)
		for rows.Next() {
			var id int64
			var kv int
			var ct []byte
			d := Disclosure{Tenant: tenantID, Register: register}
			if err := rows.Scan(&id, &d.At, &d.RecordID, &kv, &ct, &d.Recipient, &d.RecipientOf, &d.Role, &d.Purpose, &d.LegalBasis, &d.Operation, &d.AuditSeq,
				&d.TokenID, &d.EvidenceType, &d.Result); err != nil {
				return fmt.Errorf("register: export access log: %w", err)
			}
			idnr, err := s.sealer.open(ctx, o.tx, tenantID, kv, accessAAD(tenantID, id), ct)
			if err != nil {
				return fmt.Errorf("register: access log entry %d: %w", id, err)
			}
			d.IDNr = string(idnr)
			if err := enc.Encode(d); err != nil {
				return fmt.Errorf("register: export access log: %w", err)
			}
			n++
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("register: export access log: %w", err)
		}
		o.detail = fmt.Sprintf("access log export: %d entries", n)
		return nil
	})
	return n, err
}

// Expire deletes, for every tenant, access-log entries older than the
// retention period and idempotency keys older than a day. It returns how
// many access-log entries it deleted.
func (s *Store) Expire(ctx context.Context) (int64, error) {
	var total int64
	for _, t := range s.tenants().Tenants() {
		err := db.InTenant(ctx, s.pool, t.ID, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, `DELETE FROM register_access_log WHERE tenant_id = $1 AND at < $2`, t.ID, s.now().Add(-AccessLogRetention))
			if err != nil {
				return err
			}
			total += tag.RowsAffected()
			_, err = tx.Exec(ctx, `DELETE FROM register_idempotency WHERE tenant_id = $1 AND created_at < $2`, t.ID, s.now().Add(-idempotencyTTL))
			return err
		})
		if err != nil {
			return total, fmt.Errorf("register: expire entries of %s: %w", t.ID, err)
		}
	}
	return total, nil
}
