package mapping

import (
	"encoding/xml"
	"fmt"
	"maps"
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
	ID       string `yaml:"id" conf:"required"`
	Version  int    `yaml:"version"`
	Register string `yaml:"register" conf:"required"`
	Type     string `yaml:"type" conf:"required"`
	// Match names the one message type the spec maps; Variants, instead,
	// several (versions of a standard, message types of one family).
	Match      matchDecl     `yaml:"match"`
	Variants   []variantDecl `yaml:"variants"`
	Namespaces []nsDecl      `yaml:"namespaces"`
	// Codelists name code tables that several rules map codes through.
	Codelists []codelistDecl `yaml:"codelists"`
	MessageID string         `yaml:"messageId" conf:"required"`
	Subjects  []subjDecl     `yaml:"subjects" conf:"required"`
}

// codelistDecl is a named code table: a code list's codes and the register
// values they map to.
type codelistDecl struct {
	Name  string     `yaml:"name" conf:"required"`
	Codes []codeDecl `yaml:"codes" conf:"required"`
}

type matchDecl struct {
	Namespace string `yaml:"namespace"`
	Root      string `yaml:"root"`
}

// variantDecl is one message type a spec maps: its name (which rules name
// in variants:), its root element, and prefixes bound differently in it.
type variantDecl struct {
	Name       string   `yaml:"name" conf:"required"`
	Namespace  string   `yaml:"namespace"`
	Root       string   `yaml:"root" conf:"required"`
	Namespaces []nsDecl `yaml:"namespaces"`
}

type nsDecl struct {
	Prefix string `yaml:"prefix" conf:"required"`
	URI    string `yaml:"uri" conf:"required"`
}

// subjDecl is one fan-out: the subjects a message speaks about and what it
// says about each.
type subjDecl struct {
	Each     string       `yaml:"each"`
	When     string       `yaml:"when"`
	Variants []string     `yaml:"variants"`
	Identify identifyDecl `yaml:"identify"`
	Key      valueDecl    `yaml:"key"`
	Event    string       `yaml:"event"`
	Date     valueDecl    `yaml:"date"`
	Set      []ruleDecl   `yaml:"set"`
	Clear    []string     `yaml:"clear"`
	Retracts []ruleDecl   `yaml:"retracts"`
	Delete   bool         `yaml:"delete"`
}

// identifyDecl says how a message identifies the person it speaks about
// (register.Identity): each value selected relative to the subject's node.
type identifyDecl struct {
	IDNr            valueDecl `yaml:"idnr"`
	Ordnungsmerkmal valueDecl `yaml:"ordnungsmerkmal"`
	Familienname    valueDecl `yaml:"familienname"`
	Vornamen        valueDecl `yaml:"vornamen"`
	Geburtsdatum    valueDecl `yaml:"geburtsdatum"`
	Geburtsort      valueDecl `yaml:"geburtsort"`
	// Anschrift selects an address node; its fields are relative to it.
	Anschrift addressDecl `yaml:"anschrift"`
	// Known: only (apply only to a person the register keeps) or required
	// (refuse the message until it does); default: a new person otherwise.
	Known string `yaml:"known"`
	// Require, an XPath, makes Known required for the subjects it holds
	// for: of the persons a message names, the one it concerns.
	Require string `yaml:"require"`
}

type addressDecl struct {
	Select       string    `yaml:"select"`
	Postleitzahl valueDecl `yaml:"postleitzahl"`
	Strasse      valueDecl `yaml:"strasse"`
	Hausnummer   valueDecl `yaml:"hausnummer"`
}

// given reports whether the spec identifies its subjects.
func (d *identifyDecl) given() bool { return len(d.values()) > 0 }

// identityValue is one value of an identification, with its field and the
// conversion it takes unless it names one.
type identityValue struct {
	field, conv string
	decl        *valueDecl
}

// values are the identification's values that are given.
func (d *identifyDecl) values() []identityValue {
	all := []identityValue{
		{"idnr", ConvIDNr, &d.IDNr}, {"ordnungsmerkmal", ConvText, &d.Ordnungsmerkmal},
		{"familienname", ConvName, &d.Familienname}, {"vornamen", ConvName, &d.Vornamen},
		{"geburtsdatum", ConvPartialDate, &d.Geburtsdatum}, {"geburtsort", ConvText, &d.Geburtsort},
		{"anschrift.postleitzahl", ConvText, &d.Anschrift.Postleitzahl}, {"anschrift.strasse", ConvText, &d.Anschrift.Strasse},
		{"anschrift.hausnummer", ConvText, &d.Anschrift.Hausnummer},
	}
	var out []identityValue
	for _, v := range all {
		if v.decl.Select != "" || v.decl.Value != "" {
			out = append(out, v)
		}
	}
	return out
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
	// Codelist names one of the spec's codelists instead of codes.
	Codelist string     `yaml:"codelist"`
	ListURI  string     `yaml:"listURI"`
	Required bool       `yaml:"required"`
	When     string     `yaml:"when"`
	From     string     `yaml:"from"`
	Each     string     `yaml:"each"`
	Fields   []ruleDecl `yaml:"fields"`
	// Op adds the value as an item to a list attribute, or removes the
	// items it matches, instead of setting the whole attribute; default
	// sets it only where the record has no value.
	Op       string   `yaml:"op"`
	Variants []string `yaml:"variants"`
	// Empty "clear": the message states the whole attribute, so when it
	// states no value the attribute is cleared (from the event's day)
	// instead of left as it was.
	Empty string `yaml:"empty"`
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
// namespace and root element), or of each of its variants, to facts for one
// register. A Spec is safe for concurrent use.
type Spec struct {
	// ID and Version name the spec; facts carry them as Source "id@version".
	ID      string
	Version int
	// Register is the register the facts are for, of RegisterType.
	Register     string
	RegisterType string
	// Roots are the root elements of the messages the spec maps, one per
	// variant.
	Roots []xml.Name
	// File is the spec file's path, Document its content.
	File     string
	Document []byte

	source   string
	variants []*variant
	exprs    []exprRef // every XPath, in file order, with its field
	pos      *strictyaml.Positions
	decl     specFile
}

// variant is one message type of a spec: its root, its prefix bindings and
// the compiled programs that map it.
type variant struct {
	name       string
	root       xml.Name
	namespaces map[string]string
	pool       sync.Pool // *program: compiled expressions are not safe to share
}

// applies reports whether a rule limited to the named variants applies.
func (v *variant) applies(names []string) bool {
	return len(names) == 0 || slices.Contains(names, v.name)
}

// exprRef is one XPath expression of the spec, the field it stands in and
// the variants it is used in (nil: all).
type exprRef struct {
	field, expr string
	line        int
	variants    []string
}

// Source returns "id@version", the Source of the facts the spec makes.
func (s *Spec) Source() string { return s.source }

// Variants returns the names of the spec's variants ("" for a spec of one
// message type), in the order of its Roots.
func (s *Spec) Variants() []string {
	out := make([]string, len(s.variants))
	for i, v := range s.variants {
		out[i] = v.name
	}
	return out
}

// variantFor returns the variant that maps messages with the root.
func (s *Spec) variantFor(root xml.Name) *variant {
	for _, v := range s.variants {
		if v.root == root {
			return v
		}
	}
	return nil
}

// Compile reads a mapping spec (file names it in errors) and compiles its
// XPath expressions. Every problem is reported with the file, line and
// field.
func Compile(file string, data []byte) (*Spec, error) {
	var d specFile
	pos, err := strictyaml.Decode(file, data, &d)
	if !pos.Parsed() {
		return nil, err
	}
	s := &Spec{ID: d.ID, Version: d.Version, Register: d.Register, RegisterType: d.Type, File: file, Document: data,
		source: fmt.Sprintf("%s@%d", d.ID, d.Version), pos: pos, decl: d}
	c := &checker{s: s, pos: pos}
	c.check()
	if err := pos.Err(); err != nil {
		return nil, err
	}
	// The first program of each variant proves that every expression
	// compiles; the pools make more from the same declarations when Maps
	// run concurrently.
	for _, v := range s.variants {
		first, err := s.compileProgram(v)
		if err != nil {
			return nil, fmt.Errorf("mapping: %s: %w", file, err)
		}
		v.pool.Put(first)
		s.Roots = append(s.Roots, v.root)
	}
	return s, nil
}

// checker validates a decoded spec and collects its XPath expressions.
type checker struct {
	s         *Spec
	pos       *strictyaml.Positions
	codelists map[string]bool
}

func (c *checker) check() {
	d, pos := &c.s.decl, c.pos
	if !specIDPattern.MatchString(d.ID) {
		pos.Errorf("id", "%q is not a spec id: lower-case letters, digits, '.' and '-'", d.ID)
	}
	if d.Version < 1 {
		pos.Errorf("version", "want a version of 1 or more; raise it whenever the spec changes")
	}
	if !slices.Contains(register.Types(), d.Type) {
		pos.Errorf("type", "unknown register type %q (known: %s)", d.Type, strings.Join(register.Types(), ", "))
	}
	common := c.bind("namespaces", d.Namespaces, nil)
	switch {
	case len(d.Variants) > 0 && (d.Match.Root != "" || d.Match.Namespace != ""):
		pos.Errorf("match", "give match (one message type) or variants (several), not both")
	case len(d.Variants) == 0 && d.Match.Root == "":
		pos.Errorf("match.root", "required: the local name of the messages' root element (or give variants)")
	case len(d.Variants) == 0:
		c.s.variants = []*variant{{root: xml.Name{Space: d.Match.Namespace, Local: d.Match.Root}, namespaces: common}}
	}
	names := map[string]bool{}
	for i, vd := range d.Variants {
		f := fmt.Sprintf("variants[%d]", i)
		root := xml.Name{Space: vd.Namespace, Local: vd.Root}
		if names[vd.Name] {
			pos.Errorf(f+".name", "variant %q is declared twice", vd.Name)
		}
		names[vd.Name] = true
		if c.s.variantFor(root) != nil {
			pos.Errorf(f+".root", "{%s}%s is the root of another variant too", vd.Namespace, vd.Root)
		}
		c.s.variants = append(c.s.variants, &variant{name: vd.Name, root: root, namespaces: c.bind(f+".namespaces", vd.Namespaces, common)})
	}
	c.codelists = map[string]bool{}
	for i, cl := range d.Codelists {
		f := fmt.Sprintf("codelists[%d]", i)
		if c.codelists[cl.Name] {
			c.pos.Errorf(f+".name", "code list %q is declared twice", cl.Name)
		}
		c.codelists[cl.Name] = true
		c.codes(f, cl.Codes)
	}
	c.expr("messageId", d.MessageID, nil)
	attrs := register.AttributeNames(d.Type)
	for i := range d.Subjects {
		sd := &d.Subjects[i]
		f := fmt.Sprintf("subjects[%d]", i)
		c.variantNames(f+".variants", sd.Variants, names)
		vs := sd.Variants
		c.expr(f+".each", sd.Each, vs)
		c.expr(f+".when", sd.When, vs)
		c.identify(f+".identify", &sd.Identify, vs)
		c.value(f+".key", sd.Key, !sd.Identify.given(), vs)
		c.expr(f+".event", sd.Event, vs)
		c.value(f+".date", sd.Date, true, vs)
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
			// Two plain sets of one attribute would overwrite each other;
			// a default or a list item does not.
			if r.When == "" && len(r.Variants) == 0 && r.Op == "" {
				if seen[r.Attribute] {
					pos.Errorf(rf+".attribute", "attribute %q is set twice without a when condition", r.Attribute)
				}
				seen[r.Attribute] = true
			}
			switch r.Op {
			case "", register.OpAdd, register.OpRemove, register.OpDefault:
			default:
				pos.Errorf(rf+".op", "unknown op %q: add or remove an item of a list attribute, default (only where the record has no value), or leave it out to set the attribute", r.Op)
			}
			if (r.Op == register.OpAdd || r.Op == register.OpRemove) && r.Each != "" {
				pos.Errorf(rf+".op", "op adds or removes one item: leave out each")
			}
			switch {
			case r.Empty != "" && r.Empty != "clear":
				pos.Errorf(rf+".empty", "unknown %q: empty: clear clears the attribute when the message states no value", r.Empty)
			case r.Empty != "" && r.Op != "":
				pos.Errorf(rf+".empty", "empty: clear is for rules that set the whole attribute, not op %s", r.Op)
			}
			switch r.From {
			case "", "event", "always":
			default:
				c.expr(rf+".from", r.From, ruleVariants(vs, r.Variants))
			}
			c.variantNames(rf+".variants", r.Variants, names)
			c.rule(rf, r, ruleVariants(vs, r.Variants))
		}
		for j, a := range sd.Clear {
			if !slices.Contains(attrs, a) {
				pos.Errorf(fmt.Sprintf("%s.clear[%d]", f, j), "%q is not an attribute of a %s register", a, d.Type)
			}
		}
		for j := range sd.Retracts {
			r := &sd.Retracts[j]
			rf := fmt.Sprintf("%s.retracts[%d]", f, j)
			if r.Attribute != "" || r.Field != "" || len(r.Fields) > 0 || r.From != "" || r.Op != "" {
				pos.Errorf(rf, "a retraction takes select (or value), when, each and variants only")
			}
			c.variantNames(rf+".variants", r.Variants, names)
			c.rule(rf, r, ruleVariants(vs, r.Variants))
		}
	}
}

// ruleVariants are the variants a rule is used in: its own, within its
// subject's.
func ruleVariants(subject, rule []string) []string {
	if len(rule) == 0 {
		return subject
	}
	return rule
}

// bind checks prefix declarations and returns the bindings, over base.
func (c *checker) bind(field string, decls []nsDecl, base map[string]string) map[string]string {
	out := maps.Clone(base)
	if out == nil {
		out = map[string]string{}
	}
	seen := map[string]bool{}
	for i, ns := range decls {
		f := fmt.Sprintf("%s[%d]", field, i)
		if seen[ns.Prefix] {
			c.pos.Errorf(f+".prefix", "prefix %q is bound twice", ns.Prefix)
		}
		seen[ns.Prefix] = true
		if ns.Prefix == "xml" || ns.Prefix == "xmlns" || strings.ContainsAny(ns.Prefix, ": ") {
			c.pos.Errorf(f+".prefix", "%q cannot be bound", ns.Prefix)
		}
		out[ns.Prefix] = ns.URI
	}
	return out
}

// variantNames checks that a rule names declared variants.
func (c *checker) variantNames(field string, names []string, declared map[string]bool) {
	for i, n := range names {
		if !declared[n] {
			c.pos.Errorf(fmt.Sprintf("%s[%d]", field, i), "%q is not one of the spec's variants", n)
		}
	}
}

// identify checks a subject's identification.
func (c *checker) identify(field string, d *identifyDecl, variants []string) {
	if !d.given() {
		if d.Anschrift.Select != "" {
			c.pos.Errorf(field+".anschrift", "give the address's fields (postleitzahl, strasse, hausnummer)")
		}
		return
	}
	if c.s.decl.Type != register.TypePerson {
		c.pos.Errorf(field, "only person registers identify their subjects; a %s register finds them by key", c.s.decl.Type)
	}
	switch d.Known {
	case "", register.KnownOnly, register.KnownRequired:
	default:
		c.pos.Errorf(field+".known", "unknown %q: only (apply to persons the register keeps) or required (refuse the message until it does)", d.Known)
	}
	basis := 0
	for _, v := range d.values() {
		c.value(field+"."+v.field, *v.decl, false, variants)
		switch v.field {
		case "familienname", "vornamen", "geburtsdatum":
			basis++
		}
	}
	if basis != 0 && basis != 3 {
		c.pos.Errorf(field, "give familienname, vornamen and geburtsdatum together: the Basisdaten identify only as a whole")
	}
	if basis == 0 && d.IDNr.Select == "" && d.IDNr.Value == "" && d.Ordnungsmerkmal.Select == "" && d.Ordnungsmerkmal.Value == "" {
		c.pos.Errorf(field, "identify by idnr, ordnungsmerkmal or the Basisdaten (familienname, vornamen, geburtsdatum)")
	}
	c.expr(field+".anschrift.select", d.Anschrift.Select, variants)
	c.expr(field+".require", d.Require, variants)
}

// value checks a single value (key, date).
func (c *checker) value(field string, v valueDecl, required bool, variants []string) {
	switch {
	case v.Select == "" && v.Value == "" && required:
		c.pos.Errorf(field, "required: give select (an XPath) or value (a constant)")
	case v.Select != "" && v.Value != "":
		c.pos.Errorf(field, "give select or value, not both")
	}
	c.conv(field+".convert", v.Convert)
	c.expr(field+".select", v.Select, variants)
}

func (c *checker) conv(field, conv string) {
	if conv != "" && !slices.Contains(conversions, conv) {
		c.pos.Errorf(field, "unknown conversion %q (known: %s)", conv, strings.Join(conversions, ", "))
	}
}

func (c *checker) rule(field string, r *ruleDecl, variants []string) {
	c.expr(field+".when", r.When, variants)
	c.expr(field+".each", r.Each, variants)
	c.expr(field+".select", r.Select, variants)
	c.conv(field+".convert", r.Convert)
	if r.Select != "" && r.Value != "" {
		c.pos.Errorf(field, "give select or value, not both")
	}
	if len(r.Fields) > 0 {
		if r.Value != "" || r.Convert != "" || len(r.Codes) > 0 || r.Codelist != "" {
			c.pos.Errorf(field, "an object (fields) takes no value, convert or codes of its own")
		}
		names := map[string]bool{}
		for k := range r.Fields {
			ff := &r.Fields[k]
			sub := fmt.Sprintf("%s.fields[%d]", field, k)
			if ff.Field == "" {
				c.pos.Errorf(sub, "name the object's field (field: NAME)")
			}
			if names[ff.Field] && ff.When == "" && len(ff.Variants) == 0 {
				c.pos.Errorf(sub+".field", "field %q is given twice without a when condition", ff.Field)
			}
			names[ff.Field] = true
			if ff.Attribute != "" || ff.From != "" || len(ff.Fields) > 0 || ff.Each != "" || ff.Op != "" {
				c.pos.Errorf(sub, "an object's field takes select or value, convert, codes, listURI, required, when and variants")
			}
			c.rule(sub, ff, ruleVariants(variants, ff.Variants))
		}
	} else if r.Select == "" && r.Value == "" && r.Each == "" {
		c.pos.Errorf(field, "give select (an XPath), value (a constant) or fields (an object)")
	}
	if (len(r.Codes) > 0 || r.Codelist != "" || r.ListURI != "") && r.Convert != ConvCode {
		c.pos.Errorf(field+".convert", "codes, codelist and listURI need convert: code")
	}
	switch {
	case r.Codelist != "" && len(r.Codes) > 0:
		c.pos.Errorf(field+".codelist", "give codes or codelist, not both")
	case r.Codelist != "" && !c.codelists[r.Codelist]:
		c.pos.Errorf(field+".codelist", "%q is not one of the spec's codelists", r.Codelist)
	}
	c.codes(field, r.Codes)
}

// codes checks a code table.
func (c *checker) codes(field string, codes []codeDecl) {
	seen := map[string]bool{}
	for k, cd := range codes {
		if seen[cd.Code] {
			c.pos.Errorf(fmt.Sprintf("%s.codes[%d].code", field, k), "code %q is listed twice", cd.Code)
		}
		seen[cd.Code] = true
	}
}

// expr records an XPath expression (when given) and reports it when it
// does not compile with the prefixes of each variant it is used in.
func (c *checker) expr(field, e string, variants []string) {
	if e == "" {
		return
	}
	line := c.pos.Line(field)
	for _, v := range c.s.variants {
		if !v.applies(variants) {
			continue
		}
		if _, err := xpath.CompileWithNS(e, v.namespaces); err != nil {
			where := ""
			if v.name != "" {
				where = fmt.Sprintf(" in variant %q", v.name)
			}
			c.pos.Errorf(field, "XPath %q does not compile%s: %v", e, where, err)
			return
		}
	}
	c.s.exprs = append(c.s.exprs, exprRef{field: field, expr: e, line: line, variants: variants})
}
