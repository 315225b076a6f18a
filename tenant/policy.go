package tenant

import (
	"slices"
	"strings"

	"github.com/parzelle/parzelle/strictyaml"
)

// What a tenant's policy does with a message whose schema is not installed.
const (
	// MissingSchemaWarn accepts the message and notes the gap in its
	// transport report (which turns yellow). The default.
	MissingSchemaWarn = "warn"
	// MissingSchemaRefuse refuses the message (XTA 9050).
	MissingSchemaRefuse = "refuse"
)

var missingSchemaValues = []string{MissingSchemaRefuse, MissingSchemaWarn}

// SchemaPolicy decides what happens to a message whose schema is not
// installed, the `schemas:` section of the tenant file:
//
//	schemas:
//	  missing: refuse   # or warn (the default)
//
// It applies to the XML content the tenant's accounts send; a message
// whose schema is installed is always validated and refused when invalid.
type SchemaPolicy struct {
	Missing string `yaml:"missing"`
}

// RefusesMissing reports whether messages without an installed schema are
// refused.
func (p SchemaPolicy) RefusesMissing() bool { return p.Missing == MissingSchemaRefuse }

func (c *Config) checkSchemaPolicy(pos *strictyaml.Positions) {
	switch {
	case c.Schemas.Missing == "":
		c.Schemas.Missing = MissingSchemaWarn
	case !slices.Contains(missingSchemaValues, c.Schemas.Missing):
		pos.Errorf("schemas.missing", "%q is not a policy for messages without an installed schema: use %s", c.Schemas.Missing, strings.Join(missingSchemaValues, " or "))
	}
}
