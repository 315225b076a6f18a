package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
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
		return errors.New("usage: parzelle mapping test --spec FILE --message FILE | lint --spec FILE [--schemas DIR]... [--config FILE]")
	}
	switch args[0] {
	case "test":
		return mappingTest(args[1:], out)
	case "lint":
		return mappingLint(args[1:], out, errOut)
	}
	return fmt.Errorf("unknown subcommand %q (test, lint)", args[0])
}

// mappingTest prints the facts a message would give, as JSON, without
// touching any database.
func mappingTest(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("mapping test", flag.ContinueOnError)
	specFile := fs.String("spec", "", "mapping spec file (YAML)")
	msgFile := fs.String("message", "", "message file (XML)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *specFile == "" || *msgFile == "" {
		return errors.New("give --spec FILE and --message FILE")
	}
	data, err := os.ReadFile(*specFile)
	if err != nil {
		return err
	}
	spec, err := mapping.Compile(*specFile, data)
	if err != nil {
		return err
	}
	msg, err := os.ReadFile(*msgFile)
	if err != nil {
		return err
	}
	doc, err := mapping.ParseMessage(msg)
	if err != nil {
		return fmt.Errorf("%s: %w", *msgFile, err)
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
