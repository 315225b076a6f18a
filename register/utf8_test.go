package register

import "testing"

func TestBadUnicode(t *testing.T) {
	for _, c := range []struct {
		name, body, path string
	}{
		{"valid", `{"a": "Ćosić \u00e9 \ud83d\ude00"}`, "-"},
		{"raw byte in a value", "{\"identify\": {\"vornamen\": \"Mir\xe9la\"}}", "identify.vornamen"},
		{"raw byte in a key", "{\"attr\xffibutes\": 1}", "attr\ufffdibutes"},
		{"in an array", "{\"set\": [{\"value\": \"a\"}, {\"value\": \"b\xc3\"}]}", "set[1].value"},
		{"lone high surrogate", `{"x": [1, "\ud800"]}`, "x[1]"},
		{"lone low surrogate", `{"y": "\udc00a"}`, "y"},
		{"escaped backslash before u", `{"z": "\\ud800"}`, "-"},
		{"top level", "\"\xff\"", ""},
	} {
		at := badUnicode([]byte(c.body))
		got := "-"
		if at >= 0 {
			got = jsonPath([]byte(c.body), at)
		}
		if got != c.path {
			t.Errorf("%s: %q, want %q (offset %d)", c.name, got, c.path, at)
		}
	}
}
