package xmldsig

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parzelle/parzelle/keys"
)

// testPKI is a CA with an RSA and an ECDSA signer, and an untrusted
// look-alike, written as PEM files for xmlsec1.
type testPKI struct {
	dir       string
	ca        *x509.Certificate
	caFile    string
	rsa, ec   testSigner
	untrusted testSigner // same subject as rsa, other CA
	trust     *keys.TrustStore
}

type testSigner struct {
	key              crypto.Signer
	cert             *x509.Certificate
	keyFile, crtFile string
}

var (
	pkiOnce sync.Once
	pkiVal  *testPKI
	pkiErr  error
)

// newTestPKI is made once per test binary (RSA key generation is slow).
func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	pkiOnce.Do(func() { pkiVal, pkiErr = makeTestPKI() })
	if pkiErr != nil {
		t.Fatal(pkiErr)
	}
	return pkiVal
}

func makeTestPKI() (*testPKI, error) {
	dir, err := os.MkdirTemp("", "xmldsig-pki-")
	if err != nil {
		return nil, err
	}
	p := &testPKI{dir: dir}
	ca, caKey, err := makeCA("Parzelle Test Signing CA")
	if err != nil {
		return nil, err
	}
	other, otherKey, err := makeCA("Parzelle Test Signing CA") // look-alike
	if err != nil {
		return nil, err
	}
	p.ca = ca
	p.caFile = filepath.Join(dir, "ca.pem")
	if err := writePEM(p.caFile, "CERTIFICATE", ca.Raw); err != nil {
		return nil, err
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	for _, s := range []struct {
		dst    *testSigner
		key    crypto.Signer
		name   string
		ca     *x509.Certificate
		caKey  crypto.Signer
		prefix string
	}{
		{&p.rsa, rsaKey, "Fachverfahren RSA", ca, caKey, "rsa"},
		{&p.ec, ecKey, "Fachverfahren ECDSA", ca, caKey, "ec"},
		{&p.untrusted, rsaKey, "Fachverfahren RSA", other, otherKey, "untrusted"},
	} {
		cert, err := issue(s.name, s.key, s.ca, s.caKey)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(s.key)
		if err != nil {
			return nil, err
		}
		*s.dst = testSigner{key: s.key, cert: cert, keyFile: filepath.Join(dir, s.prefix+".key"), crtFile: filepath.Join(dir, s.prefix+".crt")}
		if err := writePEM(s.dst.keyFile, "PRIVATE KEY", der); err != nil {
			return nil, err
		}
		if err := writePEM(s.dst.crtFile, "CERTIFICATE", cert.Raw); err != nil {
			return nil, err
		}
	}
	p.trust = keys.NewTrustStore([]*x509.Certificate{ca})
	return p, nil
}

func makeCA(name string) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name, Organization: []string{"Parzelle Test"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func issue(name string, key crypto.Signer, ca *x509.Certificate, caKey crypto.Signer) (*x509.Certificate, error) {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name, Organization: []string{"Parzelle Test"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(12 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func writePEM(file, typ string, der []byte) error {
	return os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

func (s testSigner) signer() *Signer {
	return &Signer{Key: s.key, Certificates: []*x509.Certificate{s.cert}}
}

// xmlsec1 runs Debian's xmlsec1 and fails the test when it is missing.
func xmlsec1(t testing.TB, args ...string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("xmlsec1"); err != nil {
		t.Fatal("xmlsec1 is not installed: run scripts/install-deps.sh (make test does)")
	}
	out, err := exec.Command("xmlsec1", args...).CombinedOutput()
	return string(out), err
}

// bigDocument is about 1 MB with 40,000 elements.
func bigDocument() []byte {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<doc xmlns="urn:parzelle:test" xmlns:p="urn:parzelle:p" Id="big">` + "\n")
	for i := 0; i < 20000; i++ {
		fmt.Fprintf(&b, "<r><p:v n=\"%d\">Mü&amp;%06d</p:v></r>\n", i, i)
	}
	b.WriteString("</doc>\n")
	return []byte(b.String())
}
