package xmlenc_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/xmlsafe"
)

// testRecipient is an RSA key pair with a self-signed certificate, written
// as PEM files for xmlsec1 and the command line.
type testRecipient struct {
	pair              *keys.KeyPair
	keyFile, certFile string
}

// newRecipient makes an RSA-2048 key with a certificate for key
// encipherment, and writes key.pem and cert.pem into t.TempDir().
func newRecipient(t testing.TB, name string) *testRecipient {
	t.Helper()
	return newRecipientBits(t, name, 2048)
}

// newRecipientBits is newRecipient with another key size (the fuzz target
// uses RSA-1024 to spend its time on parsing, not on modular arithmetic).
func newRecipientBits(t testing.TB, name string, bits int) *testRecipient {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name, Organization: []string{"Parzelle test"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	r := &testRecipient{
		pair:     &keys.KeyPair{Key: key, Chain: []*x509.Certificate{cert}},
		keyFile:  filepath.Join(dir, "key.pem"),
		certFile: filepath.Join(dir, "cert.pem"),
	}
	if err := os.WriteFile(r.keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *testRecipient) cert() *x509.Certificate { return r.pair.Chain[0] }

func mustParse(t testing.TB, doc []byte) *xmlsafe.Element {
	t.Helper()
	root, err := xmlsafe.Parse(bytes.NewReader(doc), xmlsafe.Options{})
	if err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	return root
}

// tree renders a parsed document as namespace-resolved names, sorted
// attributes and text, so that documents serialized differently (xmlsec1
// rewrites namespace declarations and the XML declaration) compare equal
// when their information is equal.
func tree(e *xmlsafe.Element) string {
	var b strings.Builder
	var walk func(e *xmlsafe.Element, depth int)
	walk = func(e *xmlsafe.Element, depth int) {
		var attrs []string
		for _, a := range e.Attr {
			attrs = append(attrs, fmt.Sprintf("{%s}%s=%q", a.Name.Space, a.Name.Local, a.Value))
		}
		sort.Strings(attrs)
		fmt.Fprintf(&b, "%s{%s}%s %s %q\n", strings.Repeat(" ", depth), e.Name.Space, e.Name.Local, strings.Join(attrs, " "), strings.TrimSpace(e.Text))
		for _, c := range e.Children {
			walk(c, depth+1)
		}
	}
	walk(e, 0)
	return b.String()
}

// find returns the first element with the local name.
func find(e *xmlsafe.Element, local string) *xmlsafe.Element {
	if e.Name.Local == local {
		return e
	}
	for _, c := range e.Children {
		if f := find(c, local); f != nil {
			return f
		}
	}
	return nil
}

func recipientsOf(rs ...*testRecipient) []*x509.Certificate {
	var out []*x509.Certificate
	for _, r := range rs {
		out = append(out, r.cert())
	}
	return out
}
