package db

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migration is one of the project's numbered SQL migrations.
type Migration struct {
	Version int
	Name    string
	SQL     string
	SHA256  string
}

// Migrations returns the project's migrations in order.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("db: read migrations: %w", err)
	}
	var ms []Migration
	for _, e := range entries {
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("db: migration file %s is not named NNN_name.sql", e.Name())
		}
		body, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, fmt.Errorf("db: read migration %s: %w", e.Name(), err)
		}
		sum := sha256.Sum256(body)
		ms = append(ms, Migration{Version: v, Name: name, SQL: string(body), SHA256: hex.EncodeToString(sum[:])})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i, m := range ms {
		if m.Version != i+1 {
			return nil, fmt.Errorf("db: migrations must be numbered 1, 2, 3 …; found %d at position %d", m.Version, i+1)
		}
	}
	return ms, nil
}

// migrationLock serialises concurrent migrators of one database.
const migrationLock = 0x70617a656c6c65 // "pazelle"

// Migrate brings the schema up to date: the tenant role, River's
// migrations (each in its own transaction, as River needs), then the
// project's in one transaction, all under an advisory lock so that
// concurrent nodes migrate once. A failed project migration changes
// nothing; an applied migration whose file has changed since is an error.
func Migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	if err := EnsureTenantRole(ctx, pool, ""); err != nil {
		return err
	}
	ms, err := Migrations()
	if err != nil {
		return err
	}
	lockConn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("db: acquire connection: %w", err)
	}
	defer lockConn.Release()
	if _, err := lockConn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLock); err != nil {
		return fmt.Errorf("db: take migration lock: %w", err)
	}
	defer lockConn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrationLock)

	migrator, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Logger: log})
	if err != nil {
		return fmt.Errorf("db: river migrator: %w", err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("db: river migrations: %w", err)
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS parzelle_migration (
			version    integer PRIMARY KEY,
			name       text NOT NULL,
			sha256     text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("db: create migration table: %w", err)
		}
		applied := map[int]string{}
		rows, err := tx.Query(ctx, `SELECT version, sha256 FROM parzelle_migration`)
		if err != nil {
			return fmt.Errorf("db: read applied migrations: %w", err)
		}
		for rows.Next() {
			var v int
			var sum string
			if err := rows.Scan(&v, &sum); err != nil {
				return fmt.Errorf("db: read applied migrations: %w", err)
			}
			applied[v] = sum
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("db: read applied migrations: %w", err)
		}
		for _, m := range ms {
			if sum, ok := applied[m.Version]; ok {
				if sum != m.SHA256 {
					return fmt.Errorf("db: migration %03d_%s was changed after it was applied (applied sha256 %s, file %s); add a new migration instead", m.Version, m.Name, sum, m.SHA256)
				}
				continue
			}
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("db: apply migration %03d_%s: %w", m.Version, m.Name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO parzelle_migration (version, name, sha256) VALUES ($1, $2, $3)`, m.Version, m.Name, m.SHA256); err != nil {
				return fmt.Errorf("db: record migration %03d_%s: %w", m.Version, m.Name, err)
			}
			log.Info("applied migration", "version", m.Version, "name", m.Name)
		}
		if len(applied) > len(ms) {
			return fmt.Errorf("db: the database has %d migrations applied but this binary knows only %d; run a newer parzelle", len(applied), len(ms))
		}
		return nil
	})
}

// execQuerier is what EnsureTenantRole needs of a connection or pool.
type execQuerier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// EnsureTenantRole creates TenantRole when missing and makes member (the
// connected role when empty) a member of it, which InTenant needs to switch
// to it. Roles belong to the whole cluster, so this runs outside the
// migration transaction and tolerates a concurrent creation.
func EnsureTenantRole(ctx context.Context, q execQuerier, member string) error {
	var exists, isMember bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1),
		EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1) AND pg_has_role(COALESCE(NULLIF($2, ''), current_user), $1, 'MEMBER')`,
		TenantRole, member).Scan(&exists, &isMember)
	if err != nil {
		return fmt.Errorf("db: look up role %s: %w", TenantRole, err)
	}
	grantee := "CURRENT_USER"
	if member != "" {
		grantee = pgx.Identifier{member}.Sanitize()
	}
	hint := fmt.Sprintf("as a superuser run: CREATE ROLE %[1]s NOLOGIN; GRANT %[1]s TO <the role in DATABASE_URL>", TenantRole)
	if !exists {
		if _, err := q.Exec(ctx, "CREATE ROLE "+TenantRole+" NOLOGIN NOINHERIT"); err != nil && !isDuplicate(err) {
			return fmt.Errorf("db: create role %s (%s): %w", TenantRole, hint, err)
		}
	}
	if !isMember {
		if _, err := q.Exec(ctx, "GRANT "+TenantRole+" TO "+grantee); err != nil {
			return fmt.Errorf("db: make %s a member of %s (%s): %w", grantee, TenantRole, hint, err)
		}
	}
	return nil
}

func isDuplicate(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "42710" || pgErr.Code == "23505")
}
