package xmldsig

import (
	"bytes"
	"crypto"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/parzelle/parzelle/c14n"
	"github.com/parzelle/parzelle/xmlsafe"
)

// Trust decides whether a signing certificate is trusted at a time;
// *keys.TrustStore implements it.
type Trust interface {
	Verify(leaf *x509.Certificate, intermediates []*x509.Certificate, at time.Time) ([]*x509.Certificate, error)
}

// Verifier checks signatures.
type Verifier struct {
	// Trust decides which signing certificates are accepted. Required.
	Trust Trust
	// At is the signing time the certificate must be valid at; zero means
	// now.
	At time.Time
	// Resolve returns the octets of an external reference (cid: MIME
	// parts); nil refuses every reference outside the document.
	Resolve func(uri string) ([]byte, error)
	// Digest, when set, returns the digest of an external reference that
	// was computed while it streamed past (a large MIME part that is not
	// held in memory), for references without transforms; nil bytes fall
	// back to Resolve.
	Digest func(uri string, h crypto.Hash) ([]byte, error)
}

// Reference is one verified reference.
type Reference struct {
	URI string
	// Element is the element that was digested (for "#id" references and,
	// for URI "", the document's root); nil for external references.
	Element *xmlsafe.Element
	// Data are the octets of an external reference, as digested before
	// transforms.
	Data []byte

	skip *xmlsafe.Element // left out by the enveloped-signature transform
}

// Result is a verified signature: what was signed and by whom.
type Result struct {
	Certificate *x509.Certificate
	Chain       []*x509.Certificate
	Method      string
	References  []Reference
}

// Signed returns nil when el is covered by the signature: a referenced
// element or inside one (the enveloped signature itself excepted). Callers
// check the element they are about to consume with it; an element that
// merely has the same Id as a signed one is not covered.
func (r *Result) Signed(el *xmlsafe.Element) error {
	for _, ref := range r.References {
		if ref.Element != nil && contains(ref.Element, el) && (ref.skip == nil || !contains(ref.skip, el)) {
			return nil
		}
	}
	return refuse("the element <%s> at line %d is not covered by the signature", el.Name.Local, el.Line)
}

// Error is a refused signature; Reason says why in words an operator
// understands.
type Error struct{ Reason string }

func (e *Error) Error() string { return "xmldsig: signature refused: " + e.Reason }

func refuse(format string, args ...any) error {
	return &Error{Reason: fmt.Sprintf(format, args...)}
}

// limits on what a signature may ask for.
const (
	maxReferences = 256
	maxTransforms = 4
)

// ParseDocument parses a document the way signatures need it: hardened,
// with every node kept.
func ParseDocument(r io.Reader) (*xmlsafe.Document, error) {
	return xmlsafe.ParseDocument(r, xmlsafe.Options{Preserve: true})
}

// VerifyEnveloped verifies a document carrying an enveloped signature as a
// child of its root that covers the whole document (Reference URI "" or
// the root's Id). It returns the parsed document, whose root is what was
// signed, and the result.
func (v *Verifier) VerifyEnveloped(doc []byte) (*xmlsafe.Document, *Result, error) {
	d, err := ParseDocument(bytes.NewReader(doc))
	if err != nil {
		return nil, nil, err
	}
	res, err := v.VerifyEnvelopedDocument(d)
	if err != nil {
		return nil, nil, err
	}
	return d, res, nil
}

// VerifyEnvelopedDocument is VerifyEnveloped for a document already parsed
// with ParseDocument.
func (v *Verifier) VerifyEnvelopedDocument(d *xmlsafe.Document) (*Result, error) {
	sigs := d.Root.ChildrenNamed(Namespace, "Signature")
	switch len(sigs) {
	case 0:
		return nil, refuse("the document's root element carries no ds:Signature")
	case 1:
	default:
		return nil, refuse("the document's root element carries %d ds:Signature elements, want one", len(sigs))
	}
	res, err := v.Verify(d, sigs[0])
	if err != nil {
		return nil, err
	}
	if len(res.References) != 1 || res.References[0].Element != d.Root {
		return nil, refuse("the signature does not cover exactly the whole document")
	}
	return res, nil
}

// Verify checks the signature element sig within doc: the certificate in
// KeyInfo must be trusted, the SignatureValue must verify over the
// canonical SignedInfo, and every Reference's digest must match.
func (v *Verifier) Verify(doc *xmlsafe.Document, sig *xmlsafe.Element) (*Result, error) {
	if v.Trust == nil {
		return nil, errors.New("xmldsig: Verifier.Trust is not set")
	}
	ids, err := IndexIDs(doc.Root)
	if err != nil {
		return nil, err
	}
	s, err := parseSignature(sig)
	if err != nil {
		return nil, err
	}
	leaf, intermediates, err := s.certificates(ids)
	if err != nil {
		return nil, err
	}
	at := v.At
	if at.IsZero() {
		at = time.Now()
	}
	chain, err := v.Trust.Verify(leaf, intermediates, at)
	if err != nil {
		return nil, refuse("%v", err)
	}
	var signedInfo bytes.Buffer
	if err := c14n.Subtree(&signedInfo, s.signedInfo, s.c14n, nil); err != nil {
		return nil, err
	}
	if err := verifySignature(leaf.PublicKey, s.method, signedInfo.Bytes(), s.value); err != nil {
		return nil, refuse("the SignatureValue does not verify with the certificate %q: %v", leaf.Subject, err)
	}
	res := &Result{Certificate: leaf, Chain: chain, Method: s.method}
	for i, ref := range s.refs {
		r, err := v.checkReference(doc, ids, sig, ref)
		if err != nil {
			return nil, refuse("reference %d (URI %q): %v", i+1, ref.uri, err)
		}
		res.References = append(res.References, r)
	}
	return res, nil
}

// IDAttributes are the attribute names treated as element identifiers
// (unqualified), besides xml:id and wsu:Id.
var IDAttributes = []string{"Id", "ID", "id"}

const wsuNamespace = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"

// IndexIDs maps every Id in the tree to its element and refuses a value
// used twice: with two candidates a verifier and its caller could pick
// different ones.
func IndexIDs(root *xmlsafe.Element) (map[string]*xmlsafe.Element, error) {
	ids := map[string]*xmlsafe.Element{}
	var walk func(el *xmlsafe.Element) error
	walk = func(el *xmlsafe.Element) error {
		for _, a := range el.Attr {
			isID := (a.Name.Space == "" && slices.Contains(IDAttributes, a.Name.Local)) ||
				(a.Name.Space == xmlsafe.XMLNamespace && a.Name.Local == "id") ||
				(a.Name.Space == wsuNamespace && a.Name.Local == "Id")
			if !isID {
				continue
			}
			if prev, dup := ids[a.Value]; dup && prev != el {
				return refuse("the Id %q is used twice (lines %d and %d); a document with duplicate Ids is not accepted", a.Value, prev.Line, el.Line)
			}
			ids[a.Value] = el
		}
		for _, c := range el.Children {
			if err := walk(c); err != nil {
				return err
			}
		}
		return nil
	}
	return ids, walk(root)
}

type parsedSignature struct {
	signedInfo *xmlsafe.Element
	c14n       c14n.Method
	method     string
	refs       []parsedReference
	value      []byte
	keyInfo    *xmlsafe.Element
}

type parsedReference struct {
	uri        string
	transforms []transform
	digest     string
	value      []byte
}

type transform struct {
	algorithm string
	c14n      c14n.Method
}

// elements returns the element children, refusing anything but white
// space between them.
func elements(el *xmlsafe.Element) ([]*xmlsafe.Element, error) {
	if strings.TrimSpace(el.Text) != "" && len(el.Children) > 0 {
		return nil, refuse("ds:%s has text between its child elements", el.Name.Local)
	}
	return el.Children, nil
}

func isDS(el *xmlsafe.Element, local string) bool {
	return el != nil && el.Name.Space == Namespace && el.Name.Local == local
}

func algorithm(el *xmlsafe.Element) string {
	v, _ := el.Attribute("Algorithm")
	return v
}

func parseSignature(sig *xmlsafe.Element) (*parsedSignature, error) {
	if !isDS(sig, "Signature") {
		return nil, refuse("element {%s}%s is not a ds:Signature", sig.Name.Space, sig.Name.Local)
	}
	kids, err := elements(sig)
	if err != nil {
		return nil, err
	}
	if len(kids) < 2 || !isDS(kids[0], "SignedInfo") || !isDS(kids[1], "SignatureValue") {
		return nil, refuse("ds:Signature must start with ds:SignedInfo and ds:SignatureValue")
	}
	s := &parsedSignature{signedInfo: kids[0]}
	for _, k := range kids[2:] {
		switch {
		case isDS(k, "KeyInfo") && s.keyInfo == nil:
			s.keyInfo = k
		case isDS(k, "Object"):
		default:
			return nil, refuse("unexpected ds:Signature child {%s}%s", k.Name.Space, k.Name.Local)
		}
	}
	if s.value, err = decodeBase64(kids[1].Text); err != nil {
		return nil, refuse("SignatureValue: %v", err)
	}
	si, err := elements(s.signedInfo)
	if err != nil {
		return nil, err
	}
	if len(si) < 3 || !isDS(si[0], "CanonicalizationMethod") || !isDS(si[1], "SignatureMethod") {
		return nil, refuse("ds:SignedInfo must hold CanonicalizationMethod, SignatureMethod and at least one Reference")
	}
	if s.c14n, err = parseC14N(si[0]); err != nil {
		return nil, err
	}
	s.method = algorithm(si[1])
	if _, ok := signatureMethods[s.method]; !ok {
		return nil, refuse("%v", unsupported("signature method", s.method))
	}
	if len(si)-2 > maxReferences {
		return nil, refuse("%d references exceed the limit of %d", len(si)-2, maxReferences)
	}
	for _, r := range si[2:] {
		if !isDS(r, "Reference") {
			return nil, refuse("unexpected ds:SignedInfo child {%s}%s", r.Name.Space, r.Name.Local)
		}
		ref, err := parseReference(r)
		if err != nil {
			return nil, err
		}
		s.refs = append(s.refs, ref)
	}
	return s, nil
}

func parseC14N(el *xmlsafe.Element) (c14n.Method, error) {
	m, err := c14n.ParseMethod(algorithm(el))
	if err != nil {
		return m, refuse("%v", err)
	}
	for _, k := range el.Children {
		if m.Exclusive && k.Name.Space == c14n.Exclusive && k.Name.Local == "InclusiveNamespaces" {
			list, _ := k.Attribute("PrefixList")
			m.InclusivePrefixes = strings.Fields(list)
			continue
		}
		return m, refuse("unexpected parameter {%s}%s of %s", k.Name.Space, k.Name.Local, m.URI())
	}
	return m, nil
}

func parseReference(r *xmlsafe.Element) (parsedReference, error) {
	ref := parsedReference{}
	uri, ok := r.Attribute("URI")
	if !ok {
		return ref, refuse("a Reference without URI is not accepted")
	}
	ref.uri = uri
	kids, err := elements(r)
	if err != nil {
		return ref, err
	}
	if len(kids) > 0 && isDS(kids[0], "Transforms") {
		if len(kids[0].Children) > maxTransforms {
			return ref, refuse("reference %q has %d transforms, more than %d", uri, len(kids[0].Children), maxTransforms)
		}
		for _, t := range kids[0].Children {
			if !isDS(t, "Transform") {
				return ref, refuse("unexpected ds:Transforms child {%s}%s", t.Name.Space, t.Name.Local)
			}
			tr := transform{algorithm: algorithm(t)}
			switch tr.algorithm {
			case EnvelopedSignature, Base64Transform:
				if len(t.Children) > 0 {
					return ref, refuse("transform %s takes no parameters", tr.algorithm)
				}
			default:
				if tr.c14n, err = parseC14N(t); err != nil {
					return ref, refuse("reference %q: unsupported transform %q (only enveloped-signature, base64 and the C14N methods are accepted)", uri, tr.algorithm)
				}
			}
			ref.transforms = append(ref.transforms, tr)
		}
		kids = kids[1:]
	}
	if len(kids) != 2 || !isDS(kids[0], "DigestMethod") || !isDS(kids[1], "DigestValue") {
		return ref, refuse("reference %q must hold DigestMethod and DigestValue", uri)
	}
	ref.digest = algorithm(kids[0])
	if _, ok := digestMethods[ref.digest]; !ok {
		return ref, refuse("%v", unsupported("digest method", ref.digest))
	}
	if ref.value, err = decodeBase64(kids[1].Text); err != nil {
		return ref, refuse("DigestValue of %q: %v", uri, err)
	}
	return ref, nil
}

// certificates finds the signing certificate (and any others) in KeyInfo:
// ds:X509Data/ds:X509Certificate, or a ds:RetrievalMethod pointing at an
// element of this document that holds them (as OSCI does).
func (s *parsedSignature) certificates(ids map[string]*xmlsafe.Element) (*x509.Certificate, []*x509.Certificate, error) {
	if s.keyInfo == nil {
		return nil, nil, refuse("the signature has no KeyInfo naming its certificate")
	}
	holder := s.keyInfo
	if rm := s.keyInfo.Child(Namespace, "RetrievalMethod"); rm != nil {
		uri, _ := rm.Attribute("URI")
		target, ok := ids[strings.TrimPrefix(uri, "#")]
		if !strings.HasPrefix(uri, "#") || !ok {
			return nil, nil, refuse("KeyInfo's RetrievalMethod %q does not point at an element of this document", uri)
		}
		holder = target
	}
	var certs []*x509.Certificate
	var collect func(el *xmlsafe.Element) error
	collect = func(el *xmlsafe.Element) error {
		if isDS(el, "X509Certificate") {
			der, err := decodeBase64(el.Text)
			if err != nil {
				return refuse("X509Certificate: %v", err)
			}
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return refuse("X509Certificate: %v", err)
			}
			certs = append(certs, c)
		}
		for _, c := range el.Children {
			if err := collect(c); err != nil {
				return err
			}
		}
		return nil
	}
	if err := collect(holder); err != nil {
		return nil, nil, err
	}
	if len(certs) == 0 {
		return nil, nil, refuse("KeyInfo holds no X509Certificate")
	}
	// The leaf is the certificate that issued no other one in the set.
	var leaves []*x509.Certificate
	for _, c := range certs {
		issuer := false
		for _, o := range certs {
			if o != c && bytes.Equal(o.RawIssuer, c.RawSubject) && o.CheckSignatureFrom(c) == nil {
				issuer = true
			}
		}
		if !issuer {
			leaves = append(leaves, c)
		}
	}
	if len(leaves) != 1 {
		return nil, nil, refuse("KeyInfo holds %d unrelated certificates; cannot tell which one signed", len(leaves))
	}
	var rest []*x509.Certificate
	for _, c := range certs {
		if c != leaves[0] {
			rest = append(rest, c)
		}
	}
	return leaves[0], rest, nil
}

// checkReference dereferences one Reference, applies its transforms and
// compares the digest.
func (v *Verifier) checkReference(doc *xmlsafe.Document, ids map[string]*xmlsafe.Element, sig *xmlsafe.Element, ref parsedReference) (Reference, error) {
	out := Reference{URI: ref.uri}
	var (
		el     *xmlsafe.Element // node-set input: the subtree of el
		whole  bool             // node-set input: the whole document
		octets []byte           // octet input
	)
	switch {
	case ref.uri == "":
		el, whole = doc.Root, true
	case strings.HasPrefix(ref.uri, "#xpointer("):
		return out, errors.New("XPointer references are not accepted")
	case strings.HasPrefix(ref.uri, "#"):
		target, ok := ids[ref.uri[1:]]
		if !ok {
			return out, fmt.Errorf("no element has the Id %q", ref.uri[1:])
		}
		el = target
	default:
		if v.Digest != nil && len(ref.transforms) == 0 {
			sum, err := v.Digest(ref.uri, digestMethods[ref.digest])
			if err != nil {
				return out, fmt.Errorf("resolve: %w", err)
			}
			if sum != nil {
				if subtle.ConstantTimeCompare(sum, ref.value) != 1 {
					return out, errors.New("the digest does not match: the referenced data was changed after signing")
				}
				return out, nil
			}
		}
		if v.Resolve == nil {
			return out, errors.New("references outside the document are not accepted here")
		}
		data, err := v.Resolve(ref.uri)
		if err != nil {
			return out, fmt.Errorf("resolve: %w", err)
		}
		octets, out.Data = data, data
	}
	out.Element = el
	var skip *xmlsafe.Element
	method := c14n.Method{} // default: inclusive C14N without comments
	for i, t := range ref.transforms {
		switch {
		case t.algorithm == EnvelopedSignature:
			if el == nil || !contains(el, sig) {
				return out, errors.New("the enveloped-signature transform is used, but the signature is not inside the referenced data")
			}
			skip, out.skip = sig, sig
		case t.algorithm == Base64Transform:
			if el != nil {
				octets = []byte(textOf(el, skip))
				el = nil
			}
			decoded, err := decodeBase64(string(octets))
			if err != nil {
				return out, fmt.Errorf("base64 transform: %w", err)
			}
			octets = decoded
		default:
			if el == nil || i != len(ref.transforms)-1 {
				return out, fmt.Errorf("canonicalization %s must be the last transform, applied to XML", t.algorithm)
			}
			method = t.c14n
		}
	}
	h := digestMethods[ref.digest].New()
	switch {
	case el == nil:
		h.Write(octets)
	case whole:
		if err := c14n.Document(h, doc, method, skip); err != nil {
			return out, err
		}
	default:
		if err := c14n.Subtree(h, el, method, skip); err != nil {
			return out, err
		}
	}
	if subtle.ConstantTimeCompare(h.Sum(nil), ref.value) != 1 {
		return out, errors.New("the digest does not match: the referenced data was changed after signing")
	}
	return out, nil
}

// contains reports whether inner is el or one of its descendants.
func contains(el, inner *xmlsafe.Element) bool {
	for cur := inner; cur != nil; cur = cur.Parent {
		if cur == el {
			return true
		}
	}
	return false
}

// textOf concatenates the text of el's subtree, leaving out skip.
func textOf(el, skip *xmlsafe.Element) string {
	var b strings.Builder
	var walk func(e *xmlsafe.Element)
	walk = func(e *xmlsafe.Element) {
		if e == skip {
			return
		}
		for _, n := range e.Nodes {
			switch t := n.(type) {
			case xmlsafe.CharData:
				b.WriteString(string(t))
			case *xmlsafe.Element:
				walk(t)
			}
		}
	}
	walk(el)
	return b.String()
}

// decodeBase64 decodes base64 with line breaks and other white space.
func decodeBase64(s string) ([]byte, error) {
	clean := strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, s)
	return base64.StdEncoding.DecodeString(clean)
}
