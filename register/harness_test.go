package register_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parzelle/parzelle/config"
	"github.com/parzelle/parzelle/db/dbtest"
	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/node"
	"github.com/parzelle/parzelle/node/nodetest"
	"github.com/parzelle/parzelle/register"
	"github.com/parzelle/parzelle/tenant"
)

// harness is a whole node on random ports serving the register API: real
// PostgreSQL, real TLS with certificates made for the test, the file key
// provider with KEKs in a temporary directory.
type harness struct {
	pool    *pgxpool.Pool
	dbURL   string
	base    string
	dir     string
	pki     *nodetest.PKI
	store   *register.Store
	tenants *tenant.Registry
	keys    *keys.FileProvider
}

// The test tenants' clients: each tenant's Fachverfahren (role
// fachverfahren), Düsseldorf's Sachbearbeitung (role sachbearbeitung: read
// and search for "auskunft" only) and its Datenschutz office (export, erase), and
// a certificate Düsseldorf lists without a role.
const tenantFile = `id: %[1]s
name: Melderegister %[1]s
identities:
  - {id: "ags:%[2]s", type: xoev, category: Meldebehörde, transports: [xta]}
clients:
  - {name: fachverfahren, subject: "CN=%[1]s,OU=Fachverfahren,O=Parzelle Demo", identities: ["ags:%[2]s"], role: fachverfahren}
  - {name: sachbearbeitung, subject: "CN=%[1]s-sb,OU=Fachverfahren,O=Parzelle Demo", identities: ["ags:%[2]s"], role: sachbearbeitung}
  - {name: datenschutz, subject: "CN=%[1]s-dsb,OU=Fachverfahren,O=Parzelle Demo", identities: ["ags:%[2]s"], role: datenschutz}
  - {name: ohne-rolle, subject: "CN=%[1]s-norole,OU=Fachverfahren,O=Parzelle Demo", identities: ["ags:%[2]s"]}
trust:
  clientCAs: [%[3]s]
registers:
  - {name: melderegister, type: person}
  - {name: gewerberegister, type: business}
access:
  rules:
    - {role: fachverfahren, operations: [read, search, write], purposes: [meldewesen], legalBasis: "§ 3 BMG"}
    - {role: sachbearbeitung, operations: [read, search], purposes: [auskunft], legalBasis: "§ 44 BMG", registers: [melderegister]}
    - {role: datenschutz, operations: [export], purposes: [datenschutzauskunft], legalBasis: "§ 9 IDNrG"}
    - {role: datenschutz, operations: [erase], purposes: [loeschung], legalBasis: "Art. 17 DSGVO"}
`

func startHarness(t testing.TB) *harness {
	t.Helper()
	h := &harness{dir: t.TempDir()}
	h.pki = nodetest.NewPKI(t, h.dir)
	caFile := h.pki.CAFile
	tenants := filepath.Join(h.dir, "tenants")
	if err := os.MkdirAll(tenants, 0o755); err != nil {
		t.Fatal(err)
	}
	for id, ags := range map[string]string{"duesseldorf": "05111000", "koeln": "05315000"} {
		for _, cn := range []string{id, id + "-sb", id + "-dsb", id + "-norole"} {
			h.pki.Issue(t, cn)
		}
		if err := os.WriteFile(filepath.Join(tenants, id+".yaml"), fmt.Appendf(nil, tenantFile, id, ags, caFile), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h.pki.Issue(t, "stranger")

	ctx, cancel := context.WithCancel(context.Background())
	h.dbURL = dbtest.NewURL(t)
	pool, err := pgxpool.New(ctx, h.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	h.pool = pool
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("REGISTER_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	reg := node.NewMetricsRegistry("test")
	h.tenants = tenant.NewRegistry(tenants, h.pool, log, reg)
	if rep, err := h.tenants.Reload(ctx); err != nil || len(rep.Rejected) > 0 {
		t.Fatalf("tenants: %v %v", err, rep.Rejected)
	}
	h.keys = keys.NewFileProvider(filepath.Join(h.dir, "keys"), func() keys.Tenants { return h.tenants.Current() })
	h.store = register.NewStore(register.Config{Pool: h.pool, Keys: h.keys, Tenants: h.tenants.Current, Log: log, Metrics: reg})
	cfg := &config.Node{
		Listen: config.Listen{Transport: "127.0.0.1:0", Ops: "127.0.0.1:0"},
		TLS:    config.TLS{Cert: h.pki.ServerCert, Key: h.pki.ServerKey},
	}
	n := node.New(cfg, h.pool, h.tenants, reg, log)
	register.NewAPI(h.store, node.PrincipalFrom).Mount(n.HandleTransport)
	addrs, err := n.Listen()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		pool.Close()
	})
	h.base = "https://" + addrs.Transport
	return h
}

// client returns an HTTPS client presenting the named certificate.
func (h *harness) client(cn string) *http.Client { return h.pki.HTTP(cn) }

// response is an API answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body into v, failing the test when it is not JSON.
func (r response) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("response %d is not JSON: %v\n%s", r.status, err, r.body)
	}
}

// problem decodes a problem response.
func (r response) problem(t testing.TB) map[string]any {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("status %d with Content-Type %q, want a problem: %s", r.status, ct, r.body)
	}
	var p map[string]any
	r.json(t, &p)
	return p
}

// call sends a request as the certificate cn, with the purpose header and
// a JSON body (nil for none, []byte for one sent as it is); headers are
// name, value pairs.
func (h *harness) call(t testing.TB, cn, purpose, method, path string, body any, headers ...string) response {
	t.Helper()
	var rd io.Reader
	if raw, ok := body.([]byte); ok {
		rd = bytes.NewReader(raw) // sent as it is, valid JSON or not
	} else if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, h.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if purpose != "" {
		req.Header.Set(register.PurposeHeader, purpose)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := h.client(cn).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

// records is the records path of a tenant's register.
func records(tenantID, register string) string {
	return "/api/v1/tenants/" + tenantID + "/registers/" + register + "/records"
}

// idnr completes ten digits to a valid Identifikationsnummer.
func idnr(ten string) string { return ten + string(register.IDNrCheckDigit(ten)) }

// editTenant rewrites a tenant's file with edit and reloads the tenants,
// as the node does when a file changes.
func (h *harness) editTenant(t testing.TB, tenantID string, edit func(string) string) {
	t.Helper()
	file := filepath.Join(h.dir, "tenants", tenantID+".yaml")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(edit(string(data))), 0o644); err != nil {
		t.Fatal(err)
	}
	if rep, err := h.tenants.Reload(t.Context()); err != nil || len(rep.Rejected) > 0 {
		t.Fatalf("reload %s: %v %v", tenantID, err, rep.Rejected)
	}
}
