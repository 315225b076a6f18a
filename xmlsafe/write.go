package xmlsafe

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
	"sort"
)

// Write serializes the element and its subtree with every namespace it
// uses declared on it. prefixes proposes a prefix per namespace URI; other
// namespaces get ns1, ns2, …
func (e *Element) Write(w io.Writer, prefixes map[string]string) error {
	uris := map[string]bool{}
	e.collectNamespaces(uris)
	names := map[string]string{}
	used := map[string]bool{}
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
			p = fmt.Sprintf("ns%d", n)
		}
		names[u], used[p] = p, true
	}
	bw := bufio.NewWriter(w)
	e.write(bw, names, sorted)
	return bw.Flush()
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

func qname(space, local string, names map[string]string) string {
	switch space {
	case "":
		return local
	case xmlNamespace, "xml":
		return "xml:" + local
	}
	return names[space] + ":" + local
}

func (e *Element) write(w *bufio.Writer, names map[string]string, declare []string) {
	tag := qname(e.Name.Space, e.Name.Local, names)
	w.WriteString("<" + tag)
	for _, u := range declare {
		fmt.Fprintf(w, ` xmlns:%s="`, names[u])
		_ = xml.EscapeText(w, []byte(u))
		w.WriteByte('"')
	}
	for _, a := range e.Attr {
		w.WriteString(" " + qname(a.Name.Space, a.Name.Local, names) + `="`)
		_ = xml.EscapeText(w, []byte(a.Value))
		w.WriteByte('"')
	}
	if len(e.Children) == 0 && e.Text == "" {
		w.WriteString("/>")
		return
	}
	w.WriteByte('>')
	_ = xml.EscapeText(w, []byte(e.Text))
	for _, c := range e.Children {
		c.write(w, names, nil)
	}
	w.WriteString("</" + tag + ">")
}
