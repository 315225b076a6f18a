package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/tenant"
)

func cmdKeys(args []string) error {
	if len(args) == 0 || args[0] != "list" {
		return errors.New("usage: parzelle keys list [--config FILE]")
	}
	return keysList(args[1:], os.Stdout, time.Now())
}

// keysList prints every tenant's keys and certificates with their expiry,
// read from the tenant files the way the node reads them (no database).
func keysList(args []string, out io.Writer, now time.Time) error {
	cfg, err := parseConfig("keys list", args, nil)
	if err != nil {
		return err
	}
	r := tenant.NewRegistry(cfg.Paths.Tenants, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	rep, err := r.Reload(context.Background())
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TENANT\tUSAGE\tSUBJECT\tKEY\tNOT AFTER\tDAYS LEFT\tSTATUS")
	for _, c := range keys.Certificates(r.Current()) {
		left := c.Left(now)
		note := "ok"
		switch {
		case !c.Current:
			note = "kept, not in use"
		case left <= 0:
			note = "EXPIRED"
		case left <= keys.ExpiryWarning:
			note = "expires soon"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", c.Tenant, c.Label(), c.Cert.Subject, keys.KeyType(c.Cert.PublicKey),
			c.Cert.NotAfter.UTC().Format("2006-01-02"), int(left.Hours()/24), note)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	for _, e := range rep.Rejected {
		fmt.Fprintln(os.Stderr, e)
	}
	if len(rep.Rejected) > 0 {
		fmt.Fprintf(os.Stderr, "%d tenant file(s) rejected; their keys are not listed\n", len(rep.Rejected))
		return exitError{1}
	}
	return nil
}
