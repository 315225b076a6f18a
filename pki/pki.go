// Package pki issues and loads X.509 certificates: the demo PKI that `make
// run` and the tests use, and PEM loading for the node's trust stores.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Algorithm is the key type of issued certificates.
type Algorithm string

const (
	ECDSAP256 Algorithm = "ecdsa-p256"
	RSA3072   Algorithm = "rsa-3072"
)

// NewKey generates a private key of the algorithm.
func NewKey(alg Algorithm) (crypto.Signer, error) {
	switch alg {
	case ECDSAP256, "":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case RSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	}
	return nil, fmt.Errorf("pki: unknown key algorithm %q (known: %s, %s)", alg, ECDSAP256, RSA3072)
}

// Authority is a certificate authority that can issue certificates.
type Authority struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// Template describes a certificate to issue.
type Template struct {
	Subject   pkix.Name
	DNSNames  []string
	IPs       []net.IP
	NotBefore time.Time
	NotAfter  time.Time
	Server    bool // serverAuth usage
	Client    bool // clientAuth usage
}

// NewAuthority creates a self-signed CA.
func NewAuthority(subject pkix.Name, alg Algorithm, notBefore, notAfter time.Time) (*Authority, error) {
	key, err := NewKey(alg)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               subject,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parse CA certificate: %w", err)
	}
	return &Authority{Cert: cert, Key: key}, nil
}

// Issue creates a key of the algorithm and a certificate for it signed by
// the authority.
func (a *Authority) Issue(t Template, alg Algorithm) (*x509.Certificate, crypto.Signer, error) {
	key, err := NewKey(alg)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      t.Subject,
		DNSNames:     t.DNSNames,
		IPAddresses:  t.IPs,
		NotBefore:    t.NotBefore,
		NotAfter:     t.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if _, isRSA := key.(*rsa.PrivateKey); isRSA {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	if t.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if t.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Cert, key.Public(), a.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: issue certificate for %s: %w", t.Subject, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: parse issued certificate: %w", err)
	}
	return cert, key, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

// Fingerprint is the lowercase hex SHA-256 of the certificate's DER form.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// EncodeCertificate returns the PEM form of a certificate.
func EncodeCertificate(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}

// EncodeKey returns the PKCS#8 PEM form of a private key.
func EncodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// WriteFiles writes a certificate and its key as PEM (the key readable by
// the owner only), creating the directory when missing.
func WriteFiles(certPath, keyPath string, cert *x509.Certificate, key crypto.Signer) error {
	keyPEM, err := EncodeKey(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(certPath), 0o755); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return fmt.Errorf("pki: write key: %w", err)
	}
	if err := os.WriteFile(certPath, EncodeCertificate(cert), 0o644); err != nil {
		return fmt.Errorf("pki: write certificate: %w", err)
	}
	return nil
}

// ParseCertificates reads every CERTIFICATE block of PEM data; anything else
// in it, or no certificate at all, is an error.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("pki: found a %q PEM block where only certificates belong", block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("pki: parse certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, errors.New("pki: no PEM certificate found")
	}
	return certs, nil
}

// LoadCertificates reads a PEM file of one or more certificates.
func LoadCertificates(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	certs, err := ParseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}

// LoadKey reads a PEM private key (PKCS#8, PKCS#1 or SEC 1).
func LoadKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return ParseKey(data, path)
}

// ParseKey reads an unencrypted PEM private key (PKCS#8, PKCS#1 or SEC 1);
// source names the data in errors.
func ParseKey(data []byte, source string) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("pki: %s: no PEM block (want an unencrypted PEM private key)", source)
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "ENCRYPTED PRIVATE KEY":
		return nil, fmt.Errorf("pki: %s: encrypted PEM keys are not supported; use a PKCS#12 file with a password file instead", source)
	default:
		return nil, fmt.Errorf("pki: %s: a %q PEM block is not a private key", source, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", source, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("pki: %s: key type %T cannot sign", source, key)
	}
	return signer, nil
}

// ClientTLS is the TLS configuration of a client: the client certificate
// (none when certFile is empty) and, when caFile is given, its
// certificates as the only roots for the server (else the system's),
// which it returns too.
func ClientTLS(certFile, keyFile, caFile string) (*tls.Config, []*x509.Certificate, error) {
	tcfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("client certificate: %w", err)
		}
		tcfg.Certificates = []tls.Certificate{cert}
	}
	if caFile == "" {
		return tcfg, nil, nil
	}
	cas, err := LoadCertificates(caFile)
	if err != nil {
		return nil, nil, err
	}
	tcfg.RootCAs = x509.NewCertPool()
	for _, c := range cas {
		tcfg.RootCAs.AddCert(c)
	}
	return tcfg, cas, nil
}
