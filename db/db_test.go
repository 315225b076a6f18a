package db_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/db/dbtest"
)

func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// seedProbe makes a tenant-owned table the way migrations do and fills it
// with one row per tenant, as the platform role.
func seedProbe(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	for _, sql := range []string{
		`CREATE TABLE probe (id serial PRIMARY KEY, tenant_id text NOT NULL, secret text NOT NULL)`,
		`SELECT parzelle_tenant_table('probe', 'SELECT, INSERT, UPDATE, DELETE')`,
		`GRANT USAGE ON SEQUENCE probe_id_seq TO parzelle_tenant`,
		`INSERT INTO probe (tenant_id, secret) VALUES ('duesseldorf', 'd-secret'), ('koeln', 'k-secret')`,
	} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
}

// TestRowLevelSecurityIsolatesTenants runs deliberately wrong queries in
// tenant duesseldorf's context that name koeln's rows outright: the
// database itself refuses to show or change them.
func TestRowLevelSecurityIsolatesTenants(t *testing.T) {
	pool := dbtest.New(t)
	seedProbe(t, pool)
	ctx := context.Background()

	cases := []struct {
		name string
		sql  string
		// wantRows is the rows a SELECT returns or a write affects; wantCode
		// an SQLSTATE the statement must fail with instead.
		wantRows int64
		wantCode string
	}{
		{"read with forged WHERE", `SELECT secret FROM probe WHERE tenant_id = 'koeln'`, 0, ""},
		{"read by guessed id", `SELECT secret FROM probe WHERE id = 2`, 0, ""},
		{"read everything", `SELECT secret FROM probe`, 1, ""},
		{"update other tenant", `UPDATE probe SET secret = 'stolen' WHERE tenant_id = 'koeln'`, 0, ""},
		{"move own row to other tenant", `UPDATE probe SET tenant_id = 'koeln' WHERE tenant_id = 'duesseldorf'`, 0, "42501"},
		{"delete other tenant", `DELETE FROM probe WHERE tenant_id = 'koeln'`, 0, ""},
		{"insert for other tenant", `INSERT INTO probe (tenant_id, secret) VALUES ('koeln', 'planted')`, 0, "42501"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var rows int64
			err := db.InTenant(ctx, pool, "duesseldorf", func(tx pgx.Tx) error {
				tag, err := tx.Exec(ctx, tc.sql)
				rows = tag.RowsAffected()
				return err
			})
			if tc.wantCode != "" {
				if pgCode(err) != tc.wantCode {
					t.Fatalf("want SQLSTATE %s, got %v", tc.wantCode, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rows != tc.wantRows {
				t.Errorf("%d rows, want %d", rows, tc.wantRows)
			}
		})
	}
	// Whatever was tried, koeln's row is as it was, and nothing was planted.
	var secret string
	var n int
	if err := pool.QueryRow(ctx, `SELECT secret, (SELECT count(*) FROM probe) FROM probe WHERE tenant_id = 'koeln'`).Scan(&secret, &n); err != nil {
		t.Fatal(err)
	}
	if secret != "k-secret" || n != 2 {
		t.Errorf("koeln's row is %q and there are %d rows; want k-secret and 2", secret, n)
	}
	// Koeln still sees its own row through the same mechanism.
	err := db.InTenant(ctx, pool, "koeln", func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT secret FROM probe`).Scan(&secret)
	})
	if err != nil || secret != "k-secret" {
		t.Errorf("koeln reads %q, %v", secret, err)
	}
}

// TestTenantRoleFailsClosed: the tenant role without a tenant sees nothing,
// and cannot reach platform tables at all.
func TestTenantRoleFailsClosed(t *testing.T) {
	pool := dbtest.New(t)
	seedProbe(t, pool)
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL ROLE parzelle_tenant`); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM probe`).Scan(&n); err != nil {
			return err
		}
		if n != 0 {
			t.Errorf("tenant role without a tenant sees %d rows", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"parzelle_migration", "river_job"} {
		err := db.InTenant(ctx, pool, "duesseldorf", func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "SELECT 1 FROM "+table)
			return err
		})
		if pgCode(err) != "42501" {
			t.Errorf("tenant context reading %s: want permission denied, got %v", table, err)
		}
	}
	for _, id := range []string{"", "Koeln", "koeln'; --", "x"} {
		err := db.InTenant(ctx, pool, id, func(pgx.Tx) error { return nil })
		if !errors.Is(err, db.ErrNoTenant) {
			t.Errorf("InTenant(%q): want ErrNoTenant, got %v", id, err)
		}
	}
}

// TestEveryTenantTableIsProtected guards future migrations: every table
// with a tenant_id column has row-level security and the tenant policy.
func TestEveryTenantTableIsProtected(t *testing.T) {
	pool := dbtest.New(t)
	rows, err := pool.Query(context.Background(), `
		SELECT c.relname, c.relrowsecurity,
		       EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = 'tenant_isolation'
		               AND p.polroles @> ARRAY[(SELECT oid FROM pg_roles WHERE rolname = 'parzelle_tenant')])
		FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
		WHERE c.relkind IN ('r', 'p') AND c.relnamespace = 'public'::regnamespace`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var name string
		var rls, policy bool
		if err := rows.Scan(&name, &rls, &policy); err != nil {
			t.Fatal(err)
		}
		seen++
		if !rls || !policy {
			t.Errorf("table %s carries tenant_id but row-level security=%v, tenant policy=%v; use parzelle_tenant_table()", name, rls, policy)
		}
	}
	if seen < 2 {
		t.Errorf("found only %d tenant tables; the check is looking in the wrong place", seen)
	}
}

func TestMigrateAgainChangesNothing(t *testing.T) {
	pool := dbtest.New(t)
	ctx := context.Background()
	if err := db.Migrate(ctx, pool, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	ms, err := db.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM parzelle_migration`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(ms) {
		t.Errorf("%d migrations recorded, want %d", n, len(ms))
	}
	if _, err := pool.Exec(ctx, `UPDATE parzelle_migration SET sha256 = 'edited' WHERE version = 1`); err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx, pool, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil {
		t.Error("Migrate accepted a migration whose applied checksum differs from the file")
	}
}

// TestEnsureTenantRoleExplainsMissingPrivilege: a DATABASE_URL role that
// may not join the tenant role gets told what a superuser has to run.
func TestEnsureTenantRoleExplainsMissingPrivilege(t *testing.T) {
	ctx := context.Background()
	dbURL := dbtest.NewURL(t)
	admin, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	role := "weak_" + strings.ReplaceAll(strings.ToLower(t.Name()), "/", "_")[:20]
	admin.Exec(ctx, "DROP ROLE IF EXISTS "+role) // left over from an interrupted run on a shared server
	if _, err := admin.Exec(ctx, "CREATE ROLE "+role+" LOGIN PASSWORD 'weak'"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Exec(context.Background(), "DROP ROLE IF EXISTS "+role) })
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(role, "weak")
	weak, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	err = db.EnsureTenantRole(ctx, weak, "")
	weak.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "as a superuser run: CREATE ROLE parzelle_tenant NOLOGIN; GRANT parzelle_tenant TO") {
		t.Fatalf("want the superuser hint, got %v", err)
	}
}

// TestSendInTenant: a batch sent in a tenant runs as the tenant role,
// confined to the tenant's rows, and leaves the connection as it was.
func TestSendInTenant(t *testing.T) {
	pool := dbtest.New(t)
	seedProbe(t, pool)
	ctx := context.Background()
	b := &pgx.Batch{}
	b.Queue(`SELECT current_user, (SELECT count(*) FROM probe), (SELECT secret FROM probe)`)
	b.Queue(`INSERT INTO probe (tenant_id, secret) VALUES ('koeln', 'planted')`)
	res, err := db.SendInTenant(ctx, pool, "duesseldorf", b)
	if err != nil {
		t.Fatal(err)
	}
	var user, secret string
	var n int
	if err := res.QueryRow().Scan(&user, &n, &secret); err != nil || user != db.TenantRole || n != 1 || secret != "d-secret" {
		t.Errorf("in the batch: user %s sees %d rows (%s), %v; want %s seeing duesseldorf's one", user, n, secret, err, db.TenantRole)
	}
	if _, err := res.Exec(); pgCode(err) != "42501" {
		t.Errorf("insert for another tenant: %v, want SQLSTATE 42501", err)
	}
	res.Close()
	if err := pool.QueryRow(ctx, `SELECT current_user, (SELECT count(*) FROM probe)`).Scan(&user, &n); err != nil || user == db.TenantRole || n != 2 {
		t.Errorf("after the batch: user %s sees %d rows, %v", user, n, err)
	}
}
