// Package sealing keeps each tenant's data keys and seals the tenant's data
// at rest with them: envelope encryption (AES-256-GCM data keys wrapped by
// the tenant's key-encryption key in the key provider), versioned for
// rotation, and blind indexes for lookups.
package sealing

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/keys"
)

// ErrDecrypt is wrapped by errors for a ciphertext that does not decrypt
// with the key and additional data of its row: moved, altered, or a key
// that is gone.
var ErrDecrypt = errors.New("sealing: ciphertext does not decrypt under the tenant's key for this row")

// Keyring is the envelope encryption of a tenant's data at rest (register
// records, message content, dead letters): AES-256-GCM data keys per
// tenant, versioned, wrapped by the tenant's KEK in the key provider and
// stored wrapped in register_key; a blind-index HMAC key per tenant,
// stored the same way. Unwrapped keys are cached in memory; the current
// data-key version is looked up again after CurrentTTL, so a rotation by
// another process takes effect within that time. It is safe for
// concurrent use.
type Keyring struct {
	provider keys.Provider

	mu      sync.Mutex
	aeads   map[keyID]cipher.AEAD
	index   map[string][]byte
	current map[string]currentKey
	// ready holds the tenants whose first keys are known to be stored.
	ready map[string]bool
	now   func() time.Time
}

// CurrentTTL is how long a node keeps using a tenant's current data-key
// version before looking again; a re-encryption waits twice as long before
// its last pass (a variable for tests).
var CurrentTTL = 5 * time.Second

type keyID struct {
	tenant  string
	version int
}

type currentKey struct {
	version int
	until   time.Time
}

// NewKeyring returns the keyring of the provider's tenants.
func NewKeyring(p keys.Provider) *Keyring {
	return &Keyring{provider: p, aeads: map[keyID]cipher.AEAD{}, index: map[string][]byte{}, current: map[string]currentKey{}, ready: map[string]bool{}, now: time.Now}
}

const (
	keyKindData  = "data"
	keyKindIndex = "index"
	nonceSize    = 12
)

// Seal encrypts plaintext under the tenant's current data key, bound to
// aad, and returns the key version to store beside the ciphertext. tx must
// be in the tenant (or in none).
func (k *Keyring) Seal(ctx context.Context, tx pgx.Tx, tenant string, aad, plaintext []byte) (int, []byte, error) {
	v, err := k.CurrentVersion(ctx, tx, tenant)
	if err != nil {
		return 0, nil, err
	}
	ct, err := k.SealWith(ctx, tx, tenant, v, aad, plaintext)
	return v, ct, err
}

// SealWith encrypts under data key version: a random 12-byte nonce, then
// the AES-GCM ciphertext with its tag.
func (k *Keyring) SealWith(ctx context.Context, tx pgx.Tx, tenant string, version int, aad, plaintext []byte) ([]byte, error) {
	aead, err := k.dataKey(ctx, tx, tenant, version)
	if err != nil {
		return nil, err
	}
	out := make([]byte, nonceSize, nonceSize+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("sealing: nonce: %w", err)
	}
	return aead.Seal(out, out, plaintext, aad), nil
}

// Reseal decrypts a ciphertext under data key from (or takes it as
// plaintext when from is 0, see OpenOrPlain) and encrypts it again under
// data key to, with the same aad.
func (k *Keyring) Reseal(ctx context.Context, tx pgx.Tx, tenant string, from, to int, aad, stored []byte) ([]byte, error) {
	pt, err := k.OpenOrPlain(ctx, tx, tenant, from, aad, stored)
	if err != nil {
		return nil, err
	}
	return k.SealWith(ctx, tx, tenant, to, aad, pt)
}

// Open decrypts what Seal returned, given the same key version and aad;
// a ciphertext that does not decrypt is ErrDecrypt.
func (k *Keyring) Open(ctx context.Context, tx pgx.Tx, tenant string, version int, aad, ciphertext []byte) ([]byte, error) {
	aead, err := k.dataKey(ctx, tx, tenant, version)
	if err != nil {
		return nil, err
	}
	if len(ciphertext) < nonceSize+aead.Overhead() {
		return nil, ErrDecrypt
	}
	pt, err := aead.Open(nil, ciphertext[:nonceSize], ciphertext[nonceSize:], aad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// Blind is HMAC-SHA-256 under the tenant's index key over the value: a
// blind index, equal for equal values, meaningless without the key.
func (k *Keyring) Blind(ctx context.Context, tx pgx.Tx, tenant, value string) ([]byte, error) {
	key, err := k.indexKey(ctx, tx, tenant)
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(value))
	return m.Sum(nil), nil
}

// Ensure makes sure the tenant's first data key and its index key exist.
// It creates them in a transaction of its own, committed before any
// transaction that uses them: a key created inside the transaction of a
// register operation was visible to others only once that committed (they
// failed to find it meanwhile), and was remembered here even when that
// transaction rolled back, so data sealed or indexed under it by others
// would have been under a key nobody stored.
func (k *Keyring) Ensure(ctx context.Context, pool *pgxpool.Pool, tenant string) error {
	k.mu.Lock()
	ready := k.ready[tenant]
	k.mu.Unlock()
	if ready {
		return nil
	}
	err := db.InTenant(ctx, pool, tenant, func(tx pgx.Tx) error {
		for _, kind := range []string{keyKindIndex, keyKindData} {
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM register_key WHERE tenant_id = $1 AND kind = $2)`, tenant, kind).Scan(&exists); err != nil {
				return fmt.Errorf("sealing: %s key of %s: %w", kind, tenant, err)
			}
			if !exists {
				if _, err := k.create(ctx, tx, tenant, kind, 1); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	k.mu.Lock()
	k.ready[tenant] = true
	k.mu.Unlock()
	return nil
}

// CurrentVersion returns the version of the tenant's current data key
// (Ensure made version 1).
func (k *Keyring) CurrentVersion(ctx context.Context, tx pgx.Tx, tenant string) (int, error) {
	k.mu.Lock()
	c, ok := k.current[tenant]
	k.mu.Unlock()
	if ok && k.now().Before(c.until) {
		return c.version, nil
	}
	var v int
	err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM register_key WHERE tenant_id = $1 AND kind = 'data'`, tenant).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("sealing: current data key of %s: %w", tenant, err)
	}
	if v == 0 {
		return 0, fmt.Errorf("sealing: tenant %s has no data key yet", tenant)
	}
	k.mu.Lock()
	k.current[tenant] = currentKey{v, k.now().Add(CurrentTTL)}
	k.mu.Unlock()
	return v, nil
}

func (k *Keyring) dataKey(ctx context.Context, tx pgx.Tx, tenant string, version int) (cipher.AEAD, error) {
	id := keyID{tenant, version}
	k.mu.Lock()
	aead, ok := k.aeads[id]
	k.mu.Unlock()
	if ok {
		return aead, nil
	}
	key, err := k.load(ctx, tx, tenant, keyKindData, version)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("sealing: data key %d of %s: %w", version, tenant, err)
	}
	if aead, err = cipher.NewGCM(block); err != nil {
		return nil, fmt.Errorf("sealing: data key %d of %s: %w", version, tenant, err)
	}
	k.mu.Lock()
	k.aeads[id] = aead
	k.mu.Unlock()
	return aead, nil
}

func (k *Keyring) indexKey(ctx context.Context, tx pgx.Tx, tenant string) ([]byte, error) {
	k.mu.Lock()
	key, ok := k.index[tenant]
	k.mu.Unlock()
	if ok {
		return key, nil
	}
	key, err := k.load(ctx, tx, tenant, keyKindIndex, 1)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	k.index[tenant] = key
	k.mu.Unlock()
	return key, nil
}

// load reads a wrapped key and unwraps it with the tenant's KEK.
func (k *Keyring) load(ctx context.Context, tx pgx.Tx, tenant, kind string, version int) ([]byte, error) {
	var kek int
	var wrapped []byte
	err := tx.QueryRow(ctx, `SELECT kek_version, wrapped FROM register_key WHERE tenant_id = $1 AND kind = $2 AND version = $3`, tenant, kind, version).Scan(&kek, &wrapped)
	if err != nil {
		return nil, fmt.Errorf("sealing: %s key %d of %s: %w", kind, version, tenant, err)
	}
	key, err := k.provider.UnwrapKey(ctx, tenant, kek, wrapped, wrapAAD(tenant, kind, version))
	if err != nil {
		return nil, fmt.Errorf("sealing: unwrap %s key %d of %s: %w", kind, version, tenant, err)
	}
	return key, nil
}

// create makes a new random key, wraps it and stores it; when another
// transaction created the same version first, that one wins and is
// returned.
func (k *Keyring) create(ctx context.Context, tx pgx.Tx, tenant, kind string, version int) ([]byte, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("sealing: new %s key: %w", kind, err)
	}
	wrapped, kek, err := k.provider.WrapKey(ctx, tenant, key, wrapAAD(tenant, kind, version))
	if err != nil {
		return nil, fmt.Errorf("sealing: wrap %s key %d of %s: %w", kind, version, tenant, err)
	}
	tag, err := tx.Exec(ctx, `INSERT INTO register_key (tenant_id, kind, version, kek_version, wrapped)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`, tenant, kind, version, kek, wrapped)
	if err != nil {
		return nil, fmt.Errorf("sealing: store %s key %d of %s: %w", kind, version, tenant, err)
	}
	if tag.RowsAffected() == 0 {
		return k.load(ctx, tx, tenant, kind, version)
	}
	return key, nil
}

// Rotate makes a new data-key version the tenant's current one and returns
// it.
func (k *Keyring) Rotate(ctx context.Context, tx pgx.Tx, tenant string) (int, error) {
	var v int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) + 1 FROM register_key WHERE tenant_id = $1 AND kind = 'data'`, tenant).Scan(&v); err != nil {
		return 0, fmt.Errorf("sealing: rotate data key of %s: %w", tenant, err)
	}
	if _, err := k.create(ctx, tx, tenant, keyKindData, v); err != nil {
		return 0, err
	}
	k.mu.Lock()
	delete(k.current, tenant)
	k.mu.Unlock()
	return v, nil
}

// Rewrap wraps every key of the tenant again under its current KEK, after
// the KEK was rotated.
func (k *Keyring) Rewrap(ctx context.Context, tx pgx.Tx, tenant string) (int, error) {
	rows, err := tx.Query(ctx, `SELECT kind, version FROM register_key WHERE tenant_id = $1 ORDER BY kind, version`, tenant)
	if err != nil {
		return 0, fmt.Errorf("sealing: rewrap keys of %s: %w", tenant, err)
	}
	type kv struct {
		Kind    string
		Version int
	}
	ids, err := pgx.CollectRows(rows, pgx.RowToStructByPos[kv])
	if err != nil {
		return 0, fmt.Errorf("sealing: rewrap keys of %s: %w", tenant, err)
	}
	for _, id := range ids {
		key, err := k.load(ctx, tx, tenant, id.Kind, id.Version)
		if err != nil {
			return 0, err
		}
		wrapped, kek, err := k.provider.WrapKey(ctx, tenant, key, wrapAAD(tenant, id.Kind, id.Version))
		if err != nil {
			return 0, fmt.Errorf("sealing: rewrap %s key %d of %s: %w", id.Kind, id.Version, tenant, err)
		}
		if _, err := tx.Exec(ctx, `UPDATE register_key SET kek_version = $1, wrapped = $2 WHERE tenant_id = $3 AND kind = $4 AND version = $5`,
			kek, wrapped, tenant, id.Kind, id.Version); err != nil {
			return 0, fmt.Errorf("sealing: rewrap %s key %d of %s: %w", id.Kind, id.Version, tenant, err)
		}
	}
	return len(ids), nil
}

// wrapAAD binds a wrapped key to its tenant, kind and version.
func wrapAAD(tenant, kind string, version int) []byte {
	return []byte("parzelle/register-key/v1\x00" + tenant + "\x00" + kind + "\x00" + strconv.Itoa(version))
}

// Provider returns the key provider that wraps the keyring's keys.
func (k *Keyring) Provider() keys.Provider { return k.provider }

// Table is a table of sealed rows that a data-key rotation re-encrypts:
// the register's versions, facts and access log, the message boxes'
// content, dead letters. Its rows carry tenant_id and key_version (0: an
// earlier version stored the row in plaintext). Its operations run in a
// transaction of the tenant.
type Table struct {
	// Name says what the table holds, in logs.
	Name string
	// SQL is the table's name in the database.
	SQL string
	// Reseal seals up to limit of the tenant's rows under older keys again
	// under version (locking them, skipping rows others hold) and returns
	// how many it did.
	Reseal func(ctx context.Context, tx pgx.Tx, k *Keyring, tenant string, version, limit int) (int, error)
}

// Count returns how many of the tenant's rows are sealed under data keys
// older than version (or not at all).
func (t Table) Count(ctx context.Context, tx pgx.Tx, tenant string, version int) (n int64, err error) {
	err = tx.QueryRow(ctx, `SELECT count(*) FROM `+t.SQL+` WHERE tenant_id = $1 AND key_version < $2`, tenant, version).Scan(&n)
	return n, err
}

// Uses reports whether a row of the tenant is sealed under version.
func (t Table) Uses(ctx context.Context, tx pgx.Tx, tenant string, version int) (used bool, err error) {
	err = tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+t.SQL+` WHERE tenant_id = $1 AND key_version = $2)`, tenant, version).Scan(&used)
	return used, err
}

// DataKey is a tenant's current data key, to seal with in a transaction
// that is not the tenant's own (a message stored for two tenants at once).
type DataKey struct {
	Tenant  string
	Version int
	aead    cipher.AEAD
}

// Seal encrypts plaintext under the key, bound to aad: a random 12-byte
// nonce, then the AES-GCM ciphertext with its tag.
func (d *DataKey) Seal(aad, plaintext []byte) ([]byte, error) {
	out := make([]byte, nonceSize, nonceSize+len(plaintext)+d.aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("sealing: nonce: %w", err)
	}
	return d.aead.Seal(out, out, plaintext, aad), nil
}

// Current returns the tenant's current data key: from memory, else (the
// first time, or when the version is due to be looked up again) loaded in
// a transaction of its own, after Ensure. Call it before the transaction
// that seals.
func (k *Keyring) Current(ctx context.Context, pool *pgxpool.Pool, tenant string) (*DataKey, error) {
	k.mu.Lock()
	c, ok := k.current[tenant]
	var aead cipher.AEAD
	if ok && k.now().Before(c.until) {
		aead = k.aeads[keyID{tenant, c.version}]
	}
	k.mu.Unlock()
	if aead != nil {
		return &DataKey{Tenant: tenant, Version: c.version, aead: aead}, nil
	}
	if err := k.Ensure(ctx, pool, tenant); err != nil {
		return nil, err
	}
	d := &DataKey{Tenant: tenant}
	err := db.InTenant(ctx, pool, tenant, func(tx pgx.Tx) error {
		var err error
		if d.Version, err = k.CurrentVersion(ctx, tx, tenant); err != nil {
			return err
		}
		d.aead, err = k.dataKey(ctx, tx, tenant, d.Version)
		return err
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// OpenOrPlain is Open for tables that held plaintext before sealing was
// introduced: version 0 is such a row, returned as it is stored.
func (k *Keyring) OpenOrPlain(ctx context.Context, tx pgx.Tx, tenant string, version int, aad, stored []byte) ([]byte, error) {
	if version == 0 {
		return stored, nil
	}
	return k.Open(ctx, tx, tenant, version, aad, stored)
}
