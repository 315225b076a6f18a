package xmldsig

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"

	"github.com/parzelle/parzelle/c14n"
	"github.com/parzelle/parzelle/xmlsafe"
)

// Signer makes signatures with a key and its certificate chain.
type Signer struct {
	Key crypto.Signer
	// Certificates go into KeyInfo, leaf first.
	Certificates []*x509.Certificate
	// Method is the signature method; "" picks DefaultMethod for the key.
	Method string
	// Digest is the digest method; "" means SHA-256.
	Digest string
}

// External is a detached reference to data outside the document (a cid:
// MIME part), digested as octets.
type External struct {
	URI  string
	Data []byte
}

// prepare picks the signature and digest methods and parses doc.
func (s *Signer) prepare(doc []byte) (method, digest string, d *xmlsafe.Document, err error) {
	if method, digest, err = s.methods(); err != nil {
		return "", "", nil, err
	}
	if d, err = ParseDocument(bytes.NewReader(doc)); err != nil {
		return "", "", nil, fmt.Errorf("xmldsig: %w", err)
	}
	return method, digest, d, nil
}

func (s *Signer) methods() (string, string, error) {
	if s.Key == nil {
		return "", "", errors.New("xmldsig: Signer.Key is not set")
	}
	method, digest := s.Method, s.Digest
	if method == "" {
		var err error
		if method, err = DefaultMethod(s.Key.Public()); err != nil {
			return "", "", err
		}
	}
	if digest == "" {
		digest = SHA256
	}
	if _, ok := digestMethods[digest]; !ok {
		return "", "", fmt.Errorf("xmldsig: %w", unsupported("digest method", digest))
	}
	return method, digest, nil
}

// reference is a Reference to be written.
type reference struct {
	uri        string
	transforms []string
	digest     []byte
}

// SignEnveloped returns doc with an enveloped signature over the whole
// document (Reference URI "", enveloped-signature and exclusive C14N
// transforms) inserted as the first child of the root element, the
// certificates in KeyInfo. The document's bytes are otherwise unchanged.
func (s *Signer) SignEnveloped(doc []byte) ([]byte, error) {
	method, digest, d, err := s.prepare(doc)
	if err != nil {
		return nil, err
	}
	exc := c14n.Method{Exclusive: true}
	h := digestMethods[digest].New()
	if err := c14n.Document(h, d, exc, nil); err != nil {
		return nil, err
	}
	refs := []reference{{uri: "", transforms: []string{EnvelopedSignature, c14n.Exclusive}, digest: h.Sum(nil)}}
	sig, err := s.signature(d.Root, refs, exc, method, digest)
	if err != nil {
		return nil, err
	}
	return insertFirstChild(doc, d.Root, sig), nil
}

// SignDetached returns doc with a detached signature inserted as the first
// child of the element whose Id is into. It references, in this order, the
// elements with the given Ids (canonicalized in document context with m,
// as OSCI does with inclusive C14N) and the external data.
func (s *Signer) SignDetached(doc []byte, into string, ids []string, external []External, m c14n.Method) ([]byte, error) {
	method, digest, d, err := s.prepare(doc)
	if err != nil {
		return nil, err
	}
	index, err := IndexIDs(d.Root)
	if err != nil {
		return nil, err
	}
	parent, ok := index[into]
	if !ok {
		return nil, fmt.Errorf("xmldsig: no element has the Id %q to hold the signature", into)
	}
	var refs []reference
	for _, id := range ids {
		el, ok := index[id]
		if !ok {
			return nil, fmt.Errorf("xmldsig: no element has the Id %q to sign", id)
		}
		if contains(el, parent) {
			return nil, fmt.Errorf("xmldsig: the element %q would contain its own detached signature", id)
		}
		h := digestMethods[digest].New()
		if err := c14n.Subtree(h, el, m, nil); err != nil {
			return nil, err
		}
		refs = append(refs, reference{uri: "#" + id, transforms: []string{m.URI()}, digest: h.Sum(nil)})
	}
	for _, x := range external {
		h := digestMethods[digest].New()
		h.Write(x.Data)
		refs = append(refs, reference{uri: x.URI, digest: h.Sum(nil)})
	}
	sig, err := s.signature(parent, refs, m, method, digest)
	if err != nil {
		return nil, err
	}
	return insertFirstChild(doc, parent, sig), nil
}

// signature builds the ds:Signature element for the references, as it will
// stand as a child of parent. The element is built as a tree, so SignedInfo
// is canonicalized in that context without parsing it back, and the same
// tree is then written out.
func (s *Signer) signature(parent *xmlsafe.Element, refs []reference, m c14n.Method, method, digest string) ([]byte, error) {
	sig := &xmlsafe.Element{
		Name: xml.Name{Space: Namespace, Local: "Signature"}, Prefix: "ds", Parent: parent,
		NS: []xml.Attr{{Name: xml.Name{Local: "ds"}, Value: Namespace}},
	}
	signedInfo := dsChild(sig, "SignedInfo", "")
	dsChild(signedInfo, "CanonicalizationMethod", m.URI())
	dsChild(signedInfo, "SignatureMethod", method)
	for _, r := range refs {
		ref := dsChild(signedInfo, "Reference", "")
		ref.Attr, ref.AttrPrefix = []xml.Attr{{Name: xml.Name{Local: "URI"}, Value: r.uri}}, []string{""}
		if len(r.transforms) > 0 {
			transforms := dsChild(ref, "Transforms", "")
			for _, t := range r.transforms {
				dsChild(transforms, "Transform", t)
			}
		}
		dsChild(ref, "DigestMethod", digest)
		setText(dsChild(ref, "DigestValue", ""), base64.StdEncoding.EncodeToString(r.digest))
	}
	value := dsChild(sig, "SignatureValue", "")
	if len(s.Certificates) > 0 {
		data := dsChild(dsChild(sig, "KeyInfo", ""), "X509Data", "")
		for _, c := range s.Certificates {
			setText(dsChild(data, "X509Certificate", ""), base64.StdEncoding.EncodeToString(c.Raw))
		}
	}
	canonical := bytes.NewBuffer(make([]byte, 0, 1024))
	if err := c14n.Subtree(canonical, signedInfo, m, nil); err != nil {
		return nil, err
	}
	v, err := sign(s.Key, method, canonical.Bytes())
	if err != nil {
		return nil, err
	}
	setText(value, base64.StdEncoding.EncodeToString(v))
	sig.Parent = nil // written on its own, with the ds namespace declared on it
	var out bytes.Buffer
	if err := sig.Write(&out, map[string]string{Namespace: "ds"}); err != nil {
		return nil, fmt.Errorf("xmldsig: write signature: %w", err)
	}
	return out.Bytes(), nil
}

// dsChild appends a ds: element to parent, with an Algorithm attribute
// when algorithm is not empty.
func dsChild(parent *xmlsafe.Element, local, algorithm string) *xmlsafe.Element {
	el := &xmlsafe.Element{Name: xml.Name{Space: Namespace, Local: local}, Prefix: "ds", Parent: parent}
	if algorithm != "" {
		el.Attr, el.AttrPrefix = []xml.Attr{{Name: xml.Name{Local: "Algorithm"}, Value: algorithm}}, []string{""}
	}
	parent.Children = append(parent.Children, el)
	parent.Nodes = append(parent.Nodes, el)
	return el
}

func setText(el *xmlsafe.Element, text string) {
	el.Text = text
	el.Nodes = append(el.Nodes, xmlsafe.CharData(text))
}

// insertFirstChild splices child into doc right after parent's start tag,
// rewriting an empty-element tag <a/> as <a>child</a>.
func insertFirstChild(doc []byte, parent *xmlsafe.Element, child []byte) []byte {
	out := make([]byte, 0, len(doc)+len(child)+32)
	if bytes.HasSuffix(doc[:parent.Inner], []byte("/>")) {
		out = append(out, doc[:parent.Inner-2]...)
		out = append(out, '>')
		out = append(out, child...)
		out = append(out, "</"...)
		if parent.Prefix != "" {
			out = append(out, parent.Prefix+":"...)
		}
		out = append(out, parent.Name.Local+">"...)
		return append(out, doc[parent.Inner:]...)
	}
	out = append(out, doc[:parent.Inner]...)
	out = append(out, child...)
	return append(out, doc[parent.Inner:]...)
}
