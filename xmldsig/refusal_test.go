package xmldsig

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/parzelle/parzelle/c14n"
)

// Structural refusals of the verifier and the signer, each with its reason.
func TestRefusals(t *testing.T) {
	p := newTestPKI(t)
	doc, err := os.ReadFile("testdata/meldung.xml")
	if err != nil {
		t.Fatal(err)
	}
	signed, err := p.rsa.signer().SignEnveloped(doc)
	if err != nil {
		t.Fatal(err)
	}
	soap := []byte(`<s:Envelope xmlns:s="urn:s"><s:Header Id="h"/><s:Body Id="b">x</s:Body></s:Envelope>`)
	withPart, err := p.rsa.signer().SignDetached(soap, "h", []string{"b"}, []External{{URI: "cid:part", Data: []byte("attachment")}}, c14n.Method{})
	if err != nil {
		t.Fatal(err)
	}
	verify := func(v *Verifier, data []byte) error {
		d, err := ParseDocument(bytes.NewReader(data))
		if err != nil {
			return err
		}
		sigs := d.Root.FindAll(Namespace, "Signature")
		if len(sigs) == 0 {
			t.Fatal("no signature")
		}
		_, err = v.Verify(d, sigs[0])
		return err
	}
	trusted := &Verifier{Trust: p.trust}
	// signedWith signs doc with one validly signed reference as given,
	// the signature placed into the element with the Id into ("" for the
	// root): the refusal must come from the reference, not the signature.
	signedWith := func(doc []byte, into string, ref reference) []byte {
		t.Helper()
		d, err := ParseDocument(bytes.NewReader(doc))
		if err != nil {
			t.Fatal(err)
		}
		ids, err := IndexIDs(d.Root)
		if err != nil {
			t.Fatal(err)
		}
		parent := d.Root
		if into != "" {
			parent = ids[into]
		}
		s := p.rsa.signer()
		method, digest, err := s.methods()
		if err != nil {
			t.Fatal(err)
		}
		sig, err := s.signature(parent, []reference{ref}, c14n.Method{Exclusive: true}, method, digest)
		if err != nil {
			t.Fatal(err)
		}
		return insertFirstChild(doc, parent, sig)
	}
	cases := []struct {
		name string
		err  func() error
		want string
	}{
		{"unexpected element in Signature", func() error {
			return verify(trusted, bytes.Replace(signed, []byte("</ds:SignatureValue>"), []byte("</ds:SignatureValue><ds:Manifest/>"), 1))
		}, "unexpected ds:Signature child"},
		{"RetrievalMethod to nothing", func() error {
			return verify(trusted, bytes.Replace(signed, []byte("<ds:KeyInfo>"), []byte(`<ds:KeyInfo><ds:RetrievalMethod URI="#nowhere"/>`), 1))
		}, "does not point at an element"},
		{"two unrelated certificates", func() error {
			two := string(signed)
			two = strings.Replace(two, "</ds:X509Data>", "<ds:X509Certificate>"+certB64(string(mustSign(t, p.ec.signer(), doc)))+"</ds:X509Certificate></ds:X509Data>", 1)
			return verify(trusted, []byte(two))
		}, "unrelated certificates"},
		{"MIME part without a resolver", func() error { return verify(trusted, withPart) }, "references outside the document are not accepted"},
		{"MIME part the resolver cannot find", func() error {
			return verify(&Verifier{Trust: p.trust, Resolve: func(string) ([]byte, error) { return nil, errors.New("no such part") }}, withPart)
		}, "resolve: no such part"},
		{"MIME part changed", func() error {
			return verify(&Verifier{Trust: p.trust, Resolve: func(string) ([]byte, error) { return []byte("other"), nil }}, withPart)
		}, `(URI "cid:part"): the digest does not match`},
		{"enveloped-signature transform outside the referenced data", func() error {
			return verify(trusted, signedWith(soap, "h", reference{uri: "#b", transforms: []string{EnvelopedSignature, c14n.Exclusive}, digest: make([]byte, 32)}))
		}, "the signature is not inside the referenced data"},
		{"C14N before another transform", func() error {
			return verify(trusted, signedWith(doc, "", reference{uri: "", transforms: []string{c14n.Exclusive, EnvelopedSignature}, digest: make([]byte, 32)}))
		}, "must be the last transform"},
		{"no Trust configured", func() error { return verify(&Verifier{}, signed) }, "Verifier.Trust is not set"},
		{"sign into a missing Id", func() error {
			_, err := p.rsa.signer().SignDetached(soap, "nope", []string{"b"}, nil, c14n.Method{})
			return err
		}, `no element has the Id "nope" to hold the signature`},
		{"sign a missing Id", func() error {
			_, err := p.rsa.signer().SignDetached(soap, "h", []string{"nope"}, nil, c14n.Method{})
			return err
		}, `no element has the Id "nope" to sign`},
		{"detached signature inside what it signs", func() error {
			nested := []byte(`<s:Envelope xmlns:s="urn:s"><s:Body Id="b"><s:Sig Id="h"/></s:Body></s:Envelope>`)
			_, err := p.rsa.signer().SignDetached(nested, "h", []string{"b"}, nil, c14n.Method{})
			return err
		}, "would contain its own detached signature"},
		{"signer without key", func() error { _, err := (&Signer{}).SignEnveloped(doc); return err }, "Signer.Key is not set"},
	}
	if err := verify(&Verifier{Trust: p.trust, Resolve: func(string) ([]byte, error) { return []byte("attachment"), nil }}, withPart); err != nil {
		t.Fatalf("the untouched detached signature: %v", err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func mustSign(t *testing.T, s *Signer, doc []byte) []byte {
	t.Helper()
	out, err := s.SignEnveloped(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
