package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSchemasList runs `parzelle schemas` against the demo configuration,
// whose schema directories are ../shared/specs and the project's stand-ins
// for the XInneres modules that are not public.
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
		{"XMeld installed with the stand-ins", `(?m)^xmeld-2\.4\.3 +XMeld 2\.4\.3 .*\[STAND-INS in use for .*allgemeinername/2`},
		{"XPersonenstand installed with the stand-ins", `(?m)^xpersonenstand-1\.7\.5 .*\[STAND-INS in use`},
		{"nothing broken", `BROKEN \(0\)`},
		{"XGewerbeanzeige lacks a schema", `(?m)^XGewerbeanzeige 2\.2 \(http://www\.xgewerbeanzeige\.de/spezifikation/2\.2\): .* not installed`},
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
