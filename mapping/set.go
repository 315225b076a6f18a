package mapping

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"sync"

	"github.com/parzelle/parzelle/register"
	"github.com/parzelle/parzelle/tenant"
	"github.com/parzelle/parzelle/xmlsafe"
)

// Set is one tenant's mapping specs, keyed by the message type they map
// (namespace and root element). A Set is safe for concurrent use.
type Set struct {
	specs  []*Spec
	byRoot map[xml.Name]*Spec
}

// NewSet collects specs; two specs for the same message type are an error.
func NewSet(specs ...*Spec) (*Set, error) {
	s := &Set{byRoot: make(map[xml.Name]*Spec, len(specs))}
	for _, sp := range specs {
		for _, root := range sp.Roots {
			if other, dup := s.byRoot[root]; dup {
				return nil, fmt.Errorf("mapping: %s and %s both map {%s}%s", other.File, sp.File, root.Space, root.Local)
			}
			s.byRoot[root] = sp
		}
		s.specs = append(s.specs, sp)
	}
	return s, nil
}

// Specs returns the set's specs in the order they were given.
func (s *Set) Specs() []*Spec { return s.specs }

// Map maps a parsed message with the spec for its type; a message no spec
// maps is ErrNoSpec.
func (s *Set) Map(doc *xmlsafe.Element) (*Spec, []register.Fact, error) {
	sp, ok := s.byRoot[doc.Name]
	if !ok {
		return nil, nil, fmt.Errorf("%w: {%s}%s is none of the %d message types these specs map. Add a spec for it to the "+
			"tenant's mappings (or the inbox's), check it with `parzelle mapping lint --spec FILE` and try it with "+
			"`parzelle mapping test --spec FILE --message FILE`, then retry the dead letter (`parzelle dlq retry`)",
			ErrNoSpec, doc.Name.Space, doc.Name.Local, len(s.byRoot))
	}
	facts, err := sp.Map(doc)
	return sp, facts, err
}

// MapXML parses a message (within xmlsafe's default limits) and maps it.
// The tree lives in a pooled arena only while it is mapped: facts hold no
// part of it.
func (s *Set) MapXML(data []byte) (*Spec, []register.Fact, error) {
	arena := arenas.Get().(*xmlsafe.Arena)
	defer func() {
		arena.Reset()
		arenas.Put(arena)
	}()
	doc, err := parseMessage(data, arena)
	if err != nil {
		return nil, nil, err
	}
	return s.Map(doc)
}

// arenas lend mapped messages their trees.
var arenas = sync.Pool{New: func() any { return new(xmlsafe.Arena) }}

// ParseMessage parses a message for mapping: xmlsafe's default limits, no
// node preservation.
func ParseMessage(data []byte) (*xmlsafe.Element, error) { return parseMessage(data, nil) }

func parseMessage(data []byte, arena *xmlsafe.Arena) (*xmlsafe.Element, error) {
	doc, err := xmlsafe.Parse(bytes.NewReader(data), xmlsafe.Options{Arena: arena})
	if err != nil {
		return nil, fmt.Errorf("mapping: parsing the message: %w", err)
	}
	return doc, nil
}

// tenantSets caches each tenant's compiled sets (its own and its inboxes')
// by configuration version: a new version (an edited spec file) compiles
// anew.
var tenantSets = struct {
	sync.Mutex
	m map[string]cachedSet // by tenant id and inbox identity
}{m: map[string]cachedSet{}}

type cachedSet struct {
	sha string
	set *Set
	err error
}

// ForTenant returns the compiled specs the tenant's file names under
// `mappings:`, checked against the tenant's registers. The result is
// cached per tenant and configuration version (Config.SHA256).
func ForTenant(cfg *tenant.Config) (*Set, error) {
	return cached(cfg, "", cfg.MappingFiles())
}

// ForInbox returns the compiled specs the messages of one of the tenant's
// register inboxes are mapped with: the inbox's own, else the tenant's.
func ForInbox(cfg *tenant.Config, in tenant.Inbox) (*Set, error) {
	if in.MappingFiles() == nil {
		return ForTenant(cfg)
	}
	return cached(cfg, in.Identity, in.MappingFiles())
}

func cached(cfg *tenant.Config, inbox string, files []tenant.MappingFile) (*Set, error) {
	key := cfg.ID + "\x00" + inbox
	tenantSets.Lock()
	c, ok := tenantSets.m[key]
	tenantSets.Unlock()
	if ok && c.sha == cfg.SHA256 {
		return c.set, c.err
	}
	set, err := compileTenant(cfg, files)
	tenantSets.Lock()
	tenantSets.m[key] = cachedSet{sha: cfg.SHA256, set: set, err: err}
	tenantSets.Unlock()
	return set, err
}

func compileTenant(cfg *tenant.Config, files []tenant.MappingFile) (*Set, error) {
	var specs []*Spec
	var errs []error
	for _, f := range files {
		sp, err := Compile(f.Path, f.Data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		reg, ok := cfg.Register(sp.Register)
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s: register %q is not one of tenant %s's registers", f.Path, sp.Register, cfg.ID))
			continue
		case reg.Type != sp.RegisterType:
			errs = append(errs, fmt.Errorf("%s: register %q of tenant %s is of type %s, the spec maps to %s", f.Path, sp.Register, cfg.ID, reg.Type, sp.RegisterType))
			continue
		}
		specs = append(specs, sp)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("mapping: tenant %s: %w", cfg.ID, err)
	}
	return NewSet(specs...)
}
