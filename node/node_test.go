package node_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parzelle/parzelle/config"
	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/db/dbtest"
	"github.com/parzelle/parzelle/fixtures"
	"github.com/parzelle/parzelle/node"
	"github.com/parzelle/parzelle/pki"
	"github.com/parzelle/parzelle/problem"
	"github.com/parzelle/parzelle/tenant"
)

// demoLayout lays out the demo tenants and a fresh demo PKI the way `make
// run` does (fixtures/tenants beside var/pki) and returns the root.
func demoLayout(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if _, err := pki.Demo(filepath.Join(root, "var", "pki"), []string{"duesseldorf", "koeln"}, nil, pki.ECDSAP256, time.Now()); err != nil {
		t.Fatal(err)
	}
	fixtures.CopyDemo(t, root)
	return root
}

type testNode struct {
	addrs   node.Addrs
	root    string
	tenants *tenant.Registry
	caPEM   []byte
}

func startNode(t *testing.T, dbURL string, limits ...config.HTTP) *testNode {
	t.Helper()
	root := demoLayout(t)
	ctx, cancel := context.WithCancel(context.Background())
	pool, err := db.Open(ctx, dbURL, 4)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := node.NewMetricsRegistry("test")
	tenants := tenant.NewRegistry(filepath.Join(root, "fixtures", "tenants"), pool, log, reg)
	if rep, err := tenants.Reload(ctx); err != nil || len(rep.Rejected) > 0 {
		t.Fatalf("load demo tenants: %v %v", err, rep.Rejected)
	}
	cfg := &config.Node{
		Listen: config.Listen{Transport: "127.0.0.1:0", Ops: "127.0.0.1:0"},
		TLS:    config.TLS{Cert: filepath.Join(root, "var", "pki", "server.crt"), Key: filepath.Join(root, "var", "pki", "server.key")},
	}
	if len(limits) > 0 {
		cfg.HTTP = limits[0]
	}
	n := node.New(cfg, pool, tenants, reg, log)
	addrs, err := n.Listen()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		pool.Close()
	})
	caPEM, err := os.ReadFile(filepath.Join(root, "var", "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	return &testNode{addrs: addrs, root: root, tenants: tenants, caPEM: caPEM}
}

// client is an HTTPS client that trusts the demo CA and presents cert.
func (tn *testNode) client(cert *tls.Certificate) *http.Client {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(tn.caPEM)
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

func (tn *testNode) demoCert(t *testing.T, id string) *tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(filepath.Join(tn.root, "var", "pki", "clients", id+".crt"), filepath.Join(tn.root, "var", "pki", "clients", id+".key"))
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

// issue creates a client certificate signed by ca.
func issue(t *testing.T, ca *pki.Authority, cn string, from, to time.Time) *tls.Certificate {
	t.Helper()
	cert, key, err := ca.Issue(pki.Template{Subject: pki.DemoClientSubject(cn), NotBefore: from, NotAfter: to, Client: true}, pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}

func demoCA(t *testing.T, root string) *pki.Authority {
	t.Helper()
	certs, err := pki.LoadCertificates(filepath.Join(root, "var", "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.LoadKey(filepath.Join(root, "var", "pki", "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	return &pki.Authority{Cert: certs[0], Key: key}
}

func get(t *testing.T, c *http.Client, url string) (int, string, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
}

func TestTransportAuthenticatesClientCertificates(t *testing.T) {
	tn := startNode(t, dbtest.NewURL(t))
	base := "https://" + tn.addrs.Transport

	for id, identity := range map[string]string{"duesseldorf": "ags:05111000", "koeln": "ags:05315000"} {
		status, ctype, body := get(t, tn.client(tn.demoCert(t, id)), base+"/whoami")
		var p tenant.Principal
		if err := json.Unmarshal([]byte(body), &p); err != nil || status != 200 || ctype != "application/json" {
			t.Fatalf("%s: %d %s %s %v", id, status, ctype, body, err)
		}
		if len(p.Grants) != 1 || p.Grants[0].Tenant != id || p.Grants[0].Identities[0] != identity {
			t.Errorf("%s: grants %+v", id, p.Grants)
		}
	}

	ca := demoCA(t, tn.root)
	now := time.Now()
	status, ctype, body := get(t, tn.client(issue(t, ca, "mallory", now.Add(-time.Hour), now.Add(time.Hour))), base+"/whoami")
	var prob problem.Details
	json.Unmarshal([]byte(body), &prob)
	if status != 403 || ctype != "application/problem+json" || prob.Type != problem.UnknownClient.TypeURI() {
		t.Errorf("unassigned certificate: %d %s %s", status, ctype, body)
	}
	status, ctype, body = get(t, tn.client(tn.demoCert(t, "koeln")), base+"/no/such/endpoint")
	if status != 404 || ctype != "application/problem+json" || !strings.Contains(body, problem.NotFound.TypeURI()) {
		t.Errorf("unknown path: %d %s %s", status, ctype, body)
	}

	foreign, err := pki.NewAuthority(pkix.Name{CommonName: "Foreign CA"}, pki.ECDSAP256, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for name, cert := range map[string]*tls.Certificate{
		"no certificate":        nil,
		"foreign CA":            issue(t, foreign, "duesseldorf", now.Add(-time.Hour), now.Add(time.Hour)),
		"expired":               issue(t, ca, "duesseldorf", now.Add(-48*time.Hour), now.Add(-24*time.Hour)),
		"server cert as client": serverCert(t, tn.root),
	} {
		if _, err := tn.client(cert).Get(base + "/whoami"); err == nil {
			t.Errorf("%s: the TLS handshake succeeded", name)
		}
	}
}

func serverCert(t *testing.T, root string) *tls.Certificate {
	c, err := tls.LoadX509KeyPair(filepath.Join(root, "var", "pki", "server.crt"), filepath.Join(root, "var", "pki", "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

// TestNewTenantGoesLiveWithoutRestart: a tenant file with its own CA is
// added; after the reload its client connects through the running listener.
func TestNewTenantGoesLiveWithoutRestart(t *testing.T) {
	tn := startNode(t, dbtest.NewURL(t))
	now := time.Now()
	ca, err := pki.NewAuthority(pkix.Name{CommonName: "Bonn CA"}, pki.ECDSAP256, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	dir := tn.tenants.Dir()
	if err := os.WriteFile(filepath.Join(dir, "bonn-ca.crt"), pki.EncodeCertificate(ca.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	bonn := issue(t, ca, "bonn", now.Add(-time.Hour), now.Add(time.Hour))
	if _, err := tn.client(bonn).Get("https://" + tn.addrs.Transport + "/whoami"); err == nil {
		t.Fatal("bonn's certificate was accepted before bonn existed")
	}
	file := `id: bonn
name: Melderegister Bonn
identities: [{id: "ags:05314000", type: xoev, category: Meldebehörde, transports: [xta]}]
clients: [{name: fv, subject: "CN=bonn,OU=Fachverfahren,O=Parzelle Demo", identities: ["ags:05314000"]}]
trust: {clientCAs: [bonn-ca.crt]}
`
	if err := os.WriteFile(filepath.Join(dir, "bonn.yaml"), []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := tn.tenants.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	status, _, body := get(t, tn.client(bonn), "https://"+tn.addrs.Transport+"/whoami")
	if status != 200 || !strings.Contains(body, `"tenant":"bonn"`) {
		t.Errorf("bonn after reload: %d %s", status, body)
	}
}

func TestOpsEndpoints(t *testing.T) {
	dbURL := dbtest.NewURL(t)
	tn := startNode(t, dbURL)
	ops := "http://" + tn.addrs.Ops
	c := &http.Client{Timeout: 10 * time.Second}
	get(t, tn.client(tn.demoCert(t, "duesseldorf")), "https://"+tn.addrs.Transport+"/whoami")

	if status, _, body := get(t, c, ops+"/healthz"); status != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", status, body)
	}
	if status, _, body := get(t, c, ops+"/readyz"); status != 200 || !strings.Contains(body, `"status":"ready"`) {
		t.Errorf("/readyz: %d %s", status, body)
	}
	_, _, metrics := get(t, c, ops+"/metrics")
	for _, want := range []string{
		"parzelle_tenants 2",
		`parzelle_tenant_config_version{tenant="koeln"} 1`,
		`parzelle_http_requests_total{code="200",listener="transport",route="GET /whoami",tenant="duesseldorf"} 1`,
		`parzelle_build_info{version="test"} 1`,
		"go_goroutines ",
		"process_resident_memory_bytes ",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// / leads to the console (mounted by node.Assemble, tested in console/).
	noFollow := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if resp, err := noFollow.Get(ops + "/"); err != nil || resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/" {
		t.Errorf("/: %v %v, want a redirect to /console/", resp, err)
	} else {
		resp.Body.Close()
	}

	// Take the database away: readiness fails and says why.
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	name := pgx.Identifier{strings.TrimPrefix(u.Path, "/")}.Sanitize()
	admin, err := pgx.Connect(context.Background(), dbtest.AdminURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(context.Background(), fmt.Sprintf("DROP DATABASE %s WITH (FORCE)", name)); err != nil {
		t.Fatal(err)
	}
	status, _, body := get(t, c, ops+"/readyz")
	if status != 503 || !strings.Contains(body, `"database":"unreachable`) {
		t.Errorf("/readyz without a database: %d %s", status, body)
	}
	if status, _, _ := get(t, c, ops+"/healthz"); status != 200 {
		t.Errorf("/healthz without a database: %d; liveness must not depend on it", status)
	}
}
