package mapping

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/parzelle/parzelle/register"
	"github.com/parzelle/parzelle/tenant"
)

const tenantFile = `id: demo
name: Demo
identities:
  - {id: "ags:05111000", type: xoev, category: Meldebehörde, transports: [xta]}
registers:
  - {name: melderegister, type: person}
mappings:
  - mappings/xmeld-zuzug.yaml
  - mappings/xmeld-anschrift.yaml
`

// writeTenant lays out a tenant file and the specs it names.
func writeTenant(t *testing.T, dir, doc string) *tenant.Config {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "mappings"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"xmeld-zuzug.yaml", "xmeld-anschrift.yaml", "xgewerbeanzeige.yaml"} {
		if _, err := os.Stat(filepath.Join(dir, "mappings", f)); err == nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join(specDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "mappings", f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "demo.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := tenant.Parse(path, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestForTenant compiles a tenant's specs, caches them per configuration
// version, and compiles anew when a spec file changes.
func TestForTenant(t *testing.T) {
	dir := t.TempDir()
	cfg := writeTenant(t, dir, tenantFile)
	set, err := ForTenant(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(set.Specs()); n != 2 {
		t.Fatalf("%d specs, want 2", n)
	}
	data, err := os.ReadFile(filepath.Join(xmeldDir, "03-fortschreibung-anschrift-0090.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if sp, facts, err := set.MapXML(data); err != nil || sp.ID != "xmeld-anschrift" || len(facts) != 1 {
		t.Fatalf("mapping with the tenant's set: %v, %v", facts, err)
	}
	again, err := ForTenant(cfg)
	if err != nil || again != set {
		t.Errorf("the same configuration version compiled again (%v)", err)
	}

	// Editing a spec is a new configuration version with the new spec.
	specPath := filepath.Join(dir, "mappings", "xmeld-anschrift.yaml")
	spec, _ := os.ReadFile(specPath)
	if err := os.WriteFile(specPath, []byte(strings.Replace(string(spec), "version: 2", "version: 3", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg2 := writeTenant(t, dir, tenantFile)
	if cfg2.SHA256 == cfg.SHA256 {
		t.Fatal("editing a mapping spec did not change the configuration version")
	}
	set2, err := ForTenant(cfg2)
	if err != nil {
		t.Fatal(err)
	}
	if sp, _, err := set2.MapXML(data); err != nil || sp.Source() != "xmeld-anschrift@3" {
		t.Errorf("after the edit: %v, %v", sp, err)
	}

	// A spec for a register the tenant does not keep is refused.
	cfg3 := writeTenant(t, dir, tenantFile+"  - mappings/xgewerbeanzeige.yaml\n")
	if _, err := ForTenant(cfg3); err == nil || !strings.Contains(err.Error(), `register "gewerberegister" is not one of tenant demo's registers`) {
		t.Errorf("got %v, want a refusal of the gewerberegister spec", err)
	}
}

// TestTenantMappingFiles checks the tenant file's errors for mapping files.
func TestTenantMappingFiles(t *testing.T) {
	dir := t.TempDir()
	writeTenant(t, dir, tenantFile)
	for _, c := range []struct{ add, want string }{
		{"  - mappings/missing.yaml\n", "demo.yaml:10: mappings[2]: cannot read"},
		{"  - mappings/xmeld-zuzug.yaml\n", "demo.yaml:10: mappings[2]: mappings/xmeld-zuzug.yaml is listed twice"},
	} {
		doc := tenantFile + c.add
		path := filepath.Join(dir, "demo.yaml")
		_, err := tenant.Parse(path, []byte(doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v, want %q", err, c.want)
		}
	}
}

func TestSetDuplicate(t *testing.T) {
	a := mustCompile(t, filepath.Join(specDir, "xmeld-zuzug.yaml"))
	b := mustCompile(t, filepath.Join(specDir, "xmeld-zuzug.yaml"))
	if _, err := NewSet(a, b); err == nil {
		t.Error("two specs for one message type were accepted")
	}
}

// TestForInbox: an inbox that names its own specs maps with them (here the
// reader's view of a 0201, a Wegzug); an inbox that names none maps with
// the tenant's (the author's view, a Zuzug).
func TestForInbox(t *testing.T) {
	dir := t.TempDir()
	writeTenant(t, dir, tenantFile)
	leser, err := os.ReadFile(filepath.Join(specDir, "xmeld-leser.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "mappings", "xmeld-leser.yaml"), leser, 0o644); err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(tenantFile, "registers:", `  - {id: "eingang:05111000", type: xoev, category: Melderegister, transports: [xta]}
  - {id: "register:05111000", type: xoev, category: Melderegister, transports: [xta]}
registers:`, 1) + `access:
  rules:
    - {role: register-inbox, operations: [write], purposes: [meldewesen], legalBasis: "§ 33 BMG"}
inboxes:
  - {identity: "register:05111000", register: melderegister, writers: ["ags:05111000"], purpose: meldewesen}
  - {identity: "eingang:05111000", register: melderegister, writers: ["ags:05111000"], purpose: meldewesen, mappings: [mappings/xmeld-leser.yaml]}
`
	cfg := writeTenant(t, dir, doc)
	data, err := os.ReadFile(filepath.Join(xmeldDir, "01-rueckmeldung-anmeldung-0201.xml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ inbox, spec, attr string }{
		{"register:05111000", "xmeld-zuzug@1", "hauptwohnung"},
		{"eingang:05111000", "xmeld-leser@1", "wegzug"},
	} {
		in, _ := cfg.Inbox(c.inbox)
		set, err := ForInbox(cfg, in)
		if err != nil {
			t.Fatal(err)
		}
		sp, facts, err := set.MapXML(data)
		if err != nil || sp.Source() != c.spec || !slices.ContainsFunc(facts[0].Set, func(a register.Assignment) bool { return a.Attribute == c.attr && a.Value != nil }) {
			t.Errorf("inbox %s: %v %v %v", c.inbox, sp, facts, err)
		}
	}
}
