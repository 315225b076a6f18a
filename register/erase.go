package register

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/tenant"
)

// Erased is what one erasure removed.
type Erased struct {
	RecordID string `json:"recordId"`
	// Records counts the record and the records merged into it (the same
	// person), erased with it.
	Records  int64 `json:"records"`
	Versions int64 `json:"versions"`
	Facts    int64 `json:"facts"`
	Indexes  int64 `json:"indexEntries"`
}

func (e Erased) String() string {
	return fmt.Sprintf("%d records, %d versions, %d facts, %d index entries", e.Records, e.Versions, e.Facts, e.Indexes)
}

// orderPattern is an erasure order's reference, such as a file number
// ("Az. 32.1-17/2026"): it goes into the audit log, so it is short text.
var orderPattern = regexp.MustCompile(`^[\p{L}\p{N}][\p{L}\p{N} .,:;/_§()#-]{0,99}$`)

// Erase carries out an erasure order: record id, live or ended, is
// deleted for good with its versions, facts, index entries, merges and
// the records merged into it. Unlike Delete, which ends a record and
// keeps its history, nothing of it can be read afterwards, not even as
// known before. The audit entry names the order and what was erased,
// never the erased values; the access log of the record's disclosures
// stays until it expires. Order is the order's reference (a file number).
func (s *Store) Erase(ctx context.Context, a tenant.Actor, tenantID, register, id, order string) (Erased, error) {
	var e Erased
	err := s.run(ctx, a, tenantID, register, tenant.OpErase, id, func(o *op) error {
		o.action = "erase"
		if !orderPattern.MatchString(order) {
			return refuse(KindInvalid, "name the erasure order by its reference (a file number: letters, digits and . , : ; / _ § ( ) # -, up to 100 characters)")
		}
		if _, err := s.head(ctx, o, id, true); err != nil {
			return err
		}
		var err error
		if e, err = eraseRecord(ctx, o.tx, id); err != nil {
			return err
		}
		o.detail = fmt.Sprintf("erased under order %q: %s", order, e)
		return nil
	})
	return e, err
}

// eraseRecord erases a record of the transaction's tenant with the
// records merged into it.
func eraseRecord(ctx context.Context, tx pgx.Tx, id string) (Erased, error) {
	e := Erased{RecordID: id}
	err := tx.QueryRow(ctx, `SELECT records, versions, facts, indexes FROM parzelle_erase_record($1)`, id).Scan(&e.Records, &e.Versions, &e.Facts, &e.Indexes)
	if err != nil {
		return e, fmt.Errorf("register: erase record %s: %w", id, err)
	}
	return e, nil
}

// RetentionActor is who the audit log names for what the node deletes on
// its own once a retention period has passed.
func RetentionActor(tenantID string) tenant.Actor {
	return tenant.Actor{Tenant: tenantID, Kind: "retention", Subject: "parzelle", Role: "-", Purpose: "retention"}
}

// Retained counts what EraseExpired erased.
type Retained struct {
	Records, Versions int64
}

// eraseBatch bounds the records one transaction of EraseExpired erases,
// so that a first run over years of data neither holds locks long nor
// builds one huge transaction.
const eraseBatch = 100

// EraseExpired applies every tenant's register retention: records ended
// longer ago than retention.ended are erased (as by Erase), and versions
// of live records superseded longer ago than retention.superseded are
// erased, each erasure audited with the retention's legal basis and
// without the erased values. Several nodes may run it at once: each
// record is erased by one of them.
func (s *Store) EraseExpired(ctx context.Context) (Retained, error) {
	var total Retained
	for _, t := range s.tenants().Tenants() {
		for _, decl := range t.Registers() {
			ret := decl.Retention
			a := RetentionActor(t.ID)
			entry := func(id, detail string) *AuditEntry {
				return &AuditEntry{Tenant: t.ID, Actor: a, LegalBasis: ret.LegalBasis, Operation: "erase", Register: decl.Name,
					RecordID: id, Outcome: OutcomeGranted, Detail: detail}
			}
			if ret.Ended > 0 {
				cutoff := s.now().Add(-ret.Ended)
				n, err := s.eraseBatches(ctx, t.ID, `SELECT id::text FROM register_record WHERE tenant_id = $1 AND register = $2 AND deleted_at < $3
					ORDER BY deleted_at LIMIT $4 FOR UPDATE SKIP LOCKED`, decl.Name, cutoff, func(tx pgx.Tx, id string) (int64, error) {
					e, err := eraseRecord(ctx, tx, id)
					if err != nil || e.Records == 0 {
						return 0, err
					}
					detail := fmt.Sprintf("retention: ended more than %s ago; erased %s", days(ret.Ended), e)
					return e.Records, appendAudit(ctx, tx, entry(id, detail), nil)
				})
				total.Records += n
				if err != nil {
					return total, err
				}
				s.metrics.erased(t.ID, decl.Name, "records", n)
			}
			if ret.Superseded > 0 {
				cutoff := s.now().Add(-ret.Superseded)
				n, err := s.eraseBatches(ctx, t.ID, `SELECT r.id::text FROM register_record r WHERE r.tenant_id = $1 AND r.register = $2 AND r.deleted_at IS NULL
					AND r.id IN (SELECT record_id FROM register_version WHERE tenant_id = $1 AND superseded_at < $3)
					LIMIT $4 FOR UPDATE OF r SKIP LOCKED`, decl.Name, cutoff, func(tx pgx.Tx, id string) (int64, error) {
					var n int64
					if err := tx.QueryRow(ctx, `SELECT parzelle_erase_versions($1, $2)`, id, cutoff).Scan(&n); err != nil {
						return 0, fmt.Errorf("register: erase versions of %s: %w", id, err)
					}
					detail := fmt.Sprintf("retention: %d versions superseded more than %s ago erased", n, days(ret.Superseded))
					return n, appendAudit(ctx, tx, entry(id, detail), nil)
				})
				total.Versions += n
				if err != nil {
					return total, err
				}
				s.metrics.erased(t.ID, decl.Name, "versions", n)
			}
		}
	}
	return total, nil
}

// eraseBatches selects records with query (tenant, register, cutoff and
// batch size as $1…$4) and erases each with erase, a batch per tenant
// transaction, until a batch comes back short. It returns the sum of
// what erase counted.
func (s *Store) eraseBatches(ctx context.Context, tenantID, query, register string, cutoff time.Time, erase func(pgx.Tx, string) (int64, error)) (int64, error) {
	var total int64
	for {
		var found int
		var batch int64
		err := db.InTenant(ctx, s.pool, tenantID, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, query, tenantID, register, cutoff, eraseBatch)
			if err != nil {
				return err
			}
			ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return err
			}
			found = len(ids)
			for _, id := range ids {
				n, err := erase(tx, id)
				if err != nil {
					return err
				}
				batch += n
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("register: retention of %s/%s: %w", tenantID, register, err)
		}
		total += batch
		if found < eraseBatch {
			return total, nil
		}
	}
}

// days writes a retention period in days, as the tenant file gives it.
func days(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return d.String()
}
