package tenant

import (
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parzelle/parzelle/fixtures"
	"github.com/parzelle/parzelle/golden"
	"github.com/parzelle/parzelle/pki"
)

// testCA is a CA for tests, written as ca.crt into dir.
func testCA(t *testing.T, dir, name string) *pki.Authority {
	t.Helper()
	ca, err := pki.NewAuthority(pkix.Name{CommonName: name}, pki.ECDSAP256, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), pki.EncodeCertificate(ca.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	return ca
}

// TestParseRejects checks every file in testdata/bad against the errors
// in its .golden file: each names the file, the line and the field.
func TestParseRejects(t *testing.T) {
	dir := t.TempDir()
	ca := testCA(t, dir, "Test CA")
	leaf, key, err := ca.Issue(pki.Template{Subject: pkix.Name{CommonName: "leaf"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), Client: true}, pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFiles(filepath.Join(dir, "leaf.crt"), filepath.Join(dir, "key.pem"), leaf, key); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	if len(files) < 5 {
		t.Fatalf("only %d bad files", len(files))
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, filepath.Base(file))
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = ParseFile(path)
			if err == nil {
				t.Fatal("accepted a bad tenant file")
			}
			got := strings.ReplaceAll(err.Error(), dir, "testdata/bad") + "\n"
			golden.Check(t, strings.TrimSuffix(file, ".yaml")+".golden", []byte(got))
		})
	}
}

// TestParseDemoTenants checks the demo tenants under fixtures/ against a
// freshly generated demo PKI laid out as `make run` lays it out.
func TestParseDemoTenants(t *testing.T) {
	root := t.TempDir()
	if _, err := pki.Demo(filepath.Join(root, "var", "pki"), []string{"duesseldorf", "koeln"}, nil, pki.ECDSAP256, time.Now()); err != nil {
		t.Fatal(err)
	}
	fixtures.CopyDemo(t, root)
	for id, ags := range map[string]string{"duesseldorf": "ags:05111000", "koeln": "ags:05315000"} {
		c, err := ParseFile(filepath.Join(root, "fixtures", "tenants", id+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if c.ID != id || len(c.Identities) < 2 || c.Identities[0].ID != ags || c.Identities[0].Type != "xoev" || c.Identities[0].Category != "Meldebehörde" {
			t.Errorf("%s: got %+v", id, c.Identities)
		}
		if in, ok := c.Inbox("register:" + strings.TrimPrefix(ags, "ags:")); !ok || in.Register != "melderegister" || !in.MayWrite(ags) {
			t.Errorf("%s: register inbox %+v %v", id, in, ok)
		}
		if len(c.caCerts) != 1 {
			t.Errorf("%s: %d client CAs", id, len(c.caCerts))
		}
	}
}

func TestNormalizeDN(t *testing.T) {
	for _, tc := range []struct {
		a, b  string
		equal bool
	}{
		{"CN=a,OU=b,O=c", "O=c, OU=b, cn=a", true},
		{"CN=a\\,b,O=c", "O=c,CN=a\\,b", true},
		{"CN=a,O=c", "CN=a,O=d", false},
		{"CN=a", "CN=a,O=c", false},
	} {
		a, b := normalizeDN(tc.a), normalizeDN(tc.b)
		if (a == b) != tc.equal {
			t.Errorf("%q vs %q: equal=%v, want %v", tc.a, tc.b, a == b, tc.equal)
		}
	}
	for _, bad := range []string{"", "just a name", "CN=", "=x", "CN=a,,O=b"} {
		if normalizeDN(bad) != "" {
			t.Errorf("normalizeDN(%q) accepted", bad)
		}
	}
}
