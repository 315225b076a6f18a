package xmlsafe

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"
)

// refWrite is Element.Write as it was before it wrote without copies
// (encoding/xml.EscapeText and fmt on a bufio.Writer). Stored metadata and
// the skeletons validated against the XTA schemas are made with Write, so
// its output must stay byte for byte the same.
func refWrite(e *Element, w io.Writer, prefixes map[string]string) error {
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
	refWriteElement(e, bw, names, sorted)
	return bw.Flush()
}

func refQName(space, local string, names map[string]string) string {
	switch space {
	case "":
		return local
	case xmlNamespace, "xml":
		return "xml:" + local
	}
	return names[space] + ":" + local
}

func refWriteElement(e *Element, w *bufio.Writer, names map[string]string, declare []string) {
	tag := refQName(e.Name.Space, e.Name.Local, names)
	w.WriteString("<" + tag)
	for _, u := range declare {
		fmt.Fprintf(w, ` xmlns:%s="`, names[u])
		_ = xml.EscapeText(w, []byte(u))
		w.WriteByte('"')
	}
	for _, a := range e.Attr {
		w.WriteString(" " + refQName(a.Name.Space, a.Name.Local, names) + `="`)
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
		refWriteElement(c, w, names, nil)
	}
	w.WriteString("</" + tag + ">")
}

// checkWrite fails t when Write, to a buffer or through its own
// bufio.Writer, differs from refWrite.
func checkWrite(t *testing.T, e *Element, prefixes map[string]string) {
	t.Helper()
	var want, buf bytes.Buffer
	var sb strings.Builder
	var streamed bytes.Buffer
	if err := refWrite(e, &want, prefixes); err != nil {
		t.Fatal(err)
	}
	for _, w := range []io.Writer{&buf, &sb, struct{ io.Writer }{&streamed}} {
		if err := e.Write(w, prefixes); err != nil {
			t.Fatal(err)
		}
	}
	for _, got := range []string{buf.String(), sb.String(), streamed.String()} {
		if got != want.String() {
			t.Fatalf("Write gives\n%q\nthe writer before gave\n%q", got, want.String())
		}
	}
}

// TestWriteUnchanged compares Write with the writer before on parsed
// documents and on trees no parse yields (control characters, invalid
// UTF-8, names in the xml namespace, prefixes that collide).
func TestWriteUnchanged(t *testing.T) {
	prefixSets := []map[string]string{nil, {"urn:p": "p", "urn:a": "p", "urn:x": "ns1"}, {"urn:a": "a", nsXSI: "xsi"}}
	docs := append([]string{
		`<r xmlns="urn:a" xmlns:p="urn:p" a="x&quot;'&lt;&gt;&amp;" p:b="tab&#9;nl&#10;cr&#13;"><p:c>Grüße &amp; ]]&gt; € 𝄞</p:c><d/><e>  </e></r>`,
		`<a xml:lang="de" xmlns:q="urn:q"><q:b q:x="1">t</q:b>text</a>`,
	}, fuzzSeeds...)
	for _, doc := range docs {
		root, err := Parse(strings.NewReader(doc), Options{})
		if err != nil {
			continue
		}
		for _, ps := range prefixSets {
			checkWrite(t, root, ps)
		}
	}
	odd := &Element{Name: xml.Name{Space: "urn:a", Local: "r"}, Text: "bad\xffutf8 \x01ctl \uFFFD\x7f", Attr: []xml.Attr{
		{Name: xml.Name{Space: xmlNamespace, Local: "space"}, Value: "preserve\x00"},
		{Name: xml.Name{Space: "xml", Local: "lang"}, Value: "de"},
		{Name: xml.Name{Space: "urn:x", Local: "k"}, Value: "\r\n\t"},
	}}
	odd.Children = []*Element{{Name: xml.Name{Space: xmlNamespace, Local: "e"}, Parent: odd}, {Name: xml.Name{Local: "plain"}, Text: "<&>", Parent: odd}}
	for _, ps := range prefixSets {
		checkWrite(t, odd, ps)
	}
}

// nsXSI is a namespace the test proposes a prefix for.
const nsXSI = "http://www.w3.org/2001/XMLSchema-instance"
