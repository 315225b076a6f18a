package mapping

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/antchfx/xpath"

	"github.com/parzelle/parzelle/register"
	"github.com/parzelle/parzelle/xmlsafe"
)

// program is a spec's expressions compiled. antchfx/xpath keeps iteration
// state in a compiled expression, so one program serves one Map at a time;
// the spec keeps a pool of them.
type program struct {
	messageID *expr
	subjects  []subjProg
}

type subjProg struct {
	decl       *subjDecl
	each, when *expr
	key, date  ruleProg
	event      *expr
	set        []ruleProg
	retracts   []ruleProg
	// identify are the identification's values (field and rule), address
	// the node its address fields are relative to.
	identify []identityProg
	address  *expr
	require  *expr
}

type identityProg struct {
	field string
	rule  ruleProg
}

type ruleProg struct {
	decl                  *ruleDecl
	sel, when, each, from *expr
	fields                []ruleProg
	codes                 map[string]string
}

func compile(e string, namespaces map[string]string) (*expr, error) {
	if e == "" {
		return nil, nil
	}
	x, err := compileExpr(e, namespaces)
	if err != nil {
		return nil, fmt.Errorf("XPath %q: %w", e, err)
	}
	return x, nil
}

// compileProgram compiles the rules that apply to the variant with its
// prefix bindings.
func (s *Spec) compileProgram(v *variant) (*program, error) {
	var errs []error
	c := func(e string) *expr {
		x, err := compile(e, v.namespaces)
		if err != nil {
			errs = append(errs, err)
		}
		return x
	}
	var rule func(d *ruleDecl) ruleProg
	rule = func(d *ruleDecl) ruleProg {
		r := ruleProg{decl: d, sel: c(d.Select), when: c(d.When), each: c(d.Each)}
		if d.From != "" && d.From != "event" && d.From != "always" {
			r.from = c(d.From)
		}
		codes := d.Codes
		if d.Codelist != "" {
			for _, cl := range s.decl.Codelists {
				if cl.Name == d.Codelist {
					codes = cl.Codes
				}
			}
		}
		if len(codes) > 0 {
			r.codes = make(map[string]string, len(codes))
			for _, cd := range codes {
				r.codes[cd.Code] = cd.Value
			}
		}
		for i := range d.Fields {
			if v.applies(d.Fields[i].Variants) {
				r.fields = append(r.fields, rule(&d.Fields[i]))
			}
		}
		return r
	}
	value := func(d valueDecl, conv string) ruleProg {
		if d.Convert != "" {
			conv = d.Convert
		}
		return rule(&ruleDecl{Select: d.Select, Value: d.Value, Convert: conv})
	}
	p := &program{messageID: c(s.decl.MessageID)}
	for i := range s.decl.Subjects {
		d := &s.decl.Subjects[i]
		if !v.applies(d.Variants) {
			continue
		}
		sp := subjProg{decl: d, each: c(d.Each), when: c(d.When), event: c(d.Event),
			key: value(d.Key, ConvText), date: value(d.Date, ConvDate), address: c(d.Identify.Anschrift.Select), require: c(d.Identify.Require)}
		for _, iv := range d.Identify.values() {
			sp.identify = append(sp.identify, identityProg{iv.field, value(*iv.decl, iv.conv)})
		}
		for j := range d.Set {
			if v.applies(d.Set[j].Variants) {
				sp.set = append(sp.set, rule(&d.Set[j]))
			}
		}
		for j := range d.Retracts {
			if v.applies(d.Retracts[j].Variants) {
				sp.retracts = append(sp.retracts, rule(&d.Retracts[j]))
			}
		}
		p.subjects = append(p.subjects, sp)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

// ErrNoSpec is returned by Set.Map for a message no spec of the set maps.
var ErrNoSpec = errors.New("mapping: no mapping spec for this message type")

// Error is a message the spec cannot map: which subject, which attribute,
// what value and why. Mapping is deterministic, so retrying the same
// message with the same spec fails the same way.
type Error struct {
	// Source is the spec, id@version.
	Source string
	// Subject is the subject's position (1-based) among those its rule
	// selected, 0 for the message as a whole; Rule is the subject rule's
	// position in the spec.
	Subject, Rule int
	// Line is the line of the subject's element in the message.
	Line int
	// Attribute is the register attribute (or field, as attribute.field),
	// or the part of the fact (key, date, event, messageId).
	Attribute string
	// Value is the offending value as the message has it, if any.
	Value string
	Msg   string
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "mapping %s: ", e.Source)
	if e.Subject > 0 {
		fmt.Fprintf(&b, "subjects[%d] #%d (message line %d): ", e.Rule-1, e.Subject, e.Line)
	}
	if e.Attribute != "" {
		b.WriteString(e.Attribute)
		b.WriteString(": ")
	}
	if e.Value != "" {
		fmt.Fprintf(&b, "value %q ", e.Value)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// mapper maps one message.
type mapper struct {
	s   *Spec
	p   *program
	doc *xmlsafe.Element
	// the subject being mapped, for errors
	rule, subject, line int
}

func (m *mapper) fail(attr string, err error) error {
	e := &Error{Source: m.s.source, Subject: m.subject, Rule: m.rule, Line: m.line, Attribute: attr}
	var ce *convError
	if errors.As(err, &ce) {
		e.Value, e.Msg = ce.value, ce.msg
	} else {
		e.Msg = err.Error()
	}
	return e
}

func (m *mapper) failf(attr, format string, args ...any) error {
	return m.fail(attr, fmt.Errorf(format, args...))
}

// Map maps a message (its root element, as xmlsafe.Parse returns it) to
// the facts it states: one per subject the spec's rules select, in spec
// and document order. The facts are deterministic: the same message gives
// the same facts with the same event ids.
func (s *Spec) Map(doc *xmlsafe.Element) ([]register.Fact, error) {
	if doc == nil {
		return nil, fmt.Errorf("mapping %s: no document", s.source)
	}
	v := s.variantFor(doc.Name)
	if v == nil {
		var roots []string
		for _, r := range s.Roots {
			roots = append(roots, "{"+r.Space+"}"+r.Local)
		}
		return nil, &Error{Source: s.source, Msg: fmt.Sprintf("the message is {%s}%s; the spec maps %s", doc.Name.Space, doc.Name.Local, strings.Join(roots, ", "))}
	}
	p, _ := v.pool.Get().(*program)
	if p == nil {
		var err error
		if p, err = s.compileProgram(v); err != nil {
			return nil, fmt.Errorf("mapping %s: %w", s.source, err)
		}
	}
	defer v.pool.Put(p)
	m := &mapper{s: s, p: p, doc: doc}
	msgID, err := m.text(p.messageID, doc)
	if err != nil {
		return nil, m.fail("messageId", err)
	}
	if msgID == "" {
		return nil, m.failf("messageId", "the message has no id at %s", s.decl.MessageID)
	}
	var facts []register.Fact
	for i := range p.subjects {
		sp := &p.subjects[i]
		m.rule = i + 1
		nodes := []*xmlsafe.Element{doc}
		if sp.each != nil {
			nodes = m.elements(sp.each, doc)
		}
		for n, node := range nodes {
			m.subject, m.line = n+1, node.Line
			if sp.when != nil && !m.boolean(sp.when, node) {
				continue
			}
			f, err := m.fact(sp, node, msgID, i, n)
			if err != nil {
				return nil, err
			}
			facts = append(facts, f)
		}
	}
	if len(facts) == 0 {
		return nil, &Error{Source: s.source, Msg: "the message states nothing the spec maps: no subject rule selected any part of it"}
	}
	seen := make(map[string]bool, len(facts))
	for _, f := range facts {
		if seen[f.EventID] {
			return nil, &Error{Source: s.source, Attribute: "event", Msg: "two subjects of the message get the same event id; make event or key tell them apart"}
		}
		seen[f.EventID] = true
	}
	return facts, nil
}

// maxEvent bounds an event reference, so that it and the subject key fit
// the register's bound of 500 bytes for event ids.
const maxEvent = 290

func (m *mapper) fact(sp *subjProg, node *xmlsafe.Element, msgID string, rule, n int) (register.Fact, error) {
	f := register.Fact{MessageID: msgID, Source: m.s.source}
	if len(sp.identify) > 0 {
		id, err := m.identity(sp, node)
		if err != nil {
			return f, err
		}
		f.Identify = id
	}
	var k string
	if sp.key.sel != nil || sp.key.decl.Value != "" {
		key, err := m.scalar(&sp.key, node)
		if err != nil {
			return f, m.fail("key", err)
		}
		k, _ = key.(string)
	} else if f.Identify != nil {
		k = identityKey(f.Identify)
	}
	switch {
	case k == "":
		return f, m.failf("key", "the subject has no key (%s)", sp.decl.Key.Select)
	case len(k) > 200:
		return f, m.failf("key", "the subject key is longer than 200 bytes")
	}
	f.SubjectKey = k
	date, err := m.scalar(&sp.date, node)
	if err != nil {
		return f, m.fail("date", err)
	}
	if f.Date, _ = date.(string); f.Date == "" {
		return f, m.failf("date", "the event has no date (%s%s)", sp.decl.Date.Select, sp.decl.Date.Value)
	}
	if len(f.Date) != 10 {
		return f, m.failf("date", "the event's date %q is not a full date", f.Date)
	}
	ev := fmt.Sprintf("%s#%d.%d", msgID, rule+1, n+1)
	if sp.event != nil {
		if ev, err = m.text(sp.event, node); err != nil {
			return f, m.fail("event", err)
		}
		if ev == "" {
			return f, m.failf("event", "the event has no id (%s)", sp.decl.Event)
		}
	}
	if len(ev) > maxEvent {
		return f, m.failf("event", "the event id is longer than %d bytes", maxEvent)
	}
	f.EventID = eventID(ev, k)
	if f.Identify != nil {
		f.Ref = ev
	}
	for i := range sp.set {
		r := &sp.set[i]
		if r.when != nil && !m.boolean(r.when, node) {
			continue
		}
		v, err := m.value(r, node)
		if err != nil {
			return f, m.fail(r.decl.Attribute, err)
		}
		if v == nil {
			if r.decl.Required {
				return f, m.failf(r.decl.Attribute, "the message states no value (required)")
			}
			if r.decl.Empty != "clear" {
				continue
			}
		}
		from := f.Date
		switch {
		case r.decl.From == "always":
			from = ""
		case r.from != nil:
			d, err := m.scalar(&ruleProg{sel: r.from, decl: &ruleDecl{Convert: ConvDate}}, node)
			if err != nil {
				return f, m.fail(r.decl.Attribute+" from", err)
			}
			if from, _ = d.(string); from == "" {
				return f, m.failf(r.decl.Attribute+" from", "the message states no day from which %s holds (%s)", r.decl.Attribute, r.decl.From)
			}
		}
		f.Set = append(f.Set, register.Assignment{Attribute: r.decl.Attribute, Value: v, From: from, Op: r.decl.Op})
	}
	for _, a := range sp.decl.Clear {
		f.Set = append(f.Set, register.Assignment{Attribute: a, Value: nil, From: f.Date})
	}
	for i := range sp.retracts {
		r := &sp.retracts[i]
		if r.when != nil && !m.boolean(r.when, node) {
			continue
		}
		ids, err := m.refs(r, node)
		if err != nil {
			return f, m.fail("retracts", err)
		}
		for _, id := range ids {
			if len(id) > maxEvent {
				return f, m.failf("retracts", "a retracted event id is longer than %d bytes", maxEvent)
			}
			if full := eventID(id, k); full != f.EventID && !slices.Contains(f.Retracts, full) {
				f.Retracts = append(f.Retracts, full)
				if f.Identify != nil {
					f.Withdraws = append(f.Withdraws, id)
				}
			}
		}
	}
	f.Delete = sp.decl.Delete
	return f, nil
}

// identity evaluates the subject's identification; nil when the message
// states none of its values.
func (m *mapper) identity(sp *subjProg, node *xmlsafe.Element) (*register.Identity, error) {
	id := &register.Identity{}
	var addr register.IdentityAddress
	addrNode := node
	if sp.address != nil {
		els := m.elements(sp.address, node)
		addrNode = nil
		if len(els) > 0 {
			addrNode = els[0]
		}
	}
	given := false
	for i := range sp.identify {
		ip := &sp.identify[i]
		ctx := node
		if strings.HasPrefix(ip.field, "anschrift.") {
			if ctx = addrNode; ctx == nil {
				continue
			}
		}
		v, err := m.scalar(&ip.rule, ctx)
		if err != nil {
			return nil, m.fail("identify."+ip.field, err)
		}
		s, _ := v.(string)
		if s == "" {
			continue
		}
		given = true
		switch ip.field {
		case "idnr":
			id.IDNr = s
		case "ordnungsmerkmal":
			id.Ordnungsmerkmal = s
		case "familienname":
			id.Familienname = s
		case "vornamen":
			id.Vornamen = s
		case "geburtsdatum":
			id.Geburtsdatum = s
		case "geburtsort":
			id.Geburtsort = s
		case "anschrift.postleitzahl":
			addr.Postleitzahl = s
		case "anschrift.strasse":
			addr.Strasse = s
		case "anschrift.hausnummer":
			addr.Hausnummer = s
		}
	}
	if !given {
		return nil, m.failf("identify", "the message identifies the person by none of %s", strings.Join(identityFields(sp), ", "))
	}
	if addr != (register.IdentityAddress{}) {
		id.Anschrift = &addr
	}
	id.Known = sp.decl.Identify.Known
	if sp.require != nil && m.boolean(sp.require, node) {
		id.Known = register.KnownRequired
	}
	// Basisdaten identify only as a whole: a message that lacks one of
	// them (an unknown birth date) identifies by the rest it states.
	if id.Familienname == "" || id.Vornamen == "" || id.Geburtsdatum == "" {
		if id.IDNr == "" && id.Ordnungsmerkmal == "" {
			return nil, m.failf("identify", "the message states neither IDNr nor all of familienname, vornamen and geburtsdatum: the person cannot be identified")
		}
		id.Familienname, id.Vornamen, id.Geburtsdatum = "", "", ""
	}
	return id, nil
}

func identityFields(sp *subjProg) []string {
	var out []string
	for _, ip := range sp.identify {
		out = append(out, ip.field)
	}
	return out
}

// identityKey is the subject key of an identified person when the spec
// gives none: by the Basisdaten, else by the IDNr or Ordnungsmerkmal.
func identityKey(id *register.Identity) string {
	switch {
	case id.Familienname != "":
		return "person/" + id.Familienname + "/" + id.Vornamen + "/" + id.Geburtsdatum
	case id.IDNr != "":
		return "person/idnr/" + id.IDNr
	}
	return "person/om/" + id.Ordnungsmerkmal
}

// eventID makes an event reference unique per subject: one event of a
// message (a move of a family, say) gives each subject its own fact.
func eventID(event, subjectKey string) string { return event + "/" + subjectKey }

// refs evaluates a retraction: every node selected (or the string result)
// is one event reference.
func (m *mapper) refs(r *ruleProg, ctx *xmlsafe.Element) ([]string, error) {
	if r.decl.Value != "" {
		return []string{collapse(r.decl.Value)}, nil
	}
	var out []string
	ctxs := []*xmlsafe.Element{ctx}
	if r.each != nil {
		ctxs = m.elements(r.each, ctx)
	}
	for _, c := range ctxs {
		if r.sel == nil {
			if s := collapse(stringValue(c)); s != "" {
				out = append(out, s)
			}
			continue
		}
		for _, it := range m.items(r.sel, c, true) {
			if s := collapse(it.text()); s != "" {
				out = append(out, s)
			}
		}
	}
	return out, nil
}

// value evaluates an attribute's rule: a list (each), an object (fields)
// or a single value.
func (m *mapper) value(r *ruleProg, ctx *xmlsafe.Element) (any, error) {
	if r.each == nil {
		return m.single(r, ctx)
	}
	var list []any
	for _, c := range m.elements(r.each, ctx) {
		v, err := m.single(r, c)
		if err != nil {
			return nil, err
		}
		if v != nil {
			list = append(list, v)
		}
	}
	if len(list) == 0 {
		return nil, nil
	}
	return list, nil
}

func (m *mapper) single(r *ruleProg, ctx *xmlsafe.Element) (any, error) {
	if r.fields == nil {
		return m.scalar(r, ctx)
	}
	if r.sel != nil {
		els := m.elements(r.sel, ctx)
		if len(els) == 0 {
			return nil, nil
		}
		ctx = els[0]
	}
	obj := make(map[string]any, len(r.fields))
	for i := range r.fields {
		f := &r.fields[i]
		if f.when != nil && !m.boolean(f.when, ctx) {
			continue
		}
		v, err := m.scalar(f, ctx)
		if err != nil {
			return nil, fmt.Errorf("field %s: %w", f.decl.Field, err)
		}
		if v == nil {
			if f.decl.Required {
				return nil, fmt.Errorf("field %s: the message states no value (required)", f.decl.Field)
			}
			continue
		}
		obj[f.decl.Field] = v
	}
	if len(obj) == 0 {
		return nil, nil
	}
	return obj, nil
}

// scalar evaluates a single value: a constant, the first result of select,
// or the context element itself.
func (m *mapper) scalar(r *ruleProg, ctx *xmlsafe.Element) (any, error) {
	conv := r.decl.Convert
	switch {
	case r.decl.Value != "":
		return convert(conv, item{s: r.decl.Value}, r)
	case r.sel == nil:
		return convert(conv, item{el: ctx}, r)
	}
	its := m.items(r.sel, ctx, false)
	if len(its) == 0 {
		return nil, nil
	}
	return convert(conv, its[0], r)
}

// text evaluates an expression to a normalized string.
func (m *mapper) text(e *expr, ctx *xmlsafe.Element) (string, error) {
	its := m.items(e, ctx, false)
	if len(its) == 0 {
		return "", nil
	}
	v, err := toText(its[0].text())
	s, _ := v.(string)
	return s, err
}

func (m *mapper) boolean(e *expr, ctx *xmlsafe.Element) bool {
	if e.steps != nil {
		return len(e.walk(ctx, false)) > 0
	}
	switch v := e.x.Evaluate(newNavigator(m.doc, ctx)).(type) {
	case bool:
		return v
	case float64:
		return v != 0
	case string:
		return v != ""
	case *xpath.NodeIterator:
		return v.MoveNext()
	}
	return false
}

// elements returns the elements an expression selects.
func (m *mapper) elements(e *expr, ctx *xmlsafe.Element) []*xmlsafe.Element {
	if e.steps != nil {
		return e.walk(ctx, true)
	}
	var out []*xmlsafe.Element
	for _, it := range m.items(e, ctx, true) {
		if it.el != nil {
			out = append(out, it.el)
		}
	}
	return out
}

// items evaluates an expression: the nodes it selects (only the first
// unless all), or its scalar result.
func (m *mapper) items(e *expr, ctx *xmlsafe.Element, all bool) []item {
	if e.steps != nil {
		els := e.walk(ctx, all)
		out := make([]item, len(els))
		for i, el := range els {
			out[i] = item{el: el}
		}
		return out
	}
	switch v := e.x.Evaluate(newNavigator(m.doc, ctx)).(type) {
	case bool:
		return []item{{b: v, isB: true}}
	case float64:
		return []item{{s: formatNumber(v)}}
	case string:
		return []item{{s: v}}
	case *xpath.NodeIterator:
		var out []item
	loop:
		for v.MoveNext() {
			n, ok := v.Current().(*navigator)
			if !ok {
				continue
			}
			switch n.kind {
			case atRoot:
				out = append(out, item{el: m.doc})
			case atElement:
				out = append(out, item{el: n.el})
			default:
				out = append(out, item{s: n.Value()})
			}
			if !all {
				break loop
			}
		}
		return out
	}
	return nil
}

// formatNumber writes an XPath number as string() does.
func formatNumber(f float64) string {
	if f == float64(int64(f)) {
		return fmt.Sprintf("%d", int64(f))
	}
	return fmt.Sprintf("%g", f)
}
