package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parzelle/parzelle/config"
	"github.com/parzelle/parzelle/tenant"
)

func cmdTenant(args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "check":
			return tenantCheck(args[1:])
		case "history":
			return tenantHistory(args[1:])
		}
	}
	return errors.New("usage: parzelle tenant check PATH... | parzelle tenant history [--config FILE] [--tenant ID]")
}

// tenantCheck checks tenant files, or whole tenant directories including
// the rules between files, the way the node would before applying them.
func tenantCheck(paths []string) error {
	if len(paths) == 0 {
		return errors.New("usage: parzelle tenant check FILE|DIR...")
	}
	bad := 0
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			c, err := tenant.ParseFile(p)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				bad++
				continue
			}
			fmt.Printf("%s: ok (tenant %s)\n", p, c.ID)
			continue
		}
		r := tenant.NewRegistry(p, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
		rep, err := r.Reload(context.Background())
		if err != nil {
			return err
		}
		for _, e := range rep.Rejected {
			fmt.Fprintln(os.Stderr, e)
			bad++
		}
		for _, c := range r.Current().Tenants() {
			fmt.Printf("%s: ok (tenant %s)\n", c.File, c.ID)
		}
	}
	if bad > 0 {
		fmt.Fprintf(os.Stderr, "%d tenant file(s) rejected\n", bad)
		return exitError{1}
	}
	return nil
}

// tenantHistory lists the applied configuration versions recorded in the
// database.
func tenantHistory(args []string) error {
	var only *string
	cfg, err := parseConfig("tenant history", args, func(fs *flag.FlagSet) {
		only = fs.String("tenant", "", "show only this tenant")
	})
	if err != nil {
		return err
	}
	ctx := context.Background()
	pool, closeDB, err := connect(ctx, cfg, newLogger(config.Log{Level: "warn"}), 2)
	if err != nil {
		return err
	}
	defer closeDB()
	rows, err := pool.Query(ctx, `SELECT v.tenant_id, v.version, v.applied_at, v.sha256, v.source_file, t.active AND t.config_version = v.version
		FROM tenant_config_version v JOIN tenant t USING (tenant_id)
		WHERE $1 = '' OR v.tenant_id = $1 ORDER BY v.tenant_id, v.version`, *only)
	if err != nil {
		return fmt.Errorf("read versions: %w", err)
	}
	defer rows.Close()
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TENANT\tVERSION\tAPPLIED\tSHA256\tFILE\tCURRENT")
	for rows.Next() {
		var id, sum, file string
		var version int
		var at time.Time
		var current bool
		if err := rows.Scan(&id, &version, &at, &sum, &file, &current); err != nil {
			return err
		}
		mark := ""
		if current {
			mark = "*"
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", id, version, at.Local().Format(time.RFC3339), sum[:12], file, mark)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return w.Flush()
}
