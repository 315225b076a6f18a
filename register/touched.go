package register

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/tenant"
)

// Touch is a register record a message changed, and when.
type Touch struct {
	Register  string    `json:"register"`
	RecordID  string    `json:"recordId"`
	AppliedAt time.Time `json:"appliedAt"`
}

// Touched returns the records the message with the transport id changed in the
// tenant's registers, by when it was applied; the lookup (record ids, no
// contents) is audited for a.
func (s *Store) Touched(ctx context.Context, a tenant.Actor, tenantID, messageID string) ([]Touch, error) {
	var out []Touch
	err := db.InTenant(ctx, s.pool, tenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT register, record_id::text, min(applied_at) FROM register_fact
			WHERE tenant_id = $1 AND transport_id = $2 GROUP BY register, record_id ORDER BY 3, 2`, tenantID, messageID)
		if err != nil {
			return err
		}
		if out, err = pgx.CollectRows(rows, pgx.RowToStructByPos[Touch]); err != nil || len(out) == 0 {
			return err
		}
		return appendAudit(ctx, tx, &AuditEntry{Tenant: tenantID, Actor: a, Operation: "trace", Register: out[0].Register, Outcome: OutcomeGranted,
			Detail: fmt.Sprintf("records changed by message %s: %d", messageID, len(out))}, nil)
	})
	if err != nil {
		return nil, fmt.Errorf("register: records of message %s in %s: %w", messageID, tenantID, err)
	}
	return out, nil
}
