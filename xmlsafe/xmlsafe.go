// Package xmlsafe parses untrusted XML into a small namespace-resolved tree:
// no DTDs, no entities beyond the five predefined ones, and bounded size,
// depth, attribute count, name length and text length. A refusal names the
// limit that was hit.
package xmlsafe

import (
	"bytes"
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
}

// XMLNamespace is the namespace bound to the prefix "xml".
const XMLNamespace = "http://www.w3.org/XML/1998/namespace"

// Parse reads one document from r and returns its root element.
func Parse(r io.Reader, opt Options) (*Element, error) {
	doc, err := ParseDocument(r, opt)
	if err != nil {
		return nil, err
	}
	return doc.Root, nil
}

// ParseDocument reads one document from r.
func ParseDocument(r io.Reader, opt Options) (*Document, error) {
	p := parser{lim: opt.Limits.withDefaults(), opt: opt}
	cr := &countingReader{r: r, max: p.lim.MaxBytes}
	d := xml.NewDecoder(cr)
	d.Strict = true
	d.Entity = nil
	d.CharsetReader = nil
	for {
		start := d.InputOffset()
		tok, err := d.RawToken()
		line, _ := d.InputPos()
		if err == io.EOF {
			if p.doc.Root == nil {
				return nil, &SyntaxError{Line: line, Msg: "no root element"}
			}
			if len(p.stack) > 0 {
				return nil, &SyntaxError{Line: line, Msg: "unexpected end of document"}
			}
			return &p.doc, nil
		}
		if err != nil {
			var le *LimitError
			if errors.As(err, &le) {
				le.Line = line
				return nil, le
			}
			var se *xml.SyntaxError
			if errors.As(err, &se) {
				return nil, &SyntaxError{Line: se.Line, Msg: se.Msg}
			}
			return nil, fmt.Errorf("xmlsafe: line %d: %w", line, err)
		}
		if err := p.token(tok, line, start, d.InputOffset()); err != nil {
			return nil, err
		}
	}
}

type parser struct {
	lim     Limits
	opt     Options
	doc     Document
	stack   []*Element
	sinks   []io.Writer
	textLen []int64
	// text collects each open element's character data when it comes in
	// more than one piece (first holds a single piece without copying); it
	// becomes Element.Text at the end tag.
	text  [][]byte
	first []string
	parts []int
	slab  []Element
	nodes int
}

func (p *parser) token(tok xml.Token, line int, start, end int64) error {
	switch t := tok.(type) {
	case xml.Directive:
		return ErrDTD
	case xml.ProcInst:
		if t.Target == "xml" {
			return nil // the XML declaration
		}
		p.add(ProcInst{Target: t.Target, Inst: string(t.Inst)})
	case xml.Comment:
		p.add(Comment(t))
	case xml.StartElement:
		return p.start(t, line, start, end)
	case xml.EndElement:
		if len(p.stack) == 0 {
			return &SyntaxError{Line: line, Msg: fmt.Sprintf("end tag </%s> without a start tag", prefixed(t.Name.Space, t.Name.Local))}
		}
		el := p.stack[len(p.stack)-1]
		if t.Name.Space != el.Prefix || t.Name.Local != el.Name.Local {
			return &SyntaxError{Line: line, Msg: fmt.Sprintf("element <%s> closed by </%s>", prefixed(el.Prefix, el.Name.Local), prefixed(t.Name.Space, t.Name.Local))}
		}
		switch top := len(p.text) - 1; p.parts[top] {
		case 0:
		case 1:
			el.Text = p.first[top]
		default:
			el.Text = string(p.text[top])
		}
		// Indentation between child elements is not data.
		if len(el.Children) > 0 && strings.TrimSpace(el.Text) == "" {
			el.Text = ""
		}
		el.End = end
		p.stack, p.sinks, p.textLen = p.stack[:len(p.stack)-1], p.sinks[:len(p.sinks)-1], p.textLen[:len(p.textLen)-1]
		p.text, p.first, p.parts = p.text[:len(p.text)-1], p.first[:len(p.first)-1], p.parts[:len(p.parts)-1]
	case xml.CharData:
		if len(p.stack) == 0 {
			if len(bytes.TrimSpace(t)) > 0 {
				return &SyntaxError{Line: line, Msg: "text outside the root element"}
			}
			return nil
		}
		top := len(p.stack) - 1
		if w := p.sinks[top]; w != nil {
			if _, err := w.Write(t); err != nil {
				return fmt.Errorf("xmlsafe: line %d: %w", line, err)
			}
			return nil
		}
		p.textLen[top] += int64(len(t))
		if p.textLen[top] > p.lim.MaxText {
			return &LimitError{Limit: "text length", Max: p.lim.MaxText, Line: line}
		}
		text := string(t)
		switch p.parts[top]++; p.parts[top] {
		case 1:
			p.first[top] = text
		case 2:
			p.text[top] = append(append(p.text[top], p.first[top]...), text...)
		default:
			p.text[top] = append(p.text[top], text...)
		}
		if p.opt.Preserve {
			p.stack[top].Nodes = append(p.stack[top].Nodes, CharData(text))
		}
	}
	return nil
}

// add files a comment or processing instruction where it occurs.
func (p *parser) add(n Node) {
	switch {
	case !p.opt.Preserve:
	case len(p.stack) > 0:
		top := p.stack[len(p.stack)-1]
		top.Nodes = append(top.Nodes, n)
	case p.doc.Root == nil:
		p.doc.Prolog = append(p.doc.Prolog, n)
	default:
		p.doc.Epilog = append(p.doc.Epilog, n)
	}
}

func (p *parser) start(t xml.StartElement, line int, start, end int64) error {
	if p.doc.Root != nil && len(p.stack) == 0 {
		return &SyntaxError{Line: line, Msg: "more than one root element"}
	}
	p.nodes++
	switch {
	case p.nodes > p.lim.MaxNodes:
		return &LimitError{Limit: "elements", Max: int64(p.lim.MaxNodes), Line: line}
	case len(p.stack)+1 > p.lim.MaxDepth:
		return &LimitError{Limit: "depth", Max: int64(p.lim.MaxDepth), Line: line}
	case len(t.Attr) > p.lim.MaxAttrs:
		return &LimitError{Limit: "attributes", Max: int64(p.lim.MaxAttrs), Line: line}
	case len(t.Name.Local)+len(t.Name.Space) > p.lim.MaxNameLen:
		return &LimitError{Limit: "name length", Max: int64(p.lim.MaxNameLen), Line: line}
	}
	// Elements come from a slab: one allocation per 128 instead of one
	// each (large documents have tens of thousands).
	if len(p.slab) == 0 {
		p.slab = make([]Element, 128)
	}
	el := &p.slab[0]
	p.slab = p.slab[1:]
	el.Prefix, el.Line, el.Start, el.Inner = t.Name.Space, line, start, end
	el.Name.Local = t.Name.Local
	if len(p.stack) > 0 {
		el.Parent = p.stack[len(p.stack)-1]
	}
	nattr := 0
	for _, a := range t.Attr {
		if len(a.Name.Local)+len(a.Name.Space) > p.lim.MaxNameLen {
			return &LimitError{Limit: "name length", Max: int64(p.lim.MaxNameLen), Line: line}
		}
		switch {
		case a.Name.Space == "xmlns":
			if a.Value == "" {
				return &SyntaxError{Line: line, Msg: fmt.Sprintf("the prefix %q cannot be undeclared", a.Name.Local)}
			}
			el.NS = append(el.NS, xml.Attr{Name: xml.Name{Local: a.Name.Local}, Value: a.Value})
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			el.NS = append(el.NS, xml.Attr{Value: a.Value})
		default:
			nattr++
		}
	}
	space, ok := el.Lookup(el.Prefix)
	if !ok {
		return &SyntaxError{Line: line, Msg: fmt.Sprintf("undeclared namespace prefix %q", el.Prefix)}
	}
	el.Name.Space = space
	if nattr > 0 {
		el.Attr = make([]xml.Attr, 0, nattr)
		el.AttrPrefix = make([]string, 0, nattr)
		for _, a := range t.Attr {
			if a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") {
				continue
			}
			name := xml.Name{Local: a.Name.Local}
			if a.Name.Space != "" {
				if name.Space, ok = el.Lookup(a.Name.Space); !ok || name.Space == "" {
					return &SyntaxError{Line: line, Msg: fmt.Sprintf("undeclared namespace prefix %q", a.Name.Space)}
				}
			}
			for _, prev := range el.Attr {
				if prev.Name == name {
					return &SyntaxError{Line: line, Msg: fmt.Sprintf("attribute %s given twice", prefixed(a.Name.Space, a.Name.Local))}
				}
			}
			el.Attr = append(el.Attr, xml.Attr{Name: name, Value: a.Value})
			el.AttrPrefix = append(el.AttrPrefix, a.Name.Space)
		}
	}
	if el.Parent != nil {
		el.Parent.Children = append(el.Parent.Children, el)
		if p.opt.Preserve {
			el.Parent.Nodes = append(el.Parent.Nodes, el)
		}
	} else {
		p.doc.Root = el
	}
	var sink io.Writer
	if p.opt.Stream != nil {
		sink = p.opt.Stream(el, len(p.stack))
	}
	p.stack = append(p.stack, el)
	p.sinks = append(p.sinks, sink)
	p.textLen = append(p.textLen, 0)
	if n := len(p.text); n < cap(p.text) {
		p.text = p.text[:n+1] // reuse the buffer a closed sibling left
		p.text[n] = p.text[n][:0]
	} else {
		p.text = append(p.text, nil)
	}
	p.first, p.parts = append(p.first, ""), append(p.parts, 0)
	return nil
}

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

// countingReader fails once more than max bytes were read.
type countingReader struct {
	r   io.Reader
	n   int64
	max int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.max {
		return n, &LimitError{Limit: "size", Max: c.max}
	}
	return n, err
}
