package xmlsafe

// This file keeps the previous parser, built on encoding/xml's RawToken,
// as the reference the differential fuzz target compares the own
// tokenizer against. It is test code only.

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// refParseDocument is the previous ParseDocument.
func refParseDocument(r io.Reader, opt Options) (*Document, error) {
	p := refParser{lim: opt.Limits.withDefaults(), opt: opt}
	cr := &refCountingReader{r: r, max: p.lim.MaxBytes}
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

type refParser struct {
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

func (p *refParser) token(tok xml.Token, line int, start, end int64) error {
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
func (p *refParser) add(n Node) {
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

func (p *refParser) start(t xml.StartElement, line int, start, end int64) error {
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

// refCountingReader fails once more than max bytes were read.
type refCountingReader struct {
	r   io.Reader
	n   int64
	max int64
}

func (c *refCountingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.max {
		return n, &LimitError{Limit: "size", Max: c.max}
	}
	return n, err
}
