package tenant

import (
	"fmt"
	"hash"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parzelle/parzelle/strictyaml"
)

// Evidence is the `evidence:` section of a tenant file: the tenant as an
// XNachweis data provider — the evidence types it offers, who may ask for
// which under which legal basis and how often, and whose seal makes an
// IssuedToken valid.
//
//	evidence:
//	  provider: {scheme: "urn:cef.eu:names:identifier:EAS:0204", id: 991-05111-00, name: Meldebehörde Düsseldorf}
//	  identity: nachweis:05111000        # optional: an XTA identity taking requests as messages
//	  tokens:                            # the Vermittlungsstelle's seal
//	    issuer: https://vermittlungsstelle.example
//	    keys: [vermittlungsstelle.crt]
//	  types:
//	    - id: meldebescheinigung
//	      register: melderegister
//	      document: meldebescheinigung   # a kind of EvidenceDocuments
//	      classification: https://sr.oots.tech.ec.europa.eu/evidencetypeclassifications/ec/…
//	      title: Meldebescheinigung
//	      fields: [familienname, vornamen, geburtsdatum, hauptwohnung]
//	      auskunftssperre: {disclose: ["§ 34 Abs. 1 BMG"]}   # default: refuse
//	  requesters:
//	    - {scheme: …, id: 991-12345-67, name: …, clients: [buergerbuero], accounts: [ags:09162000],
//	       grants: [{type: meldebescheinigung, purposes: [wohnsitznachweis], legalBasis: "§ 34 BMG"}],
//	       quota: {perMinute: 600, perDay: 10000}}
//	  connectionNodes: {clients: [noots-scn], accounts: []}
//
// A request is answered only for a requester the request names, that the
// caller may speak for (one of its clients or accounts, or a connection
// node), holding a grant for the evidence type and for the IssuedToken's
// purpose. InsecureTestMode skips the IssuedToken's check: the console and
// the metric parzelle_xnachweis_insecure_test_mode show it.
type Evidence struct {
	Provider         EvidenceAgent       `yaml:"provider" conf:"required"`
	Identity         string              `yaml:"identity"`
	Tokens           EvidenceTokens      `yaml:"tokens"`
	InsecureTestMode bool                `yaml:"insecureTestMode"`
	Types            []EvidenceType      `yaml:"types" conf:"required"`
	Requesters       []EvidenceRequester `yaml:"requesters" conf:"required"`
	ConnectionNodes  EvidenceCallers     `yaml:"connectionNodes"`
}

// EvidenceAgent is a party of XNachweis: an identifier in an EAS scheme
// and a name.
type EvidenceAgent struct {
	Scheme string `yaml:"scheme" conf:"required"`
	ID     string `yaml:"id" conf:"required"`
	Name   string `yaml:"name" conf:"required"`
}

// Is reports whether the agent has the scheme and identifier.
func (a EvidenceAgent) Is(scheme, id string) bool {
	return a.Scheme == strings.TrimSpace(scheme) && a.ID == strings.TrimSpace(id)
}

// String is the agent's identifier with its scheme.
func (a EvidenceAgent) String() string { return a.Scheme + ":" + a.ID }

// EvidenceTokens are the issuer and keys of the sealed IssuedTokens the
// Vermittlungsstelle issues: certificates or PEM public keys, relative to
// the tenant file.
type EvidenceTokens struct {
	Issuer string   `yaml:"issuer"`
	Keys   []string `yaml:"keys"`

	keys []tokenKey
}

// EvidenceType is one evidence type the tenant offers.
type EvidenceType struct {
	ID       string `yaml:"id" conf:"required"`
	Register string `yaml:"register" conf:"required"`
	// Document is the kind of evidence document built (EvidenceDocuments).
	Document string `yaml:"document" conf:"required"`
	// Classification is the EvidenceTypeClassification a request names.
	Classification string `yaml:"classification" conf:"required"`
	// Identifier, if set, must also match the request's evidence type
	// Identifier (a UUID of the data service).
	Identifier string `yaml:"identifier"`
	Title      string `yaml:"title" conf:"required"`
	// Formats are the media types offered (default application/xml).
	Formats []string `yaml:"formats"`
	// Fields are the register attributes the document shows: a subset of
	// what its kind allows (data minimisation).
	Fields          []string        `yaml:"fields" conf:"required"`
	Auskunftssperre EvidenceBlocked `yaml:"auskunftssperre"`
}

// EvidenceBlocked says who gets evidence about a person whose record
// carries an Auskunftssperre: requesters whose grant names one of the legal
// bases in Disclose; everybody else is answered as if there were no such
// person.
type EvidenceBlocked struct {
	Disclose []string `yaml:"disclose"`
}

// Discloses reports whether a grant on the legal basis may receive
// evidence about a blocked person.
func (t *EvidenceType) Discloses(legalBasis string) bool {
	return slices.Contains(t.Auskunftssperre.Disclose, legalBasis)
}

// Offers reports whether the type is offered in the media type.
func (t *EvidenceType) Offers(format string) bool { return slices.Contains(t.Formats, format) }

// EvidenceRequester is an authority that may ask for evidence: its
// XNachweis identity, the transport clients and XTA accounts that speak for
// it, what it may ask for and how often.
type EvidenceRequester struct {
	Scheme   string          `yaml:"scheme" conf:"required"`
	ID       string          `yaml:"id" conf:"required"`
	Name     string          `yaml:"name" conf:"required"`
	Clients  []string        `yaml:"clients"`
	Accounts []string        `yaml:"accounts"`
	Grants   []EvidenceGrant `yaml:"grants" conf:"required"`
	Quota    EvidenceQuota   `yaml:"quota"`
}

// EvidenceGrant lets a requester ask for one evidence type for some
// purposes on a legal basis, which is recorded with every answer.
type EvidenceGrant struct {
	Type       string   `yaml:"type" conf:"required"`
	Purposes   []string `yaml:"purposes" conf:"required"`
	LegalBasis string   `yaml:"legalBasis" conf:"required"`
}

// EvidenceQuota bounds a requester's requests: PerMinute (with bursts of
// Burst, default a tenth of a minute's) on each node, PerDay across the
// cluster. Zero means no bound.
type EvidenceQuota struct {
	PerMinute int `yaml:"perMinute"`
	Burst     int `yaml:"burst"`
	PerDay    int `yaml:"perDay"`
}

// EvidenceCallers are transport clients (by clients[].name) and XTA
// accounts.
type EvidenceCallers struct {
	Clients  []string `yaml:"clients"`
	Accounts []string `yaml:"accounts"`
}

// EvidenceDocument is a kind of evidence document: the register type it is
// made from and the most it may show.
type EvidenceDocument struct {
	RegisterType string
	Fields       []string
}

// EvidenceDocuments are the kinds of evidence documents the node builds.
// A Meldebescheinigung shows at most the data § 18 Abs. 1 and 2 BMG allow
// (no IDNr, no blocking notices, no relatives); a Gewerbeauskunft the
// business's registration (§ 14 Abs. 5 GewO).
var EvidenceDocuments = map[string]EvidenceDocument{
	"meldebescheinigung": {RegisterType: RegisterPerson, Fields: []string{"familienname", "geburtsname", "vornamen", "doktorgrad",
		"ordensname", "kuenstlername", "geburtsdatum", "geburtsort", "geschlecht", "staatsangehoerigkeit", "familienstand",
		"religionszugehoerigkeit", "hauptwohnung", "nebenwohnungen", "vorherigeHauptwohnung", "sterbedatum"}},
	"gewerbeauskunft": {RegisterType: RegisterBusiness, Fields: []string{"name", "rechtsform", "registernummer", "taetigkeit",
		"betriebsstaette", "status", "beginn", "ende", "inhaber"}},
}

// The XNachweis identifier formats the configuration checks.
var (
	easPattern            = regexp.MustCompile(`^urn:cef\.eu:names:identifier:EAS:\S+$`)
	classificationPattern = regexp.MustCompile(`^https://sr\.oots\.tech\.ec\.europa\.eu/evidencetypeclassifications/ec/\S+$`)
	uuidPattern           = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	mediaTypePattern      = regexp.MustCompile(`^[a-z]+/[a-z0-9.+-]+$`)
)

// EvidenceFormatXML is the media type of the structured evidence document.
const EvidenceFormatXML = "application/xml"

// EvidenceProvider returns the tenant's evidence section, nil when the
// tenant answers no evidence requests.
func (c *Config) EvidenceProvider() *Evidence {
	if !c.Evidence.configured() {
		return nil
	}
	return &c.Evidence
}

func (e *Evidence) configured() bool {
	return e.Provider != (EvidenceAgent{}) || len(e.Types) > 0 || len(e.Requesters) > 0
}

// Type returns the evidence type a request's classification (and
// identifier, where the type names one) asks for.
func (e *Evidence) Type(classification, identifier string) *EvidenceType {
	for i := range e.Types {
		t := &e.Types[i]
		if t.Classification == strings.TrimSpace(classification) && (t.Identifier == "" || strings.EqualFold(t.Identifier, strings.TrimSpace(identifier))) {
			return t
		}
	}
	return nil
}

// TypeByID returns the evidence type with the id.
func (e *Evidence) TypeByID(id string) *EvidenceType {
	for i := range e.Types {
		if e.Types[i].ID == id {
			return &e.Types[i]
		}
	}
	return nil
}

// Requester returns the requester with the scheme and identifier.
func (e *Evidence) Requester(scheme, id string) *EvidenceRequester {
	for i := range e.Requesters {
		if e.Requesters[i].Agent().Is(scheme, id) {
			return &e.Requesters[i]
		}
	}
	return nil
}

// Agent is the requester's XNachweis identity.
func (r *EvidenceRequester) Agent() EvidenceAgent {
	return EvidenceAgent{Scheme: r.Scheme, ID: r.ID, Name: r.Name}
}

// Grant returns the requester's grant for the evidence type.
func (r *EvidenceRequester) Grant(typeID string) *EvidenceGrant {
	for i := range r.Grants {
		if r.Grants[i].Type == typeID {
			return &r.Grants[i]
		}
	}
	return nil
}

// SpeaksFor reports whether a transport client (by its name in clients:)
// or an XTA account may present the requester's requests: one of its own,
// or a connection node of the tenant.
func (e *Evidence) SpeaksFor(r *EvidenceRequester, client, account string) bool {
	switch {
	case client != "":
		return slices.Contains(r.Clients, client) || slices.Contains(e.ConnectionNodes.Clients, client)
	case account != "":
		return slices.Contains(r.Accounts, account) || slices.Contains(e.ConnectionNodes.Accounts, account)
	}
	return false
}

// Caller reports whether a transport client or XTA account may present
// evidence requests of the tenant at all.
func (e *Evidence) Caller(client, account string) bool {
	for i := range e.Requesters {
		if e.SpeaksFor(&e.Requesters[i], client, account) {
			return true
		}
	}
	return false
}

// TokenKeys returns the Vermittlungsstelle's keys that can verify a token
// signed with alg and are valid at now.
func (e *Evidence) TokenKeys(alg string, now time.Time) jwt.VerificationKeySet {
	ti := TokenIssuer{keys: e.Tokens.keys}
	return ti.keysFor(alg, now)
}

// EvidenceRole is the role of an actor that reads register data to answer
// an evidence request; its access is decided by the evidence section, not
// by access.rules (AuthorizeEvidence).
const EvidenceRole = "xnachweis"

// ActorEvidence is an evidence requester asking through XNachweis: Subject
// is the requester's identifier with its scheme, Role the evidence type's
// id, Purpose the IssuedToken's purpose.
const ActorEvidence = "evidence-requester"

// authorizeEvidence decides an evidence requester's read of the register:
// allowed when the requester holds a grant for the evidence type (the
// actor's role) covering the purpose, and the type is made from the
// register.
func (c *Config) authorizeEvidence(a Actor, operation, register string) Decision {
	e := c.EvidenceProvider()
	if e == nil {
		return deny("tenant %q answers no evidence requests", c.ID)
	}
	if operation != OpRead {
		return deny("an evidence requester may only read")
	}
	t := e.TypeByID(a.Role)
	if t == nil || t.Register != register {
		return deny("evidence type %q is not made from register %q", a.Role, register)
	}
	for i := range e.Requesters {
		r := &e.Requesters[i]
		if r.Agent().String() != a.Subject {
			continue
		}
		g := r.Grant(t.ID)
		switch {
		case g == nil:
			return deny("requester %s may not ask for evidence type %q", a.Subject, t.ID)
		case !slices.Contains(g.Purposes, a.Purpose):
			return deny("requester %s may not ask for evidence type %q for purpose %q", a.Subject, t.ID, a.Purpose)
		}
		return Decision{Allowed: true, LegalBasis: g.LegalBasis,
			Reason: fmt.Sprintf("requester %s may ask for evidence type %q for purpose %q (%s)", a.Subject, t.ID, a.Purpose, g.LegalBasis)}
	}
	return deny("%s is not an evidence requester of tenant %q", a.Subject, c.ID)
}

// checkEvidence checks the evidence section and loads the token keys,
// feeding them into h.
func (c *Config) checkEvidence(pos *strictyaml.Positions, h hash.Hash) {
	e := &c.Evidence
	if !e.configured() {
		return
	}
	agent := func(field string, a EvidenceAgent) {
		if a.Scheme != "" && !easPattern.MatchString(a.Scheme) {
			pos.Errorf(field+".scheme", "%q is not an EAS scheme such as urn:cef.eu:names:identifier:EAS:0204", a.Scheme)
		}
		if a.ID != "" && strings.TrimSpace(a.ID) != a.ID {
			pos.Errorf(field+".id", "%q has leading or trailing white space", a.ID)
		}
	}
	agent("evidence.provider", e.Provider)
	if len(c.Keys.Signing) == 0 {
		pos.Errorf("evidence", "evidence documents and answers are signed: configure the tenant's signing key under keys.signing")
	}
	if e.Identity != "" {
		owned := false
		for _, id := range c.Identities {
			owned = owned || (id.ID == e.Identity && slices.Contains(id.Transports, "xta"))
			if id.ID == e.Identity && id.OSCI.CipherCertificate != "" {
				pos.Errorf("evidence.identity", "%q has an OSCI postbox; evidence requests come over HTTPS or XTA only", e.Identity)
			}
		}
		if !owned {
			pos.Errorf("evidence.identity", "%q is not one of this tenant's identities reachable over xta", e.Identity)
		}
		if _, ok := c.Inbox(e.Identity); ok {
			pos.Errorf("evidence.identity", "%q is a register inbox already; give evidence requests an identity of their own", e.Identity)
		}
	}
	switch {
	case !e.InsecureTestMode && len(e.Tokens.Keys) == 0:
		pos.Errorf("evidence.tokens.keys", "name the Vermittlungsstelle's seal certificates: every request's IssuedToken is checked against them (only insecureTestMode: true skips that check, for tests)")
	case !e.InsecureTestMode && e.Tokens.Issuer == "":
		pos.Errorf("evidence.tokens.issuer", "name the Vermittlungsstelle as the tokens' issuer (their iss claim)")
	}
	k := keyChecker{c: c, pos: pos, h: h, now: time.Now()}
	for i, rel := range e.Tokens.Keys {
		field := fmt.Sprintf("evidence.tokens.keys[%d]", i)
		data, path, ok := k.read(field, rel)
		if !ok {
			continue
		}
		keys, err := parseTokenKeys(data, k.now)
		if err != nil {
			pos.Errorf(field, "%s: %v", path, err)
			continue
		}
		e.Tokens.keys = append(e.Tokens.keys, keys...)
	}
	types := map[string]*EvidenceType{}
	for i := range e.Types {
		t := &e.Types[i]
		field := fmt.Sprintf("evidence.types[%d]", i)
		if t.ID != "" && !namePattern.MatchString(t.ID) {
			pos.Errorf(field+".id", "%q is not an evidence type id: a word such as meldebescheinigung", t.ID)
		}
		if types[t.ID] != nil {
			pos.Errorf(field+".id", "evidence type %q is listed twice", t.ID)
		}
		types[t.ID] = t
		for j := range e.Types[:i] {
			if o := &e.Types[j]; o.Classification == t.Classification && o.Identifier == t.Identifier {
				pos.Errorf(field+".classification", "evidence types %q and %q have the same classification and identifier: a request could not tell them apart", o.ID, t.ID)
			}
		}
		if t.Classification != "" && !classificationPattern.MatchString(t.Classification) {
			pos.Errorf(field+".classification", "%q is not an EvidenceTypeClassification (https://sr.oots.tech.ec.europa.eu/evidencetypeclassifications/ec/…)", t.Classification)
		}
		if t.Identifier != "" && !uuidPattern.MatchString(t.Identifier) {
			pos.Errorf(field+".identifier", "%q is not a UUID", t.Identifier)
		}
		doc, known := EvidenceDocuments[t.Document]
		if t.Document != "" && !known {
			pos.Errorf(field+".document", "unknown evidence document %q (known: %s)", t.Document, strings.Join(evidenceDocumentNames(), ", "))
		}
		reg, ok := c.Register(t.Register)
		switch {
		case t.Register != "" && !ok:
			pos.Errorf(field+".register", "the tenant declares no register %q", t.Register)
		case ok && known && reg.Type != doc.RegisterType:
			pos.Errorf(field+".document", "a %s is made from a %s register, but %q is a %s register", t.Document, doc.RegisterType, t.Register, reg.Type)
		}
		if len(t.Formats) == 0 {
			t.Formats = []string{EvidenceFormatXML}
		}
		for j, f := range t.Formats {
			if f != EvidenceFormatXML {
				pos.Errorf(fmt.Sprintf("%s.formats[%d]", field, j), "format %q is not offered: this node builds %s evidence documents", f, EvidenceFormatXML)
			}
		}
		for j, f := range t.Fields {
			if known && !slices.Contains(doc.Fields, f) {
				pos.Errorf(fmt.Sprintf("%s.fields[%d]", field, j), "a %s may not show %q (it may show: %s)", t.Document, f, strings.Join(doc.Fields, ", "))
			} else if slices.Contains(t.Fields[:j], f) {
				pos.Errorf(fmt.Sprintf("%s.fields[%d]", field, j), "field %q is listed twice", f)
			}
		}
		for j, b := range t.Auskunftssperre.Disclose {
			if strings.TrimSpace(b) == "" {
				pos.Errorf(fmt.Sprintf("%s.auskunftssperre.disclose[%d]", field, j), "must not be blank: name the legal basis, e.g. \"§ 34 Abs. 1 BMG\"")
			}
		}
	}
	clients := map[string]bool{}
	for _, cl := range c.Clients {
		clients[cl.Name] = true
	}
	callers := func(field string, cs EvidenceCallers) {
		for j, name := range cs.Clients {
			if !clients[name] {
				pos.Errorf(fmt.Sprintf("%s.clients[%d]", field, j), "%q is not the name of one of this tenant's clients", name)
			}
		}
		for j, acc := range cs.Accounts {
			if !identityPattern.MatchString(acc) {
				pos.Errorf(fmt.Sprintf("%s.accounts[%d]", field, j), "%q is not an XTA account such as ags:09162000", acc)
			}
		}
	}
	callers("evidence.connectionNodes", e.ConnectionNodes)
	for i := range e.Requesters {
		r := &e.Requesters[i]
		field := fmt.Sprintf("evidence.requesters[%d]", i)
		agent(field, r.Agent())
		for j := range e.Requesters[:i] {
			if e.Requesters[j].Agent().String() == r.Agent().String() {
				pos.Errorf(field+".id", "requester %s is listed twice", r.Agent())
			}
		}
		callers(field, EvidenceCallers{Clients: r.Clients, Accounts: r.Accounts})
		if len(r.Clients) == 0 && len(r.Accounts) == 0 && len(e.ConnectionNodes.Clients) == 0 && len(e.ConnectionNodes.Accounts) == 0 {
			pos.Errorf(field, "nobody may present this requester's requests: name its clients or accounts, or connection nodes")
		}
		for j, g := range r.Grants {
			gf := fmt.Sprintf("%s.grants[%d]", field, j)
			if g.Type != "" && types[g.Type] == nil {
				pos.Errorf(gf+".type", "%q is not one of the tenant's evidence types", g.Type)
			}
			if r.Grant(g.Type) != &r.Grants[j] {
				pos.Errorf(gf+".type", "evidence type %q is granted twice", g.Type)
			}
			for k, p := range g.Purposes {
				if !namePattern.MatchString(p) {
					pos.Errorf(fmt.Sprintf("%s.purposes[%d]", gf, k), "%q is not a purpose: a word of letters, digits and . _ -, starting with a letter", p)
				}
			}
			if g.LegalBasis != "" && strings.TrimSpace(g.LegalBasis) == "" {
				pos.Errorf(gf+".legalBasis", "must not be blank: name the provision, e.g. \"§ 34 BMG\"")
			}
		}
		q := &r.Quota
		if q.PerMinute < 0 || q.PerDay < 0 || q.Burst < 0 {
			pos.Errorf(field+".quota", "quotas cannot be negative")
		}
		if q.Burst > 0 && q.PerMinute == 0 {
			pos.Errorf(field+".quota.burst", "a burst needs perMinute")
		}
		if q.PerMinute > 0 && q.Burst == 0 {
			q.Burst = max(1, q.PerMinute/10)
		}
	}
}

func evidenceDocumentNames() []string {
	var out []string
	for n := range EvidenceDocuments {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}
