// Package strictyaml decodes declarative configuration files strictly: an
// unknown field, a wrong type or a missing required field is an error that
// names the file, the line and the field's path, so that an operator can go
// straight to the mistake.
//
// Structs are described with `yaml:"name"` tags; `conf:"required"` marks a
// field that must be present and not empty. Supported field types are
// string, bool, int, time.Duration (as "30s", or in days as "1825d"), slices
// and nested structs.
package strictyaml

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// MaxFileSize bounds a configuration file; larger files are refused.
const MaxFileSize = 1 << 20

// Error is one problem in one file, at a line and a field.
type Error struct {
	File  string
	Line  int
	Field string // path such as identities[0].id; empty for the whole file
	Msg   string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one file, in file order.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Positions maps each field path seen in a file to its line, so that checks
// made after decoding can still point at the right line.
type Positions struct {
	file  string
	lines map[string]int
	errs  Errors
}

// Errorf records a problem with the field at path (a path Decode saw, or a
// parent of it), unless that field has a problem already.
func (p *Positions) Errorf(path, format string, args ...any) {
	for _, e := range p.errs {
		if e.Field == path {
			return
		}
	}
	p.errs = append(p.errs, &Error{File: p.file, Line: p.Line(path), Field: path, Msg: fmt.Sprintf(format, args...)})
}

// Line is the line of the field at path, or of its nearest known parent.
func (p *Positions) Line(path string) int {
	for path != "" {
		if l, ok := p.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return p.lines[""]
}

// Parsed reports whether the file was valid YAML, so that checks of its
// content make sense even where Decode found problems.
func (p *Positions) Parsed() bool {
	_, ok := p.lines[""]
	return ok
}

// Err returns the problems recorded so far in line order, or nil.
func (p *Positions) Err() error {
	if len(p.errs) == 0 {
		return nil
	}
	sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].Line < p.errs[j].Line })
	return p.errs
}

// Decode parses data (the content of file) into v, a pointer to a struct. It
// refuses anchors and aliases, multiple documents, unknown fields and values
// of the wrong type, and reports every problem it finds, not only the first.
// The returned Positions serve the caller's own checks.
func Decode(file string, data []byte, v any) (*Positions, error) {
	pos := &Positions{file: file, lines: map[string]int{}}
	if len(data) > MaxFileSize {
		pos.errs = append(pos.errs, &Error{File: file, Msg: fmt.Sprintf("file is %d bytes, more than the limit of %d", len(data), MaxFileSize)})
		return pos, pos.Err()
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			pos.errs = append(pos.errs, &Error{File: file, Msg: "file is empty"})
		} else {
			pos.errs = append(pos.errs, syntaxError(file, err))
		}
		return pos, pos.Err()
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		pos.errs = append(pos.errs, &Error{File: file, Line: extra.Line, Msg: "a second YAML document follows; one file holds one document"})
		return pos, pos.Err()
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	pos.lines[""] = root.Line
	pos.decode(root, "", reflect.ValueOf(v).Elem())
	return pos, pos.Err()
}

func syntaxError(file string, err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if strings.HasPrefix(msg, "line ") {
		rest := msg[len("line "):]
		if i := strings.Index(rest, ":"); i > 0 {
			if n, convErr := strconv.Atoi(rest[:i]); convErr == nil {
				line, msg = n, strings.TrimSpace(rest[i+1:])
			}
		}
	}
	return &Error{File: file, Line: line, Msg: "invalid YAML: " + msg}
}

var durationType = reflect.TypeOf(time.Duration(0))

// parseDuration reads a Go duration, or a whole number of days such as
// 1825d (days of 24 hours), for retention periods.
func parseDuration(v string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 16)
		if err != nil {
			return 0, fmt.Errorf("%q is not a number of days", v)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(v)
}

func (p *Positions) fail(n *yaml.Node, path, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: n.Line, Field: path, Msg: fmt.Sprintf(format, args...)})
}

func (p *Positions) decode(n *yaml.Node, path string, v reflect.Value) {
	p.lines[path] = n.Line
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		p.fail(n, path, "anchors and aliases are not allowed")
		return
	}
	switch {
	case v.Type() == durationType:
		d, err := parseDuration(scalar(n))
		if n.Kind != yaml.ScalarNode || err != nil {
			p.fail(n, path, "want a duration such as 30s, 5m or 1825d, got %s", describe(n))
			return
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
			p.fail(n, path, "want a string, got %s", describe(n))
			return
		}
		v.SetString(n.Value)
	case v.Kind() == reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&b) != nil {
			p.fail(n, path, "want true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	case v.Kind() == reflect.Int:
		i, err := strconv.Atoi(scalar(n))
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || err != nil {
			p.fail(n, path, "want a whole number, got %s", describe(n))
			return
		}
		v.SetInt(int64(i))
	case v.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			p.fail(n, path, "want a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			p.decode(item, fmt.Sprintf("%s[%d]", path, i), s.Index(i))
		}
		v.Set(s)
	case v.Kind() == reflect.Struct:
		p.decodeStruct(n, path, v)
	default:
		panic(fmt.Sprintf("strictyaml: unsupported field type %s at %s", v.Type(), path))
	}
}

func (p *Positions) decodeStruct(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		p.fail(n, path, "want a mapping of fields, got %s", describe(n))
		return
	}
	type field struct {
		index    int
		required bool
	}
	fields := map[string]field{}
	var names []string
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		fields[name] = field{index: i, required: t.Field(i).Tag.Get("conf") == "required"}
		names = append(names, name)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		sub := key.Value
		if path != "" {
			sub = path + "." + key.Value
		}
		f, ok := fields[key.Value]
		switch {
		case !ok:
			p.fail(key, sub, "unknown field (known here: %s)", strings.Join(names, ", "))
		case seen[key.Value]:
			p.fail(key, sub, "field given twice")
		default:
			seen[key.Value] = true
			before := len(p.errs)
			p.decode(val, sub, v.Field(f.index))
			if f.required && len(p.errs) == before && isEmpty(v.Field(f.index)) {
				p.fail(val, sub, "must not be empty")
			}
		}
	}
	for _, name := range names {
		if f := fields[name]; f.required && !seen[name] {
			sub := name
			if path != "" {
				sub = path + "." + name
			}
			p.fail(n, sub, "required field is missing")
		}
	}
}

func isEmpty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String, reflect.Slice:
		return v.Len() == 0
	}
	return false
}

func scalar(n *yaml.Node) string {
	if n.Kind != yaml.ScalarNode {
		return ""
	}
	return n.Value
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return strconv.Quote(n.Value)
	}
	return "an alias"
}
