package xta_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parzelle/parzelle/config"
	"github.com/parzelle/parzelle/db/dbtest"
	"github.com/parzelle/parzelle/msgbox"
	"github.com/parzelle/parzelle/node"
	"github.com/parzelle/parzelle/pki"
	"github.com/parzelle/parzelle/tenant"
	"github.com/parzelle/parzelle/xmlschema"
	"github.com/parzelle/parzelle/xta"
)

const specs = "../../shared/specs"

// The accounts of the test node: the synthetic samples' author (a
// Meldebehörde in München, whose tenant accepts content without an
// installed schema with a warning) and reader (Köln, whose tenant refuses
// such content), an account that does not use XTA, and a reader hosted
// elsewhere.
const (
	author     = "dvdv:09162000-0001"
	reader     = "dvdv:05315000-0001"
	osciOnly   = "dvdv:05315000-0002"
	foreign    = "dvdv:01001000-0001"
	xmeldScope = "http://osci.de/xmeld33/xmeld33freieSuche.wsdl"
)

// harness is a whole node on random ports: real PostgreSQL, real River,
// real TLS with certificates made for the test.
type harness struct {
	pool    *pgxpool.Pool
	base    string
	dir     string
	ca      *pki.Authority
	schemas *xmlschema.Registry
	server  *xta.Server
	box     *msgbox.Store
	// certFiles are PEM files per client name (cert, key), for tools
	// outside Go.
	certFiles map[string][2]string
	certs     map[string]tls.Certificate
}

var sharedSchemas *xmlschema.Registry

func loadSchemas(t testing.TB) *xmlschema.Registry {
	t.Helper()
	if sharedSchemas == nil {
		r, err := xmlschema.Load([]string{specs}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Has(xmlschema.XTA2V3.Name) {
			t.Fatalf("XTA 2 V3 schemas not found under %s", specs)
		}
		sharedSchemas = r
	}
	return sharedSchemas
}

func startHarness(t testing.TB) *harness {
	t.Helper()
	h := &harness{dir: t.TempDir(), certFiles: map[string][2]string{}, certs: map[string]tls.Certificate{}, schemas: loadSchemas(t)}
	now := time.Now()
	ca, err := pki.NewAuthority(pkix.Name{CommonName: "XTA Test CA"}, pki.ECDSAP256, now.Add(-48*time.Hour), now.AddDate(1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	h.ca = ca
	caFile := filepath.Join(h.dir, "ca.crt")
	if err := os.WriteFile(caFile, pki.EncodeCertificate(ca.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	server, serverKey, err := ca.Issue(pki.Template{Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(0, 1, 0), Server: true}, pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	serverCert, serverKeyFile := filepath.Join(h.dir, "server.crt"), filepath.Join(h.dir, "server.key")
	if err := pki.WriteFiles(serverCert, serverKeyFile, server, serverKey); err != nil {
		t.Fatal(err)
	}
	// muenchen and koeln are tenants; stranger chains to the CA but no
	// tenant lists it; expired is listed by muenchen but no longer valid.
	h.issue(t, "muenchen", now.Add(-time.Hour), now.AddDate(0, 1, 0))
	h.issue(t, "koeln", now.Add(-time.Hour), now.AddDate(0, 1, 0))
	h.issue(t, "stranger", now.Add(-time.Hour), now.AddDate(0, 1, 0))
	h.issue(t, "expired", now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	tenants := filepath.Join(h.dir, "tenants")
	os.MkdirAll(tenants, 0o755)
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(tenants, name+".yaml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("muenchen", fmt.Sprintf(`id: muenchen
name: Meldebehörde München
identities:
  - {id: %q, type: xoev, category: Meldebehörde, transports: [xta]}
clients:
  - {name: fachverfahren, subject: "CN=muenchen,OU=Fachverfahren,O=Parzelle Demo", identities: [%q]}
  - {name: altes-zertifikat, subject: "CN=expired,OU=Fachverfahren,O=Parzelle Demo", identities: [%q]}
trust:
  clientCAs: [%s]
`, author, author, author, caFile))
	write("koeln", fmt.Sprintf(`id: koeln
name: Meldebehörde Köln
identities:
  - {id: %q, type: xoev, category: Meldebehörde, transports: [xta]}
  - {id: %q, type: xoev, category: Meldebehörde, transports: [osci]}
clients:
  - {name: fachverfahren, subject: "CN=koeln,OU=Fachverfahren,O=Parzelle Demo", identities: [%q, %q]}
trust:
  clientCAs: [%s]
schemas:
  missing: refuse
`, reader, osciOnly, reader, osciOnly, caFile))

	ctx, cancel := context.WithCancel(context.Background())
	h.pool = dbtest.New(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("XTA_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	reg := node.NewMetricsRegistry("test")
	tr := tenant.NewRegistry(tenants, h.pool, log, reg)
	if rep, err := tr.Reload(ctx); err != nil || len(rep.Rejected) > 0 {
		t.Fatalf("tenants: %v %v", err, rep.Rejected)
	}
	cfg := &config.Node{
		Listen: config.Listen{Transport: "127.0.0.1:0", Ops: "127.0.0.1:0"},
		TLS:    config.TLS{Cert: serverCert, Key: serverKeyFile},
		Keys:   config.Keys{Dir: filepath.Join(h.dir, "keys")},
	}
	n := node.New(cfg, h.pool, tr, reg, log)
	services, err := node.Assemble(n, reg, node.WithSchemas(h.schemas), node.WithLogger(log), node.WithIdentity("https://localhost/xta/v3"))
	if err != nil {
		t.Fatal(err)
	}
	h.server, h.box = services.XTA, services.Box
	addrs, err := n.Listen()
	if err != nil {
		t.Fatal(err)
	}
	if err := services.Start(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		services.Stop()
	})
	h.base = "https://" + addrs.Transport
	return h
}

func (h *harness) issue(t testing.TB, cn string, from, to time.Time) {
	t.Helper()
	cert, key, err := h.ca.Issue(pki.Template{Subject: pki.DemoClientSubject(cn), NotBefore: from, NotAfter: to, Client: true}, pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	c, k := filepath.Join(h.dir, cn+".crt"), filepath.Join(h.dir, cn+".key")
	if err := pki.WriteFiles(c, k, cert, key); err != nil {
		t.Fatal(err)
	}
	h.certFiles[cn] = [2]string{c, k}
	h.certs[cn] = tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}

// http returns an HTTPS client presenting the named certificate ("" for
// none).
func (h *harness) http(cn string) *http.Client {
	roots := x509.NewCertPool()
	roots.AddCert(h.ca.Cert)
	cfg := &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if cn != "" {
		cfg.Certificates = []tls.Certificate{h.certs[cn]}
	}
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, MaxIdleConnsPerHost: 64}}
}

// client returns an XTA client acting for account with the named
// certificate.
func (h *harness) client(cn, account string, mtom bool) *xta.Client {
	return &xta.Client{HTTP: h.http(cn), BaseURL: h.base, Account: account, MTOM: mtom}
}

// setMaxContent lowers the container limit, so that "too large" is cheap
// to test.
func (h *harness) setMaxContent(n int64) { h.server.MaxContent = n }
