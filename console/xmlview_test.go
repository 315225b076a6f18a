package console

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestViewXML renders a message masked and revealed, with the line a
// problem names marked; golden files hold the HTML.
func TestViewXML(t *testing.T) {
	doc := []byte(`<?xml version="1.0"?>
<!-- Anna Beispiel -->
<m:nachricht xmlns:m="urn:test" version="1.0">
  <m:person id="p1">
    <m:name>Anna Beispiel</m:name><!-- geboren in Musterstadt -->
    <m:geburtsort>Musterstadt</m:geburtsort>
    <m:leer/>
  </m:person>
</m:nachricht>
`)
	for _, reveal := range []bool{false, true} {
		lines, err := viewXML(doc, reveal, problemLines([]string{"line 6, column 3: the value is not allowed", "no line here"}))
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, l := range lines {
			mark := " "
			if l.Marked {
				mark = "!"
			}
			b.WriteString(mark + " " + itoa(int64(l.Source)) + " " + string(l.HTML) + "\n")
		}
		got := b.String()
		name := map[bool]string{false: "masked", true: "revealed"}[reveal]
		if !reveal {
			for _, secret := range []string{"Anna", "Beispiel", "Musterstadt", "p1"} {
				if strings.Contains(got, secret) {
					t.Errorf("masked view shows %q", secret)
				}
			}
		}
		golden := filepath.Join("testdata", "xmlview-"+name+".golden")
		if *update {
			if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if got != string(want) {
			t.Errorf("%s view:\n%s\nwant (go test ./console -run TestViewXML -update):\n%s", name, got, want)
		}
	}
}

func TestViewXMLRefuses(t *testing.T) {
	for name, doc := range map[string]string{
		"dtd":       `<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>`,
		"not xml":   `Anna Beispiel, Musterstadt`,
		"unclosed":  `<a><b></a>`,
		"two roots": `<a/><b/>`,
		"empty":     ``,
	} {
		if lines, err := viewXML([]byte(doc), false, nil); err == nil {
			t.Errorf("%s: viewed as %v, want an error", name, lines)
		} else if strings.Contains(err.Error(), "Anna") {
			t.Errorf("%s: the error quotes the content: %v", name, err)
		}
	}
}

func TestLineDiff(t *testing.T) {
	got := lineDiff("a\nb\nc", "a\nc\nd")
	var ops []string
	for _, d := range got {
		ops = append(ops, d.Op+d.Text)
	}
	if strings.Join(ops, ",") != " a,-b, c,+d" {
		t.Errorf("diff %q", ops)
	}
}
