package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/jackc/pgx/v5"

	"github.com/parzelle/parzelle/config"
	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/register"
)

const auditUsage = "usage: parzelle audit verify --tenant ID [--json] [--config FILE]"

func cmdAudit(args []string) error {
	if len(args) == 0 || args[0] != "verify" {
		return errors.New(auditUsage)
	}
	return auditVerify(args[1:], os.Stdout)
}

// auditVerify checks a tenant's audit chain in the node's database and
// prints the report; a broken chain exits with status 1.
func auditVerify(args []string, out io.Writer) error {
	var tenantID string
	var asJSON bool
	cfg, err := parseConfig("audit verify", args, func(fs *flag.FlagSet) {
		fs.StringVar(&tenantID, "tenant", "", "tenant id")
		fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	})
	if err != nil {
		return err
	}
	if tenantID == "" {
		return errors.New("--tenant is required\n" + auditUsage)
	}
	ctx := context.Background()
	pool, closeDB, err := connect(ctx, cfg, newLogger(config.Log{Level: "warn"}), 2)
	if err != nil {
		return err
	}
	defer closeDB()
	// A tenant the database does not know has no chain to verify: saying
	// "intact, 0 entries" for a mistyped id would mislead.
	var known bool
	if err := db.InTenant(ctx, pool, tenantID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tenant WHERE tenant_id = $1)`, tenantID).Scan(&known)
	}); err != nil {
		return fmt.Errorf("audit verify: look up tenant %s: %w", tenantID, err)
	}
	if !known {
		return fmt.Errorf("audit verify: the database has no tenant %q", tenantID)
	}
	r, err := register.VerifyAudit(ctx, pool, tenantID)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
	} else {
		printChainReport(out, r)
	}
	if !r.OK() {
		return exitError{1}
	}
	return nil
}

// printChainReport writes a chain report for an operator: the entries
// checked, the head hash to note elsewhere, and the first bad entry.
func printChainReport(w io.Writer, r register.ChainReport) {
	fmt.Fprintf(w, "tenant:  %s\nentries: %d\nhead:    %s\n", r.Tenant, r.Entries, r.Head)
	if r.OK() {
		fmt.Fprintln(w, "result:  ok, the chain is intact")
		return
	}
	fmt.Fprintf(w, "result:  BROKEN at entry %d\nproblem: %s\n", r.FirstBad, r.Problem)
}
