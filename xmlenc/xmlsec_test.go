package xmlenc_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/xmlenc"
)

// The algorithms Parzelle and Debian's xmlsec1 1.2.37 share. xmlsec1 1.2
// knows neither XML Encryption 1.1's rsa-oaep (with xenc11:MGF) nor an OAEP
// digest other than SHA-1 ("digest algorithm … is not supported for
// rsa/oaep"), so key transport interop is rsa-oaep-mgf1p with SHA-1 only;
// every AES-GCM and AES-CBC key size overlaps.
var xmlsecContent = []struct {
	uri, sessionKey string
}{
	{xmlenc.AES128GCM, "aes-128"},
	{xmlenc.AES192GCM, "aes-192"},
	{xmlenc.AES256GCM, "aes-256"},
	{xmlenc.AES128CBC, "aes-128"},
	{xmlenc.AES192CBC, "aes-192"},
	{xmlenc.AES256CBC, "aes-256"},
}

const interopDoc = `<?xml version="1.0" encoding="UTF-8"?>
<Nachricht xmlns:x="urn:example:x" Version="1"><Kopf>Kopf</Kopf><x:Geheim Id="g1" art="personal">Name: Müller &amp; Söhne<x:Zeile nr="2">IDNr 12345678901</x:Zeile></x:Geheim><Ende/></Nachricht>
`

// xmlsec runs xmlsec1; its absence fails the test (make test installs it).
func xmlsec(t *testing.T, args ...string) []byte {
	t.Helper()
	bin, err := exec.LookPath("xmlsec1")
	if err != nil {
		t.Fatalf("xmlsec1 is not installed (scripts/install-deps.sh installs Debian's xmlsec1): %v", err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("xmlsec1 %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.Bytes()
}

// TestXmlsecDecryptsParzelle: what Parzelle encrypts (one element, an
// element's content, binary data) decrypts with xmlsec1 --decrypt.
func TestXmlsecDecryptsParzelle(t *testing.T) {
	r := newRecipient(t, "xmlsec-reader")
	other := newRecipient(t, "someone-else")
	src := []byte(interopDoc)
	want := tree(mustParse(t, src))
	dir := t.TempDir()
	for _, c := range xmlsecContent {
		name := c.uri[strings.LastIndex(c.uri, "#")+1:]
		t.Run(name, func(t *testing.T) {
			// Two recipients: xmlsec1 finds the EncryptedKey for its key.
			// xmlsec1 skips the OSCI IV length hint it does not know.
			opt := xmlenc.EncryptOptions{Algorithm: c.uri, KeyTransport: xmlenc.RSAOAEPMGF1P, OSCIIvLength: strings.Contains(c.uri, "gcm")}
			root := mustParse(t, src)
			el := find(root, "Geheim")
			encElem, err := xmlenc.EncryptElement(src, el, recipientsOf(other, r), opt)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(encElem, []byte("Müller")) {
				t.Fatal("plaintext left in the encrypted document")
			}
			encContent, err := xmlenc.EncryptContent(src, find(root, "Nachricht"), recipientsOf(r), opt)
			if err != nil {
				t.Fatal(err)
			}
			for kind, doc := range map[string][]byte{"element": encElem, "content": encContent} {
				file := filepath.Join(dir, name+"-"+kind+".xml")
				if err := os.WriteFile(file, doc, 0o644); err != nil {
					t.Fatal(err)
				}
				out := xmlsec(t, "--decrypt", "--privkey-pem", r.keyFile, file)
				if got := tree(mustParse(t, out)); got != want {
					t.Errorf("%s: xmlsec1 decrypted\n%s\nwant\n%s", kind, got, want)
				}
			}
			// Binary data, no Type: xmlsec1 writes the plaintext itself.
			blob := []byte("\x00\x01 binary \xff attachment")
			enc, err := xmlenc.Encrypt(blob, recipientsOf(r), opt)
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(dir, name+"-binary.xml")
			if err := os.WriteFile(file, enc.XML, 0o644); err != nil {
				t.Fatal(err)
			}
			if out := xmlsec(t, "--decrypt", "--privkey-pem", r.keyFile, file); !bytes.Equal(out, blob) {
				t.Errorf("binary: xmlsec1 decrypted %q", out)
			}
		})
	}
}

// TestParzelleDecryptsXmlsec: what xmlsec1 --encrypt produces from a
// template with an EncryptedKey decrypts in Parzelle, in place.
func TestParzelleDecryptsXmlsec(t *testing.T) {
	r := newRecipient(t, "parzelle-reader")
	dir := t.TempDir()
	data := filepath.Join(dir, "data.xml")
	if err := os.WriteFile(data, []byte(interopDoc), 0o644); err != nil {
		t.Fatal(err)
	}
	want := tree(mustParse(t, []byte(interopDoc)))
	for _, c := range xmlsecContent {
		for _, typ := range []string{xmlenc.TypeElement, xmlenc.TypeContent} {
			name := c.uri[strings.LastIndex(c.uri, "#")+1:] + "-" + typ[strings.LastIndex(typ, "#")+1:]
			t.Run(name, func(t *testing.T) {
				tmpl := filepath.Join(dir, name+"-template.xml")
				if err := os.WriteFile(tmpl, []byte(xmlsecTemplate(c.uri, typ)), 0o644); err != nil {
					t.Fatal(err)
				}
				node := "Nachricht"
				if typ == xmlenc.TypeElement {
					node = "urn:example:x:Geheim"
				}
				enc := xmlsec(t, "--encrypt", "--pubkey-cert-pem", r.certFile, "--session-key", c.sessionKey,
					"--xml-data", data, "--node-name", node, tmpl)
				if bytes.Contains(enc, []byte("Müller")) {
					t.Fatalf("xmlsec1 left the plaintext:\n%s", enc)
				}
				out, n, err := xmlenc.DecryptDocument(enc, xmlenc.DecryptOptions{Keys: []*keys.KeyPair{r.pair}})
				if err != nil {
					t.Fatalf("%v\n%s", err, enc)
				}
				if n != 1 {
					t.Errorf("decrypted %d EncryptedData, want 1", n)
				}
				if got := tree(mustParse(t, out)); got != want {
					t.Errorf("Parzelle decrypted\n%s\nwant\n%s", got, want)
				}
			})
		}
	}
	// Binary data (--binary-data): no Type, the plaintext returned as is.
	blob := filepath.Join(dir, "blob.bin")
	if err := os.WriteFile(blob, []byte("Anhang \x00\xfe binär"), 0o644); err != nil {
		t.Fatal(err)
	}
	tmpl := filepath.Join(dir, "binary-template.xml")
	if err := os.WriteFile(tmpl, []byte(xmlsecTemplate(xmlenc.AES256GCM, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	enc := xmlsec(t, "--encrypt", "--pubkey-cert-pem", r.certFile, "--session-key", "aes-256", "--binary-data", blob, tmpl)
	res, err := xmlenc.Decrypt(mustParse(t, enc), xmlenc.DecryptOptions{Keys: []*keys.KeyPair{r.pair}})
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Plaintext) != "Anhang \x00\xfe binär" {
		t.Errorf("binary: %q", res.Plaintext)
	}
}

func xmlsecTemplate(alg, typ string) string {
	attr := ""
	if typ != "" {
		attr = ` Type="` + typ + `"`
	}
	return `<?xml version="1.0"?>
<xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#" xmlns:ds="http://www.w3.org/2000/09/xmldsig#"` + attr + `>
<xenc:EncryptionMethod Algorithm="` + alg + `"/>
<ds:KeyInfo><xenc:EncryptedKey><xenc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"/><ds:KeyInfo><ds:X509Data/></ds:KeyInfo><xenc:CipherData><xenc:CipherValue/></xenc:CipherData></xenc:EncryptedKey></ds:KeyInfo>
<xenc:CipherData><xenc:CipherValue/></xenc:CipherData>
</xenc:EncryptedData>
`
}
