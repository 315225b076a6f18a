package tenant

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/parzelle/parzelle/golden"
	"github.com/parzelle/parzelle/pki"
)

// keyFiles writes the key material the keys-section tests name into dir,
// with fixed validity periods so that error messages are stable:
//
//	ca.crt                  CA, 2019 to 2100
//	sign.key/.crt           ECDSA, valid 2020 to 2099
//	enc.key/.crt, enc.der   RSA, valid 2020 to 2099 (enc.der: the certificate as DER)
//	enc.p12                 enc.key/.crt as PKCS#12, password in enc.pin ("geheim\n")
//	expired.key/.crt        ECDSA, valid 2020 to 2021
//	future.key/.crt         ECDSA, valid 2098 to 2099
//	wrong.pin               another password
//	oldenc.key/.crt         RSA, valid 2020 to 2021
func keyFiles(t *testing.T, dir string) *pki.Authority {
	t.Helper()
	date := func(y int) time.Time { return time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC) }
	ca, err := pki.NewAuthority(pkix.Name{CommonName: "Keys Test CA"}, pki.ECDSAP256, date(2019), date(2100))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "ca.crt"), pki.EncodeCertificate(ca.Cert))
	issue := func(name string, alg pki.Algorithm, from, to int) (*x509.Certificate, any) {
		cert, key, err := ca.Issue(pki.Template{Subject: pkix.Name{CommonName: name}, NotBefore: date(from), NotAfter: date(to)}, alg)
		if err != nil {
			t.Fatal(err)
		}
		if err := pki.WriteFiles(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"), cert, key); err != nil {
			t.Fatal(err)
		}
		return cert, key
	}
	issue("sign", pki.ECDSAP256, 2020, 2099)
	encCert, encKey := issue("enc", pki.RSA3072, 2020, 2099)
	issue("expired", pki.ECDSAP256, 2020, 2021)
	issue("future", pki.ECDSAP256, 2098, 2099)
	writeFile(t, filepath.Join(dir, "enc.der"), encCert.Raw)
	p12, err := pkcs12.Modern.Encode(encKey, encCert, []*x509.Certificate{ca.Cert}, "geheim")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "enc.p12"), p12)
	writeFile(t, filepath.Join(dir, "enc.pin"), []byte("geheim\n"))
	writeFile(t, filepath.Join(dir, "wrong.pin"), []byte("falsch\n"))
	issue("oldenc", pki.RSA3072, 2020, 2021)
	return ca
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

const keysHeader = `id: %s
name: Keys test
identities:
  - id: ags:09999000
    type: xoev
    category: Meldebehörde
    transports: [osci]
`

// TestKeysRejects checks every file in testdata/keys against the errors in
// its .golden file: each names the file, the line and the field.
func TestKeysRejects(t *testing.T) {
	dir := t.TempDir()
	keyFiles(t, dir)
	t.Setenv("PARZELLE_TEST_P12_PIN", "falsch")
	files, _ := filepath.Glob("testdata/keys/*.yaml")
	if len(files) < 4 {
		t.Fatalf("only %d files in testdata/keys", len(files))
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, filepath.Base(file))
			writeFile(t, path, data)
			_, err = ParseFile(path)
			if err == nil {
				t.Fatal("accepted a bad keys section")
			}
			got := strings.ReplaceAll(err.Error(), dir, "testdata/keys") + "\n"
			golden.Check(t, strings.TrimSuffix(file, ".yaml")+".golden", []byte(got))
		})
	}
}

// TestKeysLoad parses a keys section using every form and checks what the
// Config then holds.
func TestKeysLoad(t *testing.T) {
	dir := t.TempDir()
	ca := keyFiles(t, dir)
	t.Setenv("PARZELLE_TEST_P12_PIN", "geheim")
	doc := strings.Replace(keysHeader, "%s", "alpha", 1) + `keys:
  signing:
    - key: sign.key
      cert: sign.crt
    - key: future.key
      cert: future.crt
  decryption:
    - pkcs12: enc.p12
      passwordFile: enc.pin
    - pkcs12: enc.p12
      passwordEnv: PARZELLE_TEST_P12_PIN
  trust:
    signers: [ca.crt]
    counterparts:
      - identity: ags:05315000
        signers: [enc.der, sign.crt]
`
	path := filepath.Join(dir, "alpha.yaml")
	writeFile(t, path, []byte(doc))
	c, err := ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.SigningKey().Certificate().Subject.CommonName; got != "sign" {
		t.Errorf("current signing key %q, want sign", got)
	}
	if n := len(c.KeyMaterial().Signing); n != 2 {
		t.Errorf("%d signing keys, want 2 (a standby key may be not yet valid)", n)
	}
	dec := c.DecryptionKeys()
	if len(dec) != 2 || dec[0].Certificate().Subject.CommonName != "enc" || len(dec[0].Chain) != 2 {
		t.Fatalf("decryption keys: %+v", dec)
	}
	if _, err := dec[0].Decrypter(); err != nil {
		t.Error(err)
	}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	sign := c.SigningKey().Certificate()
	for _, tc := range []struct {
		counterpart string
		leaf        *x509.Certificate
		pinned      bool
	}{
		{"", sign, false}, // chains to ca.crt
		{"ags:05315000", dec[0].Certificate(), true}, // pinned as DER for this counterpart
	} {
		chain, err := c.SignerTrust(tc.counterpart).Verify(tc.leaf, nil, now)
		if err != nil || (len(chain) == 1) != tc.pinned {
			t.Errorf("trust %q for %s: chain %d, %v", tc.counterpart, tc.leaf.Subject, len(chain), err)
		}
	}
	if n := len(c.SignerTrust("ags:05315000").Certificates()); n != 3 {
		t.Errorf("counterpart trust holds %d certificates, want ca.crt + 2", n)
	}

	// A replaced key file or password file is a new configuration version
	// with the new key.
	cert, key, err := ca.Issue(pki.Template{Subject: pkix.Name{CommonName: "sign 2"}, NotBefore: now.AddDate(-10, 0, 0), NotAfter: now.AddDate(60, 0, 0)}, pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFiles(filepath.Join(dir, "sign.crt"), filepath.Join(dir, "sign.key"), cert, key); err != nil {
		t.Fatal(err)
	}
	c2, err := ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if c2.SHA256 == c.SHA256 || !c2.SigningKey().Certificate().Equal(cert) {
		t.Error("a replaced signing key is not a new version with the new key")
	}
	writeFile(t, filepath.Join(dir, "enc.pin"), []byte("geheim\r\n"))
	c3, err := ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if c3.SHA256 == c2.SHA256 {
		t.Error("a changed password file did not change the configuration version")
	}
}

// TestKeysPreviousMayExpire: only the current key must be valid; a previous
// decryption key is kept past its expiry so that old messages decrypt.
func TestKeysPreviousMayExpire(t *testing.T) {
	dir := t.TempDir()
	keyFiles(t, dir)
	doc := strings.Replace(keysHeader, "%s", "alpha", 1) + `keys:
  decryption:
    - key: enc.key
      cert: enc.crt
    - key: oldenc.key
      cert: oldenc.crt
`
	path := filepath.Join(dir, "alpha.yaml")
	writeFile(t, path, []byte(doc))
	c, err := ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if dec := c.DecryptionKeys(); len(dec) != 2 || dec[1].Certificate().Subject.CommonName != "oldenc" {
		t.Errorf("decryption keys %+v", dec)
	}
	// The same expired key as the current one is refused.
	writeFile(t, path, []byte(strings.Replace(doc, "enc.", "oldenc.", 2)))
	if _, err := ParseFile(path); err == nil || !strings.Contains(err.Error(), `alpha.yaml:10: keys.decryption[0]: certificate "CN=oldenc" expired on 2021-01-01`) {
		t.Errorf("an expired current decryption key: %v", err)
	}
}
