package xta_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parzelle/parzelle/msgbox"
	"github.com/parzelle/parzelle/xmlsafe"
	"github.com/parzelle/parzelle/xmlschema"
	"github.com/parzelle/parzelle/xta"
)

// sample reads a synthetic XTA request from ../shared/specs.
func sample(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(specs, "xta2/samples/v3-synthetic", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// soapReply is what a raw POST got back.
type soapReply struct {
	status  int
	body    []byte
	code    string // XTA error code of a fault
	subcode string // local name of a SOAP fault subcode
	soap    string // SOAP fault code (Sender, VersionMismatch, …)
	reason  string // the fault's reason text
}

func post(t testing.TB, c *http.Client, url, contentType string, body []byte) soapReply {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	r := soapReply{status: resp.StatusCode}
	r.body, _ = io.ReadAll(resp.Body)
	env, err := xmlsafe.Parse(bytes.NewReader(r.body), xmlsafe.Options{})
	if err != nil {
		return r
	}
	if f := env.Path(xml.Name{Space: xta.NSSOAP, Local: "Body"}, xml.Name{Space: xta.NSSOAP, Local: "Fault"}); f != nil {
		r.reason = f.Path(xml.Name{Space: xta.NSSOAP, Local: "Reason"}, xml.Name{Space: xta.NSSOAP, Local: "Text"}).TrimmedText()
		code := f.Child(xta.NSSOAP, "Code")
		r.soap = strings.TrimPrefix(code.Child(xta.NSSOAP, "Value").TrimmedText(), "s12:")
		if _, local, ok := strings.Cut(code.Path(xml.Name{Space: xta.NSSOAP, Local: "Subcode"}, xml.Name{Space: xta.NSSOAP, Local: "Value"}).TrimmedText(), ":"); ok {
			r.subcode = local
		}
		if d := f.Child(xta.NSSOAP, "Detail"); d != nil && len(d.Children) > 0 {
			if ec := d.Children[0].Child(xta.NSXTA, "errorCode"); ec != nil {
				r.code = ec.Child("", "code").TrimmedText()
			}
		}
	}
	return r
}

// withAction replaces the wsa:Action header of a sample.
func withAction(doc, action string) string {
	start := strings.Index(doc, "<wsa:Action>") + len("<wsa:Action>")
	end := strings.Index(doc, "</wsa:Action>")
	return doc[:start] + action + doc[end:]
}

const soapType = `application/soap+xml; charset=utf-8`

// tableCounts counts what the XTA tables and River hold.
func tableCounts(t testing.TB, h *harness) string {
	t.Helper()
	var out []string
	for _, tbl := range []string{"xta_message", "xta_part", "xta_chunk", "xta_report_record", "river_job"} {
		var n int
		if err := h.pool.QueryRow(context.Background(), "SELECT count(*) FROM "+tbl).Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s=%d", tbl, n))
	}
	return strings.Join(out, " ")
}

func mtomPackage(root string, parts map[string]string, closeIt bool) (string, []byte) {
	var b bytes.Buffer
	boundary := "bnd-parzelle-test"
	fmt.Fprintf(&b, "--%s\r\nContent-Type: application/xop+xml; charset=UTF-8; type=\"application/soap+xml\"\r\nContent-ID: <root@test>\r\n\r\n%s\r\n", boundary, root)
	for cid, data := range parts {
		fmt.Fprintf(&b, "--%s\r\nContent-Type: application/octet-stream\r\nContent-ID: <%s>\r\n\r\n%s\r\n", boundary, cid, data)
	}
	if closeIt {
		fmt.Fprintf(&b, "--%s--\r\n", boundary)
	}
	return `multipart/related; type="application/xop+xml"; boundary="` + boundary + `"; start="<root@test>"; start-info="application/soap+xml"`, b.Bytes()
}

// TestBadInput sends hostile and broken requests. Each gets its precise
// fault (or, for certificates TLS refuses, no connection), every fault
// validates against the XTA schemas, and the database is unchanged.
func TestBadInput(t *testing.T) {
	h := startHarness(t)
	h.setMaxContent(1 << 20)
	send := sample(t, "04-sendMessage-request.xml")
	// One good message first, so that "duplicate MessageID" has something
	// to collide with.
	if r := post(t, h.http("muenchen"), h.base+xta.PortSend, soapType, []byte(send)); r.status != 200 {
		t.Fatalf("good sample refused: %s", r.body)
	}
	// Yellow: the sample's content has no installed schema (München warns).
	waitStatus(t, h.client("muenchen", author, false), "urn:de:xta:messageid:hub.example.invalid:6c1e9a52-7d41-4b8e-93f0-2a6b8c0d1e2f", msgbox.StatusYellow)
	before := tableCounts(t, h)

	check := sample(t, "01-checkAccountActive-request.xml")
	report := sample(t, "13-getTransportReport-request.xml")
	fetch := sample(t, "10-getMessage-request.xml")
	lookup := sample(t, "06-lookupService-request.xml")
	newID := strings.ReplaceAll(send, "6c1e9a52-7d41-4b8e-93f0-2a6b8c0d1e2f", "11111111-2222-4333-8444-555555555555")
	big := make([]byte, 1<<20+100)
	rand.Read(big)
	oversize := strings.Replace(newID, "PD94bWwgdmVyc2lvbj0iMS4wIiBlbmNvZGluZz0iVVRGLTgiPz4KPGV4YW1wbGU+c3ludGhldGljIHBheWxvYWQ8L2V4YW1wbGU+Cg==", base64.StdEncoding.EncodeToString(big), 1)
	laughs := `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>` +
		strings.Replace(check[strings.Index(check, "<s12:Envelope"):], "<s12:Body/>", "<s12:Body>&lol3;</s12:Body>", 1)
	xxe := `<?xml version="1.0"?><!DOCTYPE e [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>` +
		strings.Replace(check[strings.Index(check, "<s12:Envelope"):], "<s12:Body/>", "<s12:Body>&xxe;</s12:Body>", 1)
	deep := strings.Replace(check, "<s12:Body/>", "<s12:Body>"+strings.Repeat("<a>", 100)+strings.Repeat("</a>", 100)+"</s12:Body>", 1)
	mtomRoot := strings.Replace(newID[strings.Index(newID, "<s12:Envelope"):], `>PD94bWwgdmVyc2lvbj0iMS4wIiBlbmNvZGluZz0iVVRGLTgiPz4KPGV4YW1wbGU+c3ludGhldGljIHBheWxvYWQ8L2V4YW1wbGU+Cg==<`, `><xop:Include xmlns:xop="http://www.w3.org/2004/08/xop/include" href="cid:payload@test"/><`, 1)
	// Content the schema policy refuses: an XNachweis request with an
	// unknown attribute (its schema is installed), and content without an
	// installed schema sent by Köln, whose policy refuses it.
	evidence, err := os.ReadFile(filepath.Join(specs, "xnachweis/constructed-examples/DE.EvidenceRequest.0101.example.xml"))
	if err != nil {
		t.Fatal(err)
	}
	badEvidence := strings.Replace(string(evidence), "<xn-de:DE.EvidenceRequest.0101", `<xn-de:DE.EvidenceRequest.0101 bogus="1"`, 1)
	// libxml2 reports the position of the '>' ending the root's start tag.
	root := strings.Index(badEvidence, "<xn-de:DE.EvidenceRequest.0101")
	rootEnd := root + strings.Index(badEvidence[root:], ">")
	badLine := fmt.Sprintf("line %d, column %d: ", 1+strings.Count(badEvidence[:rootEnd], "\n"), rootEnd-strings.LastIndex(badEvidence[:rootEnd], "\n"))
	withContent := func(doc, content string) string {
		return strings.Replace(doc, "PD94bWwgdmVyc2lvbj0iMS4wIiBlbmNvZGluZz0iVVRGLTgiPz4KPGV4YW1wbGU+c3ludGhldGljIHBheWxvYWQ8L2V4YW1wbGU+Cg==", base64.StdEncoding.EncodeToString([]byte(content)), 1)
	}
	fromKoeln := strings.Replace(strings.Replace(strings.Replace(newID, author, "AUTHOR", 1), reader, author, 1), "AUTHOR", reader, 1)
	truncCT, truncMTOM := mtomPackage(mtomRoot, map[string]string{"payload@test": "<example/>"}, false)
	missCT, missMTOM := mtomPackage(mtomRoot, map[string]string{"other@test": "<example/>"}, true)

	cases := []struct {
		name        string
		port, cert  string
		contentType string
		body        string
		code        string // XTA code, or
		soap        string // SOAP fault code, and
		subcode     string // subcode
		reason      string // part of the fault reason
		tlsRefused  bool
	}{
		{name: "XXE", port: xta.PortManagement, body: xxe, code: "9022", subcode: "DTDNotAllowed"},
		{name: "billion laughs", port: xta.PortManagement, body: laughs, code: "9022", subcode: "DTDNotAllowed"},
		{name: "malformed XML", port: xta.PortManagement, body: strings.Replace(check, "</s12:Header>", "</s12:Headr>", 1), code: "9022", subcode: "MalformedXML"},
		{name: "truncated XML", port: xta.PortManagement, body: check[:len(check)/2], code: "9022", subcode: "MalformedXML"},
		{name: "nesting too deep", port: xta.PortManagement, body: deep, code: "9022", subcode: "LimitExceeded"},
		{name: "SOAP 1.1 envelope", port: xta.PortManagement, body: strings.ReplaceAll(check, "http://www.w3.org/2003/05/soap-envelope", "http://schemas.xmlsoap.org/soap/envelope/"), soap: "VersionMismatch"},
		{name: "wrong envelope namespace", port: xta.PortManagement, body: strings.ReplaceAll(check, "http://www.w3.org/2003/05/soap-envelope", "urn:not-soap"), soap: "VersionMismatch"},
		{name: "SOAP 1.1 media type", port: xta.PortManagement, contentType: "text/xml; charset=utf-8", body: check, soap: "VersionMismatch"},
		{name: "unsupported media type", port: xta.PortManagement, contentType: "application/json", body: `{}`, subcode: "UnsupportedMediaType"},
		{name: "unknown Action", port: xta.PortManagement, body: withAction(check, "http://www.xta.de/XTA/DropAllTables"), subcode: "ActionNotSupported"},
		{name: "Action of another port", port: xta.PortMsgBox, body: check, subcode: "ActionNotSupported"},
		{name: "Action header missing", port: xta.PortManagement, body: strings.Replace(check, "<wsa:Action>http://www.xta.de/XTA/CheckAccountActive</wsa:Action>", "", 1), subcode: "MessageAddressingHeaderRequired"},
		{name: "MessageID header missing", port: xta.PortManagement, body: strings.Replace(check, "<wsa:MessageID>urn:uuid:5f0c2a44-8f3b-4a0e-9d7a-1c2b3d4e5f60</wsa:MessageID>", "", 1), subcode: "MessageAddressingHeaderRequired"},
		{name: "mustUnderstand header", port: xta.PortManagement, body: strings.Replace(check, "</s12:Header>", `<x:Secret xmlns:x="urn:x" s12:mustUnderstand="true"/></s12:Header>`, 1), soap: "MustUnderstand"},
		{name: "body does not match Action", port: xta.PortManagement, body: withAction(lookup, "http://www.xta.de/XTA/GetTransportReport"), code: "9022"},
		{name: "cancel without NotBefore", port: xta.PortManagement, body: withAction(report, "http://www.xta.de/XTA/CancelMessage"), code: "9101"},
		{name: "empty body where one is needed", port: xta.PortManagement, body: strings.Replace(strings.Replace(report, "<s12:Body>", "<s12:Body/><!--", 1), "</s12:Body>", "-->", 1), code: "9020"},
		{name: "body for an empty-body operation", port: xta.PortManagement, body: strings.Replace(check, "<s12:Body/>", "<s12:Body><wsa:MessageID>x</wsa:MessageID></s12:Body>", 1), code: "9022"},
		{name: "schema violation in metadata", port: xta.PortSend, body: strings.ReplaceAll(newID, "oscimeta:Service>", "oscimeta:Servce>"), code: "9022", subcode: "SchemaViolation"},
		{name: "metadata header missing", port: xta.PortSend, body: newID[:strings.Index(newID, "<oscimeta:MessageMetaData")] + newID[strings.Index(newID, "</oscimeta:MessageMetaData>")+len("</oscimeta:MessageMetaData>"):], code: "9020"},
		{name: "invalid base64 content", port: xta.PortSend, body: strings.Replace(newID, "PD94bWwg", "PD94b!!g", 1), code: "9022"},
		{name: "oversize message", port: xta.PortSend, body: oversize, code: "9023"},
		{name: "duplicate MessageID", port: xta.PortSend, body: send, code: "9024"},
		{name: "author not allowed for the certificate", port: xta.PortSend, cert: "koeln", body: newID, code: "9014"},
		{name: "foreign reader's box", port: xta.PortMsgBox, body: fetch, code: "9014"},
		{name: "unknown account", port: xta.PortManagement, body: strings.Replace(check, "dvdv:09162000-0001", "dvdv:00000000-0000", 1), code: "9012"},
		{name: "account without XTA", port: xta.PortManagement, cert: "koeln", body: strings.Replace(check, "dvdv:09162000-0001", osciOnly, 1), code: "9013"},
		{name: "certificate no tenant lists", port: xta.PortManagement, cert: "stranger", body: check, code: "9014"},
		{name: "unknown MessageID", port: xta.PortManagement, body: strings.Replace(report, "6c1e9a52", "00000000", 1), code: "9070"},
		{name: "synchronous send", port: xta.PortSend, body: withAction(newID, "http://www.xta.de/XTA/SendMessageSync"), code: "9080"},
		{name: "encrypted container", port: xta.PortSend, body: newID[:strings.Index(newID, "<xta:ContentContainer>")] + `<xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#"><xenc:CipherData><xenc:CipherValue>AAAA</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData></xta:GenericContentContainer></s12:Body></s12:Envelope>`, code: "9022"},
		{name: "content not valid against its schema", port: xta.PortSend, body: withContent(newID, badEvidence), code: "9050", reason: badLine + "Element '{urn:xoev-de:bva:standard:xnachweis:schema:xnachweis-de-noots}DE.EvidenceRequest.0101', attribute 'bogus': The attribute 'bogus' is not allowed."},
		{name: "content not well-formed", port: xta.PortSend, body: withContent(newID, strings.Replace(string(evidence), "</xn-de:DE.EvidenceRequest.0101>", "</xn-de:DE.EvidenceRequest>", 1)), code: "9050", reason: "Opening and ending tag mismatch"},
		{name: "content without schema, tenant refuses", port: xta.PortSend, cert: "koeln", body: fromKoeln, code: "9050", reason: "no schema is installed on this node for documents without a namespace (root element of content \"suchanfrage.xml\"), and the policy of tenant koeln refuses such messages"},
		{name: "content in an unknown namespace, tenant refuses", port: xta.PortSend, cert: "koeln", body: withContent(fromKoeln, `<u:x xmlns:u="urn:unknown"/>`), code: "9050", reason: "namespace urn:unknown"},
		{name: "truncated MTOM", port: xta.PortSend, contentType: truncCT, body: string(truncMTOM), subcode: "MalformedMTOM"},
		{name: "MTOM part missing", port: xta.PortSend, contentType: missCT, body: string(missMTOM), subcode: "MalformedMTOM"},
		{name: "expired certificate", port: xta.PortManagement, cert: "expired", body: check, tlsRefused: true},
		{name: "no certificate", port: xta.PortManagement, cert: "-", body: check, tlsRefused: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cert := tc.cert
			switch cert {
			case "":
				cert = "muenchen" // in the message box: the author's certificate acting for the reader
			case "-":
				cert = ""
			}
			ct := tc.contentType
			if ct == "" {
				ct = soapType
			}
			if tc.tlsRefused {
				req, _ := http.NewRequest(http.MethodPost, h.base+tc.port, strings.NewReader(tc.body))
				req.Header.Set("Content-Type", ct)
				resp, err := h.http(cert).Do(req)
				if err == nil {
					resp.Body.Close()
					t.Fatalf("TLS accepted the connection: HTTP %d", resp.StatusCode)
				}
				return
			}
			r := post(t, h.http(cert), h.base+tc.port, ct, []byte(tc.body))
			if r.status != http.StatusInternalServerError {
				t.Fatalf("HTTP %d, want 500 with a fault: %.300s", r.status, r.body)
			}
			if tc.code != "" && r.code != tc.code {
				t.Errorf("XTA code %q, want %q: %.400s", r.code, tc.code, r.body)
			}
			if tc.subcode != "" && r.subcode != tc.subcode {
				t.Errorf("subcode %q, want %q: %.400s", r.subcode, tc.subcode, r.body)
			}
			if !strings.Contains(r.reason, tc.reason) {
				t.Errorf("fault reason %q lacks %q", r.reason, tc.reason)
			}
			if tc.soap != "" && r.soap != tc.soap {
				t.Errorf("SOAP code %q, want %q: %.400s", r.soap, tc.soap, r.body)
			}
			if err := h.schemas.Validate(xmlschema.XTA2V3.Name, r.body); err != nil {
				t.Errorf("the fault is not schema-valid: %v", err)
			}
		})
	}
	if after := tableCounts(t, h); after != before {
		t.Errorf("bad input changed the database:\nbefore %s\nafter  %s", before, after)
	}
	if len(cases) < 25 {
		t.Errorf("only %d cases", len(cases))
	}
}

// TestGetRefused: XTA is POST only.
func TestGetRefused(t *testing.T) {
	h := startHarness(t)
	resp, err := h.http("muenchen").Get(h.base + xta.PortSend)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 500 || !bytes.Contains(body, []byte("MethodNotAllowed")) {
		t.Fatalf("GET: %d %s", resp.StatusCode, body)
	}
}
