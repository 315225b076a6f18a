package xmldsig

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Documents Parzelle signs verify in xmlsec1, and documents xmlsec1 signs
// verify in Parzelle, for RSA and ECDSA, small and 1 MB / 40k elements.
func TestXmlsec1Interop(t *testing.T) {
	p := newTestPKI(t)
	small, err := os.ReadFile("testdata/meldung.xml")
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string][]byte{"small": small, "big": bigDocument()}
	for docName, doc := range docs {
		for keyName, s := range map[string]testSigner{"rsa": p.rsa, "ecdsa": p.ec} {
			t.Run(docName+"/"+keyName+"/parzelle-signs", func(t *testing.T) {
				signed, err := s.signer().SignEnveloped(doc)
				if err != nil {
					t.Fatal(err)
				}
				file := filepath.Join(t.TempDir(), "signed.xml")
				if err := os.WriteFile(file, signed, 0o600); err != nil {
					t.Fatal(err)
				}
				if out, err := xmlsec1(t, "--verify", "--trusted-pem", p.caFile, file); err != nil {
					t.Fatalf("xmlsec1 --verify refused Parzelle's signature: %v\n%s", err, out)
				}
				// and Parzelle's own verifier agrees
				d, res, err := (&Verifier{Trust: p.trust}).VerifyEnveloped(signed)
				if err != nil {
					t.Fatal(err)
				}
				if res.References[0].Element != d.Root || !res.Certificate.Equal(s.cert) {
					t.Fatalf("result %+v", res)
				}
			})
			t.Run(docName+"/"+keyName+"/xmlsec1-signs", func(t *testing.T) {
				dir := t.TempDir()
				tmpl := filepath.Join(dir, "template.xml")
				if err := os.WriteFile(tmpl, template(t, doc, keyName), 0o600); err != nil {
					t.Fatal(err)
				}
				signedFile := filepath.Join(dir, "signed.xml")
				if out, err := xmlsec1(t, "--sign", "--privkey-pem", s.keyFile+","+s.crtFile, "--output", signedFile, tmpl); err != nil {
					t.Fatalf("xmlsec1 --sign: %v\n%s", err, out)
				}
				signed, err := os.ReadFile(signedFile)
				if err != nil {
					t.Fatal(err)
				}
				d, res, err := (&Verifier{Trust: p.trust}).VerifyEnveloped(signed)
				if err != nil {
					t.Fatalf("Parzelle refused xmlsec1's signature: %v", err)
				}
				if !res.Certificate.Equal(s.cert) || d.Root.Name.Local == "" {
					t.Fatalf("result %+v", res)
				}
				// A changed byte in the signed content must be noticed.
				tampered := bytes.Replace(signed, []byte("Anna &amp; Bernd"), []byte("Anna &amp; Berta"), 1)
				if docName == "big" {
					tampered = bytes.Replace(signed, []byte(">Mü&amp;000042<"), []byte(">Mü&amp;000043<"), 1)
				}
				if bytes.Equal(tampered, signed) {
					t.Fatal("tampering found nothing to change")
				}
				if _, _, err := (&Verifier{Trust: p.trust}).VerifyEnveloped(tampered); err == nil || !strings.Contains(err.Error(), "digest does not match") {
					t.Fatalf("tampered document: %v", err)
				}
			})
		}
	}
}

// template returns doc with an xmlsec1 signature template as the root's
// first child.
func template(t testing.TB, doc []byte, key string) []byte {
	t.Helper()
	method := RSASHA256
	if key == "ecdsa" {
		method = ECDSASHA256
	}
	d, err := ParseDocument(bytes.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := `<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>` +
		`<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>` +
		`<ds:SignatureMethod Algorithm="` + method + `"/>` +
		`<ds:Reference URI=""><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>` +
		`<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms>` +
		`<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue/></ds:Reference></ds:SignedInfo>` +
		`<ds:SignatureValue/><ds:KeyInfo><ds:X509Data/></ds:KeyInfo></ds:Signature>`
	return insertFirstChild(doc, d.Root, []byte(tmpl))
}
