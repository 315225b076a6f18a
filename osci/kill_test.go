package osci_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parzelle/parzelle/db/dbtest"
	"github.com/parzelle/parzelle/node/nodetest"
	"github.com/parzelle/parzelle/osci/oscitest"
	"github.com/parzelle/parzelle/pki"
	"github.com/parzelle/parzelle/xta"
)

// TestTwoNodesKillA: node A runs as its own `parzelle serve` process and
// is killed with SIGKILL in the middle of an OSCI delivery to node B, at
// each point where a crash could lose or double a message; after its
// restart River rescues the job, and the message arrives at B exactly
// once, A's report green. Between A and B a relay counts the requests of
// the delivery (initDialog, getMessageId, storeDelivery; the dialog then
// waits in A's pool) and kills A at the chosen one:
//   - getMessageId carried out, its answer withheld: A never learnt the
//     MessageId and asks for another;
//   - storeDelivery received, not passed on: A recorded the MessageId,
//     B has nothing, the retry stores it under that MessageId;
//   - storeDelivery stored by B, its answer withheld: the retry's 9801
//     tells A the message is there.
func TestTwoNodesKillA(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and restarts a node process")
	}
	ctx := t.Context()
	certs := oscitest.Certs
	files := map[string][]byte{"pin": []byte("123456\n")}
	b := nodetest.Start(t, nodetest.Options{Tenants: map[string]string{"bremen": fmt.Sprintf(receiverTenant, certs)}, Files: files,
		Clients: []string{"osci-node-a", "fachverfahren-b"}, Schemas: osciSchemas(t)})
	relay := &killRelay{to: b.Base, http: b.HTTP("osci-node-a")}
	server := httptest.NewUnstartedServer(relay)
	serverCert, err := tls.LoadX509KeyPair(b.ServerCert, b.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	server.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}}
	server.StartTLS()
	t.Cleanup(server.Close)

	a := startProcessNode(t, b, server.URL+"/osci")
	relay.kill = a.kill
	reader := b.XTAClient("fachverfahren-b", "ags:04011000")
	for i, c := range []struct {
		name    string
		request int32 // the delivery's request at which A dies
		passed  bool  // whether B carried it out first
		record  string
	}{
		{"getMessageId answered, answer lost with A", 2, true, "Über OSCI an"},
		{"storeDelivery sent, A dead before B has it", 3, false, "Über OSCI an"},
		{"storeDelivery stored at B, answer lost with A", 3, true, "bei einem früheren Versuch"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if i > 0 {
				// A fresh process, so that the delivery opens its own
				// dialog rather than one the sender kept from the last.
				a.restart(t)
			}
			relay.arm(c.request, c.passed)
			doc := []byte(fmt.Sprintf(`<nachricht xmlns="urn:test">Absturz %d</nachricht>`, i))
			id, err := a.send(ctx, doc)
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-relay.killed:
			case <-time.After(time.Minute):
				t.Fatalf("A was not killed within a minute (requests seen: %d)\n%s", relay.n.Load(), a.logs())
			}
			began := time.Now()
			a.restart(t)
			rep := a.awaitReport(t, id)
			t.Logf("delivered %s after the restart", time.Since(began).Round(time.Second))
			var texts []string
			for _, r := range rep.Records {
				texts = append(texts, r.Level+" "+r.Code+" "+r.Reason)
			}
			if rep.Status != 1 || !strings.Contains(strings.Join(texts, "\n"), c.record) {
				t.Fatalf("A's report: status %d\n%s\n%s", rep.Status, strings.Join(texts, "\n"), a.logs())
			}
			got := nextMessage(t, reader)
			if got.MessageID != id || !bytes.Equal(got.Contents[0].Data, doc) {
				t.Fatalf("B's reader fetched %s: %s", got.MessageID, got.Contents[0].Data)
			}
			if err := reader.Close(ctx, got.MessageID); err != nil {
				t.Fatal(err)
			}
			if n := inboxRows(t, b, "ags:04011000"); n != i+1 {
				t.Fatalf("B has %d messages after %d sent", n, i+1)
			}
		})
	}
}

// killRelay passes A's requests on to B and, once armed, kills A at the
// armed request of a delivery, before or after B carried it out.
type killRelay struct {
	to     string
	http   *http.Client
	kill   func()
	killed chan struct{}

	mu     sync.Mutex
	at     int32
	passed bool
	n      atomic.Int32
}

func (k *killRelay) arm(request int32, passed bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.at, k.passed, k.killed = request, passed, make(chan struct{})
	k.n.Store(0)
}

func (k *killRelay) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	k.mu.Lock()
	at, passed := k.at, k.passed
	now := k.n.Add(1) == at
	if now {
		k.at = 0
	}
	k.mu.Unlock()
	if now && !passed {
		k.kill()
		close(k.killed)
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, k.to+r.URL.Path, r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	req.Header = r.Header.Clone()
	resp, err := k.http.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	if now {
		k.kill()
		close(k.killed)
		return
	}
	for name, vs := range resp.Header {
		w.Header()[name] = vs
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body)
}

// processNode is node A as a `parzelle serve` process with its own
// database and PKI: the koeln tenant (alice's keys), whose directory
// places ags:04011000 behind the relay, reached with a client
// certificate of B's CA.
type processNode struct {
	bin, config, dbURL string
	pki                *nodetest.PKI
	proc               *nodetest.Process
	earlier            string // the logs of the processes before
}

func startProcessNode(t *testing.T, b *nodetest.Node, relay string) *processNode {
	dir := t.TempDir()
	bin := filepath.Join(dir, "parzelle")
	build := exec.Command("go", "build", "-o", bin, "./cmd/parzelle")
	build.Dir = nodetest.Root()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	a := &processNode{bin: bin, config: filepath.Join(dir, "node.yaml"), dbURL: dbtest.NewURL(t), pki: nodetest.NewPKI(t, dir, "fachverfahren")}
	tenants := filepath.Join(dir, "tenants")
	if err := os.MkdirAll(tenants, 0o755); err != nil {
		t.Fatal(err)
	}
	koeln := strings.NewReplacer("{{CA}}", a.pki.CAFile, "{{DIR}}", dir).Replace(fmt.Sprintf(authorTenant, oscitest.Certs))
	now := time.Now()
	cert, key, err := b.CA.Issue(pki.Template{Subject: pki.DemoClientSubject("osci-node-a"), NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(0, 1, 0), Client: true}, pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFiles(filepath.Join(dir, "osci-client.crt"), filepath.Join(dir, "osci-client.key"), cert, key); err != nil {
		t.Fatal(err)
	}
	directory := filepath.Join(dir, "directory.yaml")
	writeDirectory(t, directory, "ags:04011000", relay, "osci_manager_cipher_4096", "osci_manager")
	for name, data := range map[string]string{
		"pin":                                  "123456\n",
		filepath.Join("tenants", "koeln.yaml"): koeln,
		"node.yaml": fmt.Sprintf(`listen: {transport: "127.0.0.1:0", ops: "127.0.0.1:0"}
tls: {cert: %q, key: %q}
database: {url: %q, maxConns: 10}
keys: {provider: file, dir: keys}
paths: {tenants: tenants, schemas: [%q], directory: directory.yaml}
osci: {clientCert: osci-client.crt, clientKey: osci-client.key, serverCA: %q}
log: {format: text, level: info}
`, a.pki.ServerCert, a.pki.ServerKey, a.dbURL, filepath.Dir(oscitest.Samples), b.CAFile),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a.start(t)
	return a
}

// start starts the process and waits for its banner; it is killed when
// the test ends.
func (a *processNode) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command(a.bin, "serve", "--config", a.config)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+a.dbURL, "PARZELLE_CONFIG=")
	a.proc = nodetest.Serve(t, cmd)
}

// kill kills the process with SIGKILL and waits for it to end.
func (a *processNode) kill() { a.proc.Kill() }

func (a *processNode) restart(t *testing.T) {
	a.kill()
	a.earlier += a.proc.Log()
	a.start(t)
}

func (a *processNode) client() *xta.Client {
	return &xta.Client{HTTP: a.pki.HTTP("fachverfahren"), BaseURL: "https://" + a.proc.Transport, Account: "ags:05315000"}
}

func (a *processNode) send(ctx context.Context, doc []byte) (string, error) {
	c := a.client()
	id, err := c.CreateMessageID(ctx)
	if err != nil {
		return "", err
	}
	return id, c.Send(ctx, &xta.OutgoingMessage{MessageID: id, Author: xta.Party{ID: "ags:05315000"}, Reader: xta.Party{ID: "ags:04011000"},
		Service: "urn:test:service", BusinessScenario: "XMELD_DATA", MessageType: "nachricht", MessageTypeSchema: "urn:test",
		Message: xta.OutgoingContent{ContentType: "text/xml", Encoding: "UTF-8", Filename: "nachricht.xml", Data: bytes.NewReader(doc), Size: int64(len(doc))}})
}

// awaitReport waits up to two minutes for the message's report to leave
// the open state.
func (a *processNode) awaitReport(t *testing.T, id string) *xta.Report {
	t.Helper()
	var rep *xta.Report
	var err error
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if rep, err = a.client().TransportReport(t.Context(), id); err == nil && rep.Status != 0 {
			return rep
		}
	}
	t.Fatalf("A's report stayed open for two minutes: %v %+v\n%s", err, rep, a.logs())
	return nil
}

func (a *processNode) logs() string { return a.earlier + a.proc.Log() }
