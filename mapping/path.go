package mapping

import (
	"strings"

	"github.com/antchfx/xpath"

	"github.com/parzelle/parzelle/xmlsafe"
)

// expr is a compiled XPath expression. Plain location paths of child steps
// ("x:a/x:b/c", "../x:d", ".") — most of a spec — are walked over the tree
// directly; anything else is evaluated by antchfx/xpath.
type expr struct {
	x     *xpath.Expr
	steps []step // set for a plain path
	up    bool   // the path has a ".." step (results may repeat)
}

// step is one step of a plain path: the parent, the node itself, or the
// child elements with a namespace and local name.
type step struct {
	parent, self bool
	space, local string
}

// compileExpr compiles an expression with the prefix bindings.
func compileExpr(e string, namespaces map[string]string) (*expr, error) {
	x, err := xpath.CompileWithNS(e, namespaces)
	if err != nil {
		return nil, err
	}
	c := &expr{x: x}
	c.steps, c.up = plainPath(e, namespaces)
	return c, nil
}

// plainPath parses a relative path of child, "." and ".." steps with
// QName tests; ok is false (nil steps) for anything else.
func plainPath(e string, namespaces map[string]string) ([]step, bool) {
	e = strings.TrimSpace(e)
	if e == "" || strings.HasPrefix(e, "/") || strings.HasSuffix(e, "/") {
		return nil, false
	}
	var steps []step
	up := false
	for _, part := range strings.Split(e, "/") {
		switch part {
		case "..":
			steps = append(steps, step{parent: true})
			up = true
			continue
		case ".":
			steps = append(steps, step{self: true})
			continue
		}
		name, n := scanName(part)
		if n == 0 || n != len(part) || strings.HasSuffix(name, ":*") {
			return nil, false
		}
		prefix, local, ok := strings.Cut(name, ":")
		space := ""
		if ok {
			uri, bound := namespaces[prefix]
			if !bound {
				return nil, false
			}
			space = uri
		} else {
			local = prefix
		}
		steps = append(steps, step{space: space, local: local})
	}
	return steps, up
}

// walk returns the elements the plain path selects from ctx, in document
// order (only the first unless all). The steps work in two buffers on the
// stack; only the result is allocated.
func (c *expr) walk(ctx *xmlsafe.Element, all bool) []*xmlsafe.Element {
	var bufs [2][8]*xmlsafe.Element
	cur := append(bufs[0][:0], ctx)
	for i, s := range c.steps {
		last := i == len(c.steps)-1
		next := bufs[(i+1)%2][:0]
		for _, e := range cur {
			switch {
			case s.self:
				next = append(next, e)
			case s.parent:
				if e.Parent != nil {
					next = appendOnce(next, e.Parent, c.up)
				}
			default:
				for _, ch := range e.Children {
					if ch.Name.Local == s.local && ch.Name.Space == s.space {
						next = appendOnce(next, ch, c.up)
						if last && !all {
							return []*xmlsafe.Element{ch}
						}
					}
				}
			}
		}
		if len(next) == 0 {
			return nil
		}
		cur = next
	}
	if !all {
		return []*xmlsafe.Element{cur[0]}
	}
	return append([]*xmlsafe.Element(nil), cur...)
}

func appendOnce(list []*xmlsafe.Element, e *xmlsafe.Element, check bool) []*xmlsafe.Element {
	if check {
		for _, x := range list {
			if x == e {
				return list
			}
		}
	}
	return append(list, e)
}
