package mapping

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

var (
	schemaOnce  sync.Once
	schemaIndex *SchemaIndex
	schemaErr   error
)

// demoSchemas indexes the schemas the demo node installs.
func demoSchemas(t *testing.T) *SchemaIndex {
	t.Helper()
	schemaOnce.Do(func() { schemaIndex, schemaErr = LoadSchemas("../../shared/specs", "../fixtures/schemas") })
	if schemaErr != nil {
		t.Fatal(schemaErr)
	}
	return schemaIndex
}

func errorsOf(ps []Problem) []Problem {
	var out []Problem
	for _, p := range ps {
		if !p.Warning {
			out = append(out, p)
		}
	}
	return out
}

// TestLintDemoSpecs lints every demo spec: no errors; the XGewerbeanzeige
// ones warn that no schema covers their namespace.
func TestLintDemoSpecs(t *testing.T) {
	idx := demoSchemas(t)
	files, _ := filepath.Glob(filepath.Join(specDir, "*.yaml"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ps := Lint(f, data, idx)
		if errs := errorsOf(ps); len(errs) > 0 {
			t.Errorf("%s: %v", f, errs)
		}
		if strings.Contains(f, "xgewerbeanzeige") != (len(ps) > 0) {
			t.Errorf("%s: problems %v", f, ps)
		}
	}
}

// TestLintFindsMistakes misspells an element, drops a required attribute
// and misplaces a predicate in the 0201 spec, and expects each at its line.
func TestLintFindsMistakes(t *testing.T) {
	idx := demoSchemas(t)
	data, err := os.ReadFile(filepath.Join(specDir, "xmeld-zuzug.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	lineOf := func(sub string) int {
		for i, l := range lines {
			if strings.Contains(l, sub) {
				return i + 1
			}
		}
		t.Fatalf("no line with %q", sub)
		return 0
	}
	cases := []struct {
		name, old, new string
		line           int
		want           string
	}{
		{"misspelled element", `select: "x:zuzugsperson/x:GEBURT/x:geburtsort"`, `select: "x:zuzugsperson/x:GEBURT/x:geburtsorrt"`,
			lineOf(`x:GEBURT/x:geburtsort"`), `unknown path: no schema declares element {http://www.osci.de/xmeld243}geburtsorrt (x:geburtsorrt in`},
		{"unqualified element misspelled", `x:anschrift.inland/strasse"}`, `x:anschrift.inland/strase"}`,
			lineOf(`x:anschrift.inland/strasse"}`), `unknown path: no schema declares element strase`},
		{"wrong namespace", `root: rueckmeldung.anmeldunginland.0201`, `root: rueckmeldung.anmeldunginland.0202`,
			lineOf("root: rueckmeldung"), `unknown path: no schema declares element {http://www.osci.de/xmeld243}rueckmeldung.anmeldunginland.0202`},
		{"unmapped required field", "      - {attribute: familienname, select: \"x:zuzugsperson", "      - {attribute: sterbeort, select: \"x:zuzugsperson",
			lineOf("    set:") + 1, `unmapped required field: a person record requires "familienname"`},
		{"XPath that does not compile", `event: "x:identifikation.ereignis/ereignis.zeichen"`, `event: "y:identifikation.ereignis"`,
			lineOf("    event:"), `does not compile`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(string(data), c.old) {
				t.Fatalf("case does not apply: %q", c.old)
			}
			ps := errorsOf(Lint("s.yaml", []byte(strings.Replace(string(data), c.old, c.new, 1)), idx))
			found := false
			for _, p := range ps {
				if p.Line == c.line && strings.Contains(p.Msg, c.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("want an error at line %d containing %q; got %v", c.line, c.want, ps)
			}
		})
	}
}

func TestNameTests(t *testing.T) {
	cases := []struct {
		expr string
		want []nameTest
	}{
		{"x:a/x:b/c", []nameTest{{"x", "a"}, {"x", "b"}, {"", "c"}}},
		{"boolean(x:a) and not(x:b/@listURI)", []nameTest{{"x", "a"}, {"x", "b"}}},
		{"concat('x:no', normalize-space(../x:a.b), 'c')", []nameTest{{"x", "a.b"}}},
		{"x:w[x:s/code = '0' or x:s/code = '1']", []nameTest{{"x", "w"}, {"x", "s"}, {"", "code"}, {"x", "s"}, {"", "code"}}},
		{"count(x:a) * 2 div 3 mod 1", []nameTest{{"x", "a"}}},
		{"attribute::x:a | child::x:b | x:c/text() | $v | *", []nameTest{{"x", "b"}, {"x", "c"}}},
		{"x:*", []nameTest{{"x", "*"}}},
		{"and/or", []nameTest{{"", "and"}, {"", "or"}}},
	}
	for _, c := range cases {
		if got := nameTests(c.expr); !reflect.DeepEqual(got, c.want) {
			t.Errorf("nameTests(%q) = %v, want %v", c.expr, got, c.want)
		}
	}
	if !predicateBeforeArgument("concat(a[1], b)") || predicateBeforeArgument("concat(a, b[1])") || predicateBeforeArgument("a[f(b, c)]") {
		t.Error("predicateBeforeArgument misjudges")
	}
}
