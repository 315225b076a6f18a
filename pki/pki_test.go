package pki

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestDemoCreatesThenReuses(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	files, err := Demo(dir, []string{"duesseldorf", "koeln"}, []string{"parzelle.example", "10.0.0.7"}, ECDSAP256, now)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ca.crt", "server.crt", "clients/duesseldorf.crt", "clients/koeln.crt", "clients/noots.crt", "vermittlungsstelle.crt",
		"tenants/duesseldorf/signing.crt", "tenants/duesseldorf/encryption.crt", "tenants/duesseldorf/idp.crt",
		"tenants/koeln/signing.crt", "tenants/koeln/encryption.crt", "tenants/koeln/idp.crt"}
	if len(files) != len(want) {
		t.Fatalf("files %+v", files)
	}
	for i, f := range files {
		if f.Path != filepath.Join(dir, want[i]) || !f.Created {
			t.Errorf("file %d: %+v, want created %s", i, f, want[i])
		}
	}
	ca := mustLoad(t, filepath.Join(dir, "ca.crt"))
	roots := x509.NewCertPool()
	roots.AddCert(ca)

	server := mustLoad(t, filepath.Join(dir, "server.crt"))
	for _, host := range []string{"localhost", "127.0.0.1", "::1", "parzelle.example", "10.0.0.7"} {
		if _, err := server.Verify(x509.VerifyOptions{Roots: roots, DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("server certificate for %s: %v", host, err)
		}
	}
	client := mustLoad(t, filepath.Join(dir, "clients", "koeln.crt"))
	if client.Subject.String() != "CN=koeln,OU=Fachverfahren,O=Parzelle Demo" {
		t.Errorf("client subject %s", client.Subject)
	}
	if _, err := client.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if _, ok := client.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("client key is %T, want ECDSA", client.PublicKey)
	}
	for _, key := range []string{"clients/koeln.key", "tenants/koeln/signing.key", "tenants/koeln/encryption.key", "tenants/koeln/idp.key"} {
		if fi, err := os.Stat(filepath.Join(dir, key)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v %v", key, fi.Mode(), err)
		}
	}
	signing := mustLoad(t, filepath.Join(dir, "tenants", "koeln", "signing.crt"))
	if signing.Subject.String() != "CN=koeln signing,OU=Register,O=Parzelle Demo" || signing.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		t.Errorf("signing certificate: %s, key usage %b", signing.Subject, signing.KeyUsage)
	}
	if _, ok := signing.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("signing key is %T, want the requested ECDSA", signing.PublicKey)
	}
	encryption := mustLoad(t, filepath.Join(dir, "tenants", "koeln", "encryption.crt"))
	if k, ok := encryption.PublicKey.(*rsa.PublicKey); !ok || k.N.BitLen() != 3072 || encryption.KeyUsage&x509.KeyUsageKeyEncipherment == 0 {
		t.Errorf("encryption certificate: want RSA-3072 for key encipherment, got %T, key usage %b", encryption.PublicKey, encryption.KeyUsage)
	}
	idp := mustLoad(t, filepath.Join(dir, "tenants", "koeln", "idp.crt"))
	if k, ok := idp.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve.Params().Name != "P-256" || idp.Subject.String() != "CN=koeln idp,OU=Identity Provider,O=Parzelle Demo" {
		t.Errorf("idp certificate: want ECDSA P-256 for CN=koeln idp, got %T for %s", idp.PublicKey, idp.Subject)
	}
	vs := mustLoad(t, filepath.Join(dir, "vermittlungsstelle.crt"))
	if k, ok := vs.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve.Params().Name != "P-256" {
		t.Errorf("the Vermittlungsstelle's seal: want ECDSA P-256, got %T", vs.PublicKey)
	}
	for _, c := range []*x509.Certificate{signing, encryption, idp, vs} {
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("%s does not chain to the demo CA: %v", c.Subject, err)
		}
	}

	// A second run reuses everything; a missing client is added under the same CA.
	files, err = Demo(dir, []string{"duesseldorf", "koeln", "bonn"}, nil, ECDSAP256, now)
	if err != nil {
		t.Fatal(err)
	}
	created := 0
	for _, f := range files {
		rel, _ := filepath.Rel(dir, f.Path)
		bonn := rel == filepath.Join("clients", "bonn.crt") || filepath.Dir(rel) == filepath.Join("tenants", "bonn")
		if f.Created != bonn {
			t.Errorf("second run: %+v", f)
		}
		if f.Created {
			created++
		}
	}
	if created != 4 {
		t.Errorf("second run created %d files, want bonn's client, signing, encryption and idp certificates", created)
	}
	if !mustLoad(t, filepath.Join(dir, "ca.crt")).Equal(ca) {
		t.Error("the second run replaced the CA")
	}

	// Close to expiry, leaves are issued anew.
	files, err = Demo(dir, []string{"koeln"}, nil, ECDSAP256, now.AddDate(0, 11, 28))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 8 || files[0].Created {
		t.Fatalf("near expiry: %+v", files)
	}
	for _, f := range files[1:] {
		if !f.Created {
			t.Errorf("near expiry, %s was reused", f.Path)
		}
	}
}

func TestDemoRSA(t *testing.T) {
	dir := t.TempDir()
	if _, err := Demo(dir, []string{"koeln"}, nil, RSA3072, time.Now()); err != nil {
		t.Fatal(err)
	}
	c := mustLoad(t, filepath.Join(dir, "clients", "koeln.crt"))
	if k, ok := c.PublicKey.(*rsa.PublicKey); !ok || k.N.BitLen() != 3072 {
		t.Errorf("want an RSA-3072 key, got %T", c.PublicKey)
	}
	if _, err := Demo(dir, nil, nil, "dsa", time.Now().AddDate(10, 0, 0)); err == nil {
		t.Error("an unknown algorithm was accepted")
	}
}

func mustLoad(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	certs, err := LoadCertificates(path)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}
