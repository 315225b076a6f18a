package faults

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parzelle/parzelle/db/dbtest"
	"github.com/parzelle/parzelle/fixtures"
	"github.com/parzelle/parzelle/node/nodetest"
	"github.com/parzelle/parzelle/pgcluster"
	"github.com/parzelle/parzelle/xta"
)

// form is how hard the suite pushes: make test runs the short form, make
// faults (PARZELLE_FAULTS=full) the full one.
type form struct {
	senders  int
	rate     int           // messages per second the senders offer together: bounded, below what the pipeline applies
	loadTime time.Duration // load before and after each fault
	pgDown   time.Duration // how long PostgreSQL stays stopped
	recover  time.Duration // how long every accepted message may take to settle
}

var forms = map[string]form{
	"short": {senders: 4, rate: 50, loadTime: 2 * time.Second, pgDown: 5 * time.Second, recover: 2 * time.Minute},
	"full":  {senders: 16, rate: 150, loadTime: 10 * time.Second, pgDown: 30 * time.Second, recover: 3 * time.Minute},
}

// world is the node under test, its cluster and its load.
type world struct {
	t       *testing.T
	f       form
	root    string
	bin     string
	cluster *pgcluster.Cluster
	dbURL   string
	nodes   []*nodetest.Process
	client  *http.Client
	doc     []byte // the message template

	mu       sync.Mutex
	accepted map[string]string // XTA message id → the person's family name
	seq      atomic.Int64
}

func TestFaults(t *testing.T) {
	name := os.Getenv("PARZELLE_FAULTS")
	f, ok := forms[name]
	if !ok {
		t.Skip("the fault suite runs with make faults (PARZELLE_FAULTS=full) and, short, in make test (PARZELLE_FAULTS=short)")
	}
	began := time.Now()
	w := newWorld(t, f)
	w.start()
	t.Logf("node built and started in %s", time.Since(began).Round(time.Second))
	fmt.Printf("\nfault suite (%s form: %d senders offering %d messages/s, %s of load before and after each fault;\n"+
		"recovered: seconds from the end of the fault until every message acknowledged in the round was applied)\n", name, f.senders, f.rate, f.loadTime)
	fmt.Printf("%-28s %9s %8s %5s %6s %6s %10s\n", "fault", "accepted", "applied", "lost", "twice", "stuck", "recovered")
	failed := false
	for _, fault := range []struct {
		name string
		do   func() time.Time // injects the fault, returns when it ended
	}{
		{"kill -9 of the node", w.killNode},
		{"PostgreSQL restart", w.restartPostgres},
		{fmt.Sprintf("PostgreSQL stopped %s", f.pgDown), w.stopPostgres},
		{"spool cannot be written", w.spoolFull},
		{"two nodes, one database", w.twoNodes},
	} {
		if only := os.Getenv("PARZELLE_FAULTS_ONLY"); only != "" && !strings.Contains(fault.name, only) {
			continue
		}
		roundStart := time.Now()
		r := w.round(fault.do)
		t.Logf("%s: round took %s", fault.name, time.Since(roundStart).Round(time.Second))
		fmt.Printf("%-28s %9d %8d %5d %6d %6d %9.1fs\n", fault.name, r.accepted, r.applied, r.lost, r.twice, r.stuck, r.recovered.Seconds())
		if r.lost+r.twice+r.stuck > 0 || r.recovered > time.Minute {
			failed = true
			t.Errorf("%s: %d lost, %d applied twice, %d stuck, recovered after %s (goal: 0, 0, 0, under 60 s)", fault.name, r.lost, r.twice, r.stuck, r.recovered)
		}
	}
	w.checkDump()
	if failed {
		t.Logf("node log:\n%s", w.nodes[0].Log())
	}
}

func newWorld(t *testing.T, f form) *world {
	root := t.TempDir()
	for _, d := range []string{filepath.Dir(root), root} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	specs, _ := filepath.Abs(filepath.Join(nodetest.Root(), "..", "shared", "specs"))
	fixtures.CopyDemo(t, root, ":8443", ":0", ":8080", ":0",
		"[../../shared/specs, schemas]", "["+specs+", "+nodetest.Fixture("schemas")+"]")
	bin := filepath.Join(root, "parzelle")
	build := exec.Command("go", "build", "-o", bin, "./cmd/parzelle")
	build.Dir = nodetest.Root()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	w := &world{t: t, f: f, root: root, bin: bin, accepted: map[string]string{}}
	if out, err := w.command("pki", "demo", "--out", "var/pki").CombinedOutput(); err != nil {
		t.Fatalf("pki demo: %v\n%s", err, out)
	}
	_, w.doc = nodetest.XMeld(t, "01")
	w.client = w.httpClient()
	return w
}

func (w *world) command(args ...string) *exec.Cmd {
	cmd := exec.Command(w.bin, args...)
	cmd.Dir = w.root
	cmd.Env = append(os.Environ(), "DATABASE_URL=", "PARZELLE_CONFIG=")
	return cmd
}

// start starts the first node, which creates and starts the cluster.
func (w *world) start() {
	w.nodes = []*nodetest.Process{w.serve()}
	c, err := pgcluster.New(filepath.Join(w.root, "var", "pg"))
	if err != nil {
		w.t.Fatal(err)
	}
	w.cluster = c
	url, err := os.ReadFile(filepath.Join(w.root, "var", "pg", "url"))
	if err != nil {
		w.t.Fatal(err)
	}
	w.dbURL = strings.TrimSpace(string(url))
	w.t.Cleanup(func() {
		for _, n := range w.nodes {
			n.Kill()
		}
		c.Stop(context.Background())
	})
}

// serve starts a node and waits for its banner.
func (w *world) serve(env ...string) *nodetest.Process {
	w.t.Helper()
	cmd := w.command("serve", "--config", "fixtures/node.yaml")
	cmd.Env = append(cmd.Env, env...)
	return nodetest.Serve(w.t, cmd)
}

func (w *world) httpClient() *http.Client {
	pki := filepath.Join(w.root, "var", "pki")
	cert, err := tls.LoadX509KeyPair(filepath.Join(pki, "clients", "duesseldorf.crt"), filepath.Join(pki, "clients", "duesseldorf.key"))
	if err != nil {
		w.t.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(pki, "ca.crt"))
	if err != nil {
		w.t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}}}}
}

// message is the template with a new message UUID and a family name of
// its own, so that each message makes one person.
func (w *world) message() ([]byte, string) {
	n := w.seq.Add(1)
	name := fmt.Sprintf("Störfall%06d", n)
	u := make([]byte, 16)
	_, _ = rand.Read(u)
	id := hex.EncodeToString(u)
	uuid := id[:8] + "-" + id[8:12] + "-4" + id[13:16] + "-a" + id[17:20] + "-" + id[20:32]
	doc := bytes.ReplaceAll(w.doc, []byte("Ćosić"), []byte(name))
	doc = bytes.Replace(doc, []byte("6f1c2a9e-3b7d-4e21-9a55-0c8d2f41b701"), []byte(uuid), 1)
	return doc, name
}

// send sends one message through the node; an acknowledged one counts as
// accepted.
func (w *world) send(ctx context.Context, p *nodetest.Process, attach []byte) (string, error) {
	c := &xta.Client{HTTP: w.client, BaseURL: "https://" + p.Transport, Account: "ags:05111000"}
	id, err := c.CreateMessageID(ctx)
	if err != nil {
		return "", err
	}
	doc, name := w.message()
	m := &xta.OutgoingMessage{MessageID: id, Author: xta.Party{ID: "ags:05111000"}, Reader: xta.Party{ID: "register:05111000"},
		Service: "urn:xoev-de:xmeld", BusinessScenario: "XMELD_DATA", MessageType: "rueckmeldung.anmeldunginland.0201", MessageTypeSchema: nodetest.XMeldNS,
		Message: xta.OutgoingContent{ContentType: "text/xml", Filename: "nachricht.xml", Data: bytes.NewReader(doc), Size: int64(len(doc))}}
	if attach != nil {
		m.Attachments = []xta.OutgoingContent{{ContentType: "application/octet-stream", Filename: "anlage.bin", Data: bytes.NewReader(attach), Size: int64(len(attach))}}
	}
	if err := c.Send(ctx, m); err != nil {
		return "", err
	}
	w.mu.Lock()
	w.accepted[id] = name
	w.mu.Unlock()
	return id, nil
}

// load runs the senders against the nodes until stop is closed.
func (w *world) load(stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	tokens := make(chan struct{})
	go func() {
		tick := time.NewTicker(time.Second / time.Duration(w.f.rate))
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				select {
				case tokens <- struct{}{}:
				default: // every sender busy: the offered load drops, as a Fachverfahren's would
				}
			}
		}
	}()
	for i := range w.f.senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-tokens:
				}
				w.mu.Lock()
				p := w.nodes[i%len(w.nodes)]
				w.mu.Unlock()
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				if _, err := w.send(ctx, p, nil); err != nil {
					time.Sleep(100 * time.Millisecond) // refused or unreachable: not acknowledged, not counted
				}
				cancel()
			}
		}()
	}
	return &wg
}

// result is one fault's outcome.
type result struct {
	accepted, applied, lost, twice, stuck int
	recovered                             time.Duration
}

// round loads the node, injects a fault, loads on, and checks that every
// message acknowledged in the round is applied exactly once.
func (w *world) round(fault func() time.Time) result {
	w.mu.Lock()
	w.accepted = map[string]string{}
	w.mu.Unlock()
	stop := make(chan struct{})
	wg := w.load(stop)
	time.Sleep(w.f.loadTime)
	ended := fault()
	// The load goes on for loadTime after the fault, however long the
	// node takes to come back, so that every fault meets the same load.
	probed := make(chan time.Duration, 1)
	go func() { probed <- w.probe(ended) }()
	time.Sleep(w.f.loadTime)
	close(stop)
	wg.Wait()
	recovered := <-probed
	r := w.settle(ended)
	r.recovered = max(r.recovered, recovered)
	return r
}

// settle waits until every message accepted so far is applied or the
// recovery time has passed, and counts accepted, applied, lost, applied
// twice and stuck; recovered is the time from ended until nothing was open.
func (w *world) settle(ended time.Time) result {
	w.mu.Lock()
	accepted := w.accepted
	w.mu.Unlock()
	ids := make([]string, 0, len(accepted))
	for id := range accepted {
		ids = append(ids, id)
	}
	r := result{accepted: len(ids)}
	ctx := context.Background()
	conn := w.connect(ctx)
	defer conn.Close(ctx)
	deadline := time.Now().Add(w.f.recover)
	lastLog := time.Now()
	for {
		var open, green, red int
		err := conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 0), count(*) FILTER (WHERE status = 1), count(*) FILTER (WHERE status = 3)
			FROM xta_message WHERE box = 'outbox' AND message_id = ANY($1)`, ids).Scan(&open, &green, &red)
		if err != nil {
			w.t.Fatal(err)
		}
		if open == 0 || time.Now().After(deadline) {
			// Recovered: every message acknowledged in the round is applied,
			// those the fault interrupted too.
			r.recovered = time.Since(ended)
			r.applied, r.stuck = green, open
			r.lost = len(ids) - green - open
			if r.lost > 0 {
				rows, _ := conn.Query(ctx, `SELECT status, count(*) FROM xta_message WHERE box = 'outbox' AND message_id = ANY($1) GROUP BY 1`, ids)
				counts, _ := pgx.CollectRows(rows, pgx.RowToStructByPos[struct{ Status, N int }])
				var reasons []string
				rows, _ = conn.Query(ctx, `SELECT DISTINCT r.code FROM xta_report_record r JOIN xta_message m ON m.id = r.message
					WHERE m.box = 'outbox' AND m.status >= 2 AND r.level <> 'info' AND m.message_id = ANY($1)`, ids)
				reasons, _ = pgx.CollectRows(rows, pgx.RowTo[string])
				w.t.Logf("report status of the round's %d messages: %v; yellow and red ones' warning and error codes %v", len(ids), counts, reasons)
			}
			break
		}
		if time.Since(lastLog) > 5*time.Second {
			lastLog = time.Now()
			rows, _ := conn.Query(ctx, `SELECT kind || ' ' || state, count(*) FROM river_job WHERE state NOT IN ('completed', 'discarded', 'cancelled') GROUP BY 1`)
			jobs, _ := pgx.CollectRows(rows, pgx.RowToStructByPos[struct {
				Job string
				N   int
			}])
			w.t.Logf("%s after the fault: %d of %d messages open; jobs %v", time.Since(ended).Round(time.Second), open, len(ids), jobs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Applied twice: a person made more than once, or a message whose
	// facts touched more than one record.
	names := make([]string, 0, len(accepted))
	for _, n := range accepted {
		names = append(names, n)
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM (SELECT transport_id FROM register_fact WHERE transport_id = ANY($1)
		GROUP BY transport_id HAVING count(DISTINCT record_id) > 1) t`, ids).Scan(&r.twice); err != nil {
		w.t.Fatal(err)
	}
	var records int
	if err := conn.QueryRow(ctx, `SELECT count(DISTINCT record_id) FROM register_fact WHERE transport_id = ANY($1)`, ids).Scan(&records); err != nil {
		w.t.Fatal(err)
	}
	if records > r.applied {
		r.twice += records - r.applied
	}
	// Stuck jobs: any still waiting or running a minute after recovery.
	var jobs int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE state IN ('running', 'available', 'retryable')
		AND created_at < now() - interval '1 minute'`).Scan(&jobs); err != nil {
		w.t.Fatal(err)
	}
	r.stuck += jobs
	return r
}

// probe is how long after the fault ended a new message was accepted and
// applied: it sends one until the node takes it and waits for its report
// to turn green.
func (w *world) probe(ended time.Time) time.Duration {
	ctx := context.Background()
	var id string
	for time.Since(ended) < w.f.recover {
		w.mu.Lock()
		p := w.nodes[0]
		w.mu.Unlock()
		sendCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
		got, err := w.send(sendCtx, p, nil)
		cancel()
		if err == nil {
			id = got
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	conn := w.connect(ctx)
	defer conn.Close(ctx)
	for time.Since(ended) < w.f.recover {
		var status int
		if err := conn.QueryRow(ctx, `SELECT status FROM xta_message WHERE box = 'outbox' AND message_id = $1`, id).Scan(&status); err == nil && status != 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(ended)
}

// connect connects as the database's owner (the url file's role).
func (w *world) connect(ctx context.Context) *pgx.Conn {
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		conn, err := pgx.Connect(ctx, w.dbURL)
		if err == nil {
			return conn
		}
		if time.Now().After(deadline) {
			w.t.Fatal(err)
		}
	}
}

// killNode kills the node with SIGKILL and starts it again.
func (w *world) killNode() time.Time {
	p := w.nodes[0]
	p.Kill()
	next := w.serve()
	w.mu.Lock()
	w.nodes[0] = next
	w.mu.Unlock()
	return time.Now()
}

// restartPostgres stops PostgreSQL (fast: sessions are cut) and starts it.
func (w *world) restartPostgres() time.Time {
	ctx := context.Background()
	if err := w.cluster.Stop(ctx); err != nil {
		w.t.Fatal(err)
	}
	if _, err := w.cluster.Start(ctx); err != nil {
		w.t.Fatal(err)
	}
	return time.Now()
}

// stopPostgres stops PostgreSQL for the form's outage and starts it.
func (w *world) stopPostgres() time.Time {
	ctx := context.Background()
	if err := w.cluster.Stop(ctx); err != nil {
		w.t.Fatal(err)
	}
	time.Sleep(w.f.pgDown)
	if _, err := w.cluster.Start(ctx); err != nil {
		w.t.Fatal(err)
	}
	return time.Now()
}

// spoolFull makes the node's spool (TMPDIR) unwritable while it runs:
// messages too large for memory are refused, not lost, smaller ones still
// go through, and once the spool is writable again large ones are taken.
// A node started with an unwritable TMPDIR refuses to start (it could not
// compile its schemas).
func (w *world) spoolFull() time.Time {
	spool := filepath.Join(w.root, "spool")
	if err := os.WriteFile(spool, []byte("not a directory"), 0o644); err != nil {
		w.t.Fatal(err)
	}
	bad := w.command("serve", "--config", "fixtures/node.yaml")
	bad.Env = append(bad.Env, "TMPDIR="+spool)
	out, err := bad.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "cannot write temporary files") {
		w.t.Errorf("a node with an unwritable TMPDIR: %v\n%s", err, out)
	}
	if err := os.Remove(spool); err != nil {
		w.t.Fatal(err)
	}
	if err := os.Mkdir(spool, 0o700); err != nil {
		w.t.Fatal(err)
	}
	p := w.nodes[0]
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	<-p.Exited()
	next := w.serve("TMPDIR=" + spool)
	w.mu.Lock()
	w.nodes[0] = next
	w.mu.Unlock()
	// The spool becomes a file while the node runs.
	if err := os.Remove(spool); err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(spool, []byte("not a directory"), 0o644); err != nil {
		w.t.Fatal(err)
	}
	big := bytes.Repeat([]byte("x"), 600<<10)
	ctx := context.Background()
	if _, err := w.send(ctx, next, big); err == nil {
		w.t.Error("a message larger than memory was accepted with an unwritable spool")
	}
	if resp, err := http.Get("http://" + next.Ops + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		w.t.Errorf("the node is not healthy after a spool failure: %v", err)
	}
	if err := os.Remove(spool); err != nil {
		w.t.Fatal(err)
	}
	if err := os.Mkdir(spool, 0o700); err != nil {
		w.t.Fatal(err)
	}
	if _, err := w.send(ctx, next, big); err != nil {
		w.t.Errorf("a large message after the spool recovered: %v", err)
	}
	return time.Now()
}

// twoNodes starts a second node on the same database for the load, then
// stops it.
func (w *world) twoNodes() time.Time {
	second := w.serve()
	w.mu.Lock()
	w.nodes = append(w.nodes, second)
	w.mu.Unlock()
	time.Sleep(w.f.loadTime)
	w.mu.Lock()
	w.nodes = w.nodes[:1]
	w.mu.Unlock()
	_ = second.Cmd.Process.Signal(syscall.SIGTERM)
	<-second.Exited()
	return time.Now()
}

// checkDump: a pg_dump after all that holds none of the personal data
// sent, in any form.
func (w *world) checkDump() {
	dump := dbtest.Dump(w.t, w.dbURL)
	secrets := map[string]string{"given names": "Mirela Ana", "street": "Lindemannstraße", "family name": "Störfall000001"}
	if leaks := dbtest.Leaks(dump, secrets); len(leaks) > 0 {
		w.t.Errorf("the pg_dump holds personal data: %v", leaks)
	}
}
