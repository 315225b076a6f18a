package xmlenc_test

import (
	"bytes"
	"testing"

	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/osci"
	"github.com/parzelle/parzelle/osci/oscitest"
	"github.com/parzelle/parzelle/xmlenc"
	"github.com/parzelle/parzelle/xmlsafe"
)

// FuzzDecrypt feeds arbitrary documents and MIME parts to Decrypt,
// DecryptDocument and the OSCI MIME reader; none may panic. The seeds are
// the Governikus samples (transport and content layer, the MgmtData
// attachment) and documents encrypted for the fuzzing key, so that the
// successful paths are explored as well as the failing ones.
//
//	go test ./xmlenc -run '^$' -fuzz FuzzDecrypt -fuzztime 20s -fuzzminimizetime 5s
//
// (Go's default minimization budget of 60 s per new input would eat a short
// run.)
func FuzzDecrypt(f *testing.F) {
	r := newRecipientBits(f, "fuzz", 1024)
	for _, name := range []string{"01-InitDialog.transport-encrypted.mime", "07-ExitDialog.transport-encrypted.mime"} {
		msg, _, _ := transportEnvelope(f, oscitest.Sample(f, name))
		part, _ := msg.Resolve("cid:osci_enc")
		f.Add(msg.Root().Body, part[:min(len(part), 512)])
	}
	inner := oscitest.Sample(f, "03-StoreDelivery.transport-encrypted.decrypted-inner.mime")
	msg, err := osci.ParseMIME(inner)
	if err != nil {
		f.Fatal(err)
	}
	encPart, _ := msg.Resolve("cid:enc_test.txt")
	f.Add(msg.Root().Body, encPart)
	f.Add([]byte(`<osci:ContentContainer xmlns:osci="http://www.osci.de/2002/04/osci" xmlns:xenc="http://www.w3.org/2001/04/xmlenc#" xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><xenc:EncryptedData Id="Attachmentenc_test.txt" MimeType="text/xml"><xenc:EncryptionMethod Algorithm="http://www.w3.org/2009/xmlenc11#aes256-gcm"><osci128:IvLength xmlns:osci128="http://xoev.de/transport/osci12/8" Value="12"></osci128:IvLength></xenc:EncryptionMethod><ds:KeyInfo><ds:MgmtData>M0SDVSlcLZXUTB2qmE0+uIO8oEH9chJ/pm3G0PTdBVc=</ds:MgmtData></ds:KeyInfo><xenc:CipherData><xenc:CipherReference URI="cid:enc_test.txt"><xenc:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#base64"></ds:Transform></xenc:Transforms></xenc:CipherReference></xenc:CipherData></xenc:EncryptedData></osci:ContentContainer>`), encPart)
	f.Add(inner, inner)
	src := []byte(interopDoc)
	root := mustParse(f, src)
	for _, alg := range []string{xmlenc.AES128GCM, xmlenc.AES256CBC} {
		for _, tr := range []string{xmlenc.RSAOAEP, xmlenc.RSAOAEPMGF1P} {
			doc, err := xmlenc.EncryptElement(src, find(root, "Geheim"), recipientsOf(r), xmlenc.EncryptOptions{Algorithm: alg, KeyTransport: tr})
			if err != nil {
				f.Fatal(err)
			}
			f.Add(doc, []byte(nil))
		}
	}

	limits := xmlsafe.Limits{MaxBytes: 1 << 20, MaxDepth: 32, MaxNodes: 2000}
	f.Fuzz(func(t *testing.T, doc, part []byte) {
		opt := xmlenc.DecryptOptions{
			Keys:           []*keys.KeyPair{r.pair},
			Resolve:        func(string) ([]byte, error) { return part, nil },
			MaxCipherBytes: 1 << 20,
			Limits:         limits,
		}
		if root, err := xmlsafe.Parse(bytes.NewReader(doc), xmlsafe.Options{Limits: limits}); err == nil {
			opt.Document = root
			var walk func(e *xmlsafe.Element)
			walk = func(e *xmlsafe.Element) {
				if e.Name.Space == xmlenc.Namespace && e.Name.Local == "EncryptedData" {
					if res, err := xmlenc.Decrypt(e, opt); err == nil && res.Plaintext == nil {
						t.Errorf("decrypted without plaintext")
					}
				}
				for _, c := range e.Children {
					walk(c)
				}
			}
			walk(root)
		}
		opt.Document = nil
		if out, n, err := xmlenc.DecryptDocument(doc, opt); err == nil && n > 0 {
			if _, err := xmlsafe.Parse(bytes.NewReader(out), xmlsafe.Options{Limits: limits}); err != nil {
				t.Errorf("DecryptDocument returned a document that does not parse: %v", err)
			}
		}
		if m, err := osci.ParseMIME(part); err == nil {
			_ = m.Root()
			_, _ = m.Resolve("cid:osci_enc")
		}
	})
}
