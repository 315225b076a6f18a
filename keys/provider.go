package keys

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Provider hands out a tenant's keys and trust anchors and wraps the data
// keys of the register's envelope encryption.
//
// It is the seam between the code that signs, decrypts and verifies and the
// place the keys live. Keys leave a Provider only as a KeyPair whose Key is
// a crypto.Signer (RSA keys also a crypto.Decrypter), never as raw key
// bytes, so that an HSM reached through PKCS#11 or a remote KMS can
// implement it with keys that never leave the device: such an
// implementation returns Signers whose Sign calls the device. Likewise the
// key-encryption keys stay inside the Provider; callers only see wrapped
// data keys and a KEK version.
//
// Every method takes the tenant id; a tenant the node does not know is an
// error wrapping ErrUnknownTenant, something the tenant has not configured
// one wrapping ErrNotConfigured. Implementations are safe for concurrent
// use and answer from the current configuration, so a rotated key is used
// from the next call on.
type Provider interface {
	// SigningKey returns the tenant's current signing key.
	SigningKey(ctx context.Context, tenant string) (*KeyPair, error)
	// DecryptionKeys returns the tenant's decryption keys, current first,
	// then older ones kept so that messages encrypted to them during a
	// rotation still decrypt.
	DecryptionKeys(ctx context.Context, tenant string) ([]*KeyPair, error)
	// Trust returns the anchors the tenant trusts for signatures of the
	// counterpart identity: its tenant-wide signers plus those configured
	// for that counterpart. Counterpart "" gives the tenant-wide ones only.
	Trust(ctx context.Context, tenant, counterpart string) (*TrustStore, error)
	// WrapKey encrypts a data key with the tenant's current key-encryption
	// key, bound to aad (which must be given again to unwrap), and returns
	// the KEK version to store beside the wrapped key.
	WrapKey(ctx context.Context, tenant string, dek, aad []byte) (wrapped []byte, kekVersion int, err error)
	// UnwrapKey decrypts a data key wrapped by WrapKey with the given KEK
	// version and the same aad.
	UnwrapKey(ctx context.Context, tenant string, kekVersion int, wrapped, aad []byte) ([]byte, error)
	// RotateKEK makes a new key-encryption key the tenant's current one and
	// returns its version; older versions still unwrap.
	RotateKEK(ctx context.Context, tenant string) (int, error)
	// Certificates lists every certificate the provider holds for the
	// current tenants, for expiry monitoring and `parzelle keys list`.
	Certificates(ctx context.Context) ([]Certificate, error)
}

var (
	// ErrUnknownTenant is wrapped by errors for a tenant id the node does
	// not know.
	ErrUnknownTenant = errors.New("unknown tenant")
	// ErrNotConfigured is wrapped by errors for key material the tenant's
	// configuration does not provide.
	ErrNotConfigured = errors.New("not configured")
)

// Material is one tenant's key material as its configuration declares it.
// It is immutable once built: a changed configuration is a new Material.
type Material struct {
	// Signing are the signing keys; the first is the current one.
	Signing []*KeyPair
	// Decryption are the decryption keys, current first.
	Decryption []*KeyPair
	// Signers are trusted for signatures from every counterpart: CA
	// certificates as anchors, end-entity certificates pinned.
	Signers []*x509.Certificate
	// Counterparts are trusted for one counterpart identity each (in
	// addition to Signers).
	Counterparts map[string][]*x509.Certificate
	// ClientCAs are the CAs the tenant's transport clients chain to; they
	// are listed here for expiry monitoring only.
	ClientCAs []*x509.Certificate
}

// Trust returns the trust store for signatures of the counterpart: Signers
// plus the counterpart's own certificates ("" for Signers only).
func (m *Material) Trust(counterpart string) *TrustStore {
	certs := slices.Clip(m.Signers)
	if counterpart != "" {
		certs = append(certs, m.Counterparts[counterpart]...)
	}
	return NewTrustStore(certs)
}

// Tenants is the view of the current tenants a Provider needs; the tenant
// package's Set implements it. (The keys package cannot import tenant,
// which imports keys to load the files.)
type Tenants interface {
	// KeyMaterial returns the tenant's key material; ok is false for a
	// tenant that does not exist.
	KeyMaterial(tenant string) (m *Material, ok bool)
	// TenantIDs returns the id of every tenant, sorted.
	TenantIDs() []string
}

// Certificate usages, as the expiry metric labels them.
const (
	UsageSigning    = "signing"
	UsageDecryption = "decryption"
	UsageTrust      = "trust"
	UsageClientCA   = "client-ca"
)

// Certificate is one certificate a tenant's configuration holds, with what
// it is used for.
type Certificate struct {
	Tenant string
	// Usage is one of the Usage constants.
	Usage string
	// Counterpart is the counterpart identity a trust certificate is
	// configured for ("" for tenant-wide ones).
	Counterpart string
	// Current is false for certificates that are kept but no longer (or
	// not yet) in use: signing keys after the first and previous
	// decryption keys. Their expiry is expected and not monitored.
	Current bool
	Cert    *x509.Certificate
}

// Label is the usage as `parzelle keys list` shows it, e.g. "decryption
// (previous)" or "trust (ags:05315000)".
func (c Certificate) Label() string {
	switch {
	case c.Counterpart != "":
		return fmt.Sprintf("%s (%s)", c.Usage, c.Counterpart)
	case !c.Current && c.Usage == UsageDecryption:
		return c.Usage + " (previous)"
	case !c.Current:
		return c.Usage + " (standby)"
	}
	return c.Usage
}

// Left is the time from now until the certificate expires (negative once it
// has).
func (c Certificate) Left(now time.Time) time.Duration { return c.Cert.NotAfter.Sub(now) }

// Certificates lists the certificates of every tenant in ts: each key
// pair's chain, the trust anchors and the client CAs, in tenant order.
func Certificates(ts Tenants) []Certificate {
	var out []Certificate
	for _, id := range ts.TenantIDs() {
		m, ok := ts.KeyMaterial(id)
		if !ok {
			continue
		}
		seen := map[string]bool{}
		add := func(usage, counterpart string, current bool, certs ...*x509.Certificate) {
			for _, c := range certs {
				k := fmt.Sprintf("%s\x00%s\x00%x", usage, counterpart, c.Raw)
				if seen[k] {
					continue
				}
				seen[k] = true
				out = append(out, Certificate{Tenant: id, Usage: usage, Counterpart: counterpart, Current: current, Cert: c})
			}
		}
		for i, kp := range m.Signing {
			add(UsageSigning, "", i == 0, kp.Chain...)
		}
		for i, kp := range m.Decryption {
			add(UsageDecryption, "", i == 0, kp.Chain...)
		}
		add(UsageTrust, "", true, m.Signers...)
		cps := make([]string, 0, len(m.Counterparts))
		for cp := range m.Counterparts {
			cps = append(cps, cp)
		}
		slices.Sort(cps)
		for _, cp := range cps {
			add(UsageTrust, cp, true, m.Counterparts[cp]...)
		}
		add(UsageClientCA, "", true, m.ClientCAs...)
	}
	return out
}
