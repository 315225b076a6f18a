package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parzelle/parzelle/pki"
	"github.com/parzelle/parzelle/tenant"
)

// TestTokenIssue issues a token with the demo IdP key of `parzelle pki
// demo`, authenticates it through the demo tenant files and checks what
// their rules let the person do.
func TestTokenIssue(t *testing.T) {
	root := demoCheckout(t)
	args := []string{"token", "issue", "--key", "var/pki/tenants/duesseldorf/idp.key", "--issuer", "https://idp.duesseldorf.demo",
		"--audience", "parzelle", "--tenant", "duesseldorf", "--subject", "clerk1", "--role", "sachbearbeitung", "--purpose", "auskunft", "--ttl", "10m"}
	cmd := parzelle(root, nil, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("token issue: %v\n%s", err, stderr.String())
	}
	raw := strings.TrimSpace(string(out))
	if strings.Count(raw, ".") != 2 || strings.ContainsAny(raw, " \n") {
		t.Fatalf("not a compact JWS: %q", raw)
	}

	var configs []*tenant.Config
	for _, id := range []string{"duesseldorf", "koeln"} {
		c, err := tenant.ParseFile(filepath.Join(root, "fixtures", "tenants", id+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		configs = append(configs, c)
	}
	set := tenant.NewSet(configs...)
	now := time.Now()
	actor, err := set.AuthenticateToken(raw, now)
	if want := (tenant.Actor{Tenant: "duesseldorf", Kind: "token", Subject: "clerk1", Role: "sachbearbeitung", Purpose: "auskunft"}); err != nil || actor != want {
		t.Fatalf("AuthenticateToken: %+v, %v; want %+v", actor, err, want)
	}
	duesseldorf := set.Tenant("duesseldorf")
	for _, tc := range []struct {
		op      string
		allowed bool
	}{{tenant.OpRead, true}, {tenant.OpSearch, true}, {tenant.OpExport, false}, {tenant.OpWrite, false}} {
		if d := duesseldorf.Authorize(actor, tc.op, "melderegister"); d.Allowed != tc.allowed {
			t.Errorf("%s: %+v, want allowed=%v", tc.op, d, tc.allowed)
		}
	}
	if d := set.Tenant("koeln").Authorize(actor, tenant.OpRead, "melderegister"); d.Allowed {
		t.Errorf("Düsseldorf's clerk may read Köln's register: %+v", d)
	}
	if _, err := set.AuthenticateToken(raw, now.Add(12*time.Minute)); !errors.Is(err, tenant.ErrBadToken) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("after its TTL: %v", err)
	}

	// Köln does not trust Düsseldorf's IdP key for its own issuer.
	var buf bytes.Buffer
	if err := tokenIssue([]string{"--key", filepath.Join(root, "var/pki/tenants/duesseldorf/idp.key"), "--issuer", "https://idp.koeln.demo",
		"--audience", "parzelle", "--tenant", "koeln", "--subject", "x", "--role", "fachverfahren"}, &buf, now); err != nil {
		t.Fatal(err)
	}
	if _, err := set.AuthenticateToken(strings.TrimSpace(buf.String()), now); !errors.Is(err, tenant.ErrBadToken) || !strings.Contains(err.Error(), "signature does not verify") {
		t.Errorf("a token for Köln signed with Düsseldorf's key: %v", err)
	}
}

func TestTokenIssueUsage(t *testing.T) {
	dir := t.TempDir()
	key, err := pki.NewKey(pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "idp.key")
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	all := func(extra ...string) []string {
		return append([]string{"--key", keyFile, "--issuer", "https://idp.example", "--audience", "a", "--tenant", "t", "--subject", "s", "--role", "r"}, extra...)
	}
	for _, tc := range []struct {
		name string
		args []string
		err  string
	}{
		{"nothing", nil, "missing --key, --issuer, --audience, --tenant, --subject, --role"},
		{"no role", []string{"--key", "k", "--issuer", "i", "--audience", "a", "--tenant", "t", "--subject", "s"}, "missing --role"},
		{"no key file", []string{"--key", filepath.Join(dir, "none.key"), "--issuer", "i", "--audience", "a", "--tenant", "t", "--subject", "s", "--role", "r"}, "no such file"},
		{"zero ttl", all("--ttl", "0s"), "the lifetime must be positive"},
		{"bad ttl", all("--ttl", "soon"), `invalid value "soon" for flag -ttl`},
		{"stray argument", []string{"--role", "r", "extra"}, `unexpected argument "extra"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := tokenIssue(tc.args, &out, time.Now())
			if err == nil || !strings.Contains(err.Error(), tc.err) || out.Len() != 0 {
				t.Errorf("got %v (output %q), want an error with %q", err, out.String(), tc.err)
			}
		})
	}
}
