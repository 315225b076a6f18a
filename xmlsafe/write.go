package xmlsafe

import (
	"bufio"
	"bytes"
	"io"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Write serializes the element and its subtree with every namespace it
// uses declared on it. prefixes proposes a prefix per namespace URI; other
// namespaces get ns1, ns2, …
func (e *Element) Write(w io.Writer, prefixes map[string]string) error {
	uris := map[string]bool{}
	e.collectNamespaces(uris)
	names := make(map[string]string, len(uris))
	used := make(map[string]bool, len(uris))
	sorted := make([]string, 0, len(uris))
	for u := range uris {
		sorted = append(sorted, u)
	}
	sort.Strings(sorted)
	n := 0
	for _, u := range sorted {
		p := prefixes[u]
		for p == "" || used[p] {
			n++
			p = "ns" + strconv.Itoa(n)
		}
		names[u], used[p] = p, true
	}
	// An in-memory buffer is written to directly: it cannot fail, and a
	// bufio.Writer in front of it would only copy everything once more.
	switch out := w.(type) {
	case *bytes.Buffer:
		e.write(out, names, sorted)
		return nil
	case *strings.Builder:
		e.write(out, names, sorted)
		return nil
	}
	bw := bufio.NewWriter(w)
	e.write(bw, names, sorted)
	return bw.Flush()
}

// writer is what write needs of its output.
type writer interface {
	io.StringWriter
	io.ByteWriter
}

func (e *Element) collectNamespaces(uris map[string]bool) {
	if e.Name.Space != "" {
		uris[e.Name.Space] = true
	}
	for _, a := range e.Attr {
		if a.Name.Space != "" && a.Name.Space != xmlNamespace {
			uris[a.Name.Space] = true
		}
	}
	for _, c := range e.Children {
		c.collectNamespaces(uris)
	}
}

const xmlNamespace = "http://www.w3.org/XML/1998/namespace"

// writeQName writes the prefixed name of local in space.
func writeQName(w writer, space, local string, names map[string]string) {
	switch space {
	case "":
	case xmlNamespace, "xml":
		w.WriteString("xml:")
	default:
		w.WriteString(names[space])
		w.WriteByte(':')
	}
	w.WriteString(local)
}

func (e *Element) write(w writer, names map[string]string, declare []string) {
	w.WriteByte('<')
	writeQName(w, e.Name.Space, e.Name.Local, names)
	for _, u := range declare {
		w.WriteString(" xmlns:")
		w.WriteString(names[u])
		w.WriteString(`="`)
		escapeText(w, u)
		w.WriteByte('"')
	}
	for _, a := range e.Attr {
		w.WriteByte(' ')
		writeQName(w, a.Name.Space, a.Name.Local, names)
		w.WriteString(`="`)
		escapeText(w, a.Value)
		w.WriteByte('"')
	}
	if len(e.Children) == 0 && e.Text == "" {
		w.WriteString("/>")
		return
	}
	w.WriteByte('>')
	escapeText(w, e.Text)
	for _, c := range e.Children {
		c.write(w, names, nil)
	}
	w.WriteString("</")
	writeQName(w, e.Name.Space, e.Name.Local, names)
	w.WriteByte('>')
}

// plain marks the ASCII bytes escapeText writes as they are.
var plain = func() (t [utf8.RuneSelf]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = true
	}
	for _, c := range `"'&<>` {
		t[c] = false
	}
	return t
}()

// escapeText writes s escaped as encoding/xml.EscapeText escapes it (the
// same references, invalid characters replaced by U+FFFD), which this
// package used before: the output stays byte for byte what it was, without
// EscapeText's copy of every string into a byte slice.
func escapeText(w writer, s string) {
	last := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf && plain[c] {
			i++
			continue
		}
		r, width := utf8.DecodeRuneInString(s[i:])
		var esc string
		switch r {
		case '"':
			esc = "&#34;"
		case '\'':
			esc = "&#39;"
		case '&':
			esc = "&amp;"
		case '<':
			esc = "&lt;"
		case '>':
			esc = "&gt;"
		case '\t':
			esc = "&#x9;"
		case '\n':
			esc = "&#xA;"
		case '\r':
			esc = "&#xD;"
		default:
			if !isChar(r) || (r == utf8.RuneError && width == 1) {
				esc = "\uFFFD"
				break
			}
			i += width
			continue
		}
		w.WriteString(s[last:i])
		w.WriteString(esc)
		i += width
		last = i
	}
	w.WriteString(s[last:])
}
