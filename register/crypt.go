package register

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/text/unicode/norm"

	"github.com/parzelle/parzelle/sealing"
)

// sealer encrypts and blind-indexes a tenant's register data inside the
// tenant's transaction. The production sealer is the tenants' keyring; the
// benchmark compares it with one that stores plaintext.
type sealer interface {
	// seal encrypts plaintext under the tenant's current data key, bound
	// to aad, and returns the key version to store beside it.
	seal(ctx context.Context, tx pgx.Tx, tenant string, aad, plaintext []byte) (version int, ciphertext []byte, err error)
	// open decrypts what seal returned, given the same key version and aad.
	open(ctx context.Context, tx pgx.Tx, tenant string, version int, aad, ciphertext []byte) ([]byte, error)
	// blind returns the blind index of value for one kind of lookup.
	blind(ctx context.Context, tx pgx.Tx, tenant, register, kind, value string) ([]byte, error)
	// ensure makes the tenant's keys before the first transaction uses
	// them.
	ensure(ctx context.Context, pool *pgxpool.Pool, tenant string) error
}

// ErrDecrypt is wrapped by errors for a ciphertext that does not decrypt
// with the key and additional data of its row: moved, altered, or a key
// that is gone.
var ErrDecrypt = sealing.ErrDecrypt

// keyringSealer seals with the tenants' keyring.
type keyringSealer struct{ *sealing.Keyring }

func (k keyringSealer) seal(ctx context.Context, tx pgx.Tx, tenant string, aad, plaintext []byte) (int, []byte, error) {
	return k.Seal(ctx, tx, tenant, aad, plaintext)
}

func (k keyringSealer) open(ctx context.Context, tx pgx.Tx, tenant string, version int, aad, ciphertext []byte) ([]byte, error) {
	return k.Open(ctx, tx, tenant, version, aad, ciphertext)
}

// blind indexes the register, the kind of lookup and the normalized value,
// so that equal values match only within one register and one kind.
func (k keyringSealer) blind(ctx context.Context, tx pgx.Tx, tenant, register, kind, value string) ([]byte, error) {
	return k.Blind(ctx, tx, tenant, register+"\x00"+kind+"\x00"+value)
}

func (k keyringSealer) ensure(ctx context.Context, pool *pgxpool.Pool, tenant string) error {
	return k.Ensure(ctx, pool, tenant)
}

// normalize is the form of a name a blind index covers: Unicode NFC,
// case-folded, inner whitespace collapsed.
func normalize(s string) string {
	return strings.ToLower(strings.Join(strings.Fields(norm.NFC.String(s)), " "))
}
