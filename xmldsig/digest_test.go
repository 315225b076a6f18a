package xmldsig

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"testing"

	"github.com/parzelle/parzelle/c14n"
)

// TestStreamedDigest: an external reference whose octets streamed past
// elsewhere is checked against the digest the Digest hook hands over; a
// digest of other octets fails; a nil digest falls back to Resolve.
func TestStreamedDigest(t *testing.T) {
	p := newTestPKI(t)
	part := []byte("a large attachment, streamed")
	soap := []byte(`<s:Envelope xmlns:s="urn:s"><s:Header Id="h"/><s:Body Id="b">x</s:Body></s:Envelope>`)
	signed, err := p.rsa.signer().SignDetached(soap, "h", []string{"b"}, []External{{URI: "cid:part", Data: part}}, c14n.Method{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := ParseDocument(bytes.NewReader(signed))
	if err != nil {
		t.Fatal(err)
	}
	sig := d.Root.FindAll(Namespace, "Signature")[0]
	sum := func(data []byte) func(string, crypto.Hash) ([]byte, error) {
		return func(uri string, h crypto.Hash) ([]byte, error) {
			if uri != "cid:part" || h != crypto.SHA256 {
				t.Errorf("asked for the %v digest of %s", h, uri)
			}
			s := sha256.Sum256(data)
			return s[:], nil
		}
	}
	if _, err := (&Verifier{Trust: p.trust, Digest: sum(part)}).Verify(d, sig); err != nil {
		t.Errorf("streamed digest of the signed octets: %v", err)
	}
	if _, err := (&Verifier{Trust: p.trust, Digest: sum([]byte("changed"))}).Verify(d, sig); err == nil {
		t.Error("a streamed digest of other octets verified")
	}
	fallback := &Verifier{Trust: p.trust, Digest: func(string, crypto.Hash) ([]byte, error) { return nil, nil },
		Resolve: func(string) ([]byte, error) { return part, nil }}
	if _, err := fallback.Verify(d, sig); err != nil {
		t.Errorf("nil digest, resolved octets: %v", err)
	}
}
