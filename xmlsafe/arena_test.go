package xmlsafe

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// TestArena parses documents of different sizes through one arena, reset
// between them: each tree equals the tree parsed without an arena, and a
// reset takes the memory back for the next parse.
func TestArena(t *testing.T) {
	var a Arena
	var first *Element
	for i, n := range []int{3, 400, 20, 2000, 1} {
		var b strings.Builder
		b.WriteString(`<r xmlns="urn:x" xmlns:p="urn:p">`)
		for j := range n {
			fmt.Fprintf(&b, `<p:e a="%d" p:b="x"><f>t%d</f></p:e>`, j, j)
		}
		b.WriteString(`</r>`)
		doc := []byte(b.String())
		plain, err := Parse(bytes.NewReader(doc), Options{})
		if err != nil {
			t.Fatal(err)
		}
		lent, err := Parse(bytes.NewReader(doc), Options{Arena: &a})
		if err != nil {
			t.Fatal(err)
		}
		var w1, w2 bytes.Buffer
		if err := plain.Write(&w1, nil); err != nil {
			t.Fatal(err)
		}
		if err := lent.Write(&w2, nil); err != nil {
			t.Fatal(err)
		}
		if w1.String() != w2.String() || len(lent.Children) != n || lent.Children[n-1].Attr[0].Value != fmt.Sprint(n-1) {
			t.Fatalf("document %d: the arena's tree differs:\n%s\n%s", i, w1.String(), w2.String())
		}
		if i == 0 {
			first = lent
		}
		a.Reset()
		if i == 0 && first.Name.Local != "" {
			t.Fatalf("Reset did not take the first tree back: root %q", first.Name.Local)
		}
	}
}
