// Package xmlschema validates documents against the official XSDs an
// operator installed in the configured schema directories. Each known
// schema set is found by its files, compiled once at start-up (libxml2) and
// shared by all goroutines. Imports with absolute locations resolve
// offline, through the XML catalogs found in the directories and entries
// the node generates for the namespaces it finds there; libxml2 is never
// allowed onto the network. A set that is not installed, or does not
// compile, is reported, never fetched. Modules that are not published can
// be filled in by stand-in schemas (a directory marked by StandInMarker);
// official files of the same namespace always win over them, and sets
// compiled with stand-ins say so.
package xmlschema

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// ErrNotInstalled is returned when a document's schema set is not installed.
var ErrNotInstalled = errors.New("xmlschema: schema set not installed")

// Problem is one thing the schema (or the XML parser) found wrong, where
// libxml2 detected it: for schema errors Line and Column point at the '>'
// that ends the start tag (or end tag) being checked; for well-formedness
// errors at the offending character. Zero means unknown.
type Problem struct {
	Line, Column int
	Message      string
}

func (p Problem) String() string {
	switch {
	case p.Line > 0 && p.Column > 0:
		return fmt.Sprintf("line %d, column %d: %s", p.Line, p.Column, p.Message)
	case p.Line > 0:
		return fmt.Sprintf("line %d: %s", p.Line, p.Message)
	}
	return p.Message
}

// ValidationError lists what the schema found wrong with a document.
type ValidationError struct {
	Set string
	// Problems are the first MaxProblems problems, in document order.
	Problems []Problem
	// Total counts every error, also those beyond Problems.
	Total int
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("xmlschema: not valid against %s: %s", e.Set, e.Summary(len(e.Problems)))
}

// Summary lists the first n problems and says how many more there are.
func (e *ValidationError) Summary(n int) string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i == n {
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.String())
	}
	if shown := min(n, len(e.Problems)); e.Total > shown {
		fmt.Fprintf(&b, " … and %d more", e.Total-shown)
	}
	return b.String()
}

// Installed describes a compiled set.
type Installed struct {
	Set
	Dir string
	// StandIns are the stand-in schemas (see StandInMarker) the set was
	// compiled with: the parts of documents they cover are validated only
	// approximately. Covers then says so too.
	StandIns []string
}

// Broken describes a set whose files were found but did not compile.
type Broken struct {
	Set
	Dir    string
	Reason string
}

// Registry holds the compiled schema sets. It is not changed after Load,
// so goroutines share it without locking.
type Registry struct {
	compiled  map[string]*schema
	installed []Installed
	broken    []Broken
	missing   []Set
	byNS      map[string][]string // document namespace → set names
	catalog   *Catalog
}

// loadMu serialises Loads: each replaces the catalog entries the previous
// one generated.
var loadMu sync.Mutex

// Load looks for every known set under dirs (searched recursively),
// makes the catalogs there effective and compiles what it finds. Sets it
// does not find are listed by Missing, sets that do not compile by Broken
// (with an ERROR log): neither stops the node. libxml2's catalog is
// process-wide, so mappings of earlier Loads stay in effect.
//
// Stand-in schemas (in a directory marked by StandInMarker) fill in for
// official modules that are not installed; an official schema of the same
// namespace anywhere in dirs always wins. Sets compiled with stand-ins are
// installed, with the stand-ins listed in Installed.StandIns.
func Load(dirs []string, log *slog.Logger) (*Registry, error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	loadMu.Lock()
	defer loadMu.Unlock()
	// Compiling writes a driver schema to a temporary directory: without
	// one every set would fail, and a node would run without its schemas.
	probe, err := os.MkdirTemp("", "parzelle-xsd-")
	if err != nil {
		return nil, fmt.Errorf("xmlschema: cannot write temporary files (TMPDIR=%q), which compiling the schemas needs: %w", os.Getenv("TMPDIR"), err)
	}
	os.RemoveAll(probe)
	r := &Registry{compiled: map[string]*schema{}, byNS: map[string][]string{}}
	xsds, catalogs, superseded, err := scan(dirs)
	if err != nil {
		return nil, err
	}
	r.catalog, err = installCatalog(xsds, catalogs)
	if err != nil {
		return nil, err
	}
	r.catalog.Superseded = superseded
	for _, s := range superseded {
		log.Info("stand-in schema not used: an official schema of its namespace is installed", "file", s)
	}
	namespaces := map[string]string{}
	markers := map[string]string{}
	for _, x := range xsds {
		namespaces[x.path] = x.namespace
		if _, ok := markers[filepath.Base(x.path)]; !ok {
			markers[filepath.Base(x.path)] = filepath.Dir(x.path)
		}
	}
	for _, set := range Known {
		dir, ok := markers[set.Marker]
		if !ok {
			r.missing = append(r.missing, set)
			log.Warn("schema set not installed: messages it covers cannot be validated", "set", set.Name, "namespace", set.Namespace, "version", set.Version, "looked_in", dirs)
			continue
		}
		s, err := compileSet(set, dir, namespaces)
		if err != nil {
			r.broken = append(r.broken, Broken{Set: set, Dir: dir, Reason: err.Error()})
			log.Error("schema set broken or incomplete: messages it covers cannot be validated", "set", set.Name, "dir", dir, "reason", err.Error())
			continue
		}
		r.compiled[set.Name] = s
		inst := Installed{Set: set, Dir: dir, StandIns: standInsReached(dir, set.Schemas, xsds, r.catalog)}
		if len(inst.StandIns) > 0 {
			names := make([]string, len(inst.StandIns))
			for i, f := range inst.StandIns {
				names[i] = namespaces[f]
			}
			sort.Strings(names)
			inst.Covers += fmt.Sprintf(" [STAND-INS in use for %s: those parts are validated approximately; install the official modules to replace them]", strings.Join(names, ", "))
			log.Warn("schema set compiled with stand-in schemas: validation of the parts they cover is approximate", "set", set.Name, "stand_ins", inst.StandIns)
		}
		r.installed = append(r.installed, inst)
		for _, ns := range set.Documents {
			r.byNS[ns] = append(r.byNS[ns], set.Name)
		}
		log.Debug("schema set installed", "set", set.Name, "version", set.Version, "dir", dir)
	}
	log.Info("schema sets loaded", "installed", len(r.installed), "broken", len(r.broken), "missing", len(r.missing),
		"catalogs", len(r.catalog.Files), "generated_catalog_entries", len(r.catalog.Mappings))
	return r, nil
}

// compileSet writes the set's driver schema (if it has several files) to
// a temporary directory and compiles it.
func compileSet(set Set, dir string, namespaces map[string]string) (*schema, error) {
	if len(set.Schemas) == 1 {
		return compileFile(filepath.Join(dir, set.Schemas[0]))
	}
	tmp, err := os.MkdirTemp("", "parzelle-xsd-")
	if err != nil {
		return nil, fmt.Errorf("xmlschema: %w", err)
	}
	defer os.RemoveAll(tmp)
	driver, err := writeDriver(tmp, dir, set.Schemas, namespaces)
	if err != nil {
		return nil, err
	}
	return compileFile(driver)
}

// writeDriver writes a schema that imports the given files: files of one
// namespace through a wrapper that includes them all (libxml2 imports a
// namespace only once).
func writeDriver(tmp, dir string, files []string, namespaces map[string]string) (string, error) {
	var order []string
	byNS := map[string][]string{}
	for _, f := range files {
		path := filepath.Join(dir, f)
		ns, ok := namespaces[path]
		if !ok {
			return "", fmt.Errorf("%s is missing from the set's directory", path)
		}
		if _, seen := byNS[ns]; !seen {
			order = append(order, ns)
		}
		byNS[ns] = append(byNS[ns], path)
	}
	var imports strings.Builder
	for i, ns := range order {
		location := byNS[ns][0]
		if len(byNS[ns]) > 1 {
			var b strings.Builder
			fmt.Fprintf(&b, `<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="%s">`, escape(ns))
			for _, f := range byNS[ns] {
				fmt.Fprintf(&b, `<xs:include schemaLocation="%s"/>`, escape(f))
			}
			b.WriteString(`</xs:schema>`)
			location = filepath.Join(tmp, fmt.Sprintf("include-%d.xsd", i))
			if err := os.WriteFile(location, []byte(b.String()), 0o600); err != nil {
				return "", fmt.Errorf("xmlschema: %w", err)
			}
		}
		fmt.Fprintf(&imports, `<xs:import namespace="%s" schemaLocation="%s"/>`, escape(ns), escape(location))
	}
	driver := filepath.Join(tmp, "driver.xsd")
	doc := `<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:parzelle:schema-driver">` + imports.String() + `</xs:schema>`
	if err := os.WriteFile(driver, []byte(doc), 0o600); err != nil {
		return "", fmt.Errorf("xmlschema: %w", err)
	}
	return driver, nil
}

func escape(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// Has reports whether the set is installed.
func (r *Registry) Has(set string) bool {
	return r.compiled[set] != nil
}

// Installed lists the compiled sets.
func (r *Registry) Installed() []Installed { return r.installed }

// Broken lists the sets that were found but did not compile, with
// libxml2's reason.
func (r *Registry) Broken() []Broken { return r.broken }

// Missing lists the known sets that were not found.
func (r *Registry) Missing() []Set {
	out := append([]Set(nil), r.missing...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Catalog reports the catalogs loaded and the entries generated.
func (r *Registry) Catalog() *Catalog { return r.catalog }

// ForNamespace returns the installed set that validates documents whose
// root element is in ns.
func (r *Registry) ForNamespace(ns string) (set string, ok bool) {
	if r == nil || len(r.byNS[ns]) == 0 {
		return "", false
	}
	return r.byNS[ns][0], true
}

// Validate checks doc against the set. libxml2 reads it without loading
// anything (no DTD, no external entities, no network) and without
// building a tree; it is safe to call from many goroutines.
func (r *Registry) Validate(set string, doc []byte) error {
	s := r.compiled[set]
	if s == nil {
		return fmt.Errorf("%w: %s", ErrNotInstalled, set)
	}
	problems, total, err := s.validate(doc)
	if err != nil {
		return err
	}
	if total > 0 {
		return &ValidationError{Set: set, Problems: problems, Total: total}
	}
	return nil
}

// ValidateFile compiles the schema file xsd, its imports resolved through
// the catalogs Load installed (never the network), validates doc against
// it and frees it again: for one-off checks, not the message path.
func (r *Registry) ValidateFile(xsd string, doc []byte) error {
	s, err := compileFile(xsd)
	if err != nil {
		return fmt.Errorf("xmlschema: compile %s: %w", xsd, err)
	}
	defer s.free()
	problems, total, err := s.validate(doc)
	if err != nil {
		return err
	}
	if total > 0 {
		return &ValidationError{Set: xsd, Problems: problems, Total: total}
	}
	return nil
}

// RootNamespace returns the namespace of doc's root element, reading only
// as far as its start tag. ok is false when doc does not begin like an XML
// document.
func RootNamespace(doc []byte) (ns string, ok bool) {
	d := xml.NewDecoder(bytes.NewReader(doc))
	d.CharsetReader = func(_ string, r io.Reader) (io.Reader, error) { return r, nil }
	for {
		tok, err := d.RawToken()
		if err != nil {
			return "", false
		}
		if t, isStart := tok.(xml.StartElement); isStart {
			// RawToken leaves prefixes unresolved: find the declaration
			// on the root itself (the only place it can be).
			for _, a := range t.Attr {
				if (t.Name.Space == "" && a.Name.Space == "" && a.Name.Local == "xmlns") ||
					(t.Name.Space != "" && a.Name.Space == "xmlns" && a.Name.Local == t.Name.Space) {
					return a.Value, true
				}
			}
			if t.Name.Space == "xml" {
				return "http://www.w3.org/XML/1998/namespace", true
			}
			return "", t.Name.Space == ""
		}
	}
}
