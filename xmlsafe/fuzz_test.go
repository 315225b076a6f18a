package xmlsafe

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

var fuzzSeeds = []string{
	`<a xmlns="urn:a" b="c"><d/>text<!--c--><?p i?></a>`,
	`<!DOCTYPE a><a/>`,
	`<a><b></a>`,
	`</a>`,
	"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- x -->\n<p:a xmlns:p=\"urn:p\" p:k=\"v&amp;w\" t=\"a\tb\r\nc\">x&#xD;y&lt;<![CDATA[<raw>]]>\r\n<p:b xml:lang=\"de\"/></p:a>\n<?pi after?>",
	"<a b='1' c=\"&#9;&#10;&#13;\">]] ]]&gt; M\u00fc</a>",
	"\ufeff<a/>",
}

// parseWindowed parses data through a reader that is not taken whole, with
// windows of size bytes, as a network body is read.
func parseWindowed(data []byte, opt Options, size int) (*Document, error) {
	p := newParser(opt)
	defer p.release()
	p.readSize = size
	return p.parse(struct{ io.Reader }{bytes.NewReader(data)})
}

// FuzzParse: no input panics the parser, whatever it accepts stays within
// the limits it was given, it refuses only with its own error types, and
// reading the input in small windows gives the same tree (or the same
// refusal) as taking it whole, and Write serializes the tree as it did
// before it wrote without copies.
func FuzzParse(f *testing.F) {
	for _, seed := range fuzzSeeds {
		f.Add([]byte(seed), uint8(3))
	}
	lim := Limits{MaxBytes: 4096, MaxDepth: 8, MaxAttrs: 4, MaxNameLen: 32, MaxText: 256, MaxNodes: 64}
	f.Fuzz(func(t *testing.T, data []byte, window uint8) {
		opt := Options{Limits: lim, Preserve: true}
		d, err := ParseDocument(bytes.NewReader(data), opt)
		w, werr := parseWindowed(data, opt, int(window%16)+1)
		if (err == nil) != (werr == nil) {
			t.Fatalf("whole input: %v; in windows of %d: %v", err, window%16+1, werr)
		}
		if err != nil {
			var le *LimitError
			var se *SyntaxError
			if !errors.As(err, &le) && !errors.As(err, &se) && !errors.Is(err, ErrDTD) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if diff := compareDocs(d, w, true, false); diff != "" {
			t.Fatalf("windowed parse differs: %s", diff)
		}
		checkWrite(t, d.Root, map[string]string{"urn:a": "a", "urn:p": "a"})
		var walk func(e *Element, depth int) int
		walk = func(e *Element, depth int) int {
			if depth > lim.MaxDepth || len(e.Attr)+len(e.NS) > lim.MaxAttrs || int64(len(e.Text)) > lim.MaxText {
				t.Fatalf("limits exceeded by an accepted document: depth %d, %d attributes", depth, len(e.Attr))
			}
			if e.Start < 0 || e.Start >= e.Inner || e.Inner > e.End || e.End > int64(len(data)) || data[e.Start] != '<' || data[e.Inner-1] != '>' || data[e.End-1] != '>' {
				t.Fatalf("element %s has offsets %d %d %d", e.Name.Local, e.Start, e.Inner, e.End)
			}
			n := 1
			for _, c := range e.Children {
				if c.Parent != e {
					t.Fatal("broken parent link")
				}
				n += walk(c, depth+1)
			}
			return n
		}
		if n := walk(d.Root, 1); n > lim.MaxNodes {
			t.Fatalf("%d elements accepted", n)
		}
	})
}

// stricter are the refusals of this parser that encoding/xml (and with it
// the previous parser) does not make; each is a well-formedness or
// namespace rule of XML 1.0 / Namespaces in XML 1.0.
var stricter = []string{
	"must be separated by white space",    // <a b="1"c="2">
	"is not a valid qualified name",       // <a:>, <:a>, <a:b:c>
	"is reserved",                         // <?xml ...?> after the start, <?XML?>
	"XML declaration",                     // malformed or misplaced declaration
	"illegal character code",              // in comments and processing instructions
	"invalid UTF-8",                       // in comments and processing instructions
	"the prefix xml",                      // binding xml elsewhere, or another prefix to its namespace
	"the prefix xmlns cannot be declared", //
	"cannot be declared",                  // the xmlns namespace, or xml's as the default
	"given twice",                         // the same namespace declaration twice
	"outside the root element",            // references or CDATA sections outside the root
	"after the processing instruction target",
	"invalid character",           // names: XML 1.0 fifth edition name characters
	"undeclared namespace prefix", // an element named xmlns:x
}

// FuzzDifferential compares the parser with the previous one built on
// encoding/xml: what both accept gives the same tree (attribute values
// compared after the white-space normalization only the new parser does,
// comments and processing instructions after line-end normalization);
// what the previous parser refuses is refused; what only the new one
// refuses is one of the stricter rules above.
func FuzzDifferential(f *testing.F) {
	for _, seed := range fuzzSeeds {
		f.Add([]byte(seed))
	}
	lim := Limits{MaxBytes: 4096, MaxDepth: 8, MaxAttrs: 4, MaxNameLen: 32, MaxText: 256, MaxNodes: 64}
	f.Fuzz(func(t *testing.T, data []byte) {
		opt := Options{Limits: lim, Preserve: true}
		d, err := ParseDocument(bytes.NewReader(data), opt)
		ref, referr := refParseDocument(bytes.NewReader(data), opt)
		switch {
		case err == nil && referr == nil:
			if diff := compareDocs(d, ref, false, true); diff != "" {
				t.Fatalf("trees differ: %s", diff)
			}
		case err != nil && referr == nil:
			for _, s := range stricter {
				if strings.Contains(err.Error(), s) {
					return
				}
			}
			t.Fatalf("refused only by the new parser: %v", err)
		case err == nil && referr != nil:
			if bytes.HasPrefix(data, []byte("\ufeff")) || !isASCII(data) {
				return // a BOM; name characters of the fifth edition
			}
			t.Fatalf("accepted, but the previous parser refused: %v", referr)
		}
	})
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// compareDocs describes the first difference between two trees.
func compareDocs(a, b *Document, lines, normalize bool) string {
	if d := compareNodes(a.Prolog, b.Prolog, lines, normalize); d != "" {
		return "prolog: " + d
	}
	if d := compareNodes(a.Epilog, b.Epilog, lines, normalize); d != "" {
		return "epilog: " + d
	}
	return compareElements(a.Root, b.Root, lines, normalize)
}

func compareElements(a, b *Element, lines, normalize bool) string {
	where := fmt.Sprintf("<%s> at %d", a.Name.Local, a.Start)
	switch {
	case a.Name != b.Name || a.Prefix != b.Prefix:
		return fmt.Sprintf("%s: name %v/%q vs %v/%q", where, a.Name, a.Prefix, b.Name, b.Prefix)
	case a.Start != b.Start || a.Inner != b.Inner || a.End != b.End:
		return fmt.Sprintf("%s: offsets %d %d %d vs %d %d %d", where, a.Start, a.Inner, a.End, b.Start, b.Inner, b.End)
	case lines && a.Line != b.Line:
		return fmt.Sprintf("%s: line %d vs %d", where, a.Line, b.Line)
	case a.Text != b.Text:
		return fmt.Sprintf("%s: text %q vs %q", where, a.Text, b.Text)
	case fmt.Sprint(a.NS) != fmt.Sprint(b.NS) || fmt.Sprint(a.AttrPrefix) != fmt.Sprint(b.AttrPrefix):
		return fmt.Sprintf("%s: declarations %v %v vs %v %v", where, a.NS, a.AttrPrefix, b.NS, b.AttrPrefix)
	case len(a.Attr) != len(b.Attr) || len(a.Children) != len(b.Children):
		return fmt.Sprintf("%s: %d attributes, %d children vs %d, %d", where, len(a.Attr), len(a.Children), len(b.Attr), len(b.Children))
	}
	for i := range a.Attr {
		va, vb := a.Attr[i].Value, b.Attr[i].Value
		if normalize {
			va, vb = attrSpace.Replace(va), attrSpace.Replace(vb)
		}
		if a.Attr[i].Name != b.Attr[i].Name || va != vb {
			return fmt.Sprintf("%s: attribute %v=%q vs %v=%q", where, a.Attr[i].Name, va, b.Attr[i].Name, vb)
		}
	}
	if d := compareNodes(a.Nodes, b.Nodes, lines, normalize); d != "" {
		return where + ": " + d
	}
	for i := range a.Children {
		if d := compareElements(a.Children[i], b.Children[i], lines, normalize); d != "" {
			return d
		}
	}
	return ""
}

func withoutEmptyText(nodes []Node) []Node {
	var out []Node
	for _, n := range nodes {
		if c, ok := n.(CharData); !ok || c != "" {
			out = append(out, n)
		}
	}
	return out
}

var (
	attrSpace = strings.NewReplacer("\t", " ", "\n", " ", "\r", " ")
	lineEnds  = strings.NewReplacer("\r\n", "\n", "\r", "\n")
)

func compareNodes(a, b []Node, lines, normalize bool) string {
	if normalize {
		// An empty CDATA section: the previous parser kept it as an empty
		// text node, the new one drops it (it adds no text).
		a, b = withoutEmptyText(a), withoutEmptyText(b)
	}
	if len(a) != len(b) {
		return fmt.Sprintf("%d nodes vs %d", len(a), len(b))
	}
	for i := range a {
		x, y := a[i], b[i]
		if normalize {
			switch t := x.(type) {
			case Comment:
				x, y = Comment(lineEnds.Replace(string(t))), Comment(lineEnds.Replace(string(y.(Comment))))
			case ProcInst:
				u := y.(ProcInst)
				x, y = ProcInst{t.Target, lineEnds.Replace(t.Inst)}, ProcInst{u.Target, lineEnds.Replace(u.Inst)}
			}
		}
		switch t := x.(type) {
		case *Element:
			u, ok := y.(*Element)
			if !ok || t.Start != u.Start {
				return fmt.Sprintf("node %d: element at %d vs %#v", i, t.Start, y)
			}
		default:
			if fmt.Sprintf("%T%q", x, x) != fmt.Sprintf("%T%q", y, y) {
				return fmt.Sprintf("node %d: %#v vs %#v", i, x, y)
			}
		}
	}
	return ""
}
