package keys

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/parzelle/parzelle/pki"
)

// The Parse functions build key pairs and certificates from data the caller
// has read already, so that what is hashed as a configuration version is
// exactly what is loaded. Source names the data in errors (usually the
// file's path).

// ParsePEM builds a key pair from a PEM private key (PKCS#8, PKCS#1 or
// SEC 1, unencrypted) and a PEM certificate chain, leaf first; the leaf must
// belong to the key.
func ParsePEM(keyPEM, certPEM []byte, keySource, certSource string) (*KeyPair, error) {
	key, err := parsePEMKey(keyPEM, keySource)
	if err != nil {
		return nil, err
	}
	chain, err := ParseCertificates(certPEM, certSource)
	if err != nil {
		return nil, err
	}
	return newKeyPair(key, chain, certSource)
}

// ParsePKCS12 builds a key pair from the content of a PKCS#12 file, modern
// (AES, SHA-256) or legacy (3DES/RC2, SHA-1).
func ParsePKCS12(data []byte, password, source string) (*KeyPair, error) {
	key, leaf, cas, err := pkcs12.DecodeChain(data, password)
	if err != nil {
		if errors.Is(err, pkcs12.ErrIncorrectPassword) {
			return nil, fmt.Errorf("keys: %s: wrong PKCS#12 password", source)
		}
		if bytes.Contains(data, []byte("-----BEGIN")) {
			return nil, fmt.Errorf("keys: %s is PEM, not PKCS#12 (name PEM files with key and cert)", source)
		}
		if strings.Contains(err.Error(), "error reading P12 data") {
			return nil, fmt.Errorf("keys: %s is not a PKCS#12 file", source)
		}
		return nil, fmt.Errorf("keys: %s: cannot read the PKCS#12 file: %w", source, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("keys: %s: key type %T cannot sign", source, key)
	}
	return newKeyPair(signer, append([]*x509.Certificate{leaf}, cas...), source)
}

// ParseCertificates reads certificates from PEM (one or more) or DER data.
func ParseCertificates(data []byte, source string) ([]*x509.Certificate, error) {
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		cert, err := x509.ParseCertificate(data)
		if err != nil {
			return nil, fmt.Errorf("keys: %s: neither PEM nor a DER certificate: %w", source, err)
		}
		return []*x509.Certificate{cert}, nil
	}
	certs, err := pki.ParseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("keys: %s: %s", source, strings.TrimPrefix(err.Error(), "pki: "))
	}
	return certs, nil
}

func parsePEMKey(data []byte, source string) (crypto.Signer, error) {
	key, err := pki.ParseKey(data, source)
	if err != nil {
		return nil, fmt.Errorf("keys: %s", strings.TrimPrefix(err.Error(), "pki: "))
	}
	return key, nil
}
