package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/parzelle/parzelle/config"
	"github.com/parzelle/parzelle/mapping"
)

func cmdMapping(args []string) error {
	return mappingCommand(args, os.Stdout, os.Stderr)
}

// mappingCommand runs `parzelle mapping test|lint`.
func mappingCommand(args []string, out, errOut io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: parzelle mapping test --spec FILE-OR-DIR... --message FILE | lint --spec FILE [--schemas DIR]... [--config FILE]")
	}
	switch args[0] {
	case "test":
		return mappingTest(args[1:], out, errOut)
	case "lint":
		return mappingLint(args[1:], out, errOut)
	}
	return fmt.Errorf("unknown subcommand %q (test, lint)", args[0])
}

// mappingTest prints the facts a message would give, as JSON, without
// touching any database: with the spec that maps its type among those
// given (files, or directories of *.yaml specs).
func mappingTest(args []string, out, errOut io.Writer) error {
	fs := flag.NewFlagSet("mapping test", flag.ContinueOnError)
	var specArgs repeated
	fs.Var(&specArgs, "spec", "mapping spec file (YAML) or a directory of them; may be repeated")
	msgFile := fs.String("message", "", "message file (XML)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(specArgs) == 0 || *msgFile == "" {
		return errors.New("give --spec FILE-OR-DIR and --message FILE")
	}
	var specs []*mapping.Spec
	for _, arg := range specArgs {
		files := []string{arg}
		if st, err := os.Stat(arg); err == nil && st.IsDir() {
			files, _ = filepath.Glob(filepath.Join(arg, "*.yaml"))
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			spec, err := mapping.Compile(f, data)
			if err != nil {
				return err
			}
			specs = append(specs, spec)
		}
	}
	msg, err := os.ReadFile(*msgFile)
	if err != nil {
		return err
	}
	doc, err := mapping.ParseMessage(msg)
	if err != nil {
		return fmt.Errorf("%s: %w", *msgFile, err)
	}
	var spec *mapping.Spec
	var known []string
	for _, sp := range specs {
		for i, root := range sp.Roots {
			known = append(known, fmt.Sprintf("  %s  {%s}%s", sp.Source(), root.Space, root.Local))
			if root == doc.Name && spec == nil {
				spec = sp
				if v := sp.Variants()[i]; v != "" {
					fmt.Fprintf(errOut, "mapped by %s (%s), variant %s\n", sp.Source(), sp.File, v)
				} else {
					fmt.Fprintf(errOut, "mapped by %s (%s)\n", sp.Source(), sp.File)
				}
			}
		}
	}
	if spec == nil {
		return fmt.Errorf("%s is {%s}%s, which none of the specs maps; they map:\n%s", *msgFile, doc.Name.Space, doc.Name.Local, strings.Join(known, "\n"))
	}
	facts, err := spec.Map(doc)
	if err != nil {
		return fmt.Errorf("%s: %w", *msgFile, err)
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(facts)
}

// repeated collects a flag given several times.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, ",") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

// mappingLint checks a spec against the message schemas; exit status 1 on
// errors (warnings alone pass).
func mappingLint(args []string, out, errOut io.Writer) error {
	fs := flag.NewFlagSet("mapping lint", flag.ContinueOnError)
	var specs, schemaDirs repeated
	fs.Var(&specs, "spec", "mapping spec file (YAML); may be repeated")
	fs.Var(&schemaDirs, "schemas", "directory of XML schemas (searched recursively); may be repeated; default: the node configuration's schema directories")
	configPath := fs.String("config", defaultConfig(), "node configuration file (for its schema directories)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	specs = append(specs, fs.Args()...)
	if len(specs) == 0 {
		return errors.New("give --spec FILE")
	}
	if len(schemaDirs) == 0 {
		cfg, err := config.Load(*configPath)
		if err != nil {
			return err
		}
		schemaDirs = cfg.Paths.Schemas
	}
	idx, err := mapping.LoadSchemas(schemaDirs...)
	if err != nil {
		return err
	}
	failed := false
	for _, f := range specs {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		problems := mapping.Lint(f, data, idx)
		for _, p := range problems {
			fmt.Fprintln(out, p)
			failed = failed || !p.Warning
		}
		if len(problems) == 0 {
			fmt.Fprintf(out, "%s: ok\n", f)
		}
	}
	fmt.Fprintf(errOut, "checked against %d schema files in %s\n", idx.Files(), strings.Join(schemaDirs, ", "))
	if failed {
		return exitError{1}
	}
	return nil
}
