package xmldsig

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/osci"
	"github.com/parzelle/parzelle/xmlsafe"
)

const osciSamples = "../../shared/specs/osci/samples"

func findAll(el *xmlsafe.Element, space, local string) []*xmlsafe.Element {
	var out []*xmlsafe.Element
	if el.Name.Space == space && el.Name.Local == local {
		out = append(out, el)
	}
	for _, c := range el.Children {
		out = append(out, findAll(c, space, local)...)
	}
	return out
}

// The signatures in the Governikus-produced OSCI samples verify with the
// demo certificates: the ClientSignature over header blocks, #body and
// cid: attachments (inclusive C14N in document context), and the content
// containers' signatures (base64 transform, cid: part).
func TestOSCISamples(t *testing.T) {
	alice, err := keys.LoadCertificates("../../shared/specs/osci/testcerts/alice_signature_4096.cer")
	if err != nil {
		t.Fatal(err)
	}
	bob, err := keys.LoadCertificates("../../shared/specs/osci/testcerts/bob_signature_4096.cer")
	if err != nil {
		t.Fatal(err)
	}
	trust := keys.NewTrustStore(append(alice, bob...))
	files, err := filepath.Glob(filepath.Join(osciSamples, "*.mime"))
	if err != nil || len(files) < 10 {
		t.Fatalf("OSCI samples missing in %s: %v", osciSamples, err)
	}
	checked := 0
	for _, file := range files {
		if strings.Contains(file, ".transport-encrypted.mime") {
			continue // the signatures are inside the encrypted part
		}
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			msg, err := osci.ParseMIME(data)
			if err != nil {
				t.Fatal(err)
			}
			envelope := msg.Root().Body
			doc, err := ParseDocument(bytes.NewReader(envelope))
			if err != nil {
				t.Fatal(err)
			}
			v := &Verifier{Trust: trust, At: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC), Resolve: msg.Resolve}
			sigs := findAll(doc.Root, Namespace, "Signature")
			if len(sigs) == 0 {
				t.Fatal("no signature in the sample")
			}
			for _, sig := range sigs {
				res, err := v.Verify(doc, sig)
				if err != nil {
					t.Fatalf("signature at line %d: %v", sig.Line, err)
				}
				refs := sig.Child(Namespace, "SignedInfo").ChildrenNamed(Namespace, "Reference")
				if len(res.References) != len(refs) {
					t.Fatalf("%d of %d references verified", len(res.References), len(refs))
				}
				for _, r := range res.References {
					switch {
					case r.URI == "#body":
						if r.Element.Name.Local != "Body" || r.Element.Parent != doc.Root {
							t.Errorf("#body resolved to %v", r.Element.Name)
						}
					case strings.HasPrefix(r.URI, "cid:"):
						if len(r.Data) == 0 {
							t.Errorf("%s: no data", r.URI)
						}
					case r.Element == nil:
						t.Errorf("%s: no element", r.URI)
					}
				}
				signer := alice[0] // the originator; FetchDelivery is sent by bob
				if strings.Contains(file, "FetchDelivery") {
					signer = bob[0]
				}
				if !res.Certificate.Equal(signer) {
					t.Errorf("signed by %s", res.Certificate.Subject)
				}
				checked++
			}
			// A changed header block breaks the ClientSignature.
			tampered := bytes.Replace(envelope, []byte(`SequenceNumber="0"`), []byte(`SequenceNumber="1"`), 1)
			if !bytes.Equal(tampered, envelope) {
				doc, err := ParseDocument(bytes.NewReader(tampered))
				if err != nil {
					t.Fatal(err)
				}
				var client *xmlsafe.Element
				for _, s := range findAll(doc.Root, Namespace, "Signature") {
					if s.Parent.Name.Local == "ClientSignature" {
						client = s
					}
				}
				if _, err := v.Verify(doc, client); err == nil || !strings.Contains(err.Error(), "#controlblock") {
					t.Errorf("tampered ControlBlock: %v", err)
				}
			}
		})
	}
	if checked < 8 {
		t.Errorf("only %d signatures verified", checked)
	}
}
