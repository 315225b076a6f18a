package mapping

import (
	"strings"

	"github.com/antchfx/xpath"

	"github.com/parzelle/parzelle/xmlsafe"
)

// nodeKind is what a navigator stands on.
type nodeKind uint8

const (
	atRoot nodeKind = iota
	atElement
	atAttribute
	atText
)

// navigator is an xpath.NodeNavigator over an xmlsafe tree. Name tests
// compare namespace URIs (the spec's prefixes are bound at compile time),
// never the prefixes a message happens to use. An element's text is one
// text node before its child elements (xmlsafe keeps no interleaving);
// white space between child elements is no text node, as if stripped.
type navigator struct {
	doc  *xmlsafe.Element // the document element
	el   *xmlsafe.Element // the element, or the owner of the attribute or text
	kind nodeKind
	attr int // attribute index when kind == atAttribute
	idx  int // el's index among its parent's children when kind == atElement
}

var _ xpath.NodeNavigator = (*navigator)(nil)

func newNavigator(doc, at *xmlsafe.Element) *navigator {
	n := &navigator{doc: doc, el: at, kind: atElement}
	n.idx = indexOf(at)
	return n
}

// hasText reports whether the element has a text node.
func hasText(e *xmlsafe.Element) bool {
	if e.Text == "" {
		return false
	}
	return len(e.Children) == 0 || strings.TrimSpace(e.Text) != ""
}

func indexOf(e *xmlsafe.Element) int {
	if e.Parent == nil {
		return 0
	}
	for i, c := range e.Parent.Children {
		if c == e {
			return i
		}
	}
	return 0
}

func (n *navigator) NodeType() xpath.NodeType {
	switch n.kind {
	case atRoot:
		return xpath.RootNode
	case atAttribute:
		return xpath.AttributeNode
	case atText:
		return xpath.TextNode
	}
	return xpath.ElementNode
}

func (n *navigator) LocalName() string {
	switch n.kind {
	case atElement:
		return n.el.Name.Local
	case atAttribute:
		return n.el.Attr[n.attr].Name.Local
	}
	return ""
}

// Prefix is the prefix the node was written with; an element in a default
// namespace gets a prefix no spec can write, so that an unprefixed name
// test (no namespace, in XPath 1.0) never matches it.
func (n *navigator) Prefix() string {
	switch n.kind {
	case atElement:
		if n.el.Prefix == "" && n.el.Name.Space != "" {
			return "#default"
		}
		return n.el.Prefix
	case atAttribute:
		if n.attr < len(n.el.AttrPrefix) {
			return n.el.AttrPrefix[n.attr]
		}
	}
	return ""
}

// NamespaceURL is the node's namespace URI, which antchfx/xpath compares
// with the URI a prefixed name test is bound to.
func (n *navigator) NamespaceURL() string {
	switch n.kind {
	case atElement:
		return n.el.Name.Space
	case atAttribute:
		return n.el.Attr[n.attr].Name.Space
	}
	return ""
}

func (n *navigator) Value() string {
	switch n.kind {
	case atRoot:
		return stringValue(n.doc)
	case atAttribute:
		return n.el.Attr[n.attr].Value
	case atText:
		return n.el.Text
	}
	return stringValue(n.el)
}

// stringValue is the XPath string-value of an element: the text of all its
// text nodes in document order.
func stringValue(e *xmlsafe.Element) string {
	if len(e.Children) == 0 {
		return e.Text
	}
	var b strings.Builder
	appendText(&b, e)
	return b.String()
}

func appendText(b *strings.Builder, e *xmlsafe.Element) {
	if hasText(e) {
		b.WriteString(e.Text)
	}
	for _, c := range e.Children {
		appendText(b, c)
	}
}

func (n *navigator) Copy() xpath.NodeNavigator {
	c := *n
	return &c
}

func (n *navigator) MoveToRoot() { n.kind, n.el, n.idx = atRoot, nil, 0 }

func (n *navigator) MoveToParent() bool {
	switch n.kind {
	case atRoot:
		return false
	case atAttribute, atText:
		n.kind = atElement
		n.idx = indexOf(n.el)
		return true
	}
	if n.el.Parent == nil {
		n.MoveToRoot()
		return true
	}
	n.el = n.el.Parent
	n.idx = indexOf(n.el)
	return true
}

func (n *navigator) MoveToNextAttribute() bool {
	switch n.kind {
	case atElement:
		if len(n.el.Attr) == 0 {
			return false
		}
		n.kind, n.attr = atAttribute, 0
		return true
	case atAttribute:
		if n.attr+1 >= len(n.el.Attr) {
			return false
		}
		n.attr++
		return true
	}
	return false
}

func (n *navigator) MoveToChild() bool {
	switch n.kind {
	case atRoot:
		n.kind, n.el, n.idx = atElement, n.doc, 0
		return true
	case atElement:
		if hasText(n.el) {
			n.kind = atText
			return true
		}
		if len(n.el.Children) > 0 {
			n.el, n.idx = n.el.Children[0], 0
			return true
		}
	}
	return false
}

func (n *navigator) MoveToFirst() bool {
	switch n.kind {
	case atElement:
		p := n.el.Parent
		if p == nil {
			return false
		}
		if hasText(p) {
			n.kind, n.el = atText, p
			return true
		}
		n.el, n.idx = p.Children[0], 0
		return true
	case atText:
		return true
	}
	return false
}

func (n *navigator) MoveToNext() bool {
	switch n.kind {
	case atText:
		if len(n.el.Children) == 0 {
			return false
		}
		n.kind, n.el, n.idx = atElement, n.el.Children[0], 0
		return true
	case atElement:
		p := n.el.Parent
		if p == nil || n.idx+1 >= len(p.Children) {
			return false
		}
		n.idx++
		n.el = p.Children[n.idx]
		return true
	}
	return false
}

func (n *navigator) MoveToPrevious() bool {
	if n.kind != atElement || n.el.Parent == nil {
		return false
	}
	p := n.el.Parent
	if n.idx > 0 {
		n.idx--
		n.el = p.Children[n.idx]
		return true
	}
	if hasText(p) {
		n.kind, n.el = atText, p
		return true
	}
	return false
}

func (n *navigator) MoveTo(other xpath.NodeNavigator) bool {
	o, ok := other.(*navigator)
	if !ok || o.doc != n.doc {
		return false
	}
	*n = *o
	return true
}
