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
	kind       kind
	code       []string            // allowed values of a coded text
	fields     map[string]kind     // the fields of an object
	fieldCodes map[string][]string // allowed values of an object's coded fields
	required   []string            // required fields of an object
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

// Kinds of Auskunftssperren (§§ 51, 52 BMG) and Übermittlungssperren (§§ 36,
// 42, 50 BMG), the art of a blocking notice. XMeld transmits both as one key
// of the DSMeld table 1801, which the mapping specs translate.
var (
	AuskunftssperreArten = []string{
		"gefahr",                     // § 51 Abs. 1 BMG: danger to life, health, personal freedom (DSMeld 3)
		"gefahr-sicherheitsbehoerde", // § 51 Abs. 1 with Abs. 3, on behalf of a security authority (11)
		"adoptionspflege",            // § 51 Abs. 5 Nr. 2 BMG, § 1758 Abs. 2 BGB (1)
		"annahme-als-kind",           // § 51 Abs. 5 Nr. 1 BMG, § 63 PStG (6)
		"geschlechtseintrag",         // § 51 Abs. 5 Nr. 1 BMG, TSG / § 63 Abs. 2 PStG (12)
		"bedingter-sperrvermerk",     // § 52 BMG: the address is in a protected facility
	}
	UebermittlungssperreArten = []string{
		"religionsgesellschaften", // § 42 Abs. 3 Satz 2 BMG (DSMeld 2)
		"jubilaeen",               // § 50 Abs. 2 BMG (5)
		"parteien",                // § 50 Abs. 1 BMG (7)
		"bundeswehr",              // § 36 Abs. 2 BMG (10)
		"adressbuchverlage",       // § 50 Abs. 3 BMG (13)
	}
)

// sperre declares a list of blocking notices: what kind, its key in the
// DSMeld table 1801 and legal basis, why, and the days it holds from and
// until (bis inclusive, as XMeld's frist).
func sperre(arten []string) attribute {
	return attribute{kind: kindObjectList, fields: map[string]kind{
		"art": kindText, "schluessel": kindText, "rechtsgrundlage": kindText, "grund": kindText,
		"ab": kindPartialDate, "bis": kindPartialDate,
	}, fieldCodes: map[string][]string{"art": arten}, required: []string{"art"}}
}

// relative declares a list of related persons (children, legal
// representatives) as the Melderegister keeps them (§ 3 Abs. 1 Nr. 9, 16
// BMG): names, birth date and, for representatives, their address.
var relative = attribute{kind: kindObjectList, fields: map[string]kind{
	"art": kindText, "familienname": kindText, "vornamen": kindText, "geburtsdatum": kindPartialDate,
	"geschlecht": kindText, "idnr": kindIDNr, "sterbedatum": kindPartialDate,
	"strasse": kindText, "hausnummer": kindText, "postleitzahl": kindText, "wohnort": kindText,
}, required: []string{"familienname"}}

var schemas = map[string]schema{
	TypePerson: {attributes: map[string]attribute{
		"familienname":         {kind: kindText},
		"geburtsname":          {kind: kindText},
		"vornamen":             {kind: kindText},
		"rufname":              {kind: kindText},
		"doktorgrad":           {kind: kindText},
		"ordensname":           {kind: kindText},
		"kuenstlername":        {kind: kindText},
		"geburtsdatum":         {kind: kindPartialDate},
		"geburtsort":           {kind: kindText},
		"geschlecht":           {kind: kindText, code: []string{"m", "w", "d", "x"}},
		"staatsangehoerigkeit": {kind: kindTextList},
		"idnr":                 {kind: kindIDNr},
		// ordnungsmerkmal is the Meldebehörde's own number of the person,
		// which identifies them as the IDNr does.
		"ordnungsmerkmal": {kind: kindText},
		// auskunftssperre is true while any Auskunftssperre holds; specs
		// of XMeld 2.4.3 before the typed lists set it, newer ones set
		// auskunftssperren.
		"auskunftssperre":       {kind: kindBool},
		"auskunftssperren":      sperre(AuskunftssperreArten),
		"uebermittlungssperren": sperre(UebermittlungssperreArten),
		"sterbedatum":           {kind: kindPartialDate},
		"sterbeort":             {kind: kindText},
		"hauptwohnung":          address,
		"nebenwohnungen":        {kind: kindObjectList, fields: address.fields, required: address.required},
		// vorherigeHauptwohnung is the last main residence outside the
		// Meldebehörde's area (§ 3 Abs. 1 Nr. 12 BMG).
		"vorherigeHauptwohnung": address,
		// wegzug is where and when the person moved away to.
		"wegzug": {kind: kindObject, fields: map[string]kind{
			"datum": kindPartialDate, "strasse": kindText, "hausnummer": kindText, "postleitzahl": kindText,
			"wohnort": kindText, "staat": kindText,
		}, required: []string{"datum"}},
		"familienstand":           {kind: kindText},
		"religionszugehoerigkeit": {kind: kindText},
		// partner is the spouse or registered partner, with the day and
		// place the marriage or partnership began (§ 3 Abs. 1 Nr. 14, 15 BMG).
		"partner": {kind: kindObject, fields: map[string]kind{
			"art": kindText, "familienname": kindText, "geburtsname": kindText, "vornamen": kindText,
			"geburtsdatum": kindPartialDate, "idnr": kindIDNr, "seit": kindPartialDate, "ort": kindText,
			"sterbedatum": kindPartialDate,
		}, fieldCodes: map[string][]string{"art": {"ehegatte", "lebenspartner"}}, required: []string{"familienname"}},
		"kinder":               relative,
		"gesetzlicheVertreter": relative,
		// ausweise are the identity documents issued (§ 3 Abs. 1 Nr. 17 BMG).
		"ausweise": {kind: kindObjectList, fields: map[string]kind{
			"art": kindText, "seriennummer": kindText, "behoerde": kindText,
			"ausstellungsdatum": kindPartialDate, "gueltigBis": kindPartialDate,
		}, required: []string{"art"}},
		// waffenrecht are the weapons and explosives permits and bans the
		// Melderegister notes (§ 3 Abs. 2 Nr. 2 BMG).
		"waffenrecht": {kind: kindObjectList, fields: map[string]kind{
			"art": kindText, "behoerde": kindText, "datum": kindPartialDate,
		}, fieldCodes: map[string][]string{"art": {"erlaubnis", "sprengstofferlaubnis", "besitzverbot"}}, required: []string{"art"}},
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

// isList reports whether the attribute is a list, which assignments can add
// items to and remove items from.
func (s schema) isList(name string) bool {
	k := s.attributes[name].kind
	return k == kindTextList || k == kindObjectList
}

// checkPattern validates what a removal from a list attribute matches its
// items by: some of an item's fields (or a text of a text list).
func (s schema) checkPattern(name string, v any) []FieldError {
	a := s.attributes[name]
	a.required = nil
	if a.kind == kindObjectList {
		a.kind = kindObject
	} else {
		a.kind = kindText
	}
	if d := a.checkValue(v); d != "" {
		return []FieldError{{name, d}}
	}
	return nil
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
		return a.checkObject(v)
	case kindObjectList:
		list, ok := v.([]any)
		if !ok {
			return "must be a list of objects"
		}
		for i, item := range list {
			if d := a.checkObject(item); d != "" {
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

func (a attribute) checkObject(v any) string {
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
		k, ok := a.fields[n]
		if !ok {
			return fmt.Sprintf("has no field %q", n)
		}
		if obj[n] == nil {
			continue
		}
		if d := checkScalar(k, obj[n]); d != "" {
			return fmt.Sprintf("field %q %s", n, d)
		}
		if codes := a.fieldCodes[n]; codes != nil && !slices.Contains(codes, obj[n].(string)) {
			return fmt.Sprintf("field %q: %q is not one of %s", n, obj[n], strings.Join(codes, ", "))
		}
	}
	for _, n := range a.required {
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
