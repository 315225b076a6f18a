package xmlsafe

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestRefusals(t *testing.T) {
	small := Limits{MaxBytes: 2000, MaxDepth: 5, MaxAttrs: 3, MaxNameLen: 20, MaxText: 50, MaxNodes: 30}
	cases := []struct {
		name, doc string
		limit     string // LimitError.Limit, "dtd" or "syntax"
	}{
		{"doctype", `<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>`, "dtd"},
		{"external entity", `<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>`, "dtd"},
		{"undeclared entity", `<a>&x;</a>`, "syntax"},
		{"size", `<a>` + strings.Repeat("<!-- padding -->", 200) + `</a>`, "size"},
		{"depth", strings.Repeat("<a>", 6) + strings.Repeat("</a>", 6), "depth"},
		{"attributes", `<a b="1" c="2" d="3" e="4"/>`, "attributes"},
		{"name length", `<` + strings.Repeat("n", 21) + `/>`, "name length"},
		{"attribute name length", `<a ` + strings.Repeat("n", 21) + `="1"/>`, "name length"},
		{"text length", `<a>` + strings.Repeat("x", 51) + `</a>`, "text length"},
		{"elements", `<a>` + strings.Repeat("<b/>", 30) + `</a>`, "elements"},
		{"two roots", `<a/><b/>`, "syntax"},
		{"unclosed", `<a><b></a>`, "syntax"},
		{"empty", ``, "syntax"},
		{"end tag first", `</a>`, "syntax"},
		{"mismatched end tag", `<a:x xmlns:a="urn:a"></b:x>`, "syntax"},
		{"undeclared prefix", `<p:a/>`, "syntax"},
		{"duplicate attribute", `<a x="1" x="2"/>`, "syntax"},
		{"duplicate expanded name", `<a xmlns:p="urn:x" xmlns:q="urn:x"><b p:x="1" q:x="2"/></a>`, "syntax"},
		{"unbound attribute prefix", `<a p:x="1"/>`, "syntax"},
		{"undeclared prefix", `<a xmlns:p=""/>`, "syntax"},
		{"end of text", "]]>", "syntax"},
		{"]]> in text", `<a>x]]>y</a>`, "syntax"},
		{"< in attribute", `<a x="<"/>`, "syntax"},
		{"-- in comment", `<a><!-- a -- b --></a>`, "syntax"},
		{"invalid UTF-8", "<a>\xff</a>", "syntax"},
		{"control character", "<a>\x01</a>", "syntax"},
		{"control character by reference", `<a>&#1;</a>`, "syntax"},
		{"control character in comment", "<a><!--\x02--></a>", "syntax"},
		{"unterminated reference", `<a>&amp</a>`, "syntax"},
		{"other encoding", `<?xml version="1.0" encoding="ISO-8859-1"?><a/>`, "syntax"},
		{"declaration not first", ` <?xml version="1.0"?><a/>`, "syntax"},
		{"entity declaration", `<!ENTITY x "y"><a/>`, "dtd"},
		{"attributes without white space", `<a x="1"y="2"/>`, "syntax"},
		{"not a QName", `<a:b:c xmlns:a="urn:a"/>`, "syntax"},
		{"unclosed at the end", `<a><b/>`, "syntax"},
		{"CDATA outside the root", `<a/><![CDATA[x]]>`, "syntax"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tc.doc), Options{Limits: small})
			var le *LimitError
			var se *SyntaxError
			switch {
			case tc.limit == "dtd" && errors.Is(err, ErrDTD):
			case tc.limit == "syntax" && errors.As(err, &se):
			case errors.As(err, &le) && le.Limit == tc.limit:
				if !strings.Contains(le.Error(), tc.limit) {
					t.Errorf("message %q does not name the limit", le.Error())
				}
			default:
				t.Fatalf("got %v, want a %s refusal", err, tc.limit)
			}
		})
	}
}

func TestTreeAndStream(t *testing.T) {
	var streamed strings.Builder
	doc := `<?xml version="1.0"?><e:a xmlns:e="urn:e" k="v">
  <e:b>text &amp; more</e:b>
  <e:big>` + strings.Repeat("Z", 100) + `</e:big>
</e:a>`
	root, err := Parse(strings.NewReader(doc), Options{
		Limits: Limits{MaxText: 20},
		Stream: func(el *Element, depth int) io.Writer {
			if el.Name.Local == "big" {
				return &streamed
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if root.Text != "" || root.Child("urn:e", "b").Text != "text & more" || streamed.Len() != 100 {
		t.Fatalf("tree %+v, streamed %d bytes", root, streamed.Len())
	}
	if v, _ := root.Attribute("k"); v != "v" {
		t.Errorf("attribute k = %q", v)
	}
	var out strings.Builder
	if err := root.Write(&out, map[string]string{"urn:e": "e"}); err != nil {
		t.Fatal(err)
	}
	if want := `<e:a xmlns:e="urn:e" k="v"><e:b>text &amp; more</e:b><e:big/></e:a>`; out.String() != want {
		t.Errorf("Write: %s\nwant %s", out.String(), want)
	}
}

func TestErrorLines(t *testing.T) {
	cases := []struct {
		doc  string
		line int
		msg  string
	}{
		{"<a>\n<b>\n</c></a>", 3, "element <b> closed by </c>"},
		{"<a>\r\n\r\n  <b x='1' x='2'/></a>", 3, "attribute x given twice"},
		{"<a>\n\n\n&bogus;</a>", 4, "invalid character entity &bogus;"},
		{"<a\n x='1'\n y='<'/>", 3, "unescaped < inside an attribute value"},
		{"<a>\n<!--\n -- -->\n</a>", 3, `"--" not allowed in comments`},
		{"<a>\n\nx]]>\n</a>", 3, "]]> not in CDATA"},
		{"<a>\n<p:b/>\n</a>", 2, `undeclared namespace prefix "p"`},
	}
	for _, tc := range cases {
		_, err := Parse(strings.NewReader(tc.doc), Options{})
		var se *SyntaxError
		if !errors.As(err, &se) || se.Line != tc.line || !strings.Contains(se.Msg, tc.msg) {
			t.Errorf("%q: got %v, want line %d: …%s…", tc.doc, err, tc.line, tc.msg)
		}
	}
}

// TestNormalization: line ends and attribute values as XML 1.0 §2.11 and
// §3.3.3 (CDATA attributes) ask, as libxml2 does; references keep the
// characters they name.
func TestNormalization(t *testing.T) {
	doc := "\ufeff<?xml version='1.0' encoding='utf-8' standalone='yes'?>\r\n" +
		"<a t=\"x\ty\r\nz\nw\rv\" r=\"&#9;&#10;&#13;&#x20;\" q='&quot;&apos;&lt;&gt;&amp;'>l1\r\nl2\rl3&#13;<![CDATA[c\r\nd]]><!--e\r\nf--></a>"
	d, err := ParseDocument(strings.NewReader(doc), Options{Preserve: true})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"t": "x y z w v", "r": "\t\n\r ", "q": `"'<>&`} {
		if got, _ := d.Root.Attribute(name); got != want {
			t.Errorf("attribute %s = %q, want %q", name, got, want)
		}
	}
	if want := "l1\nl2\nl3\rc\nd"; d.Root.Text != want {
		t.Errorf("text %q, want %q", d.Root.Text, want)
	}
	if c, ok := d.Root.Nodes[len(d.Root.Nodes)-1].(Comment); !ok || c != "e\nf" {
		t.Errorf("comment %#v", d.Root.Nodes[len(d.Root.Nodes)-1])
	}
	if d.Root.Start != int64(strings.Index(doc, "<a")) {
		t.Errorf("root starts at %d", d.Root.Start)
	}
}

// TestWindows: a reader that is not taken whole is read in windows; text
// streamed to a writer crosses them without being held, and the tree is
// the one the whole input gives.
func TestWindows(t *testing.T) {
	payload := strings.Repeat("QUJD&amp;\r\n]]&gt;", 5000)
	doc := `<e:a xmlns:e="urn:e"><e:m k="v">` + payload + `</e:m><e:n>` + payload[:300] + `</e:n><!-- ` + strings.Repeat("c", 5000) + ` --></e:a>`
	want := strings.NewReplacer("&amp;", "&", "\r\n", "\n", "&gt;", ">").Replace(payload)
	for _, size := range []int{1, 2, 3, 7, 64, 4096} {
		var streamed strings.Builder
		opt := Options{Preserve: true, Stream: func(el *Element, depth int) io.Writer {
			if el.Name.Local == "m" {
				return &streamed
			}
			return nil
		}}
		w, err := parseWindowed([]byte(doc), opt, size)
		if err != nil {
			t.Fatalf("window %d: %v", size, err)
		}
		if streamed.String() != want {
			t.Errorf("window %d: streamed %d bytes, want %d", size, streamed.Len(), len(want))
		}
		whole, err := ParseDocument(strings.NewReader(doc), opt)
		if err != nil {
			t.Fatal(err)
		}
		if d := compareDocs(w, whole, true, false); d != "" {
			t.Errorf("window %d: %s", size, d)
		}
		if n := w.Root.Child("urn:e", "n"); n == nil || len(n.Nodes) != 1 || n.Text != want[:len(n.Text)] {
			t.Errorf("window %d: <e:n> %+v", size, n)
		}
	}
	_, err := parseWindowed([]byte(doc), Options{Limits: Limits{MaxBytes: 1000}}, 64)
	var le *LimitError
	if !errors.As(err, &le) || le.Limit != "size" {
		t.Errorf("size limit on a reader: %v", err)
	}
}

// TestFindAll: the element itself and its descendants with the name, in
// document order, inside matches too; the same local name in another
// namespace is not one.
func TestFindAll(t *testing.T) {
	root, err := Parse(strings.NewReader(`<a:x xmlns:a="urn:a" xmlns:b="urn:b" n="1"><a:x n="2"><b:x n="no"/><a:x n="3"/></a:x><a:y><a:x n="4"/></a:y></a:x>`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, el := range root.FindAll("urn:a", "x") {
		n, _ := el.Attribute("n")
		got = append(got, n)
	}
	if strings.Join(got, " ") != "1 2 3 4" {
		t.Errorf("FindAll: %v, want 1 2 3 4", got)
	}
	if found := root.FindAll("urn:c", "x"); len(found) != 0 {
		t.Errorf("found %d in an unused namespace", len(found))
	}
}
