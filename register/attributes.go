package register

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// Register types a tenant can declare.
const (
	TypePerson   = "person"
	TypeBusiness = "business"
)

// Attributes are a record's attributes by name: strings, booleans, lists of
// strings and objects of strings, as the register type declares them.
type Attributes map[string]any

// kind is the type of an attribute value.
type kind int

const (
	kindText kind = iota
	kindDate      // a full date YYYY-MM-DD
	kindPartialDate
	kindBool
	kindIDNr
	kindTextList
	kindObject
	kindObjectList
)

// attribute declares one attribute of a register type.
type attribute struct {
	kind     kind
	code     []string        // allowed values of a coded text
	fields   map[string]kind // the fields of an object
	required []string        // required fields of an object
}

// schema declares a register type's attributes and which of them a record
// must have.
type schema struct {
	attributes map[string]attribute
	required   []string
}

var address = attribute{kind: kindObject, fields: map[string]kind{
	"strasse": kindText, "hausnummer": kindText, "zusatz": kindText, "postleitzahl": kindText,
	"wohnort": kindText, "ortsteil": kindText, "seit": kindPartialDate, "bis": kindPartialDate,
}, required: []string{"wohnort"}}

var schemas = map[string]schema{
	TypePerson: {attributes: map[string]attribute{
		"familienname":            {kind: kindText},
		"geburtsname":             {kind: kindText},
		"vornamen":                {kind: kindText},
		"doktorgrad":              {kind: kindText},
		"geburtsdatum":            {kind: kindPartialDate},
		"geburtsort":              {kind: kindText},
		"geschlecht":              {kind: kindText, code: []string{"m", "w", "d", "x"}},
		"staatsangehoerigkeit":    {kind: kindTextList},
		"idnr":                    {kind: kindIDNr},
		"auskunftssperre":         {kind: kindBool},
		"sterbedatum":             {kind: kindPartialDate},
		"hauptwohnung":            address,
		"nebenwohnungen":          {kind: kindObjectList, fields: address.fields, required: address.required},
		"familienstand":           {kind: kindText},
		"religionszugehoerigkeit": {kind: kindText},
	}, required: []string{"familienname"}},
	TypeBusiness: {attributes: map[string]attribute{
		"name":            {kind: kindText},
		"rechtsform":      {kind: kindText},
		"registernummer":  {kind: kindText},
		"taetigkeit":      {kind: kindText},
		"betriebsstaette": address,
		"status":          {kind: kindText, code: []string{"aktiv", "umgemeldet", "abgemeldet"}},
		"beginn":          {kind: kindPartialDate},
		"ende":            {kind: kindPartialDate},
		"inhaber":         {kind: kindObjectList, fields: map[string]kind{"familienname": kindText, "vornamen": kindText, "geburtsdatum": kindPartialDate, "name": kindText}},
		"auskunftssperre": {kind: kindBool},
	}, required: []string{"name"}},
}

// Types returns the register types there are.
func Types() []string {
	ts := make([]string, 0, len(schemas))
	for t := range schemas {
		ts = append(ts, t)
	}
	sort.Strings(ts)
	return ts
}

// RequiredAttributes returns the attributes every record of the register
// type must have.
func RequiredAttributes(registerType string) []string {
	return slices.Clone(schemas[registerType].required)
}

// AttributeNames returns the attributes records of the register type may
// have, sorted.
func AttributeNames(registerType string) []string {
	s := schemas[registerType]
	names := make([]string, 0, len(s.attributes))
	for n := range s.attributes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// FieldError is one attribute that is not what its register type declares.
type FieldError struct {
	Attribute string `json:"attribute"`
	Detail    string `json:"detail"`
}

// maxText bounds every text value: register attributes are names and
// addresses, not documents.
const maxText = 1000

var (
	partialDate = regexp.MustCompile(`^\d{4}(-\d{2}(-\d{2})?)?$`)
	idnrPattern = regexp.MustCompile(`^[1-9]\d{10}$`)
)

// check validates attribute changes against the register type: names the
// type declares, values of the declared kind; a nil value (JSON null)
// removes the attribute. It returns every problem, not just the first.
func (s schema) check(attrs Attributes) []FieldError {
	var errs []FieldError
	names := make([]string, 0, len(attrs))
	for n := range attrs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		v := attrs[name]
		a, ok := s.attributes[name]
		switch {
		case !ok:
			errs = append(errs, FieldError{name, "is not an attribute of this register"})
		case v == nil:
		default:
			if d := a.checkValue(v); d != "" {
				errs = append(errs, FieldError{name, d})
			}
		}
	}
	return errs
}

// complete reports the required attributes a record lacks.
func (s schema) complete(attrs Attributes) []FieldError {
	var errs []FieldError
	for _, name := range s.required {
		if attrs[name] == nil {
			errs = append(errs, FieldError{name, "is required"})
		}
	}
	return errs
}

func (a attribute) checkValue(v any) string {
	switch a.kind {
	case kindObject:
		return checkObject(v, a.fields, a.required)
	case kindObjectList:
		list, ok := v.([]any)
		if !ok {
			return "must be a list of objects"
		}
		for i, item := range list {
			if d := checkObject(item, a.fields, a.required); d != "" {
				return fmt.Sprintf("item %d: %s", i+1, d)
			}
		}
		return ""
	case kindTextList:
		list, ok := v.([]any)
		if !ok {
			return "must be a list of texts"
		}
		for i, item := range list {
			if d := checkScalar(kindText, item); d != "" {
				return fmt.Sprintf("item %d: %s", i+1, d)
			}
		}
		return ""
	}
	if d := checkScalar(a.kind, v); d != "" {
		return d
	}
	if a.code != nil && !slices.Contains(a.code, v.(string)) {
		return fmt.Sprintf("%q is not one of %s", v, strings.Join(a.code, ", "))
	}
	return ""
}

func checkObject(v any, fields map[string]kind, required []string) string {
	obj, ok := v.(map[string]any)
	if !ok {
		return "must be an object"
	}
	names := make([]string, 0, len(obj))
	for n := range obj {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		k, ok := fields[n]
		if !ok {
			return fmt.Sprintf("has no field %q", n)
		}
		if obj[n] == nil {
			continue
		}
		if d := checkScalar(k, obj[n]); d != "" {
			return fmt.Sprintf("field %q %s", n, d)
		}
	}
	for _, n := range required {
		if obj[n] == nil {
			return fmt.Sprintf("field %q is required", n)
		}
	}
	return ""
}

func checkScalar(k kind, v any) string {
	if k == kindBool {
		if _, ok := v.(bool); !ok {
			return "must be true or false"
		}
		return ""
	}
	s, ok := v.(string)
	if !ok {
		return "must be a text"
	}
	switch {
	case !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < ' ' }):
		return "contains control characters"
	case len(s) > maxText:
		return fmt.Sprintf("is longer than %d bytes", maxText)
	case k == kindText && strings.TrimSpace(s) == "":
		return "must not be empty"
	case k == kindPartialDate && !ValidPartialDate(s):
		return fmt.Sprintf("%q is not a date (YYYY-MM-DD, or YYYY-MM or YYYY when partly unknown)", s)
	case k == kindDate && !validDate(s):
		return fmt.Sprintf("%q is not a date (YYYY-MM-DD)", s)
	case k == kindIDNr && !ValidIDNr(s):
		return fmt.Sprintf("%q is not a valid Identifikationsnummer (11 digits, check digit per § 139b AO)", s)
	}
	return ""
}

func validDate(s string) bool {
	_, err := time.Parse(time.DateOnly, s)
	return err == nil
}

// ValidPartialDate reports whether s is a date as XÖV transmits partly
// known ones: YYYY-MM-DD, or YYYY-MM or YYYY when the rest is unknown.
func ValidPartialDate(s string) bool {
	if !partialDate.MatchString(s) {
		return false
	}
	switch len(s) {
	case 4:
		return s != "0000"
	case 7:
		_, err := time.Parse("2006-01", s)
		return err == nil
	}
	return validDate(s)
}

// ValidIDNr reports whether s is a well-formed steuerliche
// Identifikationsnummer: 11 digits, no leading zero, and the check digit
// of ISO 7064 MOD 11,10 over the first ten.
func ValidIDNr(s string) bool {
	if !idnrPattern.MatchString(s) {
		return false
	}
	return IDNrCheckDigit(s[:10]) == s[10]
}

// IDNrCheckDigit returns the check digit (ISO 7064 MOD 11,10) that
// completes ten digits to an Identifikationsnummer.
func IDNrCheckDigit(ten string) byte {
	product := 10
	for i := 0; i < 10; i++ {
		sum := (int(ten[i]-'0') + product) % 10
		if sum == 0 {
			sum = 10
		}
		product = (sum * 2) % 11
	}
	check := 11 - product
	if check == 10 {
		check = 0
	}
	return byte('0' + check)
}

// merge applies changes to a copy of attrs: a nil value removes the
// attribute.
func merge(attrs, changes Attributes) Attributes {
	out := make(Attributes, len(attrs)+len(changes))
	for k, v := range attrs {
		out[k] = v
	}
	for k, v := range changes {
		if v == nil {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}
