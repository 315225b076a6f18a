// Package nodetest starts a whole Parzelle node for tests and load
// commands: a fresh PostgreSQL database, real River, real TLS with
// certificates it makes, the XTA service, the register with its API and the
// register pipeline, on random ports.
package nodetest

import (
	"bytes"
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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parzelle/parzelle/config"
	"github.com/parzelle/parzelle/db/dbtest"
	"github.com/parzelle/parzelle/msgbox"
	"github.com/parzelle/parzelle/node"
	"github.com/parzelle/parzelle/pki"
	"github.com/parzelle/parzelle/tenant"
	"github.com/parzelle/parzelle/xmlschema"
	"github.com/parzelle/parzelle/xnachweis"
	"github.com/parzelle/parzelle/xta"
)

// Options say what node to start.
type Options struct {
	// Tenants are tenant files by id; "{{CA}}" in them stands for the
	// test CA's certificate file and "{{DIR}}" for the directory the
	// files are written to.
	Tenants map[string]string
	// Files are further files (mapping specs …) written beside the
	// tenant files, by name.
	Files map[string][]byte
	// Clients are the common names of client certificates to issue (the
	// subject is pki.DemoClientSubject(cn)).
	Clients []string
	// Schemas is the schema registry; nil loads none.
	Schemas *xmlschema.Registry
	// Log, if set, receives the node's log.
	Log *slog.Logger
	// MaxConns sizes the pool (default 16).
	MaxConns int32
	// Tokens verifies evidence requests' IssuedTokens (JWS tokens when
	// nil).
	Tokens xnachweis.TokenVerifier
	// Directory is the static directory file (read at each lookup, so a
	// test may write it once it knows the node's address).
	Directory string
	// Console configures the console (its session key lives in the node's
	// directory); without users, "betrieb" and "<tenant>-admin" sign in
	// with ConsolePassword.
	Console config.Console
}

// Node is a running node.
type Node struct {
	*PKI
	// Services are the node's services, as serve assembles them.
	*node.Services
	Pool  *pgxpool.Pool
	DBURL string
	Base  string
	// Ops is the ops listener's URL (console, metrics).
	Ops     string
	Dir     string
	Tenants *tenant.Registry
	// Metrics is the node's metrics registry.
	Metrics *prometheus.Registry
}

// Start starts a node; it stops when the test ends.
func Start(t testing.TB, o Options) *Node {
	t.Helper()
	n := &Node{Dir: t.TempDir()}
	n.PKI = NewPKI(t, n.Dir, o.Clients...)
	caFile := n.CAFile
	dir := filepath.Join(n.Dir, "tenants")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range o.Files {
		if err := os.WriteFile(filepath.Join(n.Dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for id, body := range o.Tenants {
		body = strings.NewReplacer("{{CA}}", caFile, "{{DIR}}", n.Dir).Replace(body)
		if err := os.WriteFile(filepath.Join(dir, id+".yaml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	log := o.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
		if os.Getenv("PARZELLE_TEST_LOG") != "" {
			log = slog.New(slog.NewTextHandler(os.Stderr, nil))
		}
	}
	n.DBURL = dbtest.NewURL(t)
	maxConns := o.MaxConns
	if maxConns == 0 {
		maxConns = 16
	}
	pcfg, err := pgxpool.ParseConfig(n.DBURL)
	if err != nil {
		t.Fatal(err)
	}
	pcfg.MaxConns = maxConns
	if n.Pool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		t.Fatal(err)
	}
	reg := node.NewMetricsRegistry("test")
	n.Metrics = reg
	n.Tenants = tenant.NewRegistry(dir, n.Pool, log, reg)
	if rep, err := n.Tenants.Reload(ctx); err != nil || len(rep.Rejected) > 0 {
		t.Fatalf("tenants: %v %v", err, rep.Rejected)
	}
	schemas := o.Schemas
	if schemas == nil {
		if schemas, err = xmlschema.Load(nil, log); err != nil {
			t.Fatal(err)
		}
	}
	cfg := &config.Node{Listen: config.Listen{Transport: "127.0.0.1:0", Ops: "127.0.0.1:0"}, TLS: config.TLS{Cert: n.ServerCert, Key: n.ServerKey},
		Paths: config.Paths{Directory: o.Directory},
		Keys:  config.Keys{Dir: filepath.Join(n.Dir, "keys")}, Console: o.Console,
		// Benchmarks drive the node from one address far beyond a client's
		// default share.
		HTTP: config.HTTP{MaxConnsPerClient: 100000, RequestsPerSecond: 1e9}}
	if len(cfg.Console.Users) == 0 {
		cfg.Console.Users = defaultConsoleUsers(t, o.Tenants)
	}
	if cfg.Console.SessionKey == "" {
		cfg.Console.SessionKey = filepath.Join(n.Dir, "console-session.key")
	}
	nd := node.New(cfg, n.Pool, n.Tenants, reg, log)
	opts := []node.Option{node.WithSchemas(schemas), node.WithLogger(log), node.WithIdentity("https://localhost/xta/v3"), node.WithTokenVerifier(o.Tokens)}
	if n.Services, err = node.Assemble(nd, reg, opts...); err != nil {
		t.Fatal(err)
	}
	addrs, err := nd.Listen()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- nd.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		n.Stop()
		n.Pool.Close()
	})
	n.Base, n.Ops = "https://"+addrs.Transport, "http://"+addrs.Ops
	return n
}

// XTAClient returns an XTA client acting for the account with the named
// client certificate.
func (n *Node) XTAClient(cn, account string) *xta.Client {
	return &xta.Client{HTTP: n.HTTP(cn), BaseURL: n.Base, Account: account}
}

// Send sends one XML message from author to reader over XTA and returns
// its message id.
func (n *Node) Send(ctx context.Context, c *xta.Client, author, reader, messageType, namespace string, doc []byte) (string, error) {
	return n.SendAt(ctx, c, author, reader, messageType, namespace, doc, nil)
}

// SendAt sends like Send, for delivery not before notBefore when it is set.
func (n *Node) SendAt(ctx context.Context, c *xta.Client, author, reader, messageType, namespace string, doc []byte, notBefore *time.Time) (string, error) {
	id, err := c.CreateMessageID(ctx)
	if err != nil {
		return "", fmt.Errorf("create message id: %w", err)
	}
	err = c.Send(ctx, &xta.OutgoingMessage{
		MessageID: id, Author: xta.Party{ID: author}, Reader: xta.Party{ID: reader}, NotBefore: notBefore,
		Service: "urn:xoev-de:xmeld", BusinessScenario: "XMELD_DATA", MessageType: messageType, MessageTypeSchema: namespace,
		Message: xta.OutgoingContent{ContentType: "text/xml", Encoding: "UTF-8", Filename: messageType + ".xml", Data: bytes.NewReader(doc), Size: int64(len(doc))},
	})
	return id, err
}

// Settle waits until the transport reports of the sent (outbox) messages
// are no longer open and returns their status by MessageID (msgbox.StatusGreen
// …); the test fails when that takes longer than timeout.
func (n *Node) Settle(t testing.TB, timeout time.Duration, ids ...string) map[string]int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out := map[string]int{}
		rows, err := n.Pool.Query(t.Context(), `SELECT message_id, status FROM xta_message WHERE box = 'outbox' AND message_id = ANY($1)`, ids)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id string
			var status int
			if err := rows.Scan(&id, &status); err != nil {
				t.Fatal(err)
			}
			if status != msgbox.StatusOpen {
				out[id] = status
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if len(out) == len(ids) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages settled after %s", len(out), len(ids), timeout)
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// PKI is a test CA with a server certificate for localhost and client
// certificates, as files and for clients.
type PKI struct {
	CA                            *pki.Authority
	CAFile, ServerCert, ServerKey string

	mu      sync.Mutex
	certs   map[string]tls.Certificate
	clients map[string]*http.Client
}

// NewPKI makes a CA, a server certificate for localhost and 127.0.0.1 and
// client certificates for the common names (subject
// pki.DemoClientSubject(cn)), writing the CA and server files to dir.
func NewPKI(t testing.TB, dir string, clients ...string) *PKI {
	t.Helper()
	now := time.Now()
	ca, err := pki.NewAuthority(pkix.Name{CommonName: "Parzelle Test CA"}, pki.ECDSAP256, now.Add(-48*time.Hour), now.AddDate(1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	p := &PKI{CA: ca, CAFile: filepath.Join(dir, "ca.crt"), ServerCert: filepath.Join(dir, "server.crt"), ServerKey: filepath.Join(dir, "server.key"),
		certs: map[string]tls.Certificate{}}
	if err := os.WriteFile(p.CAFile, pki.EncodeCertificate(ca.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	server, serverKey, err := ca.Issue(pki.Template{Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(0, 1, 0), Server: true}, pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFiles(p.ServerCert, p.ServerKey, server, serverKey); err != nil {
		t.Fatal(err)
	}
	for _, cn := range clients {
		p.Issue(t, cn)
	}
	return p
}

// Issue makes a client certificate for the common name.
func (p *PKI) Issue(t testing.TB, cn string) {
	t.Helper()
	now := time.Now()
	cert, key, err := p.CA.Issue(pki.Template{Subject: pki.DemoClientSubject(cn), NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(0, 1, 0), Client: true}, pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.certs[cn] = tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
	delete(p.clients, cn)
}

// HTTP returns an HTTPS client that trusts the CA and presents the named
// client certificate (none for a name it has not issued).
// Clients are kept per name, so that a test's requests reuse their
// connections as a Fachverfahren's would (the node bounds connections per
// client).
func (p *PKI) HTTP(cn string) *http.Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.clients[cn]; ok {
		return c
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.CA.Cert)
	cfg := &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if c, ok := p.certs[cn]; ok {
		cfg.Certificates = []tls.Certificate{c}
	}
	c := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, MaxIdleConnsPerHost: 64}}
	if p.clients == nil {
		p.clients = map[string]*http.Client{}
	}
	p.clients[cn] = c
	return c
}
