package mapping

import (
	"encoding/xml"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/antchfx/xpath"

	"github.com/parzelle/parzelle/register"
	"github.com/parzelle/parzelle/strictyaml"
)

// specFile is a mapping spec as its YAML file declares it.
type specFile struct {
	ID         string     `yaml:"id" conf:"required"`
	Version    int        `yaml:"version"`
	Register   string     `yaml:"register" conf:"required"`
	Type       string     `yaml:"type" conf:"required"`
	Match      matchDecl  `yaml:"match"`
	Namespaces []nsDecl   `yaml:"namespaces"`
	MessageID  string     `yaml:"messageId" conf:"required"`
	Subjects   []subjDecl `yaml:"subjects" conf:"required"`
}

type matchDecl struct {
	Namespace string `yaml:"namespace"`
	Root      string `yaml:"root" conf:"required"`
}

type nsDecl struct {
	Prefix string `yaml:"prefix" conf:"required"`
	URI    string `yaml:"uri" conf:"required"`
}

// subjDecl is one fan-out: the subjects a message speaks about and what it
// says about each.
type subjDecl struct {
	Each     string     `yaml:"each"`
	When     string     `yaml:"when"`
	Key      valueDecl  `yaml:"key"`
	Event    string     `yaml:"event"`
	Date     valueDecl  `yaml:"date"`
	Set      []ruleDecl `yaml:"set"`
	Clear    []string   `yaml:"clear"`
	Retracts []ruleDecl `yaml:"retracts"`
	Delete   bool       `yaml:"delete"`
}

// valueDecl is a single value: selected by XPath or constant, converted.
type valueDecl struct {
	Select  string `yaml:"select"`
	Value   string `yaml:"value"`
	Convert string `yaml:"convert"`
}

// ruleDecl produces an attribute's value (set), an object's field
// (fields) or an event id (retracts).
type ruleDecl struct {
	Attribute string     `yaml:"attribute"`
	Field     string     `yaml:"field"`
	Select    string     `yaml:"select"`
	Value     string     `yaml:"value"`
	Convert   string     `yaml:"convert"`
	Codes     []codeDecl `yaml:"codes"`
	ListURI   string     `yaml:"listURI"`
	Required  bool       `yaml:"required"`
	When      string     `yaml:"when"`
	From      string     `yaml:"from"`
	Each      string     `yaml:"each"`
	Fields    []ruleDecl `yaml:"fields"`
}

type codeDecl struct {
	Code  string `yaml:"code" conf:"required"`
	Value string `yaml:"value" conf:"required"`
}

// Conversions a value can name.
const (
	ConvText        = "text"
	ConvName        = "name"
	ConvDate        = "date"
	ConvPartialDate = "partialDate"
	ConvDDMMYYYY    = "ddmmyyyy"
	ConvBool        = "bool"
	ConvCode        = "code"
	ConvIDNr        = "idnr"
)

var conversions = []string{ConvText, ConvName, ConvDate, ConvPartialDate, ConvDDMMYYYY, ConvBool, ConvCode, ConvIDNr}

var specIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,62}$`)

// Spec is a compiled mapping spec: it maps the messages of one type (one
// namespace and root element) to facts for one register. A Spec is safe
// for concurrent use.
type Spec struct {
	// ID and Version name the spec; facts carry them as Source "id@version".
	ID      string
	Version int
	// Register is the register the facts are for, of RegisterType.
	Register     string
	RegisterType string
	// Root is the root element of the messages the spec maps.
	Root xml.Name
	// File is the spec file's path, Document its content.
	File     string
	Document []byte

	source     string
	namespaces map[string]string
	exprs      []exprRef // every XPath, in file order, with its field
	pos        *strictyaml.Positions
	decl       specFile
	pool       sync.Pool // *program: compiled expressions are not safe to share
}

// exprRef is one XPath expression of the spec and the field it stands in.
type exprRef struct {
	field, expr string
	line        int
}

// Source returns "id@version", the Source of the facts the spec makes.
func (s *Spec) Source() string { return s.source }

// Compile reads a mapping spec (file names it in errors) and compiles its
// XPath expressions. Every problem is reported with the file, line and
// field.
func Compile(file string, data []byte) (*Spec, error) {
	var d specFile
	pos, err := strictyaml.Decode(file, data, &d)
	if !pos.Parsed() {
		return nil, err
	}
	s := &Spec{ID: d.ID, Version: d.Version, Register: d.Register, RegisterType: d.Type,
		Root: xml.Name{Space: d.Match.Namespace, Local: d.Match.Root}, File: file, Document: data,
		source: fmt.Sprintf("%s@%d", d.ID, d.Version), namespaces: map[string]string{}, pos: pos, decl: d}
	c := &checker{s: s, pos: pos}
	c.check()
	if err := pos.Err(); err != nil {
		return nil, err
	}
	// The first program proves that every expression compiles; the pool
	// makes more from the same declarations when Maps run concurrently.
	first, err := s.compileProgram()
	if err != nil {
		return nil, fmt.Errorf("mapping: %s: %w", file, err)
	}
	s.pool.Put(first)
	return s, nil
}

// checker validates a decoded spec and collects its XPath expressions.
type checker struct {
	s   *Spec
	pos *strictyaml.Positions
}

func (c *checker) check() {
	d, pos := &c.s.decl, c.pos
	if !specIDPattern.MatchString(d.ID) {
		pos.Errorf("id", "%q is not a spec id: lower-case letters, digits, '.' and '-'", d.ID)
	}
	if d.Version < 1 {
		pos.Errorf("version", "want a version of 1 or more; raise it whenever the spec changes")
	}
	if d.Match.Root == "" {
		pos.Errorf("match.root", "required: the local name of the messages' root element")
	}
	if !slices.Contains(register.Types(), d.Type) {
		pos.Errorf("type", "unknown register type %q (known: %s)", d.Type, strings.Join(register.Types(), ", "))
	}
	for i, ns := range d.Namespaces {
		f := fmt.Sprintf("namespaces[%d]", i)
		if _, dup := c.s.namespaces[ns.Prefix]; dup {
			pos.Errorf(f+".prefix", "prefix %q is bound twice", ns.Prefix)
		}
		if ns.Prefix == "xml" || ns.Prefix == "xmlns" || strings.ContainsAny(ns.Prefix, ": ") {
			pos.Errorf(f+".prefix", "%q cannot be bound", ns.Prefix)
		}
		c.s.namespaces[ns.Prefix] = ns.URI
	}
	c.expr("messageId", d.MessageID)
	attrs := register.AttributeNames(d.Type)
	for i := range d.Subjects {
		sd := &d.Subjects[i]
		f := fmt.Sprintf("subjects[%d]", i)
		c.expr(f+".each", sd.Each)
		c.expr(f+".when", sd.When)
		c.value(f+".key", sd.Key, true)
		c.expr(f+".event", sd.Event)
		c.value(f+".date", sd.Date, true)
		if len(sd.Set) == 0 && len(sd.Clear) == 0 && len(sd.Retracts) == 0 && !sd.Delete {
			pos.Errorf(f, "the subject sets, clears, retracts and deletes nothing")
		}
		seen := map[string]bool{}
		for j := range sd.Set {
			r := &sd.Set[j]
			rf := fmt.Sprintf("%s.set[%d]", f, j)
			switch {
			case r.Attribute == "":
				pos.Errorf(rf, "name the register attribute (attribute: NAME)")
			case !slices.Contains(attrs, r.Attribute):
				pos.Errorf(rf+".attribute", "%q is not an attribute of a %s register (known: %s)", r.Attribute, d.Type, strings.Join(attrs, ", "))
			}
			if r.Field != "" {
				pos.Errorf(rf+".field", "field names an object's field; an attribute takes attribute")
			}
			if r.When == "" && seen[r.Attribute] {
				pos.Errorf(rf+".attribute", "attribute %q is set twice without a when condition", r.Attribute)
			}
			seen[r.Attribute] = true
			switch r.From {
			case "", "event", "always":
			default:
				c.expr(rf+".from", r.From)
			}
			c.rule(rf, r)
		}
		for j, a := range sd.Clear {
			if !slices.Contains(attrs, a) {
				pos.Errorf(fmt.Sprintf("%s.clear[%d]", f, j), "%q is not an attribute of a %s register", a, d.Type)
			}
		}
		for j := range sd.Retracts {
			r := &sd.Retracts[j]
			rf := fmt.Sprintf("%s.retracts[%d]", f, j)
			if r.Attribute != "" || r.Field != "" || len(r.Fields) > 0 || r.From != "" {
				pos.Errorf(rf, "a retraction takes select (or value), when and each only")
			}
			c.rule(rf, r)
		}
	}
}

// value checks a single value (key, date).
func (c *checker) value(field string, v valueDecl, required bool) {
	switch {
	case v.Select == "" && v.Value == "" && required:
		c.pos.Errorf(field, "required: give select (an XPath) or value (a constant)")
	case v.Select != "" && v.Value != "":
		c.pos.Errorf(field, "give select or value, not both")
	}
	c.conv(field+".convert", v.Convert)
	c.expr(field+".select", v.Select)
}

func (c *checker) conv(field, conv string) {
	if conv != "" && !slices.Contains(conversions, conv) {
		c.pos.Errorf(field, "unknown conversion %q (known: %s)", conv, strings.Join(conversions, ", "))
	}
}

func (c *checker) rule(field string, r *ruleDecl) {
	c.expr(field+".when", r.When)
	c.expr(field+".each", r.Each)
	c.expr(field+".select", r.Select)
	c.conv(field+".convert", r.Convert)
	if r.Select != "" && r.Value != "" {
		c.pos.Errorf(field, "give select or value, not both")
	}
	if len(r.Fields) > 0 {
		if r.Value != "" || r.Convert != "" || len(r.Codes) > 0 {
			c.pos.Errorf(field, "an object (fields) takes no value, convert or codes of its own")
		}
		names := map[string]bool{}
		for k := range r.Fields {
			ff := &r.Fields[k]
			sub := fmt.Sprintf("%s.fields[%d]", field, k)
			if ff.Field == "" {
				c.pos.Errorf(sub, "name the object's field (field: NAME)")
			}
			if names[ff.Field] && ff.When == "" {
				c.pos.Errorf(sub+".field", "field %q is given twice without a when condition", ff.Field)
			}
			names[ff.Field] = true
			if ff.Attribute != "" || ff.From != "" || len(ff.Fields) > 0 || ff.Each != "" {
				c.pos.Errorf(sub, "an object's field takes select or value, convert, codes, listURI, required and when")
			}
			c.rule(sub, ff)
		}
	} else if r.Select == "" && r.Value == "" && r.Each == "" {
		c.pos.Errorf(field, "give select (an XPath), value (a constant) or fields (an object)")
	}
	if (len(r.Codes) > 0 || r.ListURI != "") && r.Convert != ConvCode {
		c.pos.Errorf(field+".convert", "codes and listURI need convert: code")
	}
	seen := map[string]bool{}
	for k, cd := range r.Codes {
		if seen[cd.Code] {
			c.pos.Errorf(fmt.Sprintf("%s.codes[%d].code", field, k), "code %q is listed twice", cd.Code)
		}
		seen[cd.Code] = true
	}
}

// expr records an XPath expression (when given) and reports it when it
// does not compile with the spec's prefixes.
func (c *checker) expr(field, e string) {
	if e == "" {
		return
	}
	line := c.pos.Line(field)
	if _, err := xpath.CompileWithNS(e, c.s.namespaces); err != nil {
		c.pos.Errorf(field, "XPath %q does not compile: %v", e, err)
		return
	}
	c.s.exprs = append(c.s.exprs, exprRef{field: field, expr: e, line: line})
}
