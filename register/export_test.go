package register

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/sealing"
)

// NewPlaintextStore returns a Store that stores register data in
// plaintext, for the benchmark's baseline only: it lives in a test file so
// that no binary can hold it. Everything else (authorization, tenant
// transactions, versions, indexes, audit chain, access log) is the
// production Store's.
func NewPlaintextStore(c Config) *Store {
	s := NewStore(c)
	s.sealer = plaintext{}
	return s
}

// plaintext is the sealer of NewPlaintextStore: key version 0, the payload
// as given, the looked-up value itself as its index.
type plaintext struct{}

func (plaintext) seal(_ context.Context, _ pgx.Tx, _ string, _, pt []byte) (int, []byte, error) {
	return 0, pt, nil
}

func (plaintext) open(_ context.Context, _ pgx.Tx, _ string, _ int, _, ct []byte) ([]byte, error) {
	return ct, nil
}

func (plaintext) blind(_ context.Context, _ pgx.Tx, _, _, _, value string) ([]byte, error) {
	return []byte(value), nil
}

func (plaintext) ensure(context.Context, *pgxpool.Pool, string) error { return nil }

// SetKeyCacheTTL sets how long nodes cache the current key version, until
// restore is called: a test that counts statements keeps the lookup out.
func SetKeyCacheTTL(ttl time.Duration) (restore func()) {
	old := sealing.CurrentTTL
	sealing.CurrentTTL = ttl
	return func() { sealing.CurrentTTL = old }
}

// CurrentDataKey returns the tenant's current data-key version as the
// store's keyring finds it in a transaction of the tenant.
func CurrentDataKey(ctx context.Context, s *Store, tenantID string) (v int, err error) {
	err = db.InTenant(ctx, s.pool, tenantID, func(tx pgx.Tx) error {
		v, err = s.keyring.CurrentVersion(ctx, tx, tenantID)
		return err
	})
	return v, err
}
