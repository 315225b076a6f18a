package tenant

import (
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/parzelle/parzelle/strictyaml"
)

// MappingFile is a mapping spec file a tenant file names under
// `mappings:`, read when the tenant file was parsed (package mapping
// compiles it).
//
//	mappings:
//	  - ../mappings/xmeld-zuzug.yaml   # relative to the tenant file
type MappingFile struct {
	// Name is the path as the tenant file writes it; Path is resolved.
	Name, Path string
	Data       []byte
}

// MappingFiles returns the tenant's mapping spec files in the order its
// file lists them. The slice is shared: do not modify it.
func (c *Config) MappingFiles() []MappingFile { return c.mappingFiles }

// checkMappings reads the mapping spec files the tenant file names, for the
// tenant and for each inbox that names its own, feeding them into h so that
// an edited spec is a new config version.
func (c *Config) checkMappings(pos *strictyaml.Positions, h hash.Hash) {
	c.mappingFiles = c.readMappingFiles(pos, h, "mappings", c.Mappings)
	for i := range c.Inboxes {
		in := &c.Inboxes[i]
		in.mappingFiles = c.readMappingFiles(pos, h, fmt.Sprintf("inboxes[%d].mappings", i), in.Mappings)
	}
}

// readMappingFiles reads the spec files a list (field) of the tenant file
// names, relative to the tenant file.
func (c *Config) readMappingFiles(pos *strictyaml.Positions, h hash.Hash, field string, list []string) []MappingFile {
	var out []MappingFile
	seen := map[string]bool{}
	for i, rel := range list {
		f := fmt.Sprintf("%s[%d]", field, i)
		path := rel
		if !filepath.IsAbs(path) {
			path = filepath.Join(filepath.Dir(c.File), rel)
		}
		if seen[path] {
			pos.Errorf(f, "%s is listed twice", rel)
			continue
		}
		seen[path] = true
		data, err := os.ReadFile(path)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			pos.Errorf(f, "cannot read %s: %v", path, err)
			continue
		}
		if len(data) > strictyaml.MaxFileSize {
			pos.Errorf(f, "%s is larger than %d bytes", path, strictyaml.MaxFileSize)
			continue
		}
		h.Write([]byte(path))
		h.Write(data)
		out = append(out, MappingFile{Name: rel, Path: path, Data: data})
	}
	return out
}
