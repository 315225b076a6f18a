package xta

import (
	"bytes"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parzelle/parzelle/xmlschema"
)

// benchSchemas are the schema sets of the request benchmarks: the XTA
// schemas and XMeld with its stand-ins.
var benchSchemas *xmlschema.Registry

// benchRequest returns a sendMessage request the way Client.Send writes it
// (inline base64), carrying the XMeld move-in of the pipeline benchmark,
// and the registry to validate it with.
func benchRequest(tb testing.TB) (contentType string, body []byte, doc []byte, reg *xmlschema.Registry) {
	tb.Helper()
	if benchSchemas == nil {
		r, err := xmlschema.Load([]string{"../../shared/specs", "../fixtures/schemas"}, nil)
		if err != nil {
			tb.Fatal(err)
		}
		benchSchemas = r
	}
	doc, err := os.ReadFile(filepath.Join("..", "fixtures", "messages", "xmeld", "01-rueckmeldung-anmeldung-0201.xml"))
	if err != nil {
		tb.Fatal(err)
	}
	m := &OutgoingMessage{
		MessageID: "urn:de:xta:messageid:localhost:6c1e9a52-7d41-4b8e-93f0-2a6b8c0d1e2f", Author: Party{ID: "ags:05111000"}, Reader: Party{ID: "register:05111000"},
		Service: "urn:xoev-de:xmeld", BusinessScenario: "XMELD_DATA", MessageType: "rueckmeldung.anmeldunginland.0201", MessageTypeSchema: "http://www.osci.de/xmeld243",
		Message: OutgoingContent{ContentType: "text/xml", Encoding: "UTF-8", Filename: "nachricht.xml", Data: bytes.NewReader(doc), Size: int64(len(doc))},
	}
	var buf bytes.Buffer
	action := operationNamed("sendMessage").action
	if err := (&Client{}).writeSend(&buf, nil, action, m, []OutgoingContent{m.Message}); err != nil {
		tb.Fatal(err)
	}
	return soapContentType + `; action="` + action + `"`, buf.Bytes(), doc, benchSchemas
}

// onlyReader hides the concrete reader type, as an HTTP request body does.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// BenchmarkRequest measures the work on one sendMessage request outside
// the database and the network: the server reading the envelope (content
// decoded into its spool), validating its skeleton against the XTA schemas
// and the content against XMeld, and writing the response; and the client
// encoding the request. It needs no PostgreSQL.
func BenchmarkRequest(b *testing.B) {
	ct, body, _, reg := benchRequest(b)
	s := &Server{schemas: reg}
	b.Run("read", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			m, f := readMessage(ct, onlyReader{bytes.NewReader(body)}, limits{contentBytes: MaxContent}, true)
			if f != nil {
				b.Fatal(f)
			}
			m.Close()
		}
	})
	m, f := readMessage(ct, onlyReader{bytes.NewReader(body)}, limits{contentBytes: MaxContent}, true)
	if f != nil {
		b.Fatal(f)
	}
	b.Run("envelope", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			c := &call{req: m}
			if f := s.validate(c); f != nil || len(c.warnings) > 0 {
				b.Fatal(f, c.warnings)
			}
		}
	})
	b.Run("content", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			doc, _ := m.Contents[0].data.Bytes()
			ns, _ := xmlschema.RootNamespace(doc)
			set, ok := reg.ForNamespace(ns)
			if !ok {
				b.Fatal("no schema for", ns)
			}
			if err := reg.Validate(set, doc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reply", func(b *testing.B) {
		b.ReportAllocs()
		c := &call{req: m, op: operationNamed("sendMessage")}
		for range b.N {
			c.w = httptest.NewRecorder()
			c.reply("", "")
		}
	})
	b.Run("client", func(b *testing.B) {
		b.ReportAllocs()
		_, _, doc, _ := benchRequest(b)
		action := operationNamed("sendMessage").action
		for range b.N {
			om := &OutgoingMessage{MessageID: "urn:x", Author: Party{ID: "a"}, Reader: Party{ID: "r"}, Service: "s", BusinessScenario: "b", MessageType: "t",
				Message: OutgoingContent{ContentType: "text/xml", Data: strings.NewReader(string(doc)), Size: int64(len(doc))}}
			if err := (&Client{}).writeSend(io.Discard, nil, action, om, []OutgoingContent{om.Message}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
