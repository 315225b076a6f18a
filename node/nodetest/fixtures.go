package nodetest

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/parzelle/parzelle/xmlschema"
)

// XMeldNS is the XMeld 2.4.3 namespace of the fixture messages.
const XMeldNS = "http://www.osci.de/xmeld243"

// AGS are the demo tenants' Amtliche Gemeindeschlüssel.
var AGS = map[string]string{"duesseldorf": "05111000", "koeln": "05315000"}

// Root is the repository's directory; the official schemas lie beside it
// in ../shared/specs.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Fixture is the path of a file under fixtures/.
func Fixture(parts ...string) string {
	return filepath.Join(append([]string{Root(), "fixtures"}, parts...)...)
}

var (
	schemasOnce sync.Once
	schemaSet   *xmlschema.Registry
	schemaErr   error
)

// Schemas are the official schemas and the XInneres stand-ins, loaded once
// per test binary.
func Schemas(t testing.TB) *xmlschema.Registry {
	schemasOnce.Do(func() {
		schemaSet, schemaErr = xmlschema.Load([]string{filepath.Join(Root(), "..", "shared", "specs"), Fixture("schemas")}, nil)
	})
	if schemaErr != nil {
		t.Fatal(schemaErr)
	}
	return schemaSet
}

// melderegisterTenant is a Melderegister tenant with a register inbox fed by
// its own Fachverfahren, mapping the XMeld specs given.
const melderegisterTenant = `id: %[1]s
name: Melderegister %[1]s
identities:
  - {id: "ags:%[2]s", type: xoev, category: Meldebehörde, transports: [xta]}
  - {id: "register:%[2]s", type: xoev, category: Melderegister, transports: [xta]}
clients:
  - {name: fachverfahren, subject: "CN=%[1]s,OU=Fachverfahren,O=Parzelle Demo", identities: ["ags:%[2]s"], role: fachverfahren}
trust:
  clientCAs: ["{{CA}}"]
registers:
  - {name: melderegister, type: person}
access:
  rules:
    - {role: fachverfahren, operations: [read, search], purposes: [meldewesen], legalBasis: "§ 3 BMG"}
    - {role: register-inbox, operations: [write], purposes: [meldewesen], legalBasis: "§ 33 BMG"}
inboxes:
  - {identity: "register:%[2]s", register: melderegister, writers: ["ags:%[2]s"], purpose: meldewesen}
schemas:
  missing: refuse
mappings:
%[3]s`

// MelderegisterTenant renders the tenant file of a demo tenant's
// Melderegister that maps the named XMeld specs (fixtures/mappings/xmeld-NAME.yaml).
func MelderegisterTenant(t testing.TB, id string, specs ...string) string {
	var lines []string
	for _, n := range specs {
		lines = append(lines, "  - "+Fixture("mappings", "xmeld-"+n+".yaml")+"\n")
	}
	return fmt.Sprintf(melderegisterTenant, id, AGS[id], strings.Join(lines, ""))
}

// XMeld reads a fixture XMeld message by its file name prefix ("01") and
// returns its message type (the root element's name) and content.
func XMeld(t testing.TB, prefix string) (messageType string, doc []byte) {
	t.Helper()
	files, _ := filepath.Glob(Fixture("messages", "xmeld", prefix+"-*.xml"))
	if len(files) != 1 {
		t.Fatalf("fixture %s: %v", prefix, files)
	}
	doc, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(bytes.NewReader(doc))
	for {
		tok, err := d.Token()
		if err != nil {
			t.Fatalf("fixture %s: %v", prefix, err)
		}
		if start, ok := tok.(xml.StartElement); ok {
			return start.Name.Local, doc
		}
	}
}
