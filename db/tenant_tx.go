package db

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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
	// BEGIN and entering the tenant in one round trip: the id is checked
	// above, so it can stand in the statement.
	begin := `BEGIN; SELECT set_config('role', '` + TenantRole + `', true), set_config('parzelle.tenant_id', '` + tenantID + `', true)`
	return pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{BeginQuery: begin}, fn)
}

// EnterTenant makes the rest of transaction tx act as TenantRole for
// tenantID. A transaction that touches two tenants (a message from one
// tenant's outbox to another's inbox) enters each in turn, so every
// statement is still confined to one tenant's rows.
func EnterTenant(ctx context.Context, tx Execer, tenantID string) error {
	if !tenantIDPattern.MatchString(tenantID) {
		return fmt.Errorf("%w: %q", ErrNoTenant, tenantID)
	}
	if _, err := tx.Exec(ctx, `SELECT set_config('role', $1, true), set_config('parzelle.tenant_id', $2, true)`, TenantRole, tenantID); err != nil {
		return fmt.Errorf("db: enter tenant %s: %w", tenantID, err)
	}
	return nil
}

// LeaveTenant returns transaction tx to the node's own role, for the
// statements that belong to no tenant (inserting a River job).
func LeaveTenant(ctx context.Context, tx Execer) error {
	if _, err := tx.Exec(ctx, `RESET ROLE`); err != nil {
		return fmt.Errorf("db: leave tenant: %w", err)
	}
	if _, err := tx.Exec(ctx, `SELECT set_config('parzelle.tenant_id', '', true)`); err != nil {
		return fmt.Errorf("db: leave tenant: %w", err)
	}
	return nil
}

// Execer runs a statement: a transaction, or a batch that queues it.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// SendInTenant sends the batch's statements in one round trip as one
// implicit transaction that acts as TenantRole for tenantID, as InTenant
// would run them, for a few statements that need no logic in between. The
// caller reads the results of the batch's statements in order and closes
// the results.
func SendInTenant(ctx context.Context, pool *pgxpool.Pool, tenantID string, b *pgx.Batch) (pgx.BatchResults, error) {
	if !tenantIDPattern.MatchString(tenantID) {
		return nil, fmt.Errorf("%w: %q", ErrNoTenant, tenantID)
	}
	all := &pgx.Batch{QueuedQueries: append([]*pgx.QueuedQuery{{SQL: `SELECT set_config('role', $1, true), set_config('parzelle.tenant_id', $2, true)`,
		Arguments: []any{TenantRole, tenantID}}}, b.QueuedQueries...)}
	res := pool.SendBatch(ctx, all)
	if _, err := res.Exec(); err != nil {
		res.Close()
		return nil, fmt.Errorf("db: enter tenant %s: %w", tenantID, err)
	}
	return res, nil
}
