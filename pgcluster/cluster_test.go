package pgcluster

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestInitRelocatesForThePostgresUser: as root the cluster runs as the
// postgres user; in a checkout it cannot enter (like any under /root) the
// cluster is made where it can, and the checkout's directory links to it.
// An existing cluster there is not moved: that gets an error saying what to
// do.
func TestInitRelocatesForThePostgresUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root hands the cluster to the postgres user")
	}
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	old := RelocateBase
	RelocateBase = base
	t.Cleanup(func() { RelocateBase = old })

	private := t.TempDir()
	if err := os.Chmod(private, 0o700); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(private, "checkout", "var", "pg")
	c, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	c.Throwaway = true
	ctx := context.Background()
	if err := c.Init(ctx); err != nil {
		t.Fatalf("Init in a directory the postgres user cannot enter: %v", err)
	}
	if !strings.HasPrefix(c.Dir, base) {
		t.Errorf("the cluster is in %s, want it under %s", c.Dir, base)
	}
	if link, err := os.Readlink(dir); err != nil || link != c.Dir {
		t.Errorf("%s links to %q (%v), want %s", dir, link, err, c.Dir)
	}
	if started, err := c.Start(ctx); err != nil || !started {
		t.Fatalf("Start: %v %v", started, err)
	}
	t.Cleanup(func() { c.Stop(context.Background()) })
	// A later command finds the same cluster through the checkout's path.
	again, err := New(dir)
	if err != nil || again.Dir != c.Dir || !again.Running(ctx) {
		t.Errorf("New(%s) later: %+v %v, want the running cluster in %s", dir, again, err, c.Dir)
	}

	// A cluster that already lies where the postgres user cannot go.
	stuck := filepath.Join(private, "other", "var", "pg")
	if err := os.MkdirAll(filepath.Join(stuck, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := New(stuck)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Init(ctx); err == nil || !strings.Contains(err.Error(), "cannot enter "+private) || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Fatalf("want an error naming %s and the ways out, got %v", private, err)
	}
}

func TestURLEscapesPassword(t *testing.T) {
	got := URL("parzelle", "p@ss/word", 5432, "parzelle")
	if got != "postgres://parzelle:p%40ss%2Fword@127.0.0.1:5432/parzelle?sslmode=disable" {
		t.Errorf("URL = %s", got)
	}
}

// TestLifecycle: an interrupted initdb leaves debris that the next Init
// clears; Start reports whether it started the server, so a caller that
// finds one running leaves it running; Stop stops it.
func TestLifecycle(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{filepath.Dir(root), root} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c, err := New(filepath.Join(root, "pg"))
	if err != nil {
		t.Fatal(err)
	}
	c.Throwaway = true
	ctx := context.Background()
	// Debris of an interrupted initdb.
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(c.Dir, "data", "base"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.Dir, ".initdb-pw"), []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Init(ctx); err != nil {
		t.Fatalf("Init over the debris of an interrupted one: %v", err)
	}
	if _, err := os.Stat(filepath.Join(c.Dir, ".initdb-pw")); !os.IsNotExist(err) {
		t.Error("the initdb password file was left behind")
	}
	started, err := c.Start(ctx)
	if err != nil || !started {
		t.Fatalf("Start: started=%v %v", started, err)
	}
	t.Cleanup(func() { c.Stop(context.Background()) })
	// The superuser connects through the cluster's socket: a connection
	// without a server address.
	u, err := c.SuperuserURL("postgres")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(u, "host="+url.QueryEscape(filepath.Join(c.Dir, "run"))) {
		t.Errorf("superuser URL %s does not name the cluster's socket", u)
	}
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	var tcp bool
	if err := conn.QueryRow(ctx, `SELECT inet_server_addr() IS NOT NULL`).Scan(&tcp); err != nil || tcp {
		t.Errorf("connected over TCP (%v), want the Unix-domain socket", err)
	}
	conn.Close(ctx)
	again, err := c.Start(ctx)
	if err != nil || again {
		t.Errorf("second Start: started=%v %v; want a reused server", again, err)
	}
	if !c.Running(ctx) {
		t.Error("Running is false while the server runs")
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if c.Running(ctx) {
		t.Error("the server still runs after Stop")
	}
}

// TestDeepDirectoryKeepsTCP: a cluster whose socket path would be longer
// than a Unix-domain socket's may be gets no socket, and its URL is TCP.
func TestDeepDirectoryKeepsTCP(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{filepath.Dir(root), root} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	deep := filepath.Join(root, strings.Repeat("d", 100))
	if err := os.Mkdir(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := New(filepath.Join(deep, "pg"))
	if err != nil {
		t.Fatal(err)
	}
	c.Throwaway = true
	if err := c.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(c.Dir, "run")); !os.IsNotExist(err) {
		t.Errorf("a socket directory was made for a path too long for a socket: %v", err)
	}
	u, err := c.URL("parzelle", "pw", "parzelle")
	if err != nil || !strings.Contains(u, "@127.0.0.1:") {
		t.Errorf("URL = %s, %v; want TCP at 127.0.0.1", u, err)
	}
}
