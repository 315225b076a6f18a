package xta

import (
	"bytes"
	"encoding/base64"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestBase64Writer writes base64 text in pieces of every size, with and
// without white space (line breaks as other clients write them, blanks and
// tabs), and checks the bytes that come out; text that goes on after its
// padding, is cut in a group or holds a foreign character is refused.
func TestBase64Writer(t *testing.T) {
	data := make([]byte, 1000)
	for i := range data {
		data[i] = byte(rand.IntN(256))
	}
	plain := base64.StdEncoding.EncodeToString(data[:998]) // ends in "="
	var wrapped strings.Builder
	for i := 0; i < len(plain); i += 76 {
		wrapped.WriteString(plain[i:min(i+76, len(plain))] + "\r\n")
	}
	spaced := " \t" + strings.ReplaceAll(plain[:40], "A", "A \t") + "\n" + plain[40:] + "\n\t "
	for _, tc := range []struct{ name, text string }{{"plain", plain}, {"wrapped", wrapped.String()}, {"spaced", spaced}} {
		for piece := 1; piece <= len(tc.text); piece += 1 + piece/8 {
			var out bytes.Buffer
			w := &base64Writer{dst: &out}
			for i := 0; i < len(tc.text); i += piece {
				p := []byte(tc.text[i:min(i+piece, len(tc.text))])
				if n, err := w.Write(p); err != nil || n != len(p) {
					t.Fatalf("%s in pieces of %d: Write = %d, %v", tc.name, piece, n, err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatalf("%s in pieces of %d: Close: %v", tc.name, piece, err)
			}
			if !bytes.Equal(out.Bytes(), data[:998]) {
				t.Fatalf("%s in pieces of %d: decoded %d bytes that differ from the %d sent", tc.name, piece, out.Len(), 998)
			}
		}
	}
	for _, tc := range []struct {
		name   string
		pieces []string
		want   string // error of Write, or of Close when the writes pass
	}{
		{"data after padding, one piece", []string{"QQ==QUJD"}, "invalid base64"},
		{"data after padding, next piece", []string{"QQ==", "QUJD"}, "continues after its padding"},
		{"data after padding, next piece with blanks", []string{"QQ==", " QUJD"}, "continues after its padding"},
		{"white space after padding", []string{"QQ==", " \r\n"}, ""},
		{"cut in a group", []string{"QUJDRA"}, "truncated"},
		{"foreign character", []string{"QU!D"}, "invalid base64"},
		{"foreign character, after a cut", []string{"QU", "!D"}, "invalid base64"},
	} {
		w := &base64Writer{dst: &bytes.Buffer{}}
		var err error
		for _, p := range tc.pieces {
			if _, err = w.Write([]byte(p)); err != nil {
				break
			}
		}
		if err == nil {
			err = w.Close()
		}
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one saying %q", tc.name, err, tc.want)
		}
	}
}
