package tenant

import (
	"fmt"
	"slices"

	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/strictyaml"
)

// Inbox makes one of the tenant's identities a register inbox, an entry of
// the `inboxes:` section of its file:
//
//	inboxes:
//	  - identity: register:05111000   # one of the tenant's identities (xta)
//	    register: melderegister       # the register its messages feed
//	    writers: [ags:05111000]       # author identities that may write to it
//	    purpose: meldewesen           # the purpose the pipeline acts for
//	    mappings: [...]               # optional: the inbox's own mapping specs
//
// A message an allowed writer sends to the identity is consumed by the
// pipeline and mapped into the register, always the register of the tenant
// that owns the inbox, whatever the message itself names. The pipeline acts
// in the role InboxRole, so the tenant's access rules must allow that role
// to write to the register for the purpose.
//
// An inbox maps its messages with the tenant's mapping specs unless it names
// its own: an inbox for what other Meldebehörden send about the tenant's
// residents applies a Rückmeldung as their reader (a Wegzug), the inbox of
// the tenant's own Fachverfahren as its author (a Zuzug).
type Inbox struct {
	Identity string   `yaml:"identity" conf:"required"`
	Register string   `yaml:"register" conf:"required"`
	Writers  []string `yaml:"writers" conf:"required"`
	Purpose  string   `yaml:"purpose" conf:"required"`
	// Mappings are the inbox's own mapping spec files, relative to the
	// tenant file (read them with MappingFiles).
	Mappings []string `yaml:"mappings"`

	mappingFiles []MappingFile
}

// MappingFiles returns the inbox's own mapping spec files, nil when it maps
// with the tenant's. The slice is shared: do not modify it.
func (in Inbox) MappingFiles() []MappingFile { return in.mappingFiles }

// InboxRole is the role the pipeline acts in when it writes a register
// inbox's messages to the register.
const InboxRole = "register-inbox"

// Inbox returns the inbox the identity is, if it is one of the tenant's.
func (c *Config) Inbox(identity string) (Inbox, bool) {
	for _, in := range c.Inboxes {
		if in.Identity == identity {
			return in, true
		}
	}
	return Inbox{}, false
}

// MayWrite reports whether the author identity may write to the inbox.
func (in Inbox) MayWrite(author string) bool { return slices.Contains(in.Writers, author) }

func (c *Config) checkInboxes(pos *strictyaml.Positions) {
	seen := map[string]bool{}
	for i, in := range c.Inboxes {
		field := fmt.Sprintf("inboxes[%d]", i)
		owned := false
		for _, id := range c.Identities {
			if id.ID == in.Identity {
				owned = slices.Contains(id.Transports, "xta")
				if cipher := id.OSCI.Cipher(); cipher != nil && !slices.ContainsFunc(c.DecryptionKeys(), func(kp *keys.KeyPair) bool { return kp.Certificate().Equal(cipher) }) {
					pos.Errorf(field+".identity", "%q is an OSCI postbox whose cipher certificate is none of keys.decryption: the node must decrypt what comes to a register inbox", in.Identity)
				}
			}
		}
		if !owned {
			pos.Errorf(field+".identity", "%q is not one of this tenant's identities reachable over xta", in.Identity)
		}
		if seen[in.Identity] {
			pos.Errorf(field+".identity", "identity %q is an inbox twice", in.Identity)
		}
		seen[in.Identity] = true
		if _, ok := c.Register(in.Register); !ok {
			pos.Errorf(field+".register", "the tenant declares no register %q", in.Register)
		}
		if in.Purpose != "" && !namePattern.MatchString(in.Purpose) {
			pos.Errorf(field+".purpose", "%q is not a purpose: a word such as meldewesen", in.Purpose)
		}
		allowed := false
		for _, r := range c.Access.Rules {
			if r.Role == InboxRole && slices.Contains(r.Operations, OpWrite) && slices.Contains(r.Purposes, in.Purpose) &&
				(len(r.Registers) == 0 || slices.Contains(r.Registers, in.Register)) {
				allowed = true
			}
		}
		if !allowed {
			pos.Errorf(field, "no access rule lets role %q write to register %q for purpose %q: add one to access.rules", InboxRole, in.Register, in.Purpose)
		}
	}
}
