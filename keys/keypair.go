// Package keys loads and provides the keys and certificates tenants sign,
// decrypt and verify with: PEM and PKCS#12 key pairs, per-tenant trust
// stores, and a Provider interface that a file store implements today and an
// HSM or remote KMS can implement later.
package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// KeyPair is a private key with its certificate chain, leaf first. The key
// is a crypto.Signer; RSA keys are also crypto.Decrypters.
type KeyPair struct {
	Key   crypto.Signer
	Chain []*x509.Certificate
}

// Certificate returns the leaf certificate.
func (k *KeyPair) Certificate() *x509.Certificate { return k.Chain[0] }

// Decrypter returns the key as a crypto.Decrypter, or an error when its type
// cannot decrypt (ECDSA, Ed25519).
func (k *KeyPair) Decrypter() (crypto.Decrypter, error) {
	d, ok := k.Key.(crypto.Decrypter)
	if !ok {
		return nil, fmt.Errorf("keys: a %s key cannot decrypt", KeyType(k.Key.Public()))
	}
	if _, rsaKey := k.Key.Public().(*rsa.PublicKey); !rsaKey {
		return nil, fmt.Errorf("keys: a %s key cannot decrypt", KeyType(k.Key.Public()))
	}
	return d, nil
}

// KeyType names a public key's algorithm and size, e.g. "RSA-4096".
func KeyType(pub crypto.PublicKey) string {
	switch p := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", p.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA-" + p.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", pub)
}

// LoadPEM reads a PEM private key (PKCS#8, PKCS#1 or SEC 1, unencrypted) and
// a PEM certificate chain, leaf first; the leaf must belong to the key.
func LoadPEM(keyFile, certFile string) (*KeyPair, error) {
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	return ParsePEM(keyPEM, certPEM, keyFile, certFile)
}

// LoadPKCS12 reads a PKCS#12 file (modern AES/SHA-256 ones and the legacy
// 3DES/RC2/SHA-1 ones many PKIs still issue) with its password.
func LoadPKCS12(file, password string) (*KeyPair, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	return ParsePKCS12(data, password, file)
}

// LoadFile loads a key pair by the key file's extension: .p12 and .pfx are
// PKCS#12 (certFile is ignored), anything else a PEM key with certFile.
func LoadFile(keyFile, certFile, password string) (*KeyPair, error) {
	switch strings.ToLower(filepath.Ext(keyFile)) {
	case ".p12", ".pfx":
		return LoadPKCS12(keyFile, password)
	}
	if certFile == "" {
		return nil, fmt.Errorf("keys: %s is a PEM key: its certificate file is needed too", keyFile)
	}
	return LoadPEM(keyFile, certFile)
}

func newKeyPair(key crypto.Signer, chain []*x509.Certificate, source string) (*KeyPair, error) {
	if len(chain) == 0 {
		return nil, fmt.Errorf("keys: %s: no certificate", source)
	}
	type publicKey interface{ Equal(crypto.PublicKey) bool }
	pub, ok := key.Public().(publicKey)
	if !ok || !pub.Equal(chain[0].PublicKey) {
		return nil, fmt.Errorf("keys: %s: certificate %q does not belong to the private key", source, chain[0].Subject)
	}
	return &KeyPair{Key: key, Chain: chain}, nil
}

// LoadCertificates reads a certificate file: PEM (one or more) or DER.
func LoadCertificates(file string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	return ParseCertificates(data, file)
}
