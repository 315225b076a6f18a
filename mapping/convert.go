package mapping

import (
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"

	"golang.org/x/text/unicode/norm"

	"github.com/parzelle/parzelle/register"
	"github.com/parzelle/parzelle/xmlsafe"
)

// item is one result of an XPath expression: an element, or a string (an
// attribute's or text node's value, or a string or number result), or a
// boolean.
type item struct {
	el   *xmlsafe.Element
	s    string
	b    bool
	isB  bool
	none bool // the expression selected nothing
}

// text returns the item's string value.
func (it item) text() string {
	switch {
	case it.el != nil:
		return stringValue(it.el)
	case it.isB:
		if it.b {
			return "true"
		}
		return "false"
	}
	return it.s
}

// convError is a value a conversion refused.
type convError struct {
	value, msg string
}

func (e *convError) Error() string { return fmt.Sprintf("%q %s", e.value, e.msg) }

func refuse(value, format string, args ...any) error {
	return &convError{value: value, msg: fmt.Sprintf(format, args...)}
}

// convert turns an item into a register value (a string or a bool); nil
// means the message states no value.
func convert(conv string, it item, r *ruleProg) (any, error) {
	if it.none {
		return nil, nil
	}
	switch conv {
	case ConvBool:
		return toBool(it)
	case ConvName:
		return toName(it)
	case ConvDate:
		return toDate(it)
	case ConvPartialDate:
		return toPartialDate(it)
	case ConvDDMMYYYY:
		return fromDDMMYYYY(it)
	case ConvCode:
		return toCode(it, r)
	case ConvIDNr:
		s := collapse(it.text())
		if s == "" {
			return nil, nil
		}
		if !register.ValidIDNr(s) {
			return nil, refuse(s, "is not a valid Identifikationsnummer (11 digits with the check digit)")
		}
		return s, nil
	}
	return toText(it.text())
}

// collapse trims and collapses white space.
func collapse(s string) string {
	if s == "" {
		return ""
	}
	simple := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\t' || c == '\n' || c == '\r' || (c == ' ' && (i == 0 || i == len(s)-1 || s[i+1] == ' ')) {
			simple = false
			break
		}
	}
	if simple {
		return s
	}
	return strings.Join(strings.Fields(s), " ")
}

// toText normalizes a text to NFC with collapsed white space and checks
// that it holds only characters DIN 91379 allows; "" is no value.
func toText(raw string) (any, error) {
	s := collapse(raw)
	if s == "" {
		return nil, nil
	}
	if !isASCII(s) {
		s = norm.NFC.String(s)
		if i := strings.IndexFunc(s, notDIN91379); i >= 0 {
			r := []rune(s[i:])[0]
			return nil, refuse(s, "contains the character U+%04X, which DIN 91379 does not allow", r)
		}
	} else if i := strings.IndexFunc(s, notDIN91379); i >= 0 {
		return nil, refuse(s, "contains the control character U+%04X", s[i])
	}
	return s, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// din91379 approximates the characters of DIN 91379 (datatype C, all
// normative characters): printable ASCII, Latin-1 and the Latin extension
// blocks, combining diacritics (the standard's letter-and-mark sequences
// are allowed as any letter followed by marks), Greek and Cyrillic, and a
// few punctuation marks. It is a superset: it does not check which
// letter-and-mark sequences the standard lists.
var din91379 = &unicode.RangeTable{R16: []unicode.Range16{
	{Lo: 0x0020, Hi: 0x007e, Stride: 1},
	{Lo: 0x00a0, Hi: 0x00ac, Stride: 1},
	{Lo: 0x00ae, Hi: 0x024f, Stride: 1},
	{Lo: 0x0259, Hi: 0x0259, Stride: 1},
	{Lo: 0x0292, Hi: 0x0292, Stride: 1},
	{Lo: 0x02b9, Hi: 0x02bc, Stride: 1},
	{Lo: 0x02be, Hi: 0x02bf, Stride: 1},
	{Lo: 0x02c8, Hi: 0x02c8, Stride: 1},
	{Lo: 0x02cc, Hi: 0x02cc, Stride: 1},
	{Lo: 0x0300, Hi: 0x036f, Stride: 1},
	{Lo: 0x0370, Hi: 0x03ff, Stride: 1},
	{Lo: 0x0400, Hi: 0x045f, Stride: 1},
	{Lo: 0x1e00, Hi: 0x1eff, Stride: 1},
	{Lo: 0x2018, Hi: 0x201e, Stride: 1},
	{Lo: 0x2020, Hi: 0x2022, Stride: 1},
	{Lo: 0x2026, Hi: 0x2026, Stride: 1},
	{Lo: 0x2030, Hi: 0x2030, Stride: 1},
	{Lo: 0x2039, Hi: 0x203a, Stride: 1},
	{Lo: 0x20ac, Hi: 0x20ac, Stride: 1},
	{Lo: 0x2122, Hi: 0x2122, Stride: 1},
}}

func notDIN91379(r rune) bool { return !unicode.Is(din91379, r) }

// childLocal returns the first child element with the local name, in any
// namespace: XÖV types mix qualified and unqualified children.
func childLocal(e *xmlsafe.Element, local string) *xmlsafe.Element {
	for _, c := range e.Children {
		if c.Name.Local == local {
			return c
		}
	}
	return nil
}

func findLocal(e *xmlsafe.Element, locals ...string) *xmlsafe.Element {
	for _, l := range locals {
		if c := childLocal(e, l); c != nil {
			return c
		}
	}
	for _, c := range e.Children {
		if f := findLocal(c, locals...); f != nil {
			return f
		}
	}
	return nil
}

func isTrue(e *xmlsafe.Element) bool {
	if e == nil {
		return false
	}
	v := strings.TrimSpace(e.Text)
	return v == "true" || v == "1"
}

// toName reads a name: an XMeld structured surname (namensbestandteil and
// nachname), an XInneres AllgemeinerName (name, or nichtVorhanden), or an
// unstructured name (the element's text).
func toName(it item) (any, error) {
	e := it.el
	if e == nil || len(e.Children) == 0 {
		return toText(it.text())
	}
	if isTrue(childLocal(e, "zurechtnichtvorhanden")) || isTrue(childLocal(e, "nichtVorhanden")) {
		return nil, nil
	}
	if n := childLocal(e, "nachname"); n != nil {
		parts := n.Text
		if b := childLocal(e, "namensbestandteil"); b != nil {
			parts = b.Text + " " + parts
		}
		return toText(parts)
	}
	if n := childLocal(e, "name"); n != nil {
		return toText(n.Text)
	}
	return toText(stringValue(e))
}

// dayPrefix matches an xs:date or xs:dateTime and keeps the day as written
// (the time zone is the message's own, so the local day is the day meant).
var dayPrefix = regexp.MustCompile(`^(\d{4}-\d{2}-\d{2})(?:(?:Z|[+-]\d{2}:\d{2})|T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})?)?$`)

// toDate reads a full date: xs:date (with or without a time zone), the day
// of an xs:dateTime, or an XInneres TagesdatumMitUnbekannt (datum, or
// unbekannt: no value).
func toDate(it item) (any, error) {
	raw := it.text()
	if e := it.el; e != nil && len(e.Children) > 0 {
		if isTrue(childLocal(e, "unbekannt")) {
			return nil, nil
		}
		if d := findLocal(e, "datum", "jahrMonatTag"); d != nil {
			raw = d.Text
		}
	}
	s := collapse(raw)
	if s == "" {
		return nil, nil
	}
	m := dayPrefix.FindStringSubmatch(s)
	if m == nil {
		return nil, refuse(s, "is not a date (xs:date or xs:dateTime)")
	}
	if _, err := time.Parse(time.DateOnly, m[1]); err != nil {
		return nil, refuse(s, "is not a date of the calendar")
	}
	return m[1], nil
}

// toPartialDate reads an XÖV partially known date (teilbekanntesDatum with
// jahrMonatTag, jahrMonat or jahr; unbekannt: no value) or a plain date,
// keeping the precision transmitted: "1983", "1983-11" or "1983-11-24".
func toPartialDate(it item) (any, error) {
	raw := it.text()
	if e := it.el; e != nil && len(e.Children) > 0 {
		if u := findLocal(e, "unbekannt"); isTrue(u) {
			return nil, nil
		}
		if d := findLocal(e, "jahrMonatTag", "datum", "jahrMonat", "jahr"); d != nil {
			raw = d.Text
		}
	}
	s := collapse(raw)
	if s == "" {
		return nil, nil
	}
	if m := dayPrefix.FindStringSubmatch(s); m != nil {
		s = m[1]
	}
	if !register.ValidPartialDate(s) {
		return nil, refuse(s, "is not a date (YYYY-MM-DD, or YYYY-MM or YYYY when partly unknown)")
	}
	return s, nil
}

// fromDDMMYYYY reads a date written DDMMYYYY (as XGewerbeanzeige's birth
// dates are), with 00 for an unknown day or month, as a partial date.
func fromDDMMYYYY(it item) (any, error) {
	s := collapse(it.text())
	if s == "" {
		return nil, nil
	}
	if len(s) != 8 || strings.Trim(s, "0123456789") != "" {
		return nil, refuse(s, "is not a date written DDMMYYYY")
	}
	d, m, y := s[:2], s[2:4], s[4:]
	out := y
	switch {
	case m == "00" && d != "00":
		return nil, refuse(s, "has a day but no month")
	case m == "00":
	case d == "00":
		out = y + "-" + m
	default:
		out = y + "-" + m + "-" + d
	}
	if !register.ValidPartialDate(out) {
		return nil, refuse(s, "is not a date of the calendar")
	}
	return out, nil
}

// toBool reads a boolean: an XPath boolean, xs:boolean text, or an XÖV
// yes/no code (1/0).
func toBool(it item) (any, error) {
	if it.isB {
		return it.b, nil
	}
	raw := it.text()
	if e := it.el; e != nil {
		if c := childLocal(e, "code"); c != nil {
			raw = c.Text
		}
	}
	switch s := collapse(raw); s {
	case "true", "1":
		return true, nil
	case "false", "0":
		return false, nil
	case "":
		return nil, nil
	default:
		return nil, refuse(s, "is not a boolean (true, false, 1 or 0)")
	}
}

// toCode reads an XÖV code value (the code child of an element whose
// listURI and listVersionID attributes name the code list), checks the
// list when the rule requires one and maps the code through the rule's
// table.
func toCode(it item, r *ruleProg) (any, error) {
	raw := it.text()
	if e := it.el; e != nil {
		if r != nil && r.decl.ListURI != "" {
			uri, _ := e.Attribute("listURI")
			if uri != r.decl.ListURI {
				return nil, refuse(uri, "is not the code list %s the spec requires (listURI)", r.decl.ListURI)
			}
		}
		if c := childLocal(e, "code"); c != nil {
			raw = c.Text
		}
	}
	code := collapse(raw)
	if code == "" {
		return nil, nil
	}
	if r == nil || r.codes == nil {
		return toText(code)
	}
	v, ok := r.codes[code]
	if !ok {
		return nil, refuse(code, "is not a code the spec maps (codes)")
	}
	return v, nil
}
