package main

import (
	"bytes"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parzelle/parzelle/pki"
)

// parzelle xml sign writes an enveloped signature that parzelle xml verify
// accepts with the CA, prints what was signed, and refuses with exit 1
// when the content changed or the trust anchor is another.
func TestXMLSignVerify(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ca, err := pki.NewAuthority(pkix.Name{CommonName: "XML CLI Test CA"}, pki.ECDSAP256, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewAuthority(pkix.Name{CommonName: "Other CA"}, pki.ECDSAP256, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue(pki.Template{Subject: pkix.Name{CommonName: "Signer"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}, pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "signer.crt"), filepath.Join(dir, "signer.key")
	if err := pki.WriteFiles(certFile, keyFile, cert, key); err != nil {
		t.Fatal(err)
	}
	caFile, otherFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "other.crt")
	os.WriteFile(caFile, pki.EncodeCertificate(ca.Cert), 0o600)
	os.WriteFile(otherFile, pki.EncodeCertificate(other.Cert), 0o600)
	in := filepath.Join(dir, "in.xml")
	os.WriteFile(in, []byte(`<?xml version="1.0"?>`+"\n"+`<m:Meldung xmlns:m="urn:m"><m:Name>Müller</m:Name></m:Meldung>`), 0o600)

	var signed bytes.Buffer
	if err := xmlSign([]string{"--key", keyFile, "--cert", certFile, in}, &signed); err != nil {
		t.Fatal(err)
	}
	signedFile := filepath.Join(dir, "signed.xml")
	os.WriteFile(signedFile, signed.Bytes(), 0o600)
	var out bytes.Buffer
	if err := xmlVerify([]string{"--trust", caFile, signedFile}, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "signed:    the whole document, root <m:Meldung>") || !strings.Contains(out.String(), "CN=Signer") {
		t.Errorf("verify printed:\n%s", out.String())
	}

	tampered := filepath.Join(dir, "tampered.xml")
	os.WriteFile(tampered, bytes.Replace(signed.Bytes(), []byte("Müller"), []byte("Meier"), 1), 0o600)
	for name, args := range map[string][]string{
		"tampered":      {"--trust", caFile, tampered},
		"other anchor":  {"--trust", otherFile, signedFile},
		"not yet valid": {"--trust", caFile, "--at", now.Add(-48 * time.Hour).Format(time.RFC3339), signedFile},
	} {
		out.Reset()
		err := xmlVerify(args, &out)
		var exit exitError
		if !errors.As(err, &exit) || exit.code != 1 || !strings.Contains(out.String(), "INVALID") {
			t.Errorf("%s: err %v, output %s", name, err, out.String())
		}
	}
}

// parzelle xml validate resolves the schema's imports through the
// configured catalogs and names each problem's line and column.
func TestXMLValidate(t *testing.T) {
	specs := "../../../shared/specs/xnachweis/"
	schema := specs + "xnachweis-1.2.0/xnachweis-de-noots.xsd"
	example, err := os.ReadFile(specs + "constructed-examples/DE.EvidenceRequest.0101.example.xml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.xml"), filepath.Join(dir, "bad.xml")
	os.WriteFile(good, example, 0o600)
	badDoc := strings.Replace(string(example), "<xn-de:DE.EvidenceRequest.0101", `<xn-de:DE.EvidenceRequest.0101 bogus="1"`, 1)
	os.WriteFile(bad, []byte(badDoc), 0o600)
	config := "../../fixtures/node.yaml"

	var out bytes.Buffer
	if err := xmlValidate([]string{"--config", config, "--schema", schema, good}, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	out.Reset()
	err = xmlValidate([]string{"--config", config, "--schema", schema, bad}, &out)
	var exit exitError
	if !errors.As(err, &exit) || exit.code != 1 {
		t.Fatalf("invalid document: %v\n%s", err, out.String())
	}
	// libxml2 reports the position of the '>' that ends the start tag.
	root := strings.Index(badDoc, "<xn-de:DE.EvidenceRequest.0101")
	end := root + strings.Index(badDoc[root:], ">")
	if want := fmt.Sprintf("line %d, column %d: ", 1+strings.Count(badDoc[:end], "\n"), end-strings.LastIndex(badDoc[:end], "\n")); !strings.Contains(out.String(), want) || !strings.Contains(out.String(), "The attribute 'bogus' is not allowed") {
		t.Errorf("output lacks %q and the schema's message:\n%s", want, out.String())
	}
}
