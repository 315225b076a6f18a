package xmlenc

import (
	"bytes"
	"crypto/x509"
	"encoding/xml"
	"errors"
	"fmt"
	"sort"

	"github.com/parzelle/parzelle/xmlsafe"
)

// EncryptElement returns src with the element el (parsed from exactly these
// bytes) replaced by its EncryptedData of Type Element. The namespace
// declarations el inherits are copied onto its start tag first, so the
// plaintext is a document of its own that a recipient can parse out of
// context too.
func EncryptElement(src []byte, el *xmlsafe.Element, recipients []*x509.Certificate, opt EncryptOptions) ([]byte, error) {
	if err := checkSpan(src, el); err != nil {
		return nil, err
	}
	plain, err := standalone(src, el)
	if err != nil {
		return nil, err
	}
	opt.Type = TypeElement
	enc, err := Encrypt(plain, recipients, opt)
	if err != nil {
		return nil, err
	}
	return splice(src, el.Start, el.End, enc.XML), nil
}

// EncryptContent returns src with the content of el (everything between its
// start and end tag) replaced by an EncryptedData of Type Content. The
// content is encrypted as written: prefixes declared on el or its ancestors
// stay declared there.
func EncryptContent(src []byte, el *xmlsafe.Element, recipients []*x509.Certificate, opt EncryptOptions) ([]byte, error) {
	if err := checkSpan(src, el); err != nil {
		return nil, err
	}
	end := contentEnd(src, el)
	if end <= el.Inner {
		return nil, fmt.Errorf("xmlenc: element %s has no content to encrypt", el.Name.Local)
	}
	opt.Type = TypeContent
	enc, err := Encrypt(src[el.Inner:end], recipients, opt)
	if err != nil {
		return nil, err
	}
	return splice(src, el.Inner, end, enc.XML), nil
}

// DecryptDocument decrypts every EncryptedData of Type Element or Content in
// the document src in place (each EncryptedData replaced by its plaintext)
// and returns the new document and how many it decrypted. The result must
// again be well-formed XML within opt.Limits; CBC plaintext that is not
// fails with the uniform ErrDecryptionFailed (a parse error would otherwise
// be an oracle).
func DecryptDocument(src []byte, opt DecryptOptions) ([]byte, int, error) {
	doc, err := xmlsafe.Parse(bytes.NewReader(src), xmlsafe.Options{Limits: opt.Limits})
	if err != nil {
		return nil, 0, fmt.Errorf("xmlenc: %w", err)
	}
	var found []*xmlsafe.Element
	var walk func(e *xmlsafe.Element)
	walk = func(e *xmlsafe.Element) {
		if e.Name.Space == Namespace && (e.Name.Local == "EncryptedData" || e.Name.Local == "EncryptedKey") {
			if e.Name.Local == "EncryptedData" {
				found = append(found, e)
			}
			return // nothing inside is decrypted on its own
		}
		for _, c := range e.Children {
			walk(c)
		}
	}
	walk(doc)
	if len(found) == 0 {
		return src, 0, nil
	}
	if opt.Document == nil {
		opt.Document = doc
	}
	sort.Slice(found, func(i, j int) bool { return found[i].Start > found[j].Start })
	out := src
	cbc := false
	for _, ed := range found {
		typ, _ := ed.Attribute("Type")
		if typ != TypeElement && typ != TypeContent {
			id, _ := ed.Attribute("Id")
			return nil, 0, fmt.Errorf("xmlenc: EncryptedData (line %d, Id %q) has Type %q: only %s or %s can be decrypted in place", ed.Line, id, typ, TypeElement, TypeContent)
		}
		if err := checkSpan(src, ed); err != nil {
			return nil, 0, err
		}
		res, err := Decrypt(ed, opt)
		if err != nil {
			return nil, 0, fmt.Errorf("line %d: %w", ed.Line, err)
		}
		cbc = cbc || !isGCM(res.Algorithm)
		out = splice(out, ed.Start, ed.End, res.Plaintext)
	}
	if _, err := xmlsafe.Parse(bytes.NewReader(out), xmlsafe.Options{Limits: opt.Limits}); err != nil {
		if cbc {
			return nil, 0, ErrDecryptionFailed
		}
		return nil, 0, fmt.Errorf("xmlenc: the decrypted plaintext does not fit into the document: %w", err)
	}
	return out, len(found), nil
}

func isGCM(uri string) bool {
	a, err := lookupContent(uri)
	return err == nil && a.gcm
}

// checkSpan makes sure the element's offsets lie within src.
func checkSpan(src []byte, el *xmlsafe.Element) error {
	if el == nil {
		return errors.New("xmlenc: no element given")
	}
	if el.Start < 0 || el.Start >= el.End || el.End > int64(len(src)) || el.Inner < el.Start || el.Inner > el.End || src[el.Start] != '<' {
		return fmt.Errorf("xmlenc: element %s: its offsets %d…%d do not lie in the %d-byte source (was it parsed from these bytes?)", el.Name.Local, el.Start, el.End, len(src))
	}
	return nil
}

// contentEnd is the offset of el's end tag ("</"), or el.Inner for an
// empty-element tag.
func contentEnd(src []byte, el *xmlsafe.Element) int64 {
	i := bytes.LastIndex(src[el.Inner:el.End], []byte("</"))
	if i < 0 {
		return el.Inner
	}
	return el.Inner + int64(i)
}

// standalone returns el's bytes with the namespace declarations it inherits
// added to its start tag.
func standalone(src []byte, el *xmlsafe.Element) ([]byte, error) {
	raw := src[el.Start:el.End]
	declared := map[string]bool{"xml": true}
	for _, ns := range el.NS {
		declared[ns.Name.Local] = true
	}
	var extra bytes.Buffer
	for p := el.Parent; p != nil; p = p.Parent {
		for _, ns := range p.NS {
			if declared[ns.Name.Local] {
				continue
			}
			declared[ns.Name.Local] = true
			if ns.Name.Local == "" {
				extra.WriteString(` xmlns="`)
			} else {
				extra.WriteString(` xmlns:` + ns.Name.Local + `="`)
			}
			_ = xml.EscapeText(&extra, []byte(ns.Value))
			extra.WriteString(`"`)
		}
	}
	if extra.Len() == 0 {
		return raw, nil
	}
	qname := el.Name.Local
	if el.Prefix != "" {
		qname = el.Prefix + ":" + qname
	}
	if !bytes.HasPrefix(raw[1:], []byte(qname)) {
		return nil, fmt.Errorf("xmlenc: element %s: the source at offset %d does not start with <%s", el.Name.Local, el.Start, qname)
	}
	at := 1 + len(qname)
	out := make([]byte, 0, len(raw)+extra.Len())
	out = append(out, raw[:at]...)
	out = append(out, extra.Bytes()...)
	return append(out, raw[at:]...), nil
}

func splice(src []byte, start, end int64, with []byte) []byte {
	out := make([]byte, 0, int64(len(src))-(end-start)+int64(len(with)))
	out = append(out, src[:start]...)
	out = append(out, with...)
	return append(out, src[end:]...)
}
