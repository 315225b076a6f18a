package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/parzelle/parzelle/xmlschema"
)

func cmdSchemas(args []string) error {
	return schemasList(args, os.Stdout)
}

// schemasList loads the schema sets from the configured directories the
// way the node does and prints what is installed, what is broken and why,
// and which message types therefore go unvalidated.
func schemasList(args []string, out io.Writer) error {
	cfg, err := parseConfig("schemas", args, nil)
	if err != nil {
		return err
	}
	r, err := xmlschema.Load(cfg.Paths.Schemas, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Schema directories: %s\n", strings.Join(cfg.Paths.Schemas, ", "))
	cat := r.Catalog()
	fmt.Fprintf(out, "Catalogs: %d loaded", len(cat.Files))
	if len(cat.Files) > 0 {
		fmt.Fprintf(out, " (%s)", strings.Join(cat.Files, ", "))
	}
	fmt.Fprintf(out, "; %d entries generated for absolute schema locations; the network is never used\n\n", len(cat.Mappings))

	fmt.Fprintf(out, "INSTALLED (%d)\n", len(r.Installed()))
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SET\tSTANDARD\tNAMESPACE\tVERSION\tDIRECTORY\tCOVERS")
	for _, s := range r.Installed() {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Standard, s.Namespace, s.Version, s.Dir, s.Covers)
	}
	if err := w.Flush(); err != nil {
		return err
	}

	fmt.Fprintf(out, "\nBROKEN (%d): found, but they do not compile\n", len(r.Broken()))
	for _, b := range r.Broken() {
		fmt.Fprintf(out, "%s  %s  %s  %s  %s\n  broken/incomplete: %s\n", b.Name, b.Standard, b.Namespace, b.Version, b.Dir, b.Reason)
	}
	if len(cat.Unmapped) > 0 {
		fmt.Fprintf(out, "Imported but not installed (no local file for these locations):\n  %s\n", strings.Join(cat.Unmapped, "\n  "))
	}

	missing := r.Missing()
	fmt.Fprintf(out, "\nMESSAGE TYPES WITHOUT A SCHEMA (%d sets): accepted or refused by each tenant's schemas.missing policy\n", len(missing)+len(r.Broken()))
	for _, b := range r.Broken() {
		fmt.Fprintf(out, "%s (%s): %s — schema set broken\n", b.Standard, b.Namespace, b.Covers)
	}
	for _, m := range missing {
		fmt.Fprintf(out, "%s (%s): %s — not installed (no %s under the schema directories)\n", m.Standard, m.Namespace, m.Covers, m.Marker)
	}
	fmt.Fprintln(out, "Any other XML content (e.g. without a namespace) has no schema either.")
	return nil
}
