package xmldsig

import (
	"os"
	"testing"
)

// FuzzVerify: no input makes the verifier panic, and nothing but the
// untouched signed document is accepted.
func FuzzVerify(f *testing.F) {
	p := newTestPKI(f)
	doc, err := os.ReadFile("testdata/meldung.xml")
	if err != nil {
		f.Fatal(err)
	}
	signed, err := p.ec.signer().SignEnveloped(doc)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(signed)
	f.Add(template(f, doc, "ecdsa"))
	v := &Verifier{Trust: p.trust}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, res, err := v.VerifyEnveloped(data)
		if err != nil {
			return
		}
		if d == nil || res == nil || len(res.References) != 1 || !res.Certificate.Equal(p.ec.cert) {
			t.Fatalf("accepted with result %+v", res)
		}
	})
}
