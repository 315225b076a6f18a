package console

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"html/template"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// xmlLine is one line of a message as the console shows it: indented,
// highlighted, masked where asked, and marked where an error points.
type xmlLine struct {
	No     int
	Source int // the line in the message as received
	HTML   template.HTML
	Marked bool
}

// Bounds of what the console pretty-prints; a larger message is not shown.
const (
	maxViewBytes    = 4 << 20
	maxViewElements = 50000
	maxViewDepth    = 128
)

// masked replaces every text and attribute value the viewer may not see.
const masked = "•••"

// problemLines are the message lines the problems name ("line 12, …").
func problemLines(problems []string) map[int]bool {
	lines := map[int]bool{}
	for _, p := range problems {
		if m := lineRef.FindStringSubmatch(p); m != nil {
			n, _ := strconv.Atoi(m[1])
			lines[n] = true
		}
	}
	return lines
}

var lineRef = regexp.MustCompile(`^line (\d+)\b`)

// xmlNode is an element, with where its start tag lies in the message.
type xmlNode struct {
	name     string
	attrs    []xml.Attr
	text     string
	children []*xmlNode
	// from and tagTo are the lines of the start tag, to that of the end tag.
	from, tagTo, to int
	comment         bool
}

// viewXML pretty-prints doc: one element per line, text-only elements on
// one line, namespace declarations kept, text and attribute values masked
// unless reveal; lines whose start tag spans a line in marks are marked. A
// document that is not well-formed XML is an error.
func viewXML(doc []byte, reveal bool, marks map[int]bool) ([]xmlLine, error) {
	if len(doc) > maxViewBytes {
		return nil, fmt.Errorf("the message has %d bytes, more than the console shows (%d)", len(doc), maxViewBytes)
	}
	root, err := parseView(doc)
	if err != nil {
		return nil, err
	}
	var out []xmlLine
	var walk func(n *xmlNode, depth int)
	walk = func(n *xmlNode, depth int) {
		var b strings.Builder
		b.WriteString(strings.Repeat("  ", depth))
		marked := false
		for l := n.from; l <= n.tagTo; l++ {
			marked = marked || marks[l]
		}
		if n.comment {
			b.WriteString(`<span class="c">&lt;!--`)
			if reveal {
				template.HTMLEscape(&b, []byte(n.text))
			} else {
				b.WriteString(masked)
			}
			b.WriteString(`--&gt;</span>`)
			out = append(out, xmlLine{Source: n.from, HTML: template.HTML(b.String()), Marked: marked})
			return
		}
		b.WriteString(`&lt;<span class="t">` + template.HTMLEscapeString(n.name) + `</span>`)
		for _, a := range n.attrs {
			name := a.Name.Local
			if a.Name.Space != "" {
				name = a.Name.Space + ":" + name
			}
			value := a.Value
			if !reveal && a.Name.Space != "xmlns" && name != "xmlns" {
				value = masked
			}
			b.WriteString(` <span class="a">` + template.HTMLEscapeString(name) + `</span>="<span class="v">` + template.HTMLEscapeString(value) + `</span>"`)
		}
		text := strings.TrimSpace(n.text)
		if text != "" && !reveal {
			text = masked
		}
		switch {
		case len(n.children) == 0 && text == "":
			b.WriteString("/&gt;")
			out = append(out, xmlLine{Source: n.from, HTML: template.HTML(b.String()), Marked: marked})
		case len(n.children) == 0:
			b.WriteString(`&gt;<span class="x">` + template.HTMLEscapeString(text) + `</span>&lt;/<span class="t">` + template.HTMLEscapeString(n.name) + `</span>&gt;`)
			out = append(out, xmlLine{Source: n.from, HTML: template.HTML(b.String()), Marked: marked})
		default:
			b.WriteString("&gt;")
			if text != "" {
				b.WriteString(`<span class="x">` + template.HTMLEscapeString(text) + `</span>`)
			}
			out = append(out, xmlLine{Source: n.from, HTML: template.HTML(b.String()), Marked: marked})
			for _, ch := range n.children {
				walk(ch, depth+1)
			}
			out = append(out, xmlLine{Source: n.to, HTML: template.HTML(strings.Repeat("  ", depth) + `&lt;/<span class="t">` + template.HTMLEscapeString(n.name) + `</span>&gt;`)})
		}
	}
	walk(root, 0)
	for i := range out {
		out[i].No = i + 1
	}
	return out, nil
}

// parseView reads doc into a tree with the lines of each start tag, keeping
// prefixes as written; it refuses DTDs and bounds size, depth and count.
func parseView(doc []byte) (*xmlNode, error) {
	d := xml.NewDecoder(bytes.NewReader(doc))
	d.Strict = true
	lineAt := func(off int64) int { return 1 + bytes.Count(doc[:min(int(off), len(doc))], []byte("\n")) }
	var stack []*xmlNode
	var root *xmlNode
	count := 0
	for {
		start := d.InputOffset()
		tok, err := d.RawToken()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("not well-formed XML: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if count++; count > maxViewElements || len(stack) >= maxViewDepth {
				return nil, errors.New("the message is too large or too deep to show")
			}
			if len(stack) == 0 && root != nil {
				return nil, errors.New("not well-formed XML: more than one root element")
			}
			n := &xmlNode{name: qname(t.Name), attrs: t.Attr, from: lineAt(start), tagTo: lineAt(d.InputOffset())}
			if len(stack) > 0 {
				p := stack[len(stack)-1]
				p.children = append(p.children, n)
			} else {
				root = n
			}
			stack = append(stack, n)
		case xml.EndElement:
			if len(stack) == 0 || stack[len(stack)-1].name != qname(t.Name) {
				return nil, fmt.Errorf("not well-formed XML: unexpected end tag %s at line %d", qname(t.Name), lineAt(start))
			}
			stack[len(stack)-1].to = lineAt(start)
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].text += string(t)
			}
		case xml.Comment:
			if len(stack) > 0 {
				p := stack[len(stack)-1]
				p.children = append(p.children, &xmlNode{comment: true, text: string(t), from: lineAt(start), tagTo: lineAt(d.InputOffset())})
			}
		case xml.Directive:
			return nil, errors.New("the message has a DTD or other directive, which the console does not show")
		}
	}
	if root == nil || len(stack) > 0 {
		return nil, errors.New("not well-formed XML: the document ends early")
	}
	return root, nil
}

func qname(n xml.Name) string {
	if n.Space == "" {
		return n.Local
	}
	return n.Space + ":" + n.Local
}
