package tenant

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parzelle/parzelle/db/dbtest"
	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/osci/oscitest"
	"github.com/parzelle/parzelle/pki"
	"github.com/parzelle/parzelle/strictyaml"
)

func tenantFile(id, name, identity string) string {
	return fmt.Sprintf(`id: %s
name: %s
identities:
  - id: %s
    type: xoev
    category: Meldebehörde
    transports: [xta]
clients:
  - name: fachverfahren
    subject: CN=%s,OU=Fachverfahren,O=Parzelle Demo
    identities: [%s]
trust:
  clientCAs: [ca.crt]
`, id, name, identity, id, identity)
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func versionsInDB(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT t.tenant_id || ':' || v.version || ':' || t.active::text
		FROM tenant_config_version v JOIN tenant t USING (tenant_id) ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		rows.Scan(&s)
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

func TestRegistryReload(t *testing.T) {
	pool := dbtest.New(t)
	ctx := context.Background()
	dir := t.TempDir()
	testCA(t, dir, "CA one")
	write(t, filepath.Join(dir, "alpha.yaml"), tenantFile("alpha", "Alpha", "ags:01"))
	write(t, filepath.Join(dir, "beta.yaml"), tenantFile("beta", "Beta", "ags:02"))
	write(t, filepath.Join(dir, ".beta.yaml.swp"), "editor junk")
	reg := NewRegistry(dir, pool, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())

	step := func(name string, wantApplied, wantRemoved string, wantRejected int, wantDB string) Report {
		t.Helper()
		rep, err := reg.Reload(ctx)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := strings.Join(rep.Applied, ","); got != wantApplied {
			t.Errorf("%s: applied %q, want %q", name, got, wantApplied)
		}
		if got := strings.Join(rep.Removed, ","); got != wantRemoved {
			t.Errorf("%s: removed %q, want %q", name, got, wantRemoved)
		}
		if len(rep.Rejected) != wantRejected || len(reg.Problems()) != wantRejected {
			t.Errorf("%s: rejected %v, want %d", name, rep.Rejected, wantRejected)
		}
		if got := versionsInDB(t, pool); got != wantDB {
			t.Errorf("%s: versions in the database\n got %s\nwant %s", name, got, wantDB)
		}
		return rep
	}

	step("first load", "alpha,beta", "", 0, "alpha:1:true beta:1:true")
	step("nothing changed", "", "", 0, "alpha:1:true beta:1:true")

	oldBeta := reg.Current().Tenant("beta")
	write(t, filepath.Join(dir, "beta.yaml"), strings.Replace(tenantFile("beta", "Beta", "ags:02"), "type: xoev", "typ: xoev", 1))
	rep := step("broken file", "", "", 1, "alpha:1:true beta:1:true")
	var yerrs strictyaml.Errors
	if !errors.As(rep.Rejected[0], &yerrs) || !strings.Contains(rep.Rejected[0].Error(), "beta.yaml:5: identities[0].typ: unknown field") {
		t.Errorf("the rejection does not name file, line and field: %v", rep.Rejected[0])
	}
	if reg.Current().Tenant("beta") != oldBeta {
		t.Error("a broken file replaced the tenant's previous configuration")
	}

	write(t, filepath.Join(dir, "gamma.yaml"), tenantFile("gamma", "Gamma", "ags:03"))
	step("new tenant beside a broken file", "gamma", "", 1, "alpha:1:true beta:1:true gamma:1:true")
	if reg.Current().Owner("ags:03").ID != "gamma" {
		t.Error("the new tenant's identity is not live")
	}

	write(t, filepath.Join(dir, "beta.yaml"), tenantFile("beta", "Beta (renamed)", "ags:02"))
	step("fixed and changed", "beta", "", 0, "alpha:1:true beta:1:true beta:2:true gamma:1:true")
	if reg.Current().Tenant("beta").Name != "Beta (renamed)" || reg.Current().Version("beta") != 2 {
		t.Error("the fixed file did not go live as version 2")
	}

	write(t, filepath.Join(dir, "delta.yaml"), tenantFile("delta", "Delta", "ags:01"))
	rep = step("identity of another tenant", "", "", 1, "alpha:1:true beta:1:true beta:2:true gamma:1:true")
	if !strings.Contains(rep.Rejected[0].Error(), `delta.yaml:4: identities[0].id: identity "ags:01" already belongs to tenant alpha`) {
		t.Errorf("conflict error: %v", rep.Rejected[0])
	}
	if reg.Current().Tenant("delta") != nil || reg.Current().Owner("ags:01").ID != "alpha" {
		t.Error("a conflicting tenant went live")
	}
	os.Remove(filepath.Join(dir, "delta.yaml"))

	testCA(t, dir, "CA two") // a rotated trust anchor is a new version of every tenant using it
	step("trust anchor replaced", "alpha,beta,gamma", "", 0, "alpha:1:true alpha:2:true beta:1:true beta:2:true beta:3:true gamma:1:true gamma:2:true")

	os.Remove(filepath.Join(dir, "gamma.yaml"))
	step("file removed", "", "gamma", 0, "alpha:1:true alpha:2:true beta:1:true beta:2:true beta:3:true gamma:1:false gamma:2:false")
	if reg.Current().Owner("ags:03") != nil {
		t.Error("a removed tenant's identity is still live")
	}

	// A poll that finds nothing changed needs no database; a change that
	// cannot be recorded changes nothing.
	pool.Close()
	if _, err := reg.Reload(ctx); err != nil {
		t.Fatalf("a quiet poll failed without the database: %v", err)
	}
	before := reg.Current()
	write(t, filepath.Join(dir, "gamma.yaml"), tenantFile("gamma", "Gamma", "ags:03"))
	if _, err := reg.Reload(ctx); err == nil {
		t.Fatal("Reload without a database succeeded")
	}
	if reg.Current() != before {
		t.Error("a reload that could not be recorded changed the live tenants")
	}
}

func TestRegistryMissingDirectory(t *testing.T) {
	reg := NewRegistry(filepath.Join(t.TempDir(), "nope"), nil, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if _, err := reg.Reload(context.Background()); err == nil {
		t.Fatal("want an error for a missing tenant directory")
	}
}

func TestAuthenticate(t *testing.T) {
	dir := t.TempDir()
	caOne := testCA(t, dir, "CA one")
	write(t, filepath.Join(dir, "alpha.yaml"), tenantFile("alpha", "Alpha", "ags:01"))
	pinned := strings.Replace(tenantFile("beta", "Beta", "ags:02"), "clients:\n", "clients:\n  - name: pinned\n    sha256: PIN\n    identities: [ags:02]\n", 1)
	caTwo, err := pki.NewAuthority(pkix.Name{CommonName: "CA two"}, pki.ECDSAP256, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	issue := func(ca *pki.Authority, cn string, from, to time.Time, client bool) *x509.Certificate {
		t.Helper()
		cert, _, err := ca.Issue(pki.Template{Subject: pki.DemoClientSubject(cn), NotBefore: from, NotAfter: to, Client: client, Server: !client}, pki.ECDSAP256)
		if err != nil {
			t.Fatal(err)
		}
		return cert
	}
	valid := func(ca *pki.Authority, cn string) *x509.Certificate {
		return issue(ca, cn, now.Add(-time.Hour), now.Add(time.Hour), true)
	}
	pin := valid(caOne, "whatever")
	write(t, filepath.Join(dir, "beta.yaml"), strings.Replace(pinned, "PIN", pki.Fingerprint(pin), 1))
	reg := NewRegistry(dir, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if rep, err := reg.Reload(context.Background()); err != nil || len(rep.Rejected) > 0 {
		t.Fatalf("%v %v", err, rep.Rejected)
	}
	set := reg.Current()

	cases := []struct {
		name  string
		cert  *x509.Certificate
		grant string // "tenant/client", or "" for refused
	}{
		{"listed subject, own CA", valid(caOne, "alpha"), "alpha/fachverfahren"},
		{"pinned fingerprint", pin, "beta/pinned"},
		{"unlisted subject, trusted CA", valid(caOne, "mallory"), ""},
		{"listed subject, foreign CA", valid(caTwo, "alpha"), ""},
		{"expired", issue(caOne, "alpha", now.Add(-48*time.Hour), now.Add(-24*time.Hour), true), ""},
		{"not yet valid", issue(caOne, "alpha", now.Add(time.Hour), now.Add(48*time.Hour), true), ""},
		{"server certificate", issue(caOne, "alpha", now.Add(-time.Hour), now.Add(time.Hour), false), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := set.Authenticate([]*x509.Certificate{tc.cert}, now)
			if tc.grant == "" {
				if !errors.Is(err, ErrUnknownClient) {
					t.Fatalf("want ErrUnknownClient, got %v %+v", err, p)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Grants[0].Tenant + "/" + p.Grants[0].Client; got != tc.grant || len(p.Grants) != 1 {
				t.Errorf("grants %+v, want %s", p.Grants, tc.grant)
			}
			if !p.MayActFor(p.Grants[0].Identities[0]) || p.MayActFor("ags:99") {
				t.Error("MayActFor is wrong")
			}
		})
	}

	// A chain that verified once is remembered only while it is valid.
	short := issue(caOne, "alpha", now.Add(-time.Hour), now.Add(time.Minute), true)
	for _, tc := range []struct {
		at   time.Time
		want bool
	}{{now, true}, {now, true}, {now.Add(2 * time.Minute), false}, {now.Add(-2 * time.Hour), false}} {
		_, err := set.Authenticate([]*x509.Certificate{short}, tc.at)
		if (err == nil) != tc.want {
			t.Errorf("authenticate at %v: %v, want accepted %v", tc.at.Sub(now), err, tc.want)
		}
	}
}

// TestRegistryPostboxConflict: two tenants cannot have postboxes with the
// same cipher certificate, since OSCI clients address a postbox by it;
// the first in name order keeps it and the other is rejected, naming the
// field.
func TestRegistryPostboxConflict(t *testing.T) {
	pool := dbtest.New(t)
	dir := t.TempDir()
	testCA(t, dir, "CA")
	certs := oscitest.Certs
	postbox := func(id, identity string) string {
		return fmt.Sprintf(`id: %s
name: %s
identities:
  - id: %s
    type: osci
    category: Postfach
    transports: [osci]
    osci:
      cipherCertificate: %s/bob_cipher_4096.cer
      signatureCertificate: %s/bob_signature_4096.cer
`, id, id, identity, certs, certs)
	}
	write(t, filepath.Join(dir, "alpha.yaml"), postbox("alpha", "osci:bob"))
	write(t, filepath.Join(dir, "beta.yaml"), postbox("beta", "osci:bob-again"))
	reg := NewRegistry(dir, pool, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	rep, err := reg.Reload(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rejected) != 1 || !strings.Contains(rep.Rejected[0].Error(), "beta.yaml:9: identities[0].osci.cipherCertificate: the cipher certificate addresses an OSCI postbox of tenant alpha already") {
		t.Fatalf("rejected %v", rep.Rejected)
	}
	cert, err := keys.LoadCertificates(filepath.Join(certs, "bob_cipher_4096.cer"))
	if err != nil {
		t.Fatal(err)
	}
	box, ok := reg.Current().Postbox(cert[0].Raw)
	if !ok || box.Tenant.ID != "alpha" || box.Identity.ID != "osci:bob" || box.Identity.OSCI.Signature() == nil {
		t.Errorf("postbox %+v %v", box, ok)
	}
}
