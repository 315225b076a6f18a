package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadDemoConfig(t *testing.T) {
	t.Setenv("DATABASE_URL", "")
	n, err := Load(filepath.Join("..", "fixtures", "node.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if n.Listen.Transport != "127.0.0.1:8443" || n.Listen.Ops != "127.0.0.1:8080" {
		t.Errorf("listeners %+v", n.Listen)
	}
	// Relative paths are relative to the file: fixtures/../var/…
	if want := filepath.Join("..", "var", "pg"); n.Database.Embedded != want {
		t.Errorf("embedded %q, want %q", n.Database.Embedded, want)
	}
	if want := filepath.Join("..", "fixtures", "tenants"); n.Paths.Tenants != want {
		t.Errorf("tenants %q, want %q", n.Paths.Tenants, want)
	}
	if n.TenantReload != 2*time.Second || n.Database.URL != "" {
		t.Errorf("reload %v url %q", n.TenantReload, n.Database.URL)
	}
}

func TestDatabaseURLFromEnvironment(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://x@127.0.0.1:1/y")
	n, err := Load(filepath.Join("..", "fixtures", "node.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if n.Database.URL != "postgres://x@127.0.0.1:1/y" {
		t.Errorf("DATABASE_URL did not override: %q", n.Database.URL)
	}
}

func TestLoadRejects(t *testing.T) {
	t.Setenv("DATABASE_URL", "")
	path := filepath.Join(t.TempDir(), "node.yaml")
	bad := `listen:
  transport: 8443
tls:
  cert: server.crt
keys:
  provider: vault
  dir: keys
paths:
  tenants: tenants
log:
  format: xml
  level: loud
tenantReload: -1s
retention:
  deadLetters: 12h
osci:
  clientCert: osci-client.crt
`
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil {
		t.Fatal("accepted a broken node configuration")
	}
	got := strings.ReplaceAll(err.Error(), path, "node.yaml")
	want := `node.yaml:1: database: give url or embedded (or set DATABASE_URL)
node.yaml:2: listen.ops: required field is missing
node.yaml:2: listen.transport: want host:port, got "8443"
node.yaml:4: tls.key: required field is missing
node.yaml:6: keys.provider: unknown key provider "vault" (known: file)
node.yaml:11: log.format: want text or json, got "xml"
node.yaml:12: log.level: want debug, info, warn or error, got "loud"
node.yaml:13: tenantReload: must not be negative
node.yaml:15: retention.deadLetters: give at least a day (1d): operators need the time to look at what they resolved
node.yaml:17: osci: clientCert and clientKey go together`
	if got != want {
		t.Errorf("errors differ\ngot:\n%s\nwant:\n%s", got, want)
	}
}
