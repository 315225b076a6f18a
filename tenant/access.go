package tenant

import (
	"fmt"
	"hash"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/parzelle/parzelle/strictyaml"
)

// The operations on register data an access rule can allow.
const (
	// OpRead is reading one record or its history.
	OpRead = "read"
	// OpSearch is finding records by a blind index (IDNr, name and birth date).
	OpSearch = "search"
	// OpExport is taking register data out in bulk (e.g. for the Datenschutzcockpit).
	OpExport = "export"
	// OpWrite is creating, changing or deleting records.
	OpWrite = "write"
	// OpErase is erasing a record for good by an erasure order: its
	// versions, facts and index entries, unlike a deletion, which ends it.
	OpErase = "erase"
)

// Operations are every operation an access rule can name, in a fixed order.
var Operations = []string{OpRead, OpSearch, OpExport, OpWrite, OpErase}

// The register types a tenant can declare.
const (
	// RegisterPerson is a register of persons (e.g. the Melderegister).
	RegisterPerson = "person"
	// RegisterBusiness is a register of businesses (e.g. the Gewerberegister).
	RegisterBusiness = "business"
)

var registerTypes = []string{RegisterPerson, RegisterBusiness}

var (
	registerPattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	// roles and purposes: a word such as fachverfahren or auskunft-behoerde
	namePattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._-]{0,62}$`)
)

// RegisterDecl is one register a tenant keeps, an entry of the `registers:`
// section of its file:
//
//	registers:
//	  - name: melderegister    # [a-z][a-z0-9-]*, unique in the tenant
//	    type: person           # person | business
type RegisterDecl struct {
	Name string `yaml:"name" conf:"required" json:"name"`
	Type string `yaml:"type" conf:"required" json:"type"`
	// Retention is how long the register keeps what it no longer needs.
	Retention Retention `yaml:"retention" json:"retention,omitzero"`
}

// Retention is when a register erases what it no longer needs, with its
// facts, index entries and content, auditing each erasure without the
// erased values; a zero period keeps that kind of data for good:
//
//	retention:
//	  ended: 1825d         # records deleted or merged this long ago
//	  superseded: 1825d    # versions superseded (corrected, changed) this long ago
//	  legalBasis: "§ 14 Abs. 2 BMG"
type Retention struct {
	Ended      time.Duration `yaml:"ended" json:"ended,omitempty"`
	Superseded time.Duration `yaml:"superseded" json:"superseded,omitempty"`
	// LegalBasis is the provision recorded with each erasure.
	LegalBasis string `yaml:"legalBasis" json:"legalBasis,omitempty"`
}

// Keeps reports whether the retention erases nothing.
func (r Retention) Keeps() bool { return r.Ended == 0 && r.Superseded == 0 }

// Access is the `access:` section of a tenant file: who may do what with
// the tenant's register data, and whose signed tokens identify people.
// Anything no rule allows is denied.
//
//	access:
//	  rules:
//	    - role: sachbearbeitung
//	      operations: [read, search]
//	      purposes: [auskunft]
//	      legalBasis: "§ 44 BMG"
//	      registers: [melderegister]   # optional; default: all registers
//	  tokens:
//	    - issuer: https://idp.example
//	      audience: parzelle
//	      keys: [idp.crt]              # certificates or PEM public keys
type Access struct {
	Rules  []AccessRule  `yaml:"rules"`
	Tokens []TokenIssuer `yaml:"tokens"`
}

// AccessRule allows one role some operations on some registers for some
// purposes, on a legal basis that is recorded with every access it allows.
type AccessRule struct {
	Role       string   `yaml:"role" conf:"required"`
	Operations []string `yaml:"operations" conf:"required"`
	Purposes   []string `yaml:"purposes" conf:"required"`
	LegalBasis string   `yaml:"legalBasis" conf:"required"`
	// Registers are the registers the rule covers; empty means all of the
	// tenant's registers.
	Registers []string `yaml:"registers"`
}

// Register returns the tenant's register with the name.
func (c *Config) Register(name string) (RegisterDecl, bool) {
	for _, r := range c.RegisterDecls {
		if r.Name == name {
			return r, true
		}
	}
	return RegisterDecl{}, false
}

// Registers returns the tenant's registers in the order its file lists
// them. The slice is shared: do not modify it.
func (c *Config) Registers() []RegisterDecl { return c.RegisterDecls }

// Actor is who acts on register data: a client certificate or a person
// with a signed token, acting for one tenant in a role and for a purpose.
type Actor struct {
	Tenant string `json:"tenant"`
	// Kind is "certificate" or "token".
	Kind string `json:"kind"`
	// Subject is the certificate's subject or the token's sub claim.
	Subject string `json:"subject"`
	Role    string `json:"role"`
	Purpose string `json:"purpose"`
}

// The kinds of actor.
const (
	// ActorCertificate is an actor authenticated by a client certificate.
	ActorCertificate = "certificate"
	// ActorToken is a person authenticated by a signed token.
	ActorToken = "token"
)

// Decision is the outcome of an authorization: whether the operation is
// allowed, on which legal basis, and why, in one sentence for the audit log.
type Decision struct {
	Allowed    bool   `json:"allowed"`
	LegalBasis string `json:"legalBasis,omitempty"`
	Reason     string `json:"reason"`
}

func deny(format string, args ...any) Decision {
	return Decision{Reason: fmt.Sprintf(format, args...)}
}

// Authorize decides whether the actor may perform the operation (OpRead,
// OpSearch, OpExport or OpWrite) on the tenant's register, by the tenant's
// access rules: allowed when a rule of the actor's role covers the
// operation, the register and the actor's purpose; denied otherwise.
func (c *Config) Authorize(a Actor, operation, register string) Decision {
	switch {
	case a.Tenant != c.ID:
		return deny("an actor of tenant %q may not access the data of tenant %q", a.Tenant, c.ID)
	case !slices.Contains(Operations, operation):
		return deny("%q is not an operation (known: %s)", operation, strings.Join(Operations, ", "))
	}
	if _, ok := c.Register(register); !ok {
		return deny("tenant %q has no register %q", c.ID, register)
	}
	if a.Kind == ActorEvidence {
		return c.authorizeEvidence(a, operation, register)
	}
	if a.Role == "" {
		return deny("the %s %q has no role in tenant %q", actorKind(a.Kind), a.Subject, c.ID)
	}
	var covering []*AccessRule
	hasRule := false
	for i := range c.Access.Rules {
		r := &c.Access.Rules[i]
		if r.Role != a.Role {
			continue
		}
		hasRule = true
		if slices.Contains(r.Operations, operation) && (len(r.Registers) == 0 || slices.Contains(r.Registers, register)) {
			covering = append(covering, r)
		}
	}
	switch {
	case !hasRule:
		return deny("role %q has no access to the register data of tenant %q", a.Role, c.ID)
	case len(covering) == 0:
		return deny("role %q may not %q in register %q", a.Role, operation, register)
	case a.Purpose == "":
		return deny("no purpose given: send the Parzelle-Purpose header with the purpose of the request (or, with a token, its purpose claim)")
	}
	for _, r := range covering {
		if slices.Contains(r.Purposes, a.Purpose) {
			return Decision{Allowed: true, LegalBasis: r.LegalBasis,
				Reason: fmt.Sprintf("role %q may %q in register %q for purpose %q (%s)", a.Role, operation, register, a.Purpose, r.LegalBasis)}
		}
	}
	return deny("purpose %q is not allowed for role %q to %q", a.Purpose, a.Role, operation)
}

func actorKind(kind string) string {
	if kind == ActorToken {
		return "token for"
	}
	return kind
}

// Actor returns the certificate's actor for the tenant, with the role of
// the tenant's client entry that lists it and the purpose given; false when
// the certificate has no grant for the tenant.
func (p *Principal) Actor(tenant, purpose string) (Actor, bool) {
	var found *Grant
	for i := range p.Grants {
		g := &p.Grants[i]
		if g.Tenant != tenant {
			continue
		}
		if found == nil || (found.Role == "" && g.Role != "") {
			found = g
		}
	}
	if found == nil {
		return Actor{}, false
	}
	return Actor{Tenant: tenant, Kind: ActorCertificate, Subject: p.Subject, Role: found.Role, Purpose: purpose}, true
}

// checkAccess checks the registers and access sections and the clients'
// roles, and loads the token issuers' keys, feeding them into h.
func (c *Config) checkAccess(pos *strictyaml.Positions, h hash.Hash) {
	declared := map[string]bool{}
	for i, r := range c.RegisterDecls {
		field := fmt.Sprintf("registers[%d]", i)
		if r.Name != "" && !registerPattern.MatchString(r.Name) {
			pos.Errorf(field+".name", "%q is not a register name: lower-case letters, digits and '-', up to 63 characters, starting with a letter", r.Name)
		}
		if declared[r.Name] {
			pos.Errorf(field+".name", "register %q is listed twice", r.Name)
		}
		declared[r.Name] = true
		if r.Type != "" && !slices.Contains(registerTypes, r.Type) {
			pos.Errorf(field+".type", "unknown register type %q (known: %s)", r.Type, strings.Join(registerTypes, ", "))
		}
		ret := r.Retention
		for _, p := range []struct {
			name string
			d    time.Duration
		}{{"ended", ret.Ended}, {"superseded", ret.Superseded}} {
			if p.d < 0 || (p.d > 0 && p.d < 24*time.Hour) {
				pos.Errorf(field+".retention."+p.name, "a retention of %s is too short: give at least a day (1d), or leave it out to keep that data", p.d)
			}
		}
		if !ret.Keeps() && strings.TrimSpace(ret.LegalBasis) == "" {
			pos.Errorf(field+".retention.legalBasis", "name the provision erasures are made under, e.g. \"§ 14 Abs. 2 BMG\"")
		}
	}
	roles := map[string]bool{}
	if len(c.Access.Rules) > 0 && len(c.RegisterDecls) == 0 {
		pos.Errorf("access.rules", "there are rules but no registers: declare the tenant's registers under registers:")
	}
	for i, r := range c.Access.Rules {
		field := fmt.Sprintf("access.rules[%d]", i)
		if r.Role != "" && !namePattern.MatchString(r.Role) {
			pos.Errorf(field+".role", "%q is not a role: a word of letters, digits and . _ -, starting with a letter", r.Role)
		}
		roles[r.Role] = true
		for j, op := range r.Operations {
			if !slices.Contains(Operations, op) {
				pos.Errorf(fmt.Sprintf("%s.operations[%d]", field, j), "unknown operation %q (known: %s)", op, strings.Join(Operations, ", "))
			} else if slices.Contains(r.Operations[:j], op) {
				pos.Errorf(fmt.Sprintf("%s.operations[%d]", field, j), "operation %q is listed twice", op)
			}
		}
		for j, p := range r.Purposes {
			if !namePattern.MatchString(p) {
				pos.Errorf(fmt.Sprintf("%s.purposes[%d]", field, j), "%q is not a purpose: a word of letters, digits and . _ -, starting with a letter", p)
			} else if slices.Contains(r.Purposes[:j], p) {
				pos.Errorf(fmt.Sprintf("%s.purposes[%d]", field, j), "purpose %q is listed twice", p)
			}
		}
		if r.LegalBasis != "" && strings.TrimSpace(r.LegalBasis) == "" {
			pos.Errorf(field+".legalBasis", "must not be blank: name the provision, e.g. \"§ 44 BMG\"")
		}
		for j, reg := range r.Registers {
			if !declared[reg] {
				pos.Errorf(fmt.Sprintf("%s.registers[%d]", field, j), "register %q is not one of this tenant's registers", reg)
			}
		}
	}
	for i, cl := range c.Clients {
		if cl.Role == "" {
			continue
		}
		field := fmt.Sprintf("clients[%d].role", i)
		if !namePattern.MatchString(cl.Role) {
			pos.Errorf(field, "%q is not a role: a word of letters, digits and . _ -, starting with a letter", cl.Role)
		} else if !roles[cl.Role] {
			pos.Errorf(field, "role %q has no rule under access.rules, so it would allow nothing", cl.Role)
		}
	}
	k := keyChecker{c: c, pos: pos, h: h, now: time.Now()}
	seen := map[string]bool{}
	for i := range c.Access.Tokens {
		c.Access.Tokens[i].check(&k, fmt.Sprintf("access.tokens[%d]", i), seen)
	}
}
