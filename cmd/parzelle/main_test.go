package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parzelle/parzelle/db/dbtest"
	"github.com/parzelle/parzelle/fixtures"
	"github.com/parzelle/parzelle/node/nodetest"
	"github.com/parzelle/parzelle/pgcluster"
)

// The test binary doubles as the parzelle binary: with PARZELLE_RUN_MAIN=1
// it runs main, so the tests drive the real command line.
func TestMain(m *testing.M) {
	if os.Getenv("PARZELLE_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func parzelle(dir string, env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), append([]string{"PARZELLE_RUN_MAIN=1", "DATABASE_URL=", "PARZELLE_CONFIG="}, env...)...)
	return cmd
}

// demoCheckout lays out what a fresh clone holds (the demo node config and
// tenants) in a directory the postgres user can enter, with the listeners
// on free ports.
func demoCheckout(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{filepath.Dir(root), root} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fixtures.CopyDemo(t, root, ":8443", ":0", ":8080", ":0")
	if out, err := parzelle(root, nil, "pki", "demo", "--out", "var/pki").CombinedOutput(); err != nil {
		t.Fatalf("pki demo: %v\n%s", err, out)
	}
	return root
}

// serve starts the node and waits for its banner.
func serve(t *testing.T, root string, env ...string) *nodetest.Process {
	t.Helper()
	return nodetest.Serve(t, parzelle(root, env, "serve", "--config", "fixtures/node.yaml"))
}

// interrupt sends SIGINT, as Ctrl-C does, and waits for a clean exit.
func interrupt(t *testing.T, s *nodetest.Process) {
	t.Helper()
	s.Cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.Exited():
		if err := s.Err(); err != nil {
			t.Fatalf("serve exited with %v after SIGINT\n%s", err, s.Log())
		}
	case <-time.After(time.Minute):
		t.Fatalf("serve did not stop within a minute of SIGINT\n%s", s.Log())
	}
}

func getBody(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func demoClient(t *testing.T, root, tenant string) *http.Client {
	t.Helper()
	pki := filepath.Join(root, "var", "pki")
	cert, err := tls.LoadX509KeyPair(filepath.Join(pki, "clients", tenant+".crt"), filepath.Join(pki, "clients", tenant+".key"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(pki, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}}}}
}

// TestServeWithEmbeddedDatabase follows `make run` on a fresh checkout:
// the node creates and starts its own PostgreSQL, serves, keeps the last
// good tenant config when a file breaks, stops the database on Ctrl-C, and
// reuses everything the second time.
func TestServeWithEmbeddedDatabase(t *testing.T) {
	root := demoCheckout(t)
	s := serve(t, root)
	plain := &http.Client{Timeout: 10 * time.Second}
	if code, body := getBody(t, plain, "http://"+s.Ops+"/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	if code, body := getBody(t, plain, "http://"+s.Ops+"/readyz"); code != 200 {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	if code, body := getBody(t, demoClient(t, root, "koeln"), "https://"+s.Transport+"/whoami"); code != 200 || !strings.Contains(body, "ags:05315000") {
		t.Fatalf("/whoami as koeln: %d %s", code, body)
	}

	// Break a tenant file: it is rejected with file, line and field, and
	// the node keeps serving the tenant on its last good configuration.
	koeln := filepath.Join(root, "fixtures", "tenants", "koeln.yaml")
	good, err := os.ReadFile(koeln)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(koeln, bytes.Replace(good, []byte("category:"), []byte("kategorie:"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	wantErr := "koeln.yaml:7: identities[0].kategorie: unknown field"
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(s.Log(), wantErr) {
		if time.Now().After(deadline) {
			t.Fatalf("the broken file was not reported within 30s\n%s", s.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, body := getBody(t, demoClient(t, root, "koeln"), "https://"+s.Transport+"/whoami"); code != 200 {
		t.Errorf("koeln after its file broke: %d %s", code, body)
	}
	if _, page := nodetest.ConsoleGet(t, "http://"+s.Ops, "betrieb", "betrieb-demo-2026", "/console/tenants"); !strings.Contains(page, wantErr) {
		t.Errorf("the console does not show the rejected file")
	}
	out, err := parzelle(root, nil, "tenant", "check", "fixtures/tenants").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), wantErr) {
		t.Errorf("tenant check: %v\n%s", err, out)
	}

	// var/pg/url names a role that can dump the whole database.
	url, err := os.ReadFile(filepath.Join(root, "var", "pg", "url"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := pgcluster.New(filepath.Join(root, "var", "pg"))
	if err != nil {
		t.Fatal(err)
	}
	dump, err := exec.Command(filepath.Join(c.BinDir(), "pg_dump"), strings.TrimSpace(string(url))).CombinedOutput()
	if err != nil || !bytes.Contains(dump, []byte("CREATE TABLE public.tenant_config_version")) || !bytes.Contains(dump, []byte("Melderegister Köln")) {
		t.Errorf("pg_dump with var/pg/url: %v\n%.500s", err, dump)
	}

	interrupt(t, s)
	if !strings.Contains(s.Log(), "stopping the embedded PostgreSQL cluster") || c.Running(context.Background()) {
		t.Errorf("the embedded cluster was not stopped\n%s", s.Log())
	}

	// The second start reuses the cluster and the recorded configuration.
	if err := os.WriteFile(koeln, good, 0o644); err != nil {
		t.Fatal(err)
	}
	s = serve(t, root)
	if strings.Contains(s.Log(), "creating the embedded PostgreSQL cluster") {
		t.Error("the second start created the cluster again")
	}
	out, err = parzelle(root, nil, "tenant", "history").CombinedOutput()
	if err != nil || strings.Count(string(out), "\nkoeln ") != 1 {
		t.Errorf("tenant history after a broken and restored file: want one koeln version\n%s %v", out, err)
	}
	interrupt(t, s)
}

// TestServeWithDatabaseURL: with DATABASE_URL set the node uses it and
// starts no PostgreSQL of its own.
func TestServeWithDatabaseURL(t *testing.T) {
	root := demoCheckout(t)
	s := serve(t, root, "DATABASE_URL="+dbtest.NewURL(t))
	if code, body := getBody(t, &http.Client{Timeout: 10 * time.Second}, "http://"+s.Ops+"/readyz"); code != 200 {
		t.Errorf("/readyz: %d %s", code, body)
	}
	interrupt(t, s)
	if _, err := os.Stat(filepath.Join(root, "var", "pg")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("with DATABASE_URL the node still made var/pg: %v", err)
	}
}

// TestXTACommandLine: the xta command's help, its errors for the first
// mistakes an operator makes, and the real size of a listed message.
func TestXTACommandLine(t *testing.T) {
	root := demoCheckout(t)
	run := func(args ...string) (string, int) {
		t.Helper()
		out, err := parzelle(root, nil, args...).CombinedOutput()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatal(err)
		}
		code := 0
		if exit != nil {
			code = exit.ExitCode()
		}
		return string(out), code
	}
	for _, args := range [][]string{{"xta"}, {"xta", "--help"}, {"xta", "help"}} {
		if out, code := run(args...); code != 0 || !strings.Contains(out, "usage: parzelle xta COMMAND") || strings.Contains(out, "required") {
			t.Errorf("%v: exit %d\n%s", args, code, out)
		}
	}
	if out, code := run("xta", "list", "--help"); code != 0 || !strings.Contains(out, "-new") || strings.Contains(out, "-reader") || strings.Contains(out, "-attach") {
		t.Errorf("xta list --help lists other commands' flags or fails: exit %d\n%s", code, out)
	}
	if out, code := run("xta", "list", "--bogus"); code != 2 || strings.Count(out, "flag provided but not defined: -bogus") != 1 {
		t.Errorf("a mistyped flag: exit %d, want 2 and the error once\n%s", code, out)
	}

	s := serve(t, root)
	// Operator commands log INFO lines (here: reusing the embedded
	// cluster) only with -v.
	if out, code := run("dlq", "list", "--tenant", "koeln"); code != 0 || strings.Contains(out, "level=INFO") || !strings.Contains(out, "no dead letters") {
		t.Errorf("dlq list: exit %d, want no INFO lines\n%s", code, out)
	}
	if out, code := run("dlq", "list", "--tenant", "koeln", "-v"); code != 0 || !strings.Contains(out, "level=INFO") {
		t.Errorf("dlq list -v: exit %d, want INFO lines\n%s", code, out)
	}
	pki := filepath.Join(root, "var", "pki")
	client := []string{"--cert", filepath.Join(pki, "clients", "duesseldorf.crt"), "--key", filepath.Join(pki, "clients", "duesseldorf.key"), "--account", "ags:05111000"}
	xta := func(args ...string) (string, int) {
		return run(append(append([]string{"xta"}, args...), client...)...)
	}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"plain HTTP to the TLS port", []string{"list", "--url", "http://" + s.Transport, "--ca", filepath.Join(pki, "ca.crt")}, "speaks HTTPS: use --url https://" + s.Transport},
		{"no --ca", []string{"list", "--url", "https://" + s.Transport}, "give its CA with --ca"},
	} {
		if out, code := xta(c.args...); code != 1 || !strings.Contains(out, c.want) {
			t.Errorf("%s: exit %d, want 1 and %q\n%s", c.name, code, c.want, out)
		}
	}
	other := t.TempDir()
	if out, code := run("pki", "demo", "--out", other); code != 0 {
		t.Fatalf("pki demo: %s", out)
	}
	out, code := run("xta", "list", "--url", "https://"+s.Transport, "--ca", filepath.Join(pki, "ca.crt"), "--account", "ags:05111000",
		"--cert", filepath.Join(other, "clients", "duesseldorf.crt"), "--key", filepath.Join(other, "clients", "duesseldorf.key"))
	if code != 1 || !strings.Contains(out, "the node does not accept this client certificate") {
		t.Errorf("an untrusted client certificate: exit %d\n%s", code, out)
	}

	// The list shows the stored size, message and attachment, though the
	// author's metadata states none.
	attachment := filepath.Join(t.TempDir(), "anlage.bin")
	if err := os.WriteFile(attachment, bytes.Repeat([]byte("x"), 20000), 0o644); err != nil {
		t.Fatal(err)
	}
	msg, err := filepath.Abs(filepath.Join("..", "..", "fixtures", "messages", "xmeld", "01-rueckmeldung-anmeldung-0201.xml"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(msg)
	if err != nil {
		t.Fatal(err)
	}
	at := []string{"--url", "https://" + s.Transport, "--ca", filepath.Join(pki, "ca.crt")}
	if out, code := xta(append([]string{"send", "--reader", "ags:05111000", "--service", "urn:test", "--message-type", "test", msg, "--attach", attachment}, at...)...); code != 0 {
		t.Fatalf("send: %s", out)
	}
	if out, code := xta(append([]string{"list"}, at...)...); code != 0 || !strings.Contains(out, fmt.Sprintf(" %d bytes", st.Size()+20000)) {
		t.Errorf("list: exit %d, want %d bytes\n%s", code, st.Size()+20000, out)
	}
}

// TestWithoutVerbose: -v is the operator command's own up to "--" and the
// wrapped program's after it (parzelle pg temp -- go test -v).
func TestWithoutVerbose(t *testing.T) {
	for _, c := range []struct {
		in, want string
		verbose  bool
	}{
		{"list -v --tenant x", "list --tenant x", true},
		{"list --verbose", "list", true},
		{"temp -- go test -v ./x", "temp -- go test -v ./x", false},
		{"temp -v -- go test -v", "temp -- go test -v", true},
	} {
		got, verbose := withoutVerbose(strings.Fields(c.in))
		if strings.Join(got, " ") != c.want || verbose != c.verbose {
			t.Errorf("withoutVerbose(%q) = %q, %v; want %q, %v", c.in, got, verbose, c.want, c.verbose)
		}
	}
}
