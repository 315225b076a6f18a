package mapping

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/parzelle/parzelle/xmlsafe"
)

const minimalSpec = `id: t
version: 1
register: melderegister
type: person
match: {namespace: "urn:t", root: meldung}
namespaces:
  - {prefix: t, uri: "urn:t"}
messageId: "t:id"
subjects:
  - each: "t:person"
    key: {select: "t:nr"}
    date: {select: "t:tag"}
    set:
      - {attribute: familienname, select: "t:name", convert: name, from: always}
`

// TestCompileErrors checks that spec mistakes are reported with the file,
// the line and the field.
func TestCompileErrors(t *testing.T) {
	cases := []struct {
		name, old, new, want string
	}{
		{"unknown field", "version: 1\n", "version: 1\nfoo: bar\n", "t.yaml:3: foo: unknown field"},
		{"unknown attribute", "{attribute: familienname,", "{attribute: familiennam,", "t.yaml:14: subjects[0].set[0].attribute: \"familiennam\" is not an attribute of a person register"},
		{"unbound prefix", `select: "t:name"`, `select: "q:name"`, "t.yaml:14: subjects[0].set[0].select: XPath \"q:name\" does not compile"},
		{"bad XPath", `each: "t:person"`, `each: "t:person[["`, "t.yaml:10: subjects[0].each: XPath"},
		{"unknown conversion", "convert: name", "convert: nome", "t.yaml:14: subjects[0].set[0].convert: unknown conversion \"nome\""},
		{"version zero", "version: 1", "version: 0", "t.yaml:2: version: want a version of 1 or more"},
		{"wrong type", "type: person", "type: persons", "t.yaml:4: type: unknown register type \"persons\""},
		{"missing date", "    date: {select: \"t:tag\"}\n", "", "t.yaml:10: subjects[0].date: required"},
		{"codes without code", "from: always}", "from: always, codes: [{code: a, value: b}]}", "t.yaml:14: subjects[0].set[0].convert: codes, codelist and listURI need convert: code"},
		{"bad from", "from: always}", "from: \"t:[\"}", "t.yaml:14: subjects[0].set[0].from: XPath"},
		{"unknown op", "from: always}", "from: always, op: append}", "t.yaml:14: subjects[0].set[0].op: unknown op \"append\""},
		{"empty not clear", "from: always}", "from: always, empty: keep}", "t.yaml:14: subjects[0].set[0].empty: unknown \"keep\""},
		{"unknown codelist", "convert: name, from: always}", "convert: code, codelist: nope, from: always}", "subjects[0].set[0].codelist: \"nope\" is not one of the spec's codelists"},
		{"partial Basisdaten", `    key: {select: "t:nr"}`, `    identify: {familienname: {select: "t:name"}}`, "subjects[0].identify: give familienname, vornamen and geburtsdatum together"},
		{"unknown variant", "    date: {select: \"t:tag\"}\n", "    date: {select: \"t:tag\"}\n    variants: [\"2.9\"]\n", "subjects[0].variants[0]: \"2.9\" is not one of the spec's variants"},
		{"match and variants", "namespaces:\n", "variants: [{name: a, root: m}]\nnamespaces:\n", "match: give match (one message type) or variants (several), not both"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(minimalSpec, c.old) {
				t.Fatalf("test case does not apply: %q", c.old)
			}
			_, err := Compile("t.yaml", []byte(strings.Replace(minimalSpec, c.old, c.new, 1)))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v\nwant an error containing %q", err, c.want)
			}
		})
	}
	if _, err := Compile("t.yaml", []byte(minimalSpec)); err != nil {
		t.Fatalf("the minimal spec: %v", err)
	}
	business := strings.NewReplacer("type: person", "type: business", `key: {select: "t:nr"}`, `identify: {idnr: {select: "t:nr"}}`,
		"attribute: familienname", "attribute: name").Replace(minimalSpec)
	if _, err := Compile("t.yaml", []byte(business)); err == nil || !strings.Contains(err.Error(), "subjects[0].identify: only person registers identify their subjects") {
		t.Errorf("a business spec that identifies persons: %v", err)
	}
}

// TestMapErrors checks that a message the spec cannot map names the
// subject, the attribute and the value.
func TestMapErrors(t *testing.T) {
	spec := strings.Replace(minimalSpec, "      - {attribute: familienname", `      - {attribute: geburtsdatum, select: "t:geb", convert: partialDate, from: always}
      - {attribute: idnr, select: "t:idnr", convert: idnr, from: always}
      - {attribute: geschlecht, select: "t:g", convert: code, codes: [{code: "1", value: m}, {code: "2", value: w}], listURI: "urn:g"}
      - {attribute: familienname`, 1)
	s, err := Compile("t.yaml", []byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	const head = `<t:meldung xmlns:t="urn:t"><t:id>m1</t:id>`
	person := func(inner string) string {
		return "\n<t:person><t:nr>7</t:nr><t:tag>2024-05-01</t:tag><t:name>Müller</t:name>" + inner + "</t:person>"
	}
	cases := []struct{ name, msg, want string }{
		{"partial date", head + person("") + person("<t:geb>1983-13</t:geb>") + "</t:meldung>",
			`mapping t@1: subjects[0] #2 (message line 3): geburtsdatum: value "1983-13" is not a date`},
		{"idnr check digit", head + person("<t:idnr>47158309247</t:idnr>") + "</t:meldung>",
			`geburtsdatum`},
		{"code list", head + person(`<t:g listURI="urn:other"><code>1</code></t:g>`) + "</t:meldung>",
			`geschlecht: value "urn:other" is not the code list urn:g`},
		{"unknown code", head + person(`<t:g listURI="urn:g"><code>9</code></t:g>`) + "</t:meldung>",
			`geschlecht: value "9" is not a code the spec maps`},
		{"no date", `<t:meldung xmlns:t="urn:t"><t:id>m1</t:id><t:person><t:nr>7</t:nr></t:person></t:meldung>`,
			`subjects[0] #1 (message line 1): date: the event has no date`},
		{"no key", `<t:meldung xmlns:t="urn:t"><t:id>m1</t:id><t:person><t:tag>2024-05-01</t:tag></t:person></t:meldung>`,
			`key: the subject has no key`},
		{"character outside DIN 91379", head + "<t:person><t:nr>7</t:nr><t:tag>2024-05-01</t:tag><t:name>Müller\u263A</t:name></t:person></t:meldung>",
			`familienname: value "Müller☺" contains the character U+263A, which DIN 91379 does not allow`},
		{"no message id", `<t:meldung xmlns:t="urn:t"></t:meldung>`, `messageId: the message has no id`},
		{"other message type", `<t:andere xmlns:t="urn:t"/>`, `the message is {urn:t}andere`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "idnr check digit" {
				c.want = `idnr: value "47158309247" is not a valid Identifikationsnummer`
			}
			doc, err := xmlsafe.Parse(strings.NewReader(c.msg), xmlsafe.Options{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Map(doc)
			var me *Error
			if !errors.As(err, &me) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v\nwant a *mapping.Error containing %q", err, c.want)
			}
		})
	}
}

// TestConversions covers the conversions on values the fixtures do not
// hold.
func TestConversions(t *testing.T) {
	el := func(x string) item {
		e, err := xmlsafe.Parse(strings.NewReader(x), xmlsafe.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return item{el: e}
	}
	cases := []struct {
		conv string
		in   item
		want any
	}{
		{ConvText, item{s: "  Anna \n  Lena  "}, "Anna Lena"},
		{ConvText, item{s: "Ame\u0301lie"}, "Amélie"}, // NFC
		{ConvText, item{s: "   "}, nil},
		{ConvName, el(`<n><namensbestandteil>von</namensbestandteil><nachname>Bülow</nachname></n>`), "von Bülow"},
		{ConvName, el(`<n><name>Anna Maria</name></n>`), "Anna Maria"},
		{ConvName, el(`<n><nichtVorhanden>true</nichtVorhanden></n>`), nil},
		{ConvName, el(`<n>Meier-Schulz</n>`), "Meier-Schulz"},
		{ConvDate, item{s: "2025-03-01+01:00"}, "2025-03-01"},
		{ConvDate, item{s: "2025-03-01T23:30:00-05:00"}, "2025-03-01"},
		{ConvDate, item{s: "2018-07-23T13:26:45.0"}, "2018-07-23"},
		{ConvDate, el(`<d><datum>2025-03-01</datum></d>`), "2025-03-01"},
		{ConvDate, el(`<d><unbekannt>true</unbekannt></d>`), nil},
		{ConvPartialDate, el(`<d><teilbekanntesDatum><jahr>1983</jahr></teilbekanntesDatum></d>`), "1983"},
		{ConvPartialDate, el(`<d><teilbekanntesDatum><jahrMonat>1983-11</jahrMonat></teilbekanntesDatum></d>`), "1983-11"},
		{ConvPartialDate, el(`<d><teilbekanntesDatum><jahrMonatTag>1983-11-24</jahrMonatTag></teilbekanntesDatum></d>`), "1983-11-24"},
		{ConvPartialDate, el(`<d><unbekannt>true</unbekannt></d>`), nil},
		{ConvDDMMYYYY, item{s: "00111983"}, "1983-11"},
		{ConvDDMMYYYY, item{s: "00001983"}, "1983"},
		{ConvBool, item{b: false, isB: true}, false},
		{ConvBool, el(`<j><code>1</code></j>`), true},
		{ConvBool, item{s: "false"}, false},
		{ConvCode, el(`<c listURI="urn:x" listVersionID="1"><code>LD</code></c>`), "LD"},
		{ConvIDNr, item{s: "47158309248"}, "47158309248"},
	}
	for _, c := range cases {
		got, err := convert(c.conv, c.in, nil)
		if err != nil || got != c.want {
			t.Errorf("%s(%q): got %#v, %v; want %#v", c.conv, c.in.text(), got, err, c.want)
		}
	}
	for _, bad := range []struct {
		conv string
		in   item
	}{
		{ConvDate, item{s: "2025-02-30"}}, {ConvDate, item{s: "01.03.2025"}}, {ConvPartialDate, item{s: "1983-1"}},
		{ConvPartialDate, item{s: "0000"}}, {ConvDDMMYYYY, item{s: "31021983"}}, {ConvDDMMYYYY, item{s: "12001983"}},
		{ConvBool, item{s: "ja"}}, {ConvText, item{s: "a\u0007b"}},
	} {
		if got, err := convert(bad.conv, bad.in, nil); err == nil {
			t.Errorf("%s(%q): got %#v, want an error", bad.conv, bad.in.text(), got)
		}
	}
}

// TestPlainPathsAgree checks the direct walk of plain paths against
// antchfx/xpath on a fixture message.
func TestPlainPathsAgree(t *testing.T) {
	data, err := os.ReadFile(xmeldDir + "/07-rueckmeldung-anmeldung-0201-umzugsverband.xml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := ParseMessage(data)
	if err != nil {
		t.Fatal(err)
	}
	ns := map[string]string{"x": "http://www.osci.de/xmeld243"}
	m := &mapper{doc: doc}
	for _, p := range []string{"x:umzugsverband/x:betroffener", "x:umzugsverband/x:betroffener/x:zuzugsperson/x:STAATSANGEHOERIGKEIT/x:staatsangehoerigkeit/code",
		"nachrichtenkopf/identifikation.nachricht/nachrichtenUUID", ".", "x:nachrichtenkopf", "x:umzugsverband/x:betroffener/x:identifikation.ereignis/ereignis.zeichen"} {
		c, err := compileExpr(p, ns)
		if err != nil || c.steps == nil {
			t.Fatalf("%s: not a plain path (%v)", p, err)
		}
		fast := m.items(c, doc, true)
		slow := m.items(&expr{x: c.x}, doc, true)
		if len(fast) != len(slow) {
			t.Fatalf("%s: %d nodes directly, %d by antchfx", p, len(fast), len(slow))
		}
		for i := range fast {
			if fast[i].el != slow[i].el {
				t.Errorf("%s: node %d differs", p, i)
			}
		}
	}
	// A node-set holds a node once (antchfx/xpath would repeat the parent
	// for each child).
	c, _ := compileExpr("x:umzugsverband/x:betroffener/..", ns)
	if got := m.items(c, doc, true); len(got) != 1 || got[0].el.Name.Local != "umzugsverband" {
		t.Errorf("x:umzugsverband/x:betroffener/..: got %d nodes, want the umzugsverband once", len(got))
	}
}
