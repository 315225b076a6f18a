package pgcluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// EnsureDatabase makes sure the login role owner exists with the given
// password and owns the database name, creating what is missing. It
// connects with superuserURL.
func EnsureDatabase(ctx context.Context, superuserURL, name, owner, password string) error {
	conn, err := pgx.Connect(ctx, superuserURL)
	if err != nil {
		return fmt.Errorf("pgcluster: connect as superuser: %w", err)
	}
	defer conn.Close(ctx)
	role := pgx.Identifier{owner}.Sanitize()
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, owner).Scan(&exists); err != nil {
		return fmt.Errorf("pgcluster: look up role %s: %w", owner, err)
	}
	verb := "ALTER"
	if !exists {
		verb = "CREATE"
	}
	// The password travels as a literal: utility statements take no parameters.
	pw := "'" + escapeLiteral(password) + "'"
	if _, err := conn.Exec(ctx, fmt.Sprintf("%s ROLE %s LOGIN PASSWORD %s", verb, role, pw)); err != nil && !isDuplicate(err) {
		return fmt.Errorf("pgcluster: %s role %s: %w", verb, owner, err)
	}
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return fmt.Errorf("pgcluster: look up database %s: %w", name, err)
	}
	if !exists {
		if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s OWNER %s", pgx.Identifier{name}.Sanitize(), role)); err != nil && !isDuplicate(err) {
			return fmt.Errorf("pgcluster: create database %s: %w", name, err)
		}
	}
	return nil
}

func escapeLiteral(s string) string {
	out := make([]rune, 0, len(s))
	for _, r := range s {
		if r == '\'' {
			out = append(out, '\'')
		}
		out = append(out, r)
	}
	return string(out)
}

// isDuplicate tells a concurrent creation of the same object apart from a
// real failure.
func isDuplicate(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "42710" || pgErr.Code == "42P04" || pgErr.Code == "23505")
}
