package xmlschema

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

const (
	nsXSD     = "http://www.w3.org/2001/XMLSchema"
	nsCatalog = "urn:oasis:names:tc:entity:xmlns:xml:catalog"
)

// wellKnown are the absolute locations under which W3C schemas are
// commonly imported, with their namespaces. When a schema directory holds
// a schema of that namespace, the location is mapped to it even if no
// installed schema imports it that way.
var wellKnown = map[string]string{
	"http://www.w3.org/2001/xml.xsd":                                                    "http://www.w3.org/XML/1998/namespace",
	"http://www.w3.org/2009/01/xml.xsd":                                                 "http://www.w3.org/XML/1998/namespace",
	"http://www.w3.org/TR/xmldsig-core/xmldsig-core-schema.xsd":                         "http://www.w3.org/2000/09/xmldsig#",
	"http://www.w3.org/TR/2002/REC-xmldsig-core-20020212/xmldsig-core-schema.xsd":       "http://www.w3.org/2000/09/xmldsig#",
	"http://www.w3.org/TR/2001/CR-xmldsig-core-20010419/xmldsig-core-schema.xsd":        "http://www.w3.org/2000/09/xmldsig#",
	"http://www.w3.org/TR/xmlenc-core/xenc-schema.xsd":                                  "http://www.w3.org/2001/04/xmlenc#",
	"http://www.w3.org/TR/2002/REC-xmlenc-core-20021210/xenc-schema.xsd":                "http://www.w3.org/2001/04/xmlenc#",
	"https://www.w3.org/2008/xmlsec/Drafts/xmlenc-core-11/xenc-schema-11.xsd":           "http://www.w3.org/2009/xmlenc11#",
	"http://www.w3.org/TR/xmlenc-core1/xenc-schema-11.xsd":                              "http://www.w3.org/2009/xmlenc11#",
	"http://www.w3.org/2006/03/addressing/ws-addr.xsd":                                  "http://www.w3.org/2005/08/addressing",
	"http://www.w3.org/2003/05/soap-envelope/":                                          "http://www.w3.org/2003/05/soap-envelope",
	"http://schemas.xmlsoap.org/soap/envelope/":                                         "http://schemas.xmlsoap.org/soap/envelope/",
	"http://www.w3.org/1999/xlink.xsd":                                                  "http://www.w3.org/1999/xlink",
	"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
}

// StandInMarker is the name of the file that marks a directory as
// holding stand-in schemas: schemas written to replace official modules
// that are not available (e.g. fixtures/schemas/xinneres-standins). Every
// schema in or below such a directory is a stand-in, and is used for its
// namespace only when no other installed schema has that namespace: an
// official module installed anywhere in the schema directories wins.
const StandInMarker = "STAND-INS"

// Catalog is what Load did to make imports resolve offline.
type Catalog struct {
	// Files are the OASIS XML catalogs found in the schema directories.
	Files []string
	// Mappings are the entries the node generated: absolute location, or
	// the missing local file a relative import names → local file of the
	// imported namespace.
	Mappings map[string]string
	// Unmapped are absolute locations that installed schemas import but
	// that no local file provides (their sets cannot compile).
	Unmapped []string
	// StandIns are the stand-in schemas in use (see StandInMarker).
	StandIns []string
	// Superseded are stand-in schemas ignored because an official schema
	// of their namespace is installed.
	Superseded []string
}

// xsdInfo is what the scan learns from one schema file.
type xsdInfo struct {
	path      string
	namespace string
	refs      []xsdRef // imports, includes, redefines and overrides
	standIn   bool     // in or below a directory marked StandInMarker
}

// xsdRef is a reference to another schema: the namespace it provides and
// its schemaLocation as written (absolute or relative to the file).
type xsdRef struct {
	namespace, location string
	absolute            bool
}

// scan indexes the schema files and catalogs under dirs. Stand-in
// schemas of a namespace that an official schema also provides are left
// out of schemas and listed in superseded.
func scan(dirs []string) (schemas []xsdInfo, catalogs, superseded []string, err error) {
	marked := map[string]bool{} // directories holding StandInMarker
	for _, root := range dirs {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if p == root {
					return err
				}
				return nil
			}
			if d.IsDir() {
				if _, err := os.Stat(filepath.Join(p, StandInMarker)); err == nil {
					if abs, err := filepath.Abs(p); err == nil {
						marked[abs] = true
					}
				}
				return nil
			}
			abs, err := filepath.Abs(p)
			if err != nil {
				return err
			}
			name := strings.ToLower(d.Name())
			switch {
			case strings.HasSuffix(name, ".xsd"):
				info, ok := readXSD(abs)
				if ok {
					info.standIn = underMarked(abs, marked)
					schemas = append(schemas, info)
				}
			case strings.HasSuffix(name, ".xml") && strings.Contains(name, "catalog") && isCatalog(abs):
				catalogs = append(catalogs, abs)
			}
			return nil
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, nil, nil, fmt.Errorf("xmlschema: search %s: %w", root, err)
		}
	}
	official := map[string]bool{}
	for _, s := range schemas {
		if !s.standIn {
			official[s.namespace] = true
		}
	}
	kept := schemas[:0]
	for _, s := range schemas {
		if s.standIn && official[s.namespace] {
			superseded = append(superseded, s.path)
			continue
		}
		kept = append(kept, s)
	}
	return kept, catalogs, superseded, nil
}

// underMarked reports whether file lies in or below a marked directory.
func underMarked(file string, marked map[string]bool) bool {
	for dir := filepath.Dir(file); ; dir = filepath.Dir(dir) {
		if marked[dir] {
			return true
		}
		if parent := filepath.Dir(dir); parent == dir {
			return false
		}
	}
}

// readXSD reads a schema's target namespace and its references to other
// schemas. A file that is not a schema is skipped.
func readXSD(file string) (xsdInfo, bool) {
	f, err := os.Open(file)
	if err != nil {
		return xsdInfo{}, false
	}
	defer f.Close()
	d := xml.NewDecoder(io.LimitReader(f, 8<<20))
	d.CharsetReader = func(_ string, r io.Reader) (io.Reader, error) { return r, nil }
	info := xsdInfo{path: file}
	depth, isSchema := 0, false
	for {
		tok, err := d.Token()
		if err != nil {
			return info, isSchema
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 1 {
				if t.Name.Space != nsXSD || t.Name.Local != "schema" {
					return xsdInfo{}, false
				}
				isSchema = true
				info.namespace = attr(t, "targetNamespace")
			}
			if depth == 2 && t.Name.Space == nsXSD {
				loc := attr(t, "schemaLocation")
				if loc == "" {
					continue
				}
				abs := isAbsolute(loc)
				switch t.Name.Local {
				case "import":
					info.refs = append(info.refs, xsdRef{attr(t, "namespace"), loc, abs})
				case "include", "redefine", "override":
					info.refs = append(info.refs, xsdRef{info.namespace, loc, abs})
				}
			}
		case xml.EndElement:
			depth--
			if depth == 0 {
				return info, true
			}
		}
	}
}

func attr(t xml.StartElement, local string) string {
	for _, a := range t.Attr {
		if a.Name.Space == "" && a.Name.Local == local {
			return strings.TrimSpace(a.Value)
		}
	}
	return ""
}

func isAbsolute(loc string) bool {
	u, err := url.Parse(loc)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https" || u.Scheme == "ftp")
}

// isCatalog reports whether file is an OASIS XML catalog.
func isCatalog(file string) bool {
	f, err := os.Open(file)
	if err != nil {
		return false
	}
	defer f.Close()
	d := xml.NewDecoder(io.LimitReader(f, 1<<20))
	for {
		tok, err := d.Token()
		if err != nil {
			return false
		}
		if t, ok := tok.(xml.StartElement); ok {
			return t.Name.Space == nsCatalog && t.Name.Local == "catalog"
		}
	}
}

// generated are the catalog entries the last Load generated, so that the
// next Load replaces them instead of taking them for an operator's
// (libxml2's catalog is process-wide). Guarded by compileMu.
var generated = map[string]bool{}

// installCatalog loads the catalogs found and generates entries for every
// absolute location that installed schemas import (and the well-known W3C
// ones) that the catalogs do not map yet, pointing each at a local schema
// of the imported namespace. A relative import whose file is not there
// (XInneres modules copied without the latinchars.xsd and xoev-code.xsd
// that sat beside them) is mapped the same way, keyed by the missing
// file's path. Entries generated by an earlier Load are removed first.
func installCatalog(schemas []xsdInfo, catalogs []string) (*Catalog, error) {
	c := &Catalog{Mappings: map[string]string{}}
	if err := catalogForgetGenerated(); err != nil {
		return nil, err
	}
	for _, file := range catalogs {
		if err := catalogLoad(file); err != nil {
			return nil, err
		}
		c.Files = append(c.Files, file)
	}
	byNamespace := map[string][]string{}
	for _, s := range schemas {
		byNamespace[s.namespace] = append(byNamespace[s.namespace], s.path)
	}
	wanted := map[string]string{}
	for loc, ns := range wellKnown {
		if len(byNamespace[ns]) > 0 {
			wanted[loc] = ns
		}
	}
	local := map[string]bool{}
	for _, s := range schemas {
		local[s.path] = true
	}
	for _, s := range schemas {
		for _, r := range s.refs {
			switch {
			case r.absolute:
				wanted[r.location] = r.namespace
			case !filepath.IsAbs(r.location) && !strings.Contains(r.location, ":"):
				p := filepath.Join(filepath.Dir(s.path), filepath.FromSlash(r.location))
				if _, err := os.Stat(p); err != nil && !local[p] {
					wanted[p] = r.namespace
				}
			}
		}
	}
	locations := make([]string, 0, len(wanted))
	for loc := range wanted {
		locations = append(locations, loc)
	}
	sort.Strings(locations)
	for _, loc := range locations {
		if catalogResolves(loc) {
			continue
		}
		file := pick(byNamespace[wanted[loc]], loc)
		if file == "" {
			if isAbsolute(loc) {
				c.Unmapped = append(c.Unmapped, loc)
			}
			continue
		}
		if err := catalogAdd(loc, file); err != nil {
			return nil, err
		}
		c.Mappings[loc] = file
	}
	standIn := map[string]bool{}
	for _, s := range schemas {
		standIn[s.path] = s.standIn
	}
	for _, file := range c.Mappings {
		if standIn[file] && !slices.Contains(c.StandIns, file) {
			c.StandIns = append(c.StandIns, file)
		}
	}
	sort.Strings(c.StandIns)
	return c, nil
}

// standInsReached lists the stand-in schemas that compiling files (in
// dir) reads, following imports and includes through the generated
// mappings.
func standInsReached(dir string, files []string, schemas []xsdInfo, c *Catalog) []string {
	byPath := map[string]xsdInfo{}
	for _, s := range schemas {
		byPath[s.path] = s
	}
	var queue []string
	for _, f := range files {
		queue = append(queue, filepath.Join(dir, f))
	}
	seen := map[string]bool{}
	var out []string
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		info, ok := byPath[p]
		if !ok || seen[p] {
			continue
		}
		seen[p] = true
		if info.standIn {
			out = append(out, p)
		}
		for _, r := range info.refs {
			target := c.Mappings[r.location]
			if !r.absolute {
				target = filepath.Join(filepath.Dir(p), filepath.FromSlash(r.location))
				if _, known := byPath[target]; !known {
					target = c.Mappings[target]
				}
			}
			if target != "" {
				queue = append(queue, target)
			}
		}
	}
	sort.Strings(out)
	return out
}

// pick chooses the local file for a location among the schemas of its
// namespace (stand-ins are only among them when no official schema has
// the namespace): the one with the same file name, else the first in path
// order.
func pick(candidates []string, loc string) string {
	if len(candidates) == 0 {
		return ""
	}
	sorted := slices.Clone(candidates)
	sort.Strings(sorted)
	if u, err := url.Parse(loc); err == nil {
		base := path.Base(u.Path)
		for _, c := range sorted {
			if filepath.Base(c) == base {
				return c
			}
		}
	}
	return sorted[0]
}
