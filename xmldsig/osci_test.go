package xmldsig

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/xmlsafe"
)

const osciSamples = "../../shared/specs/osci/samples"

// readMIME splits an OSCI message (MIME headers first, then multipart
// parts) into its parts by Content-ID.
func readMIME(t *testing.T, file string) map[string][]byte {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(data)))
	hdr, err := tp.ReadMIMEHeader()
	if err != nil {
		t.Fatal(err)
	}
	// The Governikus library writes type=text/xml unquoted, which
	// mime.ParseMediaType refuses; take the boundary by hand.
	_, rest, _ := strings.Cut(hdr.Get("Content-Type"), "boundary=")
	boundary, _, _ := strings.Cut(rest, ";")
	mr := multipart.NewReader(tp.R, strings.Trim(boundary, `"`))
	parts := map[string][]byte{}
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			return parts
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		parts[strings.Trim(p.Header.Get("Content-ID"), "<>")] = body
	}
}

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
			parts := readMIME(t, file)
			doc, err := ParseDocument(bytes.NewReader(parts["osci@message"]))
			if err != nil {
				t.Fatal(err)
			}
			v := &Verifier{Trust: trust, At: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC), Resolve: func(uri string) ([]byte, error) {
				p, ok := parts[strings.TrimPrefix(uri, "cid:")]
				if !ok || !strings.HasPrefix(uri, "cid:") {
					return nil, fmt.Errorf("no MIME part %s", uri)
				}
				return p, nil
			}}
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
			tampered := bytes.Replace(parts["osci@message"], []byte(`SequenceNumber="0"`), []byte(`SequenceNumber="1"`), 1)
			if !bytes.Equal(tampered, parts["osci@message"]) {
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
