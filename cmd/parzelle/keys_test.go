package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parzelle/parzelle/db/dbtest"
)

// TestKeysList lists the demo tenants' keys as `make run` sets them up,
// then after a tenant file breaks.
func TestKeysList(t *testing.T) {
	root := demoCheckout(t)
	out, err := parzelle(root, nil, "keys", "list", "--config", "fixtures/node.yaml").CombinedOutput()
	if err != nil {
		t.Fatalf("keys list: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 10 || !regexp.MustCompile(`^TENANT\s+USAGE\s+SUBJECT\s+KEY\s+NOT AFTER\s+DAYS LEFT\s+STATUS$`).MatchString(lines[0]) {
		t.Fatalf("want a header and 9 certificates:\n%s", out)
	}
	for _, want := range []string{
		`duesseldorf\s+signing\s+CN=duesseldorf signing,OU=Register,O=Parzelle Demo\s+ECDSA-P-256\s+\d{4}-\d\d-\d\d\s+36[45]\s+ok`,
		`koeln\s+decryption\s+CN=koeln encryption,OU=Register,O=Parzelle Demo\s+RSA-3072\s+\d{4}-\d\d-\d\d\s+36[45]\s+ok`,
		`koeln\s+trust \(ags:05111000\)\s+CN=duesseldorf signing`,
		`koeln\s+client-ca\s+CN=Parzelle Demo CA`,
	} {
		if !regexp.MustCompile(`(?m)^` + want).Match(out) {
			t.Errorf("no line matching %s in\n%s", want, out)
		}
	}

	// A tenant whose key file is gone is rejected and named; the exit code
	// says so.
	if err := os.Remove(filepath.Join(root, "var", "pki", "tenants", "koeln", "signing.key")); err != nil {
		t.Fatal(err)
	}
	out, err = parzelle(root, nil, "keys", "list", "--config", "fixtures/node.yaml").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), fmt.Sprintf("koeln.yaml:%d: keys.signing[0].key: cannot read", lineOf(t, filepath.Join(root, "fixtures", "tenants", "koeln.yaml"), "signing.key"))) || strings.Contains(string(out), "koeln  ") {
		t.Errorf("keys list with a missing key file: %v\n%s", err, out)
	}
}

// TestServeExportsCertificateExpiry: the node started as `make run` starts
// it exports the demo tenants' certificate expiry on /metrics.
func TestServeExportsCertificateExpiry(t *testing.T) {
	root := demoCheckout(t)
	s := serve(t, root, "DATABASE_URL="+dbtest.NewURL(t))
	code, body := getBody(t, &http.Client{Timeout: 10 * time.Second}, "http://"+s.Ops+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	series := regexp.MustCompile(`(?m)^parzelle_certificate_expiry_seconds\{tenant="([a-z]+)",usage="([a-z-]+)"\} (\S+)$`).FindAllStringSubmatch(body, -1)
	if len(series) != 8 {
		t.Fatalf("want 2 tenants × 4 usages, got %d series", len(series))
	}
	for _, m := range series {
		v, err := strconv.ParseFloat(m[3], 64)
		days := v / 86400
		if err != nil || days < 363 || days > 1826 {
			t.Errorf("%s/%s: %s seconds (%.1f days)", m[1], m[2], m[3], days)
		}
	}
	if strings.Contains(s.Log(), "certificate expires soon") || strings.Contains(s.Log(), "certificate has expired") {
		t.Errorf("fresh demo certificates were warned about:\n%s", s.Log())
	}
	interrupt(t, s)
}

// lineOf returns the number of the first line of file that contains s.
func lineOf(t *testing.T, file, s string) int {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, s) {
			return i + 1
		}
	}
	t.Fatalf("%s has no line with %q", file, s)
	return 0
}
