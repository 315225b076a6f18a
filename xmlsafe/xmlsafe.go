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
// URI in Space; namespace declarations are not kept as attributes.
type Element struct {
	Name     xml.Name
	Attr     []xml.Attr
	Children []*Element
	// Text is the element's character data (all text nodes, concatenated),
	// unless the parse streamed it elsewhere.
	Text string
	Line int
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
}

// Parse reads one document from r.
func Parse(r io.Reader, opt Options) (*Element, error) {
	lim := opt.Limits.withDefaults()
	cr := &countingReader{r: r, max: lim.MaxBytes}
	d := xml.NewDecoder(cr)
	d.Strict = true
	d.Entity = nil
	d.CharsetReader = nil
	var (
		stack   []*Element
		sinks   []io.Writer
		root    *Element
		nodes   int
		textLen []int64
	)
	for {
		tok, err := d.Token()
		line, _ := d.InputPos()
		if err == io.EOF {
			if root == nil {
				return nil, &SyntaxError{Line: line, Msg: "no root element"}
			}
			if len(stack) > 0 {
				return nil, &SyntaxError{Line: line, Msg: "unexpected end of document"}
			}
			return root, nil
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
		switch t := tok.(type) {
		case xml.Directive:
			return nil, ErrDTD
		case xml.ProcInst:
			// The XML declaration and processing instructions carry no data
			// the tree keeps.
		case xml.StartElement:
			if root != nil && len(stack) == 0 {
				return nil, &SyntaxError{Line: line, Msg: "more than one root element"}
			}
			nodes++
			switch {
			case nodes > lim.MaxNodes:
				return nil, &LimitError{Limit: "elements", Max: int64(lim.MaxNodes), Line: line}
			case len(stack)+1 > lim.MaxDepth:
				return nil, &LimitError{Limit: "depth", Max: int64(lim.MaxDepth), Line: line}
			case len(t.Attr) > lim.MaxAttrs:
				return nil, &LimitError{Limit: "attributes", Max: int64(lim.MaxAttrs), Line: line}
			case len(t.Name.Local)+len(t.Name.Space) > lim.MaxNameLen:
				return nil, &LimitError{Limit: "name length", Max: int64(lim.MaxNameLen), Line: line}
			}
			el := &Element{Name: t.Name, Line: line}
			for _, a := range t.Attr {
				if len(a.Name.Local)+len(a.Name.Space) > lim.MaxNameLen {
					return nil, &LimitError{Limit: "name length", Max: int64(lim.MaxNameLen), Line: line}
				}
				if a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") {
					continue
				}
				el.Attr = append(el.Attr, a)
			}
			if len(stack) > 0 {
				parent := stack[len(stack)-1]
				parent.Children = append(parent.Children, el)
			} else {
				root = el
			}
			var sink io.Writer
			if opt.Stream != nil {
				sink = opt.Stream(el, len(stack))
			}
			stack = append(stack, el)
			sinks = append(sinks, sink)
			textLen = append(textLen, 0)
		case xml.EndElement:
			// Indentation between child elements is not data.
			if el := stack[len(stack)-1]; len(el.Children) > 0 && strings.TrimSpace(el.Text) == "" {
				el.Text = ""
			}
			stack, sinks, textLen = stack[:len(stack)-1], sinks[:len(sinks)-1], textLen[:len(textLen)-1]
		case xml.CharData:
			if len(stack) == 0 {
				if len(bytes.TrimSpace(t)) > 0 {
					return nil, &SyntaxError{Line: line, Msg: "text outside the root element"}
				}
				continue
			}
			top := len(stack) - 1
			if w := sinks[top]; w != nil {
				if _, err := w.Write(t); err != nil {
					return nil, fmt.Errorf("xmlsafe: line %d: %w", line, err)
				}
				continue
			}
			textLen[top] += int64(len(t))
			if textLen[top] > lim.MaxText {
				return nil, &LimitError{Limit: "text length", Max: lim.MaxText, Line: line}
			}
			stack[top].Text += string(t)
		}
	}
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
