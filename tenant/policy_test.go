package tenant

import (
	"strings"
	"testing"
)

// TestSchemaPolicy parses the schemas section: warn by default, refuse
// when asked, anything else an error with file, line and field.
func TestSchemaPolicy(t *testing.T) {
	const head = "id: policy\nname: Policy Test\nidentities:\n  - {id: \"ags:01001000\", type: xoev, category: Meldebehörde, transports: [xta]}\n"
	cases := []struct {
		name, section string
		refuses       bool
		err           string
	}{
		{"default", "", false, ""},
		{"empty section", "schemas: {}\n", false, ""},
		{"warn", "schemas:\n  missing: warn\n", false, ""},
		{"refuse", "schemas:\n  missing: refuse\n", true, ""},
		{"wrong value", "schemas:\n  missing: reject\n", false, `policy.yaml:6: schemas.missing: "reject" is not a policy for messages without an installed schema: use refuse or warn`},
		{"unknown field", "schemas:\n  missng: refuse\n", false, "policy.yaml:6: schemas.missng"},
		{"wrong type", "schemas:\n  missing: [refuse]\n", false, "policy.yaml:6: schemas.missing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse("policy.yaml", []byte(head+c.section))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("got %v, want an error containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Schemas.RefusesMissing() != c.refuses {
				t.Errorf("RefusesMissing() = %v, want %v", cfg.Schemas.RefusesMissing(), c.refuses)
			}
			if want := map[bool]string{true: MissingSchemaRefuse, false: MissingSchemaWarn}[c.refuses]; cfg.Schemas.Missing != want {
				t.Errorf("Missing = %q, want %q", cfg.Schemas.Missing, want)
			}
		})
	}
}
