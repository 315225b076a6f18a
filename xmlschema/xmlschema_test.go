package xmlschema

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

const specs = "../../shared/specs"

var (
	loadOnce sync.Once
	shared   *Registry
	loadErr  error
)

// load compiles the sets under ../shared/specs once for the package's tests.
func load(t *testing.T) *Registry {
	t.Helper()
	if _, err := os.Stat(specs); err != nil {
		t.Fatalf("the standards material is missing: %v", err)
	}
	loadOnce.Do(func() { shared, loadErr = Load([]string{specs}, nil) })
	if loadErr != nil {
		t.Fatal(loadErr)
	}
	return shared
}

// TestSetsFound checks what ../shared/specs provides: which sets compile,
// which are there but incomplete (XMeld and XPersonenstand import XInneres
// modules that are not public), and which are absent.
func TestSetsFound(t *testing.T) {
	r := load(t)
	installed := map[string]bool{}
	for _, i := range r.Installed() {
		installed[i.Name] = true
	}
	broken := map[string]string{}
	for _, b := range r.Broken() {
		broken[b.Name] = b.Reason
	}
	missing := map[string]bool{}
	for _, m := range r.Missing() {
		missing[m.Name] = true
	}
	cases := []struct {
		set, state, reason string
	}{
		{XTA2V3.Name, "installed", ""},
		{XNachweis120.Name, "installed", ""},
		{OSCI12("StoreDelivery"), "installed", ""},
		{OSCI12("ResponseToFetchDelivery"), "installed", ""},
		{OSCI12("MessageEncrypted"), "installed", ""},
		{XMeld243.Name, "broken", "http://www.osci.de/xinneres/allgemeinername/2/xinneres-name.xsd cannot be resolved to a local file"},
		{XPersonenstand175.Name, "broken", "http://www.osci.de/xinneres/allgemeinername/2/xinneres-name.xsd cannot be resolved to a local file"},
		{XGewerbeanzeige22.Name, "missing", ""},
	}
	for _, c := range cases {
		switch c.state {
		case "installed":
			if !installed[c.set] || !r.Has(c.set) {
				t.Errorf("%s: not installed (broken: %q)", c.set, broken[c.set])
			}
		case "broken":
			if !strings.Contains(broken[c.set], c.reason) || r.Has(c.set) {
				t.Errorf("%s: broken reason %q, want it to contain %q", c.set, broken[c.set], c.reason)
			}
		case "missing":
			if !missing[c.set] {
				t.Errorf("%s: not listed as missing", c.set)
			}
		}
	}
	if n := len(r.Installed()) + len(r.Broken()) + len(r.Missing()); n != len(Known) {
		t.Errorf("%d sets accounted for, %d known", n, len(Known))
	}
	if len(r.Catalog().Files) != 2 {
		t.Errorf("catalogs loaded: %v, want the OSCI and XNachweis ones", r.Catalog().Files)
	}
	if got := r.Catalog().Mappings["http://www.osci.de/xinneres/behoerde/4/xinneres-behoerde.xsd"]; !strings.HasSuffix(got, "xoev/xinneres/xinneres-behoerde.xsd") {
		t.Errorf("generated mapping for XInneres behoerde/4: %q", got)
	}
}

// TestSamplesValidate validates the official and constructed samples
// against the set their root namespace (or OSCI order type) selects.
func TestSamplesValidate(t *testing.T) {
	r := load(t)
	type sample struct{ file, set string }
	var samples []sample
	xta, _ := filepath.Glob(filepath.Join(specs, "xta2/samples/v3-synthetic/*.xml"))
	if len(xta) < 15 {
		t.Fatalf("only %d XTA samples found", len(xta))
	}
	for _, f := range xta {
		samples = append(samples, sample{f, XTA2V3.Name})
	}
	xn, _ := filepath.Glob(filepath.Join(specs, "xnachweis/constructed-examples/*.xml"))
	if len(xn) != 3 {
		t.Fatalf("%d XNachweis examples found, want 3", len(xn))
	}
	for _, f := range xn {
		samples = append(samples, sample{f, ""}) // by namespace
	}
	osci, _ := filepath.Glob(filepath.Join(specs, "osci/samples/*.plain.mime"))
	if len(osci) != 8 {
		t.Fatalf("%d OSCI plain samples found, want 8", len(osci))
	}
	for _, f := range osci {
		order := strings.SplitN(strings.TrimSuffix(filepath.Base(f), ".plain.mime"), "-", 3)[1]
		samples = append(samples, sample{f, OSCI12(order)})
	}
	encrypted, _ := filepath.Glob(filepath.Join(specs, "osci/samples/*.transport-encrypted.mime"))
	for _, f := range encrypted {
		samples = append(samples, sample{f, OSCI12("MessageEncrypted")})
	}
	for _, s := range samples {
		t.Run(filepath.Base(s.file), func(t *testing.T) {
			doc, err := os.ReadFile(s.file)
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasSuffix(s.file, ".mime") {
				doc = rootPart(t, doc)
			}
			set := s.set
			if set == "" {
				ns, ok := RootNamespace(doc)
				if !ok {
					t.Fatal("no root namespace")
				}
				if set, ok = r.ForNamespace(ns); !ok {
					t.Fatalf("no set for namespace %s", ns)
				}
			}
			if err := r.Validate(set, doc); err != nil {
				t.Error(err)
			}
		})
	}
}

// rootPart returns the SOAP envelope of an OSCI MIME message (whose MIME
// headers are the first lines of the body).
func rootPart(t *testing.T, b []byte) []byte {
	t.Helper()
	h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(b))).ReadMIMEHeader()
	if err != nil {
		t.Fatal(err)
	}
	// Governikus writes type=text/xml unquoted, which mime.ParseMediaType
	// refuses; the boundary is all that is needed.
	m := regexp.MustCompile(`boundary="?([^";\s]+)`).FindStringSubmatch(h.Get("Content-Type"))
	if m == nil {
		t.Fatalf("no boundary in %q", h.Get("Content-Type"))
	}
	body := b[bytes.Index(b, []byte("\r\n\r\n"))+4:]
	p, err := multipart.NewReader(bytes.NewReader(body), m[1]).NextPart()
	if err != nil {
		t.Fatal(err)
	}
	env, err := io.ReadAll(p)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// TestProblemsHavePositions checks line, column and message of schema and
// well-formedness errors.
func TestProblemsHavePositions(t *testing.T) {
	r := load(t)
	fault, err := os.ReadFile(filepath.Join(specs, "xta2/samples/v3-synthetic/15-fault-PermissionDenied.xml"))
	if err != nil {
		t.Fatal(err)
	}
	line := 1 + bytes.Count(fault[:bytes.Index(fault, []byte("<code>9012</code>"))], []byte("\n"))
	cases := []struct {
		name    string
		doc     string
		line    int
		column  bool
		message string
	}{
		{"unexpected element", strings.Replace(string(fault), "<code>9012</code>", "<kode>9012</kode>", 1), line, true, "Element 'kode': This element is not expected. Expected is ( code )."},
		{"not well-formed", strings.Replace(string(fault), "</code>", "</kode>", 1), line, true, "Opening and ending tag mismatch: code"},
		{"wrong root", "<?xml version=\"1.0\"?>\n\n<x:Unknown xmlns:x=\"urn:x\"/>", 3, true, "Element '{urn:x}Unknown': No matching global declaration available for the validation root."},
		{"empty", "", 1, true, "the document is empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := r.Validate(XTA2V3.Name, []byte(c.doc))
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) == 0 {
				t.Fatalf("got %v, want a validation error", err)
			}
			p := ve.Problems[0]
			if p.Line != c.line || (c.column && p.Column <= 0) || !strings.Contains(p.Message, c.message) {
				t.Errorf("got %+v, want line %d, a column and %q", p, c.line, c.message)
			}
			if want := fmt.Sprintf("line %d, column %d: ", p.Line, p.Column); !strings.Contains(err.Error(), want) {
				t.Errorf("Error() = %q, want it to contain %q", err.Error(), want)
			}
		})
	}
}

// TestProblemsAreCapped: a document with many errors reports MaxProblems
// and counts the rest.
func TestProblemsAreCapped(t *testing.T) {
	r := load(t)
	doc, err := os.ReadFile(filepath.Join(specs, "xnachweis/constructed-examples/DE.EvidenceRequest.0101.example.xml"))
	if err != nil {
		t.Fatal(err)
	}
	// Eighty unknown attributes on the root: one error each.
	var attrs strings.Builder
	for i := 0; i < 80; i++ {
		fmt.Fprintf(&attrs, ` bogus%d="x"`, i)
	}
	bad := bytes.Replace(doc, []byte("<xn-de:DE.EvidenceRequest.0101"), []byte("<xn-de:DE.EvidenceRequest.0101"+attrs.String()), 1)
	set, _ := r.ForNamespace("urn:xoev-de:bva:standard:xnachweis:schema:xnachweis-de-noots")
	err = r.Validate(set, bad)
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("got %v, want a validation error", err)
	}
	if len(ve.Problems) != MaxProblems || ve.Total < 80 {
		t.Fatalf("%d problems, total %d; want %d and at least 80", len(ve.Problems), ve.Total, MaxProblems)
	}
	if want := fmt.Sprintf("… and %d more", ve.Total-MaxProblems); !strings.HasSuffix(err.Error(), want) {
		t.Errorf("Error() ends %q, want %q", err.Error()[max(0, len(err.Error())-40):], want)
	}
	if want := fmt.Sprintf("… and %d more", ve.Total-3); !strings.HasSuffix(ve.Summary(3), want) {
		t.Errorf("Summary(3) = %q, want the suffix %q", ve.Summary(3), want)
	}
}

// TestUnresolvableImportFailsOffline: an import that no catalog maps
// fails at once with a message naming the URL; libxml2 does not try the
// network (the address would hang for a long time if it did).
func TestUnresolvableImportFailsOffline(t *testing.T) {
	dir := t.TempDir()
	cases := []struct{ name, location string }{
		{"http", "http://10.255.255.1/schemas/missing.xsd"},
		{"https", "https://10.255.255.1/schemas/missing.xsd"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			file := filepath.Join(dir, c.name+".xsd")
			xsd := `<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:m="urn:missing" targetNamespace="urn:t">
  <xs:import namespace="urn:missing" schemaLocation="` + c.location + `"/>
  <xs:element name="e" type="m:T"/>
</xs:schema>`
			if err := os.WriteFile(file, []byte(xsd), 0o600); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			s, err := compileFile(file)
			if err == nil {
				s.free()
				t.Fatal("the schema compiled")
			}
			if !strings.Contains(err.Error(), c.location+" cannot be resolved to a local file") {
				t.Errorf("error %q does not name %s", err, c.location)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v: the network was tried", d)
			}
		})
	}
	// An unused unresolvable import is refused too: the set would be
	// incomplete.
	unused := filepath.Join(dir, "unused.xsd")
	os.WriteFile(unused, []byte(`<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:t"><xs:import namespace="urn:missing" schemaLocation="http://10.255.255.1/u.xsd"/><xs:element name="e"/></xs:schema>`), 0o600)
	if s, err := compileFile(unused); err == nil {
		s.free()
		t.Error("a schema with an unresolvable import compiled")
	}
}

// TestMissingSetIsReported: an empty directory installs nothing.
func TestMissingSetIsReported(t *testing.T) {
	r, err := Load([]string{t.TempDir(), filepath.Join(t.TempDir(), "absent")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Has(XTA2V3.Name) || len(r.Missing()) != len(Known) || len(r.Installed()) != 0 {
		t.Fatalf("empty dir: installed %v, missing %d", r.Installed(), len(r.Missing()))
	}
	if err := r.Validate(XTA2V3.Name, []byte("<a/>")); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("got %v, want ErrNotInstalled", err)
	}
	if _, ok := r.ForNamespace(XTA2V3.Namespace); ok {
		t.Error("ForNamespace found a set that is not installed")
	}
}

// TestParallelValidation shares one compiled schema among goroutines (run
// with -race).
func TestParallelValidation(t *testing.T) {
	r := load(t)
	good, err := os.ReadFile(filepath.Join(specs, "xnachweis/constructed-examples/DE.EvidenceResponse.0102.example.xml"))
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Replace(good, []byte("<xn-de:DE.EvidenceResponse.0102"), []byte(`<xn-de:DE.EvidenceResponse.0102 bogus="1"`), 1)
	set, ok := r.ForNamespace("urn:xoev-de:bva:standard:xnachweis:schema:xnachweis-de-noots")
	if !ok {
		t.Fatal("XNachweis not installed")
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if err := r.Validate(set, good); err != nil {
					errs <- err
					return
				}
				var ve *ValidationError
				if err := r.Validate(set, bad); !errors.As(err, &ve) || !strings.Contains(ve.Problems[0].Message, "bogus") {
					errs <- fmt.Errorf("invalid document: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestRootNamespace(t *testing.T) {
	cases := []struct {
		doc string
		ns  string
		ok  bool
	}{
		{`<?xml version="1.0" encoding="ISO-8859-15"?><!-- c --><p:a xmlns:p="urn:p"><b/></p:a>`, "urn:p", true},
		{`<a xmlns="urn:d"/>`, "urn:d", true},
		{`<a/>`, "", true},
		{`<p:a xmlns:q="urn:q"/>`, "", false},
		{"\xef\xbb\xbf<a xmlns='urn:bom'/>", "urn:bom", true},
		{`not xml`, "", false},
		{``, "", false},
	}
	for _, c := range cases {
		ns, ok := RootNamespace([]byte(c.doc))
		if ns != c.ns || ok != c.ok {
			t.Errorf("RootNamespace(%q) = %q, %v; want %q, %v", c.doc, ns, ok, c.ns, c.ok)
		}
	}
}
