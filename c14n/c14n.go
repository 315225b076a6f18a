// Package c14n canonicalizes xmlsafe trees: Canonical XML 1.0 (inclusive)
// and Exclusive XML Canonicalization 1.0, with or without comments, for a
// whole document or for an element as a document subset (its subtree, with
// the namespace context it inherits). It writes straight into a digest or
// buffer without building an intermediate tree, since for large signed
// documents canonicalization is the hot path.
package c14n

import (
	"encoding/xml"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/parzelle/parzelle/xmlsafe"
)

// Algorithm identifiers (XML-DSig Transform and CanonicalizationMethod URIs).
const (
	Inclusive             = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
	InclusiveWithComments = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments"
	Exclusive             = "http://www.w3.org/2001/10/xml-exc-c14n#"
	ExclusiveWithComments = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments"
)

// Method is a canonicalization method with its parameters.
type Method struct {
	Exclusive bool
	Comments  bool
	// InclusivePrefixes are the exclusive method's InclusiveNamespaces
	// PrefixList ("#default" for the default namespace).
	InclusivePrefixes []string
}

// ParseMethod returns the method an algorithm URI names.
func ParseMethod(uri string) (Method, error) {
	switch uri {
	case Inclusive:
		return Method{}, nil
	case InclusiveWithComments:
		return Method{Comments: true}, nil
	case Exclusive:
		return Method{Exclusive: true}, nil
	case ExclusiveWithComments:
		return Method{Exclusive: true, Comments: true}, nil
	}
	return Method{}, fmt.Errorf("c14n: unsupported canonicalization algorithm %q", uri)
}

// URI returns the algorithm identifier of the method.
func (m Method) URI() string {
	switch {
	case m.Exclusive && m.Comments:
		return ExclusiveWithComments
	case m.Exclusive:
		return Exclusive
	case m.Comments:
		return InclusiveWithComments
	}
	return Inclusive
}

// Document writes the canonical form of a whole document, leaving out the
// subtree of skip (an enveloped signature) when it is not nil. The tree
// must have been parsed with xmlsafe.Options.Preserve.
func Document(w io.Writer, doc *xmlsafe.Document, m Method, skip *xmlsafe.Element) error {
	c := newCanonicalizer(w, m, skip)
	defer c.release()
	for _, n := range doc.Prolog {
		if c.misc(n) {
			c.buf = append(c.buf, '\n')
		}
	}
	c.element(doc.Root, true)
	for _, n := range doc.Epilog {
		if m.Comments || !isComment(n) {
			c.buf = append(c.buf, '\n')
			c.misc(n)
		}
	}
	return c.flush()
}

// Subtree writes the canonical form of el and its descendants as a
// document subset: el is rendered with the namespaces (and, for inclusive
// C14N, the xml:* attributes) it inherits from its ancestors. skip, when
// not nil, is left out with its subtree.
func Subtree(w io.Writer, el *xmlsafe.Element, m Method, skip *xmlsafe.Element) error {
	c := newCanonicalizer(w, m, skip)
	defer c.release()
	c.element(el, true)
	return c.flush()
}

func isComment(n xmlsafe.Node) bool {
	_, ok := n.(xmlsafe.Comment)
	return ok
}

// binding is a rendered namespace declaration.
type binding struct{ prefix, uri string }

type canonicalizer struct {
	w    io.Writer
	m    Method
	skip *xmlsafe.Element
	buf  []byte
	err  error
	// rendered is the stack of namespace declarations output ancestors
	// rendered; marks[i] is where element i's own begin.
	rendered []binding
	// inclusive lists the InclusiveNamespaces prefixes ("" for #default).
	inclusive []string
	ns        []binding // scratch: declarations to render for one element
	attrs     []attr    // scratch: attributes to render for one element
}

type attr struct {
	space, prefix, local, value string
}

const flushAt = 64 << 10

// pool keeps canonicalizers with their buffers between uses.
var pool = sync.Pool{New: func() any { return &canonicalizer{buf: make([]byte, 0, flushAt+4096)} }}

func newCanonicalizer(w io.Writer, m Method, skip *xmlsafe.Element) *canonicalizer {
	c := pool.Get().(*canonicalizer)
	c.w, c.m, c.skip, c.err = w, m, skip, nil
	for _, p := range m.InclusivePrefixes {
		if p == "#default" {
			p = ""
		}
		c.inclusive = append(c.inclusive, p)
	}
	return c
}

// release returns c to the pool, cleared of references to the tree and
// the writer.
func (c *canonicalizer) release() {
	clear(c.rendered[:cap(c.rendered)])
	clear(c.ns[:cap(c.ns)])
	clear(c.attrs[:cap(c.attrs)])
	clear(c.inclusive[:cap(c.inclusive)])
	c.rendered, c.ns, c.attrs, c.inclusive = c.rendered[:0], c.ns[:0], c.attrs[:0], c.inclusive[:0]
	c.w, c.skip, c.m, c.buf = nil, nil, Method{}, c.buf[:0]
	pool.Put(c)
}

func (c *canonicalizer) flush() error {
	if c.err == nil && len(c.buf) > 0 {
		_, c.err = c.w.Write(c.buf)
	}
	c.buf = c.buf[:0]
	return c.err
}

// misc writes a comment or processing instruction and reports whether it
// wrote anything.
func (c *canonicalizer) misc(n xmlsafe.Node) bool {
	switch t := n.(type) {
	case xmlsafe.Comment:
		if !c.m.Comments {
			return false
		}
		c.buf = append(c.buf, "<!--"...)
		c.buf = append(c.buf, t...)
		c.buf = append(c.buf, "-->"...)
	case xmlsafe.ProcInst:
		c.buf = append(c.buf, "<?"...)
		c.buf = append(c.buf, t.Target...)
		if t.Inst != "" {
			c.buf = append(c.buf, ' ')
			c.buf = append(c.buf, t.Inst...)
		}
		c.buf = append(c.buf, "?>"...)
	default:
		return false
	}
	return true
}

// renderedURI returns what the nearest output ancestor declared for prefix.
func (c *canonicalizer) renderedURI(prefix string) (string, bool) {
	for i := len(c.rendered) - 1; i >= 0; i-- {
		if c.rendered[i].prefix == prefix {
			return c.rendered[i].uri, true
		}
	}
	return "", false
}

// consider adds the declaration prefix=uri to the element's output unless
// an output ancestor already rendered it (or it is xmlns="" with no
// non-empty default rendered above).
func (c *canonicalizer) consider(prefix, uri string) {
	if prefix == "xml" {
		return
	}
	for _, b := range c.ns {
		if b.prefix == prefix {
			return
		}
	}
	prev, ok := c.renderedURI(prefix)
	if (ok && prev == uri) || (!ok && prefix == "" && uri == "") {
		return
	}
	c.ns = append(c.ns, binding{prefix, uri})
}

func (c *canonicalizer) element(el *xmlsafe.Element, apex bool) {
	if el == c.skip {
		return
	}
	mark := len(c.rendered)
	c.ns = c.ns[:0]
	switch {
	case c.m.Exclusive:
		c.consider(el.Prefix, el.Name.Space)
		for i, a := range el.Attr {
			if p := el.AttrPrefix[i]; p != "" {
				c.consider(p, a.Name.Space)
			}
		}
		for _, p := range c.inclusive {
			if uri, ok := el.Lookup(p); ok {
				if apex || declares(el, p) {
					c.consider(p, uri)
				}
			}
		}
	case apex:
		// The apex renders every namespace in scope, nearest first.
		for cur := el; cur != nil; cur = cur.Parent {
			for _, d := range cur.NS {
				c.consider(d.Name.Local, d.Value)
			}
		}
	default:
		for _, d := range el.NS {
			c.consider(d.Name.Local, d.Value)
		}
	}
	if len(c.ns) > 1 {
		slices.SortFunc(c.ns, func(a, b binding) int { return strings.Compare(a.prefix, b.prefix) })
	}
	c.rendered = append(c.rendered, c.ns...)

	c.attrs = c.attrs[:0]
	for i, a := range el.Attr {
		c.attrs = append(c.attrs, attr{a.Name.Space, el.AttrPrefix[i], a.Name.Local, a.Value})
	}
	if apex && !c.m.Exclusive {
		c.inheritXMLAttrs(el)
	}
	if len(c.attrs) > 1 {
		slices.SortFunc(c.attrs, func(a, b attr) int {
			if a.space != b.space {
				return strings.Compare(a.space, b.space)
			}
			return strings.Compare(a.local, b.local)
		})
	}

	c.buf = append(c.buf, '<')
	c.name(el.Prefix, el.Name.Local)
	for _, b := range c.rendered[mark:] {
		if b.prefix == "" {
			c.buf = append(c.buf, ` xmlns="`...)
		} else {
			c.buf = append(c.buf, ` xmlns:`...)
			c.buf = append(c.buf, b.prefix...)
			c.buf = append(c.buf, `="`...)
		}
		c.escape(b.uri, &attrEscaping)
		c.buf = append(c.buf, '"')
	}
	for _, a := range c.attrs {
		c.buf = append(c.buf, ' ')
		c.name(a.prefix, a.local)
		c.buf = append(c.buf, `="`...)
		c.escape(a.value, &attrEscaping)
		c.buf = append(c.buf, '"')
	}
	c.buf = append(c.buf, '>')

	for _, n := range el.Nodes {
		switch t := n.(type) {
		case *xmlsafe.Element:
			c.element(t, false)
		case xmlsafe.CharData:
			c.escape(string(t), &textEscaping)
		default:
			c.misc(n)
		}
		if len(c.buf) >= flushAt {
			if c.flush() != nil {
				return
			}
		}
	}
	c.buf = append(c.buf, "</"...)
	c.name(el.Prefix, el.Name.Local)
	c.buf = append(c.buf, '>')
	c.rendered = c.rendered[:mark]
}

// declares reports whether el itself declares prefix.
func declares(el *xmlsafe.Element, prefix string) bool {
	return slices.ContainsFunc(el.NS, func(a xml.Attr) bool { return a.Name.Local == prefix })
}

// inheritXMLAttrs adds the xml:* attributes of ancestors outside the
// subset that the apex does not override (Canonical XML 1.0, 2.4).
func (c *canonicalizer) inheritXMLAttrs(el *xmlsafe.Element) {
	for cur := el.Parent; cur != nil; cur = cur.Parent {
		for i, a := range cur.Attr {
			if a.Name.Space != xmlsafe.XMLNamespace {
				continue
			}
			if !slices.ContainsFunc(c.attrs, func(b attr) bool { return b.space == xmlsafe.XMLNamespace && b.local == a.Name.Local }) {
				c.attrs = append(c.attrs, attr{a.Name.Space, cur.AttrPrefix[i], a.Name.Local, a.Value})
			}
		}
	}
}

func (c *canonicalizer) name(prefix, local string) {
	if prefix != "" {
		c.buf = append(c.buf, prefix...)
		c.buf = append(c.buf, ':')
	}
	c.buf = append(c.buf, local...)
}

// escaping is one of C14N's two escaping rules: the replacement of each
// byte that needs one.
type escaping [256]string

var (
	// textEscaping is for text nodes.
	textEscaping = escaping{'&': "&amp;", '<': "&lt;", '>': "&gt;", '\r': "&#xD;"}
	// attrEscaping is for attribute values and namespace URIs.
	attrEscaping = escaping{'&': "&amp;", '<': "&lt;", '"': "&quot;", '\t': "&#x9;", '\n': "&#xA;", '\r': "&#xD;"}
)

func (c *canonicalizer) escape(s string, e *escaping) {
	last := 0
	for i := 0; i < len(s); i++ {
		if r := e[s[i]]; r != "" {
			c.buf = append(c.buf, s[last:i]...)
			c.buf = append(c.buf, r...)
			last = i + 1
		}
	}
	c.buf = append(c.buf, s[last:]...)
}
