package xmlsafe

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
)

// BenchmarkParse compares the parser with the previous one on encoding/xml
// for a small signed-message-like document and a 1 MB / 40k-element one,
// and the parser taking the input whole with it reading a stream.
func BenchmarkParse(b *testing.B) {
	small, err := os.ReadFile("../xmldsig/testdata/meldung.xml")
	if err != nil {
		b.Fatal(err)
	}
	var big strings.Builder
	big.WriteString(`<doc xmlns="urn:a" xmlns:p="urn:p">` + "\n")
	for i := range 20000 {
		fmt.Fprintf(&big, "<r><p:v n=\"%d\">Mü&amp;%06d</p:v></r>\n", i, i)
	}
	big.WriteString("</doc>\n")
	for _, doc := range []struct {
		name string
		data []byte
	}{{"4.5KB", small}, {"1MB", []byte(big.String())}} {
		for _, impl := range []struct {
			name  string
			parse func(*bytes.Reader) error
		}{
			{"xmlsafe", func(r *bytes.Reader) error { _, err := ParseDocument(r, Options{Preserve: true}); return err }},
			{"encoding-xml", func(r *bytes.Reader) error { _, err := refParseDocument(r, Options{Preserve: true}); return err }},
			// As an HTTP body is read: in windows.
			{"xmlsafe-stream", func(r *bytes.Reader) error {
				_, err := ParseDocument(struct{ io.Reader }{r}, Options{Preserve: true})
				return err
			}},
		} {
			b.Run(doc.name+"/"+impl.name, func(b *testing.B) {
				b.SetBytes(int64(len(doc.data)))
				b.ReportAllocs()
				for b.Loop() {
					if err := impl.parse(bytes.NewReader(doc.data)); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
