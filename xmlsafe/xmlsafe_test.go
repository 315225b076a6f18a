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
