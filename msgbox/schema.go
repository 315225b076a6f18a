package msgbox

import (
	"errors"
	"fmt"

	"github.com/parzelle/parzelle/tenant"
	"github.com/parzelle/parzelle/xmlschema"
)

// SchemaCheck is what the schema policy says of a document: the one rule
// for the transport that accepts a message and for the pipeline that
// applies it. A document whose schema is installed must be valid; one
// whose schema is not installed is refused or accepted with a warning, as
// the tenant's policy (schemas.missing) says.
type SchemaCheck struct {
	// XML is false for content that is not an XML document (up to its
	// root element): the policy does not apply to it.
	XML       bool
	Namespace string
	// Set is the installed schema set the document was validated against,
	// "" when none is installed for its namespace.
	Set string
	// Invalid is set when the document does not match Set.
	Invalid *xmlschema.ValidationError
	// Refused is set when no schema is installed and the policy refuses
	// such documents; Missing when the policy accepts them with a warning.
	Refused, Missing bool
}

// CheckSchema applies the registry and the policy to a document. An error
// is a failure to apply the schema (not the document's fault).
func CheckSchema(reg *xmlschema.Registry, policy tenant.SchemaPolicy, doc []byte) (SchemaCheck, error) {
	var c SchemaCheck
	c.Namespace, c.XML = xmlschema.RootNamespace(doc)
	if !c.XML {
		return c, nil
	}
	set, installed := reg.ForNamespace(c.Namespace)
	if !installed {
		c.Refused, c.Missing = policy.RefusesMissing(), !policy.RefusesMissing()
		return c, nil
	}
	c.Set = set
	err := reg.Validate(set, doc)
	if errors.As(err, &c.Invalid) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("msgbox: validate against %s: %w", set, err)
	}
	return c, nil
}
