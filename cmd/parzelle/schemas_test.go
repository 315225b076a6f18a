package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSchemasList runs `parzelle schemas` against the demo configuration,
// whose schema directory is ../shared/specs.
func TestSchemasList(t *testing.T) {
	config, err := filepath.Abs(filepath.Join("..", "..", "fixtures", "node.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := parzelle(t.TempDir(), nil, "schemas", "--config", config).CombinedOutput()
	if err != nil {
		t.Fatalf("parzelle schemas: %v\n%s", err, out)
	}
	text := string(out)
	cases := []struct{ name, pattern string }{
		{"XTA 2 V3 installed", `(?m)^xta2-v3 +XTA 2 Version 3 +http://xoev\.de/transport/xta/211 +2\.1\.1 +\S+/xta2/v3 `},
		{"XNachweis installed", `(?m)^xnachweis-1\.2\.0 +XNachweis 1\.2\.0 `},
		{"OSCI StoreDelivery installed", `(?m)^osci-1\.2-StoreDelivery +OSCI-Transport 1\.2 `},
		{"XMeld broken with libxml2's reason", `(?m)^xmeld-2\.4\.3 .*\n  broken/incomplete: http://www\.osci\.de/xinneres/\S+ cannot be resolved to a local file`},
		{"XGewerbeanzeige lacks a schema", `(?m)^XGewerbeanzeige 2\.2 \(http://www\.xgewerbeanzeige\.de/spezifikation/2\.2\): .* not installed`},
		{"XMeld types lack a schema", `(?m)^XMeld 2\.4\.3 \(http://www\.osci\.de/xmeld243\): .* schema set broken`},
		{"catalogs", `Catalogs: 2 loaded`},
	}
	for _, c := range cases {
		if !regexp.MustCompile(c.pattern).MatchString(text) {
			t.Errorf("%s: output does not match %s", c.name, c.pattern)
		}
	}
	if t.Failed() || strings.Contains(text, "INSTALLED (0)") {
		t.Logf("output:\n%s", text)
	}
}
