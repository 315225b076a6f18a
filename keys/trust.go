package keys

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// TrustStore decides which signing certificates are trusted: those that
// chain to one of its CA certificates, and those pinned as themselves (a
// counterpart's end-entity certificate listed directly).
type TrustStore struct {
	roots  *x509.CertPool
	pinned []*x509.Certificate
	certs  []*x509.Certificate
}

// NewTrustStore trusts the given certificates: CA certificates as anchors,
// end-entity certificates as pinned.
func NewTrustStore(certs []*x509.Certificate) *TrustStore {
	t := &TrustStore{roots: x509.NewCertPool(), certs: certs}
	for _, c := range certs {
		if c.IsCA {
			t.roots.AddCert(c)
		} else {
			t.pinned = append(t.pinned, c)
		}
	}
	return t
}

// Certificates returns the trusted certificates as configured.
func (t *TrustStore) Certificates() []*x509.Certificate { return t.certs }

// ErrUntrusted is wrapped by every refusal of Verify.
var ErrUntrusted = errors.New("certificate not trusted")

// Verify checks that leaf was valid at the time given and is either pinned
// or chains to an anchor (through intermediates, which need not be
// trusted). It returns the chain, leaf first.
func (t *TrustStore) Verify(leaf *x509.Certificate, intermediates []*x509.Certificate, at time.Time) ([]*x509.Certificate, error) {
	if at.Before(leaf.NotBefore) || at.After(leaf.NotAfter) {
		return nil, fmt.Errorf("%w: %q was not valid at %s (valid %s to %s)", ErrUntrusted, leaf.Subject,
			at.UTC().Format(time.RFC3339), leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	for _, p := range t.pinned {
		if p.Equal(leaf) {
			return []*x509.Certificate{leaf}, nil
		}
	}
	pool := x509.NewCertPool()
	for _, c := range intermediates {
		pool.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots: t.roots, Intermediates: pool, CurrentTime: at,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %q (issued by %q): %v", ErrUntrusted, leaf.Subject, leaf.Issuer, err)
	}
	return chains[0], nil
}
