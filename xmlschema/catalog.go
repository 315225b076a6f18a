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

// Catalog is what Load did to make imports resolve offline.
type Catalog struct {
	// Files are the OASIS XML catalogs found in the schema directories.
	Files []string
	// Mappings are the entries the node generated: absolute location →
	// local file of the imported namespace.
	Mappings map[string]string
	// Unmapped are absolute locations that installed schemas import but
	// that no local file provides (their sets cannot compile).
	Unmapped []string
}

// xsdInfo is what the scan learns from one schema file.
type xsdInfo struct {
	path      string
	namespace string
	refs      []xsdRef // imports, includes and redefines with an absolute location
}

type xsdRef struct{ namespace, location string }

// scan indexes the schema files and catalogs under dirs.
func scan(dirs []string) (schemas []xsdInfo, catalogs []string, err error) {
	for _, root := range dirs {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if p == root {
					return err
				}
				return nil
			}
			if d.IsDir() {
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
					schemas = append(schemas, info)
				}
			case strings.HasSuffix(name, ".xml") && strings.Contains(name, "catalog") && isCatalog(abs):
				catalogs = append(catalogs, abs)
			}
			return nil
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("xmlschema: search %s: %w", root, err)
		}
	}
	return schemas, catalogs, nil
}

// readXSD reads a schema's target namespace and its references to
// absolute locations. A file that is not a schema is skipped.
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
				if !isAbsolute(loc) {
					continue
				}
				switch t.Name.Local {
				case "import":
					info.refs = append(info.refs, xsdRef{attr(t, "namespace"), loc})
				case "include", "redefine", "override":
					info.refs = append(info.refs, xsdRef{info.namespace, loc})
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

// installCatalog loads the catalogs found and generates entries for every
// absolute location that installed schemas import (and the well-known W3C
// ones) that the catalogs do not map yet, pointing each at a local schema
// of the imported namespace.
func installCatalog(schemas []xsdInfo, catalogs []string) (*Catalog, error) {
	c := &Catalog{Mappings: map[string]string{}}
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
	for _, s := range schemas {
		for _, r := range s.refs {
			wanted[r.location] = r.namespace
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
			c.Unmapped = append(c.Unmapped, loc)
			continue
		}
		if err := catalogAdd(loc, file); err != nil {
			return nil, err
		}
		c.Mappings[loc] = file
	}
	return c, nil
}

// pick chooses the local file for an absolute location among the schemas
// of its namespace: the one with the same file name, else the first in
// path order.
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
