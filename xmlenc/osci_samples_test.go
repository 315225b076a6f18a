package xmlenc_test

import (
	"bytes"
	"encoding/xml"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/osci"
	"github.com/parzelle/parzelle/osci/oscitest"
	"github.com/parzelle/parzelle/xmlenc"
	"github.com/parzelle/parzelle/xmlsafe"
)

const (
	soapNS = "http://schemas.xmlsoap.org/soap/envelope/"
	osciNS = "http://www.osci.de/2002/04/osci"
)

// transportEnvelope parses an OSCI message and returns it with the root
// SOAP envelope and the EncryptedData in its body.
func transportEnvelope(t testing.TB, data []byte) (*osci.MIMEMessage, *xmlsafe.Element, *xmlsafe.Element) {
	t.Helper()
	msg, err := osci.ParseMIME(data)
	if err != nil {
		t.Fatal(err)
	}
	env, err := xmlsafe.Parse(bytes.NewReader(msg.Root().Body), xmlsafe.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ed := env.Path(xml.Name{Space: soapNS, Local: "Body"}, xml.Name{Space: xmlenc.Namespace, Local: "EncryptedData"})
	if ed == nil {
		t.Fatal("no soap:Body/xenc:EncryptedData")
	}
	return msg, env, ed
}

// TestOSCITransportLayer decrypts every transport-encrypted Governikus sample
// with the intermediary's key: the plaintext is a MIME message whose root is
// a SOAP envelope, and for 01 and 03 it equals the reference decryption byte
// for byte.
func TestOSCITransportLayer(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(oscitest.Samples, "*.transport-encrypted.mime"))
	if err != nil || len(files) != 7 {
		t.Fatalf("want the 7 transport-encrypted samples in %s, found %d (%v)", oscitest.Samples, len(files), err)
	}
	manager := oscitest.Key(t, "osci_manager_cipher_4096")
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(name, func(t *testing.T) {
			msg, env, ed := transportEnvelope(t, oscitest.Sample(t, name))
			res, err := xmlenc.Decrypt(ed, xmlenc.DecryptOptions{Keys: []*keys.KeyPair{manager}, Resolve: msg.Resolve, Document: env})
			if err != nil {
				t.Fatal(err)
			}
			if res.Algorithm != xmlenc.AES256GCM || res.MimeType != "Multipart/Related" || res.Recipient != manager {
				t.Errorf("algorithm %s, MimeType %q, recipient %v", res.Algorithm, res.MimeType, res.Recipient)
			}
			inner, err := osci.ParseMIME(res.Plaintext)
			if err != nil {
				t.Fatalf("plaintext is no MIME message: %v", err)
			}
			root, err := xmlsafe.Parse(bytes.NewReader(inner.Root().Body), xmlsafe.Options{})
			if err != nil {
				t.Fatalf("inner root part: %v", err)
			}
			if root.Name.Space != soapNS || root.Name.Local != "Envelope" {
				t.Fatalf("inner root part is %v, not a SOAP envelope", root.Name)
			}
			ref := strings.Replace(name, ".mime", ".decrypted-inner.mime", 1)
			if want, err := os.ReadFile(filepath.Join(oscitest.Samples, ref)); err == nil {
				if !bytes.Equal(res.Plaintext, want) {
					t.Errorf("plaintext (%d bytes) differs from %s (%d bytes)", len(res.Plaintext), ref, len(want))
				}
			} else if strings.HasPrefix(name, "01-") || strings.HasPrefix(name, "03-") {
				t.Fatalf("reference decryption: %v", err)
			}
			// The same message for anyone else: no key of ours is a recipient.
			_, err = xmlenc.Decrypt(ed, xmlenc.DecryptOptions{Keys: []*keys.KeyPair{oscitest.Key(t, "bob_cipher_4096")}, Resolve: msg.Resolve, Document: env})
			if !errors.Is(err, xmlenc.ErrNoKey) {
				t.Errorf("bob's key: want ErrNoKey, got %v", err)
			}
		})
	}
}

// TestOSCIContentLayer decrypts the content layer of 03-StoreDelivery: the
// EncryptedData for reader dave (KeyInfo points at his certificate with a
// RetrievalMethod) gives an inner ContentContainer, whose encrypted
// attachment enc_test.txt decrypts with the key in ds:MgmtData.
func TestOSCIContentLayer(t *testing.T) {
	data := oscitest.Sample(t, "03-StoreDelivery.transport-encrypted.decrypted-inner.mime")
	msg, err := osci.ParseMIME(data)
	if err != nil {
		t.Fatal(err)
	}
	env, err := xmlsafe.Parse(bytes.NewReader(msg.Root().Body), xmlsafe.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pkg := env.Path(xml.Name{Space: soapNS, Local: "Body"}, xml.Name{Space: osciNS, Local: "ContentPackage"})
	ed := pkg.Child(xmlenc.Namespace, "EncryptedData")
	if ed == nil {
		t.Fatal("no EncryptedData in the ContentPackage")
	}
	dave := oscitest.Key(t, "dave_cipher_4096")
	bob := oscitest.Key(t, "bob_cipher_4096")
	// Bob's key first: the RetrievalMethod names dave's certificate, so
	// dave's key is the one used, without trying bob's.
	res, err := xmlenc.Decrypt(ed, xmlenc.DecryptOptions{Keys: []*keys.KeyPair{bob, dave}, Resolve: msg.Resolve, Document: env})
	if err != nil {
		t.Fatal(err)
	}
	if res.Recipient != dave || res.ID != "encdata_2" || res.MimeType != "text/xml" {
		t.Errorf("recipient %v, Id %q, MimeType %q", res.Recipient, res.ID, res.MimeType)
	}
	cc, err := xmlsafe.Parse(bytes.NewReader(res.Plaintext), xmlsafe.Options{})
	if err != nil {
		t.Fatalf("content layer plaintext: %v", err)
	}
	if cc.Name.Space != osciNS || cc.Name.Local != "ContentContainer" {
		t.Fatalf("content layer plaintext is %v, not osci:ContentContainer", cc.Name)
	}
	if got := cc.Path(xml.Name{Space: osciNS, Local: "Content"}, xml.Name{Space: osciNS, Local: "Base64Content"}).TrimmedText(); got != "QW55IGVuY3J5cHRlZCBjb250ZW50IGRhdGEu" {
		t.Errorf("inner Base64Content %q", got)
	}
	// Without the document the RetrievalMethod cannot be followed: every
	// key is tried, and dave's still works.
	if res2, err := xmlenc.Decrypt(ed, xmlenc.DecryptOptions{Keys: []*keys.KeyPair{bob, dave}}); err != nil || res2.Recipient != dave {
		t.Errorf("without the document: %v", err)
	}
	if _, err := xmlenc.Decrypt(ed, xmlenc.DecryptOptions{Keys: []*keys.KeyPair{bob}, Document: env}); !errors.Is(err, xmlenc.ErrNoKey) || !strings.Contains(err.Error(), "Dave Cipher 4096") {
		t.Errorf("bob alone: want ErrNoKey naming dave, got %v", err)
	}

	att := cc.Child(xmlenc.Namespace, "EncryptedData")
	if att == nil {
		t.Fatal("no attachment EncryptedData in the inner ContentContainer")
	}
	// MgmtData needs no private key at all.
	ares, err := xmlenc.Decrypt(att, xmlenc.DecryptOptions{Resolve: msg.Resolve})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(ares.Plaintext); got != "Any encrypted attachment data." {
		t.Errorf("enc_test.txt decrypts to %q", got)
	}
	// The plain attachment of the same sample, for comparison.
	if plain, _ := msg.Resolve("cid:test.txt"); string(plain) != "Any unencrypted attachment data." {
		t.Errorf("test.txt is %q", plain)
	}
}
