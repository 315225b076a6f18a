package mapping

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/parzelle/parzelle/register"
	"github.com/parzelle/parzelle/strictyaml"
	"github.com/parzelle/parzelle/xmlsafe"
)

const xsdNamespace = "http://www.w3.org/2001/XMLSchema"

// SchemaIndex is the element names a set of XML schemas declares, per
// namespace ("" for unqualified local elements). It knows names, not
// content models: a name any schema declares passes, wherever it stands.
type SchemaIndex struct {
	elements map[string]map[string]bool // namespace → local names
	files    int
}

// Files is the number of schema files read.
func (x *SchemaIndex) Files() int { return x.files }

// Covers reports whether some schema declares elements in the namespace.
func (x *SchemaIndex) Covers(namespace string) bool { return len(x.elements[namespace]) > 0 }

// Declares reports whether some schema declares the element.
func (x *SchemaIndex) Declares(namespace, local string) bool { return x.elements[namespace][local] }

// LoadSchemas reads every .xsd file under the directories and collects its
// element declarations: global ones in the target namespace, local ones in
// it when they are qualified (form, or the schema's elementFormDefault)
// and in no namespace otherwise. Files that do not parse are skipped.
func LoadSchemas(dirs ...string) (*SchemaIndex, error) {
	x := &SchemaIndex{elements: map[string]map[string]bool{}}
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || !strings.HasSuffix(d.Name(), ".xsd") {
				return nil
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			root, err := xmlsafe.Parse(bytes.NewReader(data), xmlsafe.Options{})
			if err != nil || root.Name.Space != xsdNamespace || root.Name.Local != "schema" {
				return nil
			}
			x.files++
			x.add(root)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("mapping: reading schemas under %s: %w", dir, err)
		}
	}
	return x, nil
}

func (x *SchemaIndex) add(schema *xmlsafe.Element) {
	target, _ := schema.Attribute("targetNamespace")
	formDefault, _ := schema.Attribute("elementFormDefault")
	var walk func(e *xmlsafe.Element, global bool)
	walk = func(e *xmlsafe.Element, global bool) {
		for _, c := range e.Children {
			if c.Name.Space != xsdNamespace {
				continue
			}
			if c.Name.Local == "element" {
				if name, ok := c.Attribute("name"); ok {
					ns := ""
					form, hasForm := c.Attribute("form")
					if global || form == "qualified" || (!hasForm && formDefault == "qualified") {
						ns = target
					}
					if x.elements[ns] == nil {
						x.elements[ns] = map[string]bool{}
					}
					x.elements[ns][name] = true
				}
			}
			walk(c, false)
		}
	}
	walk(schema, true)
}

// Problem is one finding of Lint, at a line of the spec file.
type Problem struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Field   string `json:"field,omitempty"`
	Msg     string `json:"message"`
	Warning bool   `json:"warning,omitempty"`
}

func (p Problem) String() string {
	kind := "error"
	if p.Warning {
		kind = "warning"
	}
	field := ""
	if p.Field != "" {
		field = p.Field + ": "
	}
	return fmt.Sprintf("%s:%d: %s: %s%s", p.File, p.Line, kind, field, p.Msg)
}

// Lint checks a spec: that it compiles (every XPath with the declared
// prefixes), that every element its paths name is declared by the schemas
// for its namespace ("unknown path"; a namespace no schema covers is a
// warning), and that every subject rule maps the attributes its register
// type requires ("unmapped required field"). Problems are sorted by line.
func Lint(file string, data []byte, schemas *SchemaIndex) []Problem {
	s, err := Compile(file, data)
	if err != nil {
		var ses strictyaml.Errors
		if errors.As(err, &ses) {
			var out []Problem
			for _, e := range ses {
				out = append(out, Problem{File: e.File, Line: e.Line, Field: e.Field, Msg: e.Msg})
			}
			return out
		}
		return []Problem{{File: file, Msg: err.Error()}}
	}
	var out []Problem
	add := func(line int, field string, warn bool, format string, args ...any) {
		out = append(out, Problem{File: file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...), Warning: warn})
	}
	uncovered := map[string]bool{}
	check := func(line int, field, space, local, where string) {
		if schemas == nil {
			return
		}
		if !schemas.Covers(space) {
			if !uncovered[space] {
				uncovered[space] = true
				add(line, field, true, "no schema declares elements in namespace %q; paths in it are not checked", space)
			}
			return
		}
		if !schemas.Declares(space, local) {
			name := local
			if space != "" {
				name = "{" + space + "}" + local
			}
			add(line, field, false, "unknown path: no schema declares element %s%s", name, where)
		}
	}
	for i, v := range s.variants {
		field := "match.root"
		if v.name != "" {
			field = fmt.Sprintf("variants[%d].root", i)
		}
		check(s.pos.Line(field), field, v.root.Space, v.root.Local, "")
	}
	for _, e := range s.exprs {
		for _, n := range nameTests(e.expr) {
			if n.local == "*" {
				continue
			}
			// An element must be declared in each variant the expression
			// is used in: a path of one version is checked against that
			// version's namespace.
			checked := map[string]bool{}
			for _, v := range s.variants {
				space := ""
				if n.prefix != "" {
					space = v.namespaces[n.prefix]
				}
				if !v.applies(e.variants) || checked[space] {
					continue
				}
				checked[space] = true
				check(e.line, e.field, space, n.local, fmt.Sprintf(" (%s in %q)", n.qname(), e.expr))
			}
		}
		if predicateBeforeArgument(e.expr) {
			add(e.line, e.field, true, "a predicate inside a function's arguments is followed by more arguments: antchfx/xpath evaluates those from the wrong node; move it last or out of the function")
		}
	}
	for i, sd := range s.decl.Subjects {
		if len(sd.Set) == 0 {
			continue // a storno or deletion restates nothing
		}
		for _, req := range register.RequiredAttributes(s.RegisterType) {
			if !slices.ContainsFunc(sd.Set, func(r ruleDecl) bool { return r.Attribute == req }) {
				field := fmt.Sprintf("subjects[%d].set", i)
				add(s.pos.Line(field), field, false, "unmapped required field: a %s record requires %q, which this subject's set does not map", s.RegisterType, req)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Line < out[j].Line })
	return out
}

// nameTest is an element name test of an XPath expression.
type nameTest struct{ prefix, local string }

func (n nameTest) qname() string {
	if n.prefix == "" {
		return n.local
	}
	return n.prefix + ":" + n.local
}

// nameTests returns the element name tests of an XPath 1.0 expression:
// names that are neither functions, axes, variables, attribute tests nor
// operators.
func nameTests(expr string) []nameTest {
	var out []nameTest
	// prevValue: the previous token ends an operand, so a following name
	// such as "and" or "div" is an operator.
	prevValue, attr := false, false
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
			continue
		case c == '\'' || c == '"':
			j := strings.IndexByte(expr[i+1:], c)
			if j < 0 {
				return out
			}
			i += j + 2
			prevValue, attr = true, false
			continue
		case c >= '0' && c <= '9':
			for i < len(expr) && (expr[i] >= '0' && expr[i] <= '9' || expr[i] == '.') {
				i++
			}
			prevValue = true
			continue
		case c == '@':
			attr = true
			i++
			continue
		case c == '$':
			i++
			_, n := scanName(expr[i:])
			i += n
			prevValue = true
			continue
		case c == '*':
			i++
			if !prevValue { // a wildcard name test
				prevValue, attr = true, false
			} else {
				prevValue = false
			}
			continue
		case c == ')' || c == ']':
			i++
			prevValue = true
			continue
		case c == '.':
			i++
			if i < len(expr) && expr[i] == '.' {
				i++
			}
			prevValue = true
			continue
		}
		name, n := scanName(expr[i:])
		if n == 0 {
			i++
			prevValue = false
			continue
		}
		i += n
		if prevValue && (name == "and" || name == "or" || name == "div" || name == "mod") {
			prevValue = false
			continue
		}
		rest := strings.TrimLeft(expr[i:], " \t\r\n")
		switch {
		case strings.HasPrefix(rest, "::"):
			attr = name == "attribute" || name == "namespace"
			i = len(expr) - len(rest) + 2
			prevValue = false
			continue
		case strings.HasPrefix(rest, "("):
			prevValue = false // a function or a node type test
			continue
		}
		if !attr {
			prefix, local, ok := strings.Cut(name, ":")
			if !ok {
				prefix, local = "", name
			}
			out = append(out, nameTest{prefix, local})
		}
		prevValue, attr = true, false
	}
	return out
}

// scanName reads a QName (or prefix:*) at the start of s.
func scanName(s string) (string, int) {
	n := ncName(s)
	if n == 0 {
		return "", 0
	}
	if n < len(s)-1 && s[n] == ':' && s[n+1] != ':' {
		if s[n+1] == '*' {
			return s[:n+2], n + 2
		}
		if m := ncName(s[n+1:]); m > 0 {
			return s[:n+1+m], n + 1 + m
		}
	}
	return s[:n], n
}

func ncName(s string) int {
	i := 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		ok := r == '_' || unicode.IsLetter(r) || (i > 0 && (r == '-' || r == '.' || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r)))
		if !ok {
			break
		}
		i += size
	}
	return i
}

// predicateBeforeArgument reports a predicate inside a function call that
// is followed by another argument of the same call.
func predicateBeforeArgument(expr string) bool {
	type frame struct{ fn, pred bool }
	var stack []frame
	for i := 0; i < len(expr); i++ {
		switch c := expr[i]; c {
		case '\'', '"':
			j := strings.IndexByte(expr[i+1:], c)
			if j < 0 {
				return false
			}
			i += j + 1
		case '(':
			stack = append(stack, frame{fn: true})
		case ')':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		case '[':
			if len(stack) > 0 {
				stack[len(stack)-1].pred = true
			}
		case ',':
			if n := len(stack); n > 0 && stack[n-1].pred {
				return true
			}
		}
	}
	return false
}
