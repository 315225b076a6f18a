// Package xmlsafe parses untrusted XML into a small namespace-resolved tree:
// no DTDs, no entities beyond the five predefined ones, and bounded size,
// depth, attribute count, name length and text length. A refusal names the
// limit that was hit.
//
// The tokenizer is the package's own, working on the input bytes: names,
// attribute values and text without references are substrings of the
// input, not allocations of their own. It is stricter than encoding/xml,
// which it replaced, where XML 1.0 and Namespaces in XML ask for it:
// attributes must be separated by white space; names are QNames with the
// fifth edition's name characters; comments and processing instructions
// must hold valid characters; the XML declaration may only stand at the
// start (after an optional UTF-8 byte order mark, which is accepted) and
// must be well-formed; references and CDATA sections may not stand outside
// the root element; the same namespace declaration may not be written
// twice, and the prefixes xml and xmlns keep their namespaces. Line ends
// are normalized everywhere (comments included), and attribute values are
// normalized as §3.3.3 asks for CDATA attributes (a literal tab, CR or LF
// becomes a space; a character reference keeps its character), as libxml2
// does. Element.Line is the line of the element's '<'.
package xmlsafe

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Limits bound what a parse accepts. A zero field means "use the default".
type Limits struct {
	MaxBytes   int64 // whole document
	MaxDepth   int   // element nesting
	MaxAttrs   int   // attributes (namespace declarations included) per element
	MaxNameLen int   // bytes of any element or attribute name
	MaxText    int64 // bytes of one text node kept in the tree (streamed text is not limited here)
	MaxNodes   int   // elements in the whole document
}

// DefaultLimits suit SOAP envelopes and XÖV messages.
var DefaultLimits = Limits{MaxBytes: 64 << 20, MaxDepth: 64, MaxAttrs: 64, MaxNameLen: 256, MaxText: 1 << 20, MaxNodes: 200_000}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.MaxBytes > 0 {
		d.MaxBytes = l.MaxBytes
	}
	if l.MaxDepth > 0 {
		d.MaxDepth = l.MaxDepth
	}
	if l.MaxAttrs > 0 {
		d.MaxAttrs = l.MaxAttrs
	}
	if l.MaxNameLen > 0 {
		d.MaxNameLen = l.MaxNameLen
	}
	if l.MaxText > 0 {
		d.MaxText = l.MaxText
	}
	if l.MaxNodes > 0 {
		d.MaxNodes = l.MaxNodes
	}
	return d
}

// ErrDTD refuses a document type declaration (and with it every external
// or recursive entity).
var ErrDTD = errors.New("xmlsafe: a DOCTYPE (DTD) is not allowed")

// LimitError says which limit a document exceeded.
type LimitError struct {
	Limit string // "size", "depth", "attributes", "name length", "text length", "elements"
	Max   int64
	Line  int
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("xmlsafe: line %d: document exceeds the %s limit of %d", e.Line, e.Limit, e.Max)
}

// SyntaxError is malformed XML.
type SyntaxError struct {
	Line int
	Msg  string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("xmlsafe: line %d: %s", e.Line, e.Msg) }

// Element is one element of a parsed document. Names carry the namespace
// URI in Space; namespace declarations are kept apart from the attributes.
type Element struct {
	Name xml.Name
	// Prefix is the prefix the element was written with ("" for none).
	Prefix string
	// Attr are the attributes (namespace declarations excluded), their
	// Name.Space the namespace URI; AttrPrefix holds the prefix each was
	// written with.
	Attr       []xml.Attr
	AttrPrefix []string
	// NS are the namespace declarations written on the element, in order:
	// Name.Local is the prefix ("" for the default namespace), Value the URI.
	NS       []xml.Attr
	Children []*Element
	Parent   *Element
	// Text is the element's character data (all text nodes, concatenated),
	// unless the parse streamed it elsewhere.
	Text string
	// Nodes is the element's content in document order (*Element,
	// CharData, Comment, ProcInst), kept only when Options.Preserve is set.
	Nodes []Node
	Line  int
	// Start and End are the byte offsets of the element in the input: its
	// '<' and just past its end tag; Inner is just past its start tag. They
	// let a caller splice the source.
	Start, Inner, End int64
}

// Node is a piece of element content: *Element, CharData, Comment or
// ProcInst.
type Node interface{ node() }

// CharData is a text node (entities and CDATA sections resolved).
type CharData string

// Comment is a comment's text.
type Comment string

// ProcInst is a processing instruction.
type ProcInst struct{ Target, Inst string }

func (*Element) node() {}
func (CharData) node() {}
func (Comment) node()  {}
func (ProcInst) node() {}

// Document is a parsed document: the root element and the comments and
// processing instructions around it (the XML declaration excluded).
type Document struct {
	Root           *Element
	Prolog, Epilog []Node
}

// Attribute returns the value of the unqualified attribute name.
func (e *Element) Attribute(name string) (string, bool) {
	for _, a := range e.Attr {
		if a.Name.Space == "" && a.Name.Local == name {
			return a.Value, true
		}
	}
	return "", false
}

// Child returns the first child with the given namespace and local name.
func (e *Element) Child(space, local string) *Element {
	for _, c := range e.Children {
		if c.Name.Space == space && c.Name.Local == local {
			return c
		}
	}
	return nil
}

// ChildrenNamed returns every child with the given namespace and local name.
func (e *Element) ChildrenNamed(space, local string) []*Element {
	var out []*Element
	for _, c := range e.Children {
		if c.Name.Space == space && c.Name.Local == local {
			out = append(out, c)
		}
	}
	return out
}

// FindAll returns e and every element below it with the given namespace
// and local name, in document order.
func (e *Element) FindAll(space, local string) []*Element {
	var out []*Element
	if e.Name.Space == space && e.Name.Local == local {
		out = append(out, e)
	}
	for _, c := range e.Children {
		out = append(out, c.FindAll(space, local)...)
	}
	return out
}

// Path returns the element reached by following the children named by the
// (namespace, local name) steps, or nil when there is none.
func (e *Element) Path(steps ...xml.Name) *Element {
	cur := e
	for _, s := range steps {
		if cur = cur.Child(s.Space, s.Local); cur == nil {
			return nil
		}
	}
	return cur
}

// TrimmedText returns the element's text without surrounding white space;
// it is nil-safe.
func (e *Element) TrimmedText() string {
	if e == nil {
		return ""
	}
	return strings.TrimSpace(e.Text)
}

// Options tune a parse.
type Options struct {
	Limits Limits
	// Stream, when set, is asked for every element whether its text goes to
	// a writer instead of into the tree (a large base64 payload, say). The
	// writer gets the text as it is read; a write error aborts the parse.
	Stream func(el *Element, depth int) io.Writer
	// Preserve keeps every node in Element.Nodes (white space, comments and
	// processing instructions included), as canonicalization needs.
	Preserve bool
	// Arena, if set, lends the memory of the tree; the tree is valid only
	// until the arena is Reset (see Arena).
	Arena *Arena
}

// XMLNamespace is the namespace bound to the prefix "xml".
const XMLNamespace = "http://www.w3.org/XML/1998/namespace"

// Lookup returns the namespace URI bound to prefix where the element
// stands ("" prefix: the default namespace, which may be empty).
func (e *Element) Lookup(prefix string) (string, bool) {
	if prefix == "xml" {
		return XMLNamespace, true
	}
	for cur := e; cur != nil; cur = cur.Parent {
		for i := range cur.NS {
			if cur.NS[i].Name.Local == prefix {
				return cur.NS[i].Value, true
			}
		}
	}
	return "", prefix == ""
}

func prefixed(prefix, local string) string {
	if prefix == "" {
		return local
	}
	return prefix + ":" + local
}
