package xmlsafe

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParse: no input panics the parser, and whatever it accepts stays
// within the limits it was given.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{`<a xmlns="urn:a" b="c"><d/>text<!--c--><?p i?></a>`, `<!DOCTYPE a><a/>`, `<a><b></a>`, `</a>`} {
		f.Add([]byte(seed))
	}
	lim := Limits{MaxBytes: 4096, MaxDepth: 8, MaxAttrs: 4, MaxNameLen: 32, MaxText: 256, MaxNodes: 64}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseDocument(bytes.NewReader(data), Options{Limits: lim, Preserve: true})
		if err != nil {
			var le *LimitError
			var se *SyntaxError
			if !errors.As(err, &le) && !errors.As(err, &se) && !errors.Is(err, ErrDTD) {
				t.Logf("other error: %v", err)
			}
			return
		}
		var walk func(e *Element, depth int) int
		walk = func(e *Element, depth int) int {
			if depth > lim.MaxDepth || len(e.Attr) > lim.MaxAttrs || int64(len(e.Text)) > lim.MaxText {
				t.Fatalf("limits exceeded by an accepted document: depth %d, %d attributes", depth, len(e.Attr))
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
