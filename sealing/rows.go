package sealing

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Field is one sealed value of a row and the additional data it is bound
// to.
type Field struct {
	AAD, Sealed []byte
}

// Rows is how a sealed table's rows are read and written again; its
// Reseal is the table's Table.Reseal.
type Rows[R any] struct {
	// Select reads up to $3 of tenant $1's rows sealed under key versions
	// below $2, locking them and skipping rows others hold, into R by
	// position.
	Select string
	// Fields gives a row's key version and its sealed values.
	Fields func(tenant string, r R) (version int, fields []Field)
	// Update queues the row's update to version, with its values sealed
	// anew in the order Fields gave them.
	Update func(b *pgx.Batch, tenant string, r R, version int, sealed [][]byte)
	// Name names a row in an error.
	Name func(r R) string
	// Divide shrinks a batch to limit/Divide rows (at least one), for
	// rows as large as content chunks.
	Divide int
}

// Reseal seals up to limit of the tenant's rows under older keys again
// under version and returns how many it did.
func (t Rows[R]) Reseal(ctx context.Context, tx pgx.Tx, k *Keyring, tenant string, version, limit int) (int, error) {
	if t.Divide > 1 {
		limit = max(1, limit/t.Divide)
	}
	rows, err := tx.Query(ctx, t.Select, tenant, version, limit)
	if err != nil {
		return 0, err
	}
	list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[R])
	if err != nil {
		return 0, err
	}
	b := &pgx.Batch{}
	for _, r := range list {
		key, fields := t.Fields(tenant, r)
		sealed := make([][]byte, len(fields))
		for i, f := range fields {
			if sealed[i], err = k.Reseal(ctx, tx, tenant, key, version, f.AAD, f.Sealed); err != nil {
				return 0, fmt.Errorf("%s: %w", t.Name(r), err)
			}
		}
		t.Update(b, tenant, r, version, sealed)
	}
	return len(list), tx.SendBatch(ctx, b).Close()
}
