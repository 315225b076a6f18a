package db

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TenantRole is the database role of every tenant-scoped transaction. It
// owns nothing and bypasses nothing: the row-level security policies of
// tenant-owned tables apply to it.
const TenantRole = "parzelle_tenant"

var tenantIDPattern = regexp.MustCompile(`^[a-z][a-z0-9-]{1,62}$`)

// ErrNoTenant is returned for a tenant-scoped call without a valid tenant id.
var ErrNoTenant = errors.New("db: tenant-scoped transaction without a valid tenant id")

// InTenant runs fn in a transaction that acts as TenantRole for tenantID:
// whatever fn's queries say, PostgreSQL lets them see and change only that
// tenant's rows. The transaction commits when fn returns nil.
func InTenant(ctx context.Context, pool *pgxpool.Pool, tenantID string, fn func(pgx.Tx) error) error {
	if !tenantIDPattern.MatchString(tenantID) {
		return fmt.Errorf("%w: %q", ErrNoTenant, tenantID)
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('role', $1, true), set_config('parzelle.tenant_id', $2, true)`, TenantRole, tenantID); err != nil {
			return fmt.Errorf("db: enter tenant %s: %w", tenantID, err)
		}
		return fn(tx)
	})
}
