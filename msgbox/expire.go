package msgbox

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parzelle/parzelle/db"
)

// expireBatch bounds the messages one transaction of Expire deletes.
const expireBatch = 1000

// Expire deletes, in each of the tenants, the messages the node is done
// with since before: inbox rows closed with their content gone, and
// outbox rows whose report is final and whose reader's row is gone,
// with their report records. What is left of a message after its
// retention is its effect (a register record, a reader's copy). It
// returns how many messages it deleted.
func (s *Store) Expire(ctx context.Context, tenantIDs []string, before time.Time) (int64, error) {
	var total int64
	for _, t := range tenantIDs {
		for {
			var n int64
			err := db.InTenant(ctx, s.pool, t, func(tx pgx.Tx) error {
				return tx.QueryRow(ctx, `SELECT parzelle_expire_messages($1, $2)`, before, expireBatch).Scan(&n)
			})
			if err != nil {
				return total, fmt.Errorf("msgbox: expire messages of %s: %w", t, err)
			}
			total += n
			if n < expireBatch {
				break
			}
		}
	}
	return total, nil
}
