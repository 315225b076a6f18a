package pgcluster

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInitRefusesDirectoryThePostgresUserCannotEnter: as root the cluster
// runs as the postgres user; a checkout it cannot enter (like one under
// /root) gets an error that says what to do, and nothing is created.
func TestInitRefusesDirectoryThePostgresUserCannotEnter(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root hands the cluster to the postgres user")
	}
	private := t.TempDir()
	if err := os.Chmod(private, 0o700); err != nil {
		t.Fatal(err)
	}
	c, err := New(filepath.Join(private, "checkout", "var", "pg"))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Init(context.Background())
	if err == nil || !strings.Contains(err.Error(), "cannot enter "+private) || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Fatalf("want an error naming %s and the ways out, got %v", private, err)
	}
	if c.Initialized() {
		t.Error("a cluster was created anyway")
	}
}

func TestURLEscapesPassword(t *testing.T) {
	got := URL("parzelle", "p@ss/word", 5432, "parzelle")
	if got != "postgres://parzelle:p%40ss%2Fword@127.0.0.1:5432/parzelle?sslmode=disable" {
		t.Errorf("URL = %s", got)
	}
}
