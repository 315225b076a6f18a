// Package xmlschema validates documents against the official XSDs an
// operator installed in the configured schema directories. Each known
// schema set is found by its files, compiled once at start-up (libxml2) and
// shared by all goroutines; a set that is not installed is reported, never
// fetched from the network.
package xmlschema

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/lestrrat-go/libxml2"
	"github.com/lestrrat-go/libxml2/xsd"
)

// Set is a schema set the node knows how to install: the files that
// identify its directory and the driver schema that imports them.
type Set struct {
	Name      string // e.g. "xta2-v3"
	Namespace string
	Version   string
	// Marker is a file whose presence identifies the set's directory.
	Marker string
	// Driver describes, given the set's directory, the schema that imports
	// everything a validated document may contain: one line per namespace,
	// "include:FILE|FILE…" (several files of one namespace) or
	// "import:NAMESPACE=FILE".
	Driver func(dir string) string
	// Covers names the message types the set validates, for the listing.
	Covers string
}

// XTA2V3 is XTA 2 Version 3 (XTA-Webservice 2.1.1): the SOAP 1.2 envelope,
// WS-Addressing, OSCI message metadata and MsgBox types and the XTA
// elements, so a whole XTA envelope validates in one go.
var XTA2V3 = Set{
	Name: "xta2-v3", Namespace: "http://xoev.de/transport/xta/211", Version: "2.1.1",
	Marker: "XTA-Webservice-Globale-Elemente.xsd",
	Covers: "XTA 2 V3 SOAP envelopes (all operations, responses and faults)",
	Driver: func(dir string) string {
		// The XTA namespace is spread over two files; libxml2 imports a
		// namespace once, so both are included by one wrapper schema.
		return "include:" + filepath.Join(dir, "XTA-Webservice-Globale-Elemente.xsd") + "|" + filepath.Join(dir, "XTA-Webservice-Exceptions.xsd") +
			"\nimport:http://www.osci.eu/ws/2008/05/transport=" + filepath.Join(dir, "OSCI2_02.xsd") +
			"\nimport:http://www.w3.org/2003/05/soap-envelope=" + filepath.Join(dir, ".xsd")
	},
}

// Known is every schema set this build knows how to install.
var Known = []Set{XTA2V3}

// ErrNotInstalled is returned when a document's schema set is not installed.
var ErrNotInstalled = errors.New("xmlschema: schema set not installed")

// ValidationError lists what the schema found wrong with a document.
type ValidationError struct {
	Set      string
	Problems []string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("xmlschema: not valid against %s: %s", e.Set, strings.Join(e.Problems, "; "))
}

// Installed describes a compiled set.
type Installed struct {
	Set
	Dir string
}

// Registry holds the compiled schema sets. It is not changed after Load,
// so goroutines share it without locking.
type Registry struct {
	compiled  map[string]*xsd.Schema
	installed []Installed
	missing   []Set
}

// Load looks for every known set under dirs (searched recursively) and
// compiles what it finds. Sets it does not find are listed by Missing.
func Load(dirs []string, log *slog.Logger) (*Registry, error) {
	r := &Registry{compiled: map[string]*xsd.Schema{}}
	for _, set := range Known {
		dir, err := find(dirs, set.Marker)
		if err != nil {
			return nil, err
		}
		if dir == "" {
			r.missing = append(r.missing, set)
			if log != nil {
				log.Warn("schema set not installed: messages it covers cannot be validated", "set", set.Name, "namespace", set.Namespace, "looked_in", dirs)
			}
			continue
		}
		s, err := compile(set, dir)
		if err != nil {
			return nil, err
		}
		r.compiled[set.Name] = s
		r.installed = append(r.installed, Installed{Set: set, Dir: dir})
		if log != nil {
			log.Info("schema set installed", "set", set.Name, "version", set.Version, "dir", dir)
		}
	}
	return r, nil
}

// find returns the first directory under dirs that holds marker.
func find(dirs []string, marker string) (string, error) {
	for _, root := range dirs {
		var found string
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if path == root {
					return err
				}
				return nil
			}
			if found == "" && !d.IsDir() && d.Name() == marker {
				found = filepath.Dir(path)
				return filepath.SkipAll
			}
			return nil
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("xmlschema: search %s: %w", root, err)
		}
		if found != "" {
			abs, err := filepath.Abs(found)
			if err != nil {
				return "", fmt.Errorf("xmlschema: %w", err)
			}
			return abs, nil
		}
	}
	return "", nil
}

// compile writes the set's driver schema to a temporary directory and
// compiles it; imports resolve to the files in dir only.
func compile(set Set, dir string) (*xsd.Schema, error) {
	tmp, err := os.MkdirTemp("", "parzelle-xsd-")
	if err != nil {
		return nil, fmt.Errorf("xmlschema: %w", err)
	}
	defer os.RemoveAll(tmp)
	driver, err := writeDriver(tmp, set.Driver(dir))
	if err != nil {
		return nil, err
	}
	s, err := xsd.ParseFromFile(driver)
	if err != nil {
		return nil, fmt.Errorf("xmlschema: compile %s from %s: %w", set.Name, dir, err)
	}
	return s, nil
}

// writeDriver turns a driver description ("include:a|b" for one namespace
// made of several files, "import:ns=file" for others) into schema files.
func writeDriver(tmp, spec string) (string, error) {
	var imports []string
	for i, line := range strings.Split(spec, "\n") {
		kind, rest, _ := strings.Cut(line, ":")
		switch kind {
		case "include":
			files := strings.Split(rest, "|")
			ns, err := targetNamespace(files[0])
			if err != nil {
				return "", err
			}
			var b strings.Builder
			fmt.Fprintf(&b, `<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="%s">`, ns)
			for _, f := range files {
				fmt.Fprintf(&b, `<xs:include schemaLocation="%s"/>`, f)
			}
			b.WriteString(`</xs:schema>`)
			name := filepath.Join(tmp, fmt.Sprintf("include-%d.xsd", i))
			if err := os.WriteFile(name, []byte(b.String()), 0o600); err != nil {
				return "", fmt.Errorf("xmlschema: %w", err)
			}
			imports = append(imports, fmt.Sprintf(`<xs:import namespace="%s" schemaLocation="%s"/>`, ns, name))
		case "import":
			ns, file, _ := strings.Cut(rest, "=")
			imports = append(imports, fmt.Sprintf(`<xs:import namespace="%s" schemaLocation="%s"/>`, ns, file))
		default:
			return "", fmt.Errorf("xmlschema: bad driver line %q", line)
		}
	}
	driver := filepath.Join(tmp, "driver.xsd")
	doc := `<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:parzelle:schema-driver">` + strings.Join(imports, "") + `</xs:schema>`
	if err := os.WriteFile(driver, []byte(doc), 0o600); err != nil {
		return "", fmt.Errorf("xmlschema: %w", err)
	}
	return driver, nil
}

func targetNamespace(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("xmlschema: %w", err)
	}
	_, rest, ok := strings.Cut(string(b), `targetNamespace="`)
	ns, _, ok2 := strings.Cut(rest, `"`)
	if !ok || !ok2 {
		return "", fmt.Errorf("xmlschema: %s has no targetNamespace", file)
	}
	return ns, nil
}

// Has reports whether the set is installed.
func (r *Registry) Has(set string) bool {
	return r.compiled[set] != nil
}

// Installed lists the compiled sets.
func (r *Registry) Installed() []Installed { return r.installed }

// Missing lists the known sets that were not found.
func (r *Registry) Missing() []Set {
	out := append([]Set(nil), r.missing...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Validate checks doc against the set. The document must already have
// passed xmlsafe (libxml2 parses it with default, non-expanding options).
func (r *Registry) Validate(set string, doc []byte) error {
	s := r.compiled[set]
	if s == nil {
		return fmt.Errorf("%w: %s", ErrNotInstalled, set)
	}
	d, err := libxml2.Parse(doc)
	if err != nil {
		return &ValidationError{Set: set, Problems: []string{err.Error()}}
	}
	defer d.Free()
	if err := s.Validate(d); err != nil {
		ve := &ValidationError{Set: set}
		var sve xsd.SchemaValidationError
		if errors.As(err, &sve) {
			for _, e := range sve.Errors() {
				ve.Problems = append(ve.Problems, strings.TrimSpace(e.Error()))
			}
		} else {
			ve.Problems = []string{err.Error()}
		}
		return ve
	}
	return nil
}
