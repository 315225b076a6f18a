package keys

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parzelle/parzelle/pki"
)

// specs is the standards material beside the repository (see DESIGN.md);
// CI always has it.
const specs = "../../shared/specs"

func TestLoadPKCS12Legacy(t *testing.T) {
	file := filepath.Join(specs, "osci", "testcerts", "alice_signature_4096.p12")
	kp, err := LoadPKCS12(file, "123456")
	if err != nil {
		t.Fatal(err)
	}
	if got := kp.Certificate().Subject.CommonName; got != "Alice Signature 4096" {
		t.Errorf("leaf %q", got)
	}
	if got := KeyType(kp.Key.Public()); got != "RSA-4096" {
		t.Errorf("key type %s", got)
	}
	digest := sha256.Sum256([]byte("Parzelle"))
	sig, err := kp.Key.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPKCS1v15(kp.Certificate().PublicKey.(*rsa.PublicKey), crypto.SHA256, digest[:], sig); err != nil {
		t.Errorf("the loaded key does not sign for its certificate: %v", err)
	}
	if _, err := kp.Decrypter(); err != nil {
		t.Errorf("an RSA key cannot decrypt: %v", err)
	}

	_, err = LoadPKCS12(file, "654321")
	if err == nil || !strings.Contains(err.Error(), "alice_signature_4096.p12: wrong PKCS#12 password") {
		t.Errorf("wrong password: %v", err)
	}
	// The .cer next to it is DER.
	certs, err := LoadCertificates(filepath.Join(specs, "osci", "testcerts", "alice_signature_4096.cer"))
	if err != nil || !certs[0].Equal(kp.Certificate()) {
		t.Errorf("DER certificate: %v", err)
	}
}

func TestLoadPEM(t *testing.T) {
	dir := t.TempDir()
	ca := authority(t, "CA")
	now := time.Now()
	for _, name := range []string{"a", "b"} {
		cert, key, err := ca.Issue(pki.Template{Subject: pkix.Name{CommonName: name}, NotBefore: now, NotAfter: now.Add(time.Hour)}, pki.ECDSAP256)
		if err != nil {
			t.Fatal(err)
		}
		if err := pki.WriteFiles(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"), cert, key); err != nil {
			t.Fatal(err)
		}
	}
	kp, err := LoadFile(filepath.Join(dir, "a.key"), filepath.Join(dir, "a.crt"), "")
	if err != nil || kp.Certificate().Subject.CommonName != "a" {
		t.Fatalf("%v %+v", err, kp)
	}
	if _, err := kp.Decrypter(); err == nil || !strings.Contains(err.Error(), "a ECDSA-P-256 key cannot decrypt") {
		t.Errorf("an ECDSA key as decrypter: %v", err)
	}
	for _, tc := range []struct{ name, key, cert, want string }{
		{"mismatch", "a.key", "b.crt", `b.crt: certificate "CN=b" does not belong to the private key`},
		{"certificate as key", "a.crt", "a.crt", `a "CERTIFICATE" PEM block is not a private key`},
		{"no certificate", "a.key", "", "its certificate file is needed too"},
		{"missing file", "c.key", "a.crt", "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert := tc.cert
			if cert != "" {
				cert = filepath.Join(dir, cert)
			}
			_, err := LoadFile(filepath.Join(dir, tc.key), cert, "")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func authority(t *testing.T, name string) *pki.Authority {
	t.Helper()
	ca, err := pki.NewAuthority(pkix.Name{CommonName: name}, pki.ECDSAP256, time.Now().Add(-24*time.Hour), time.Now().Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// intermediate issues a CA certificate below parent.
func intermediate(t *testing.T, parent *pki.Authority, name string) *pki.Authority {
	t.Helper()
	child := authority(t, name)
	tmpl := *child.Cert
	tmpl.MaxPathLenZero = true
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, parent.Cert, child.Key.Public(), parent.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.Authority{Cert: cert, Key: child.Key}
}

func TestTrustStoreVerify(t *testing.T) {
	now := time.Now()
	root, other := authority(t, "Root"), authority(t, "Other")
	// Root's MaxPathLenZero forbids intermediates, so chains use a root
	// without that limit.
	tmpl := *root.Cert
	tmpl.MaxPathLenZero, tmpl.MaxPathLen = false, -1
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, root.Key.Public(), root.Key)
	if err != nil {
		t.Fatal(err)
	}
	root.Cert, _ = x509.ParseCertificate(der)
	sub := intermediate(t, root, "Sub")
	leaf := func(ca *pki.Authority, cn string, from, to time.Time) *x509.Certificate {
		cert, _, err := ca.Issue(pki.Template{Subject: pkix.Name{CommonName: cn}, NotBefore: from, NotAfter: to}, pki.ECDSAP256)
		if err != nil {
			t.Fatal(err)
		}
		return cert
	}
	valid := func(ca *pki.Authority, cn string) *x509.Certificate {
		return leaf(ca, cn, now.Add(-time.Hour), now.Add(time.Hour))
	}
	pinned := valid(other, "pinned")
	store := NewTrustStore([]*x509.Certificate{root.Cert, pinned})

	for _, tc := range []struct {
		name          string
		leaf          *x509.Certificate
		intermediates []*x509.Certificate
		at            time.Time
		chain         int    // length of the chain returned, 0 for refused
		why           string // part of the refusal
	}{
		{"issued by the anchor", valid(root, "direct"), nil, now, 2, ""},
		{"through an intermediate", valid(sub, "deep"), []*x509.Certificate{sub.Cert}, now, 3, ""},
		{"pinned end-entity", pinned, nil, now, 1, ""},
		{"intermediate missing", valid(sub, "deep"), nil, now, 0, "unknown authority"},
		{"untrusted CA", valid(other, "stranger"), nil, now, 0, `"CN=stranger" (issued by "CN=Other")`},
		{"expired", leaf(root, "old", now.Add(-3*time.Hour), now.Add(-2*time.Hour)), nil, now, 0, "was not valid at"},
		{"not yet valid", leaf(root, "young", now.Add(2*time.Hour), now.Add(3*time.Hour)), nil, now, 0, "was not valid at"},
		{"expired now, valid at signing time", leaf(root, "old", now.Add(-3*time.Hour), now.Add(-2*time.Hour)), nil, now.Add(-150 * time.Minute), 2, ""},
		{"pinned but expired at that time", pinned, nil, now.Add(2 * time.Hour), 0, "was not valid at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chain, err := store.Verify(tc.leaf, tc.intermediates, tc.at)
			if tc.chain == 0 {
				if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), tc.why) {
					t.Fatalf("got %v, want a refusal with %q", err, tc.why)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(chain) != tc.chain || !chain[0].Equal(tc.leaf) {
				t.Errorf("chain of %d, want %d", len(chain), tc.chain)
			}
		})
	}
	if n := len(store.Certificates()); n != 2 {
		t.Errorf("Certificates: %d", n)
	}
}

func TestParseCertificatesRejectsJunk(t *testing.T) {
	if _, err := ParseCertificates([]byte("not a certificate"), "junk.crt"); err == nil || !strings.Contains(err.Error(), "junk.crt: neither PEM nor a DER certificate") {
		t.Errorf("junk: %v", err)
	}
	if _, err := ParsePKCS12([]byte{0x30, 0x03, 0x02, 0x01, 0x03}, "x", "bad.p12"); err == nil || !strings.Contains(err.Error(), "bad.p12") {
		t.Errorf("bad PKCS#12: %v", err)
	}
	if _, err := os.Stat(specs); err != nil {
		t.Fatalf("the standards material is missing: %v", err)
	}
}
