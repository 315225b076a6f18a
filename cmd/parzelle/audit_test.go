package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parzelle/parzelle/db/dbtest"
	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/register"
	"github.com/parzelle/parzelle/tenant"
)

// demoDatabase is a demo checkout with a fresh database that holds the demo
// tenants, a pool on it and their registry.
func demoDatabase(t *testing.T) (root, dbURL string, pool *pgxpool.Pool, reg *tenant.Registry) {
	t.Helper()
	root = demoCheckout(t)
	dbURL = dbtest.NewURL(t)
	pool, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	reg = tenant.NewRegistry(filepath.Join(root, "fixtures", "tenants"), pool, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if rep, err := reg.Reload(context.Background()); err != nil || len(rep.Rejected) > 0 {
		t.Fatalf("tenants: %v %v", err, rep.Rejected)
	}
	return root, dbURL, pool, reg
}

// TestAuditVerify runs `parzelle audit verify` on the demo checkout's
// database, after register accesses wrote the audit log: intact it
// exits 0; after an entry is edited in SQL it exits 1 and names it.
func TestAuditVerify(t *testing.T) {
	root, dbURL, pool, reg := demoDatabase(t)
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	store := register.NewStore(register.Config{Pool: pool, Tenants: reg.Current, Log: log,
		Keys: keys.NewFileProvider(filepath.Join(root, "var", "keys"), func() keys.Tenants { return reg.Current() })})
	fv := tenant.Actor{Tenant: "duesseldorf", Kind: tenant.ActorCertificate, Subject: "CN=duesseldorf", Role: "fachverfahren", Purpose: "meldewesen"}
	rec, err := store.Create(ctx, fv, "duesseldorf", "melderegister", register.Create{SubjectKey: "cli-1",
		Attributes: register.Attributes{"familienname": "Kommandozeile", "vornamen": "Anna", "geburtsdatum": "1990-01-01"}})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := store.Get(ctx, fv, "duesseldorf", "melderegister", rec.ID, register.Temporal{}); err != nil {
			t.Fatal(err)
		}
	}
	koeln := tenant.Actor{Tenant: "koeln", Kind: tenant.ActorCertificate, Subject: "CN=koeln", Role: "fachverfahren", Purpose: "meldewesen"}
	if _, err := store.Get(ctx, koeln, "duesseldorf", "melderegister", rec.ID, register.Temporal{}); register.KindOf(err) != register.KindDenied {
		t.Fatalf("koeln reads duesseldorf: %v", err)
	}

	run := func(args ...string) (string, int) {
		t.Helper()
		cmd := parzelle(root, []string{"DATABASE_URL=" + dbURL}, append([]string{"audit", "verify", "--config", "fixtures/node.yaml"}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		var exit *exec.ExitError
		switch {
		case err == nil:
			return string(out), 0
		case errors.As(err, &exit):
			return string(out) + stderr.String(), exit.ExitCode()
		}
		t.Fatalf("audit verify: %v", err)
		return "", 0
	}

	out, code := run("--tenant", "duesseldorf")
	if code != 0 || !strings.Contains(out, "entries: 5\n") || !strings.Contains(out, "result:  ok") {
		t.Errorf("intact chain: exit %d\n%s", code, out)
	}
	out, code = run("--tenant", "koeln")
	if code != 0 || !strings.Contains(out, "entries: 0\n") {
		t.Errorf("koeln's empty chain: exit %d\n%s", code, out)
	}
	out, code = run("--tenant", "muenster")
	if code != 1 || !strings.Contains(out, `no tenant "muenster"`) {
		t.Errorf("unknown tenant: exit %d\n%s", code, out)
	}
	out, code = run()
	if code != 1 || !strings.Contains(out, "--tenant is required") {
		t.Errorf("without --tenant: exit %d\n%s", code, out)
	}

	if _, err := pool.Exec(ctx, `UPDATE audit_entry SET outcome = 'granted' WHERE tenant_id = 'duesseldorf' AND seq = 5`); err != nil {
		t.Fatal(err)
	}
	out, code = run("--tenant", "duesseldorf")
	if code != 1 || !strings.Contains(out, "BROKEN at entry 5\n") || !strings.Contains(out, "problem: entry 5 does not match its hash") {
		t.Errorf("edited entry: exit %d\n%s", code, out)
	}
	out, code = run("--tenant", "duesseldorf", "--json")
	var r register.ChainReport
	if err := json.Unmarshal([]byte(out), &r); code != 1 || err != nil || r.FirstBad != 5 || r.Entries != 5 || r.Tenant != "duesseldorf" {
		t.Errorf("--json: exit %d %v\n%s", code, err, out)
	}
}

func TestPrintChainReport(t *testing.T) {
	for _, c := range []struct {
		r    register.ChainReport
		want string
	}{
		{register.ChainReport{Tenant: "t", Entries: 3, Head: "ab"}, "tenant:  t\nentries: 3\nhead:    ab\nresult:  ok, the chain is intact\n"},
		{register.ChainReport{Tenant: "t", Entries: 3, Head: "ab", FirstBad: 2, Problem: "entry 2 is missing"},
			"tenant:  t\nentries: 3\nhead:    ab\nresult:  BROKEN at entry 2\nproblem: entry 2 is missing\n"},
	} {
		var b bytes.Buffer
		printChainReport(&b, c.r)
		if b.String() != c.want {
			t.Errorf("got\n%s\nwant\n%s", b.String(), c.want)
		}
	}
}
