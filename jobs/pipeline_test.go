package jobs_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/parzelle/parzelle/jobs"
	"github.com/parzelle/parzelle/msgbox"
	"github.com/parzelle/parzelle/node/nodetest"
	"github.com/parzelle/parzelle/pki"
	"github.com/parzelle/parzelle/register"
	"github.com/parzelle/parzelle/tenant"
	"github.com/parzelle/parzelle/xmldsig"
)

const (
	specs    = "../../shared/specs"
	fixtures = "../fixtures"
	xmeldNS  = nodetest.XMeldNS
)

// The fixtures every test here uses, shared with the other packages'
// tests through nodetest.
var (
	ags         = nodetest.AGS
	tenantWith  = nodetest.MelderegisterTenant
	loadSchemas = nodetest.Schemas
	message     = nodetest.XMeld
)

func startNode(t testing.TB, tenants map[string]string) *nodetest.Node {
	return nodetest.Start(t, nodetest.Options{Tenants: tenants, Clients: []string{"duesseldorf", "koeln"}, Schemas: loadSchemas(t)})
}

// send sends fixture messages from the tenant's Fachverfahren to its
// register inbox and returns their transport message ids.
func send(t testing.TB, n *nodetest.Node, tenantID string, prefixes ...string) []string {
	t.Helper()
	author := "ags:" + ags[tenantID]
	c := n.XTAClient(tenantID, author)
	var ids []string
	for _, p := range prefixes {
		typ, doc := message(t, p)
		id, err := n.Send(t.Context(), c, author, "register:"+ags[tenantID], typ, xmeldNS, doc)
		if err != nil {
			t.Fatalf("send %s: %v", p, err)
		}
		ids = append(ids, id)
	}
	return ids
}

// settle waits until the messages' transport reports are no longer open
// and returns their status by message id (1 green, 3 red).
func settle(t testing.TB, n *nodetest.Node, ids ...string) map[string]int {
	t.Helper()
	return n.Settle(t, 3*time.Minute, ids...)
}

// clerk reads a tenant's register.
func clerk(tenantID string) tenant.Actor {
	return tenant.Actor{Tenant: tenantID, Kind: tenant.ActorCertificate, Subject: "test", Role: "fachverfahren", Purpose: "meldewesen"}
}

// cosic finds Mirela Ana Ćosić in the tenant's register and returns her
// record and history (without transaction times).
func cosic(t testing.TB, n *nodetest.Node, tenantID string) (register.Record, string) {
	t.Helper()
	ctx := t.Context()
	found, err := n.Store.Search(ctx, clerk(tenantID), tenantID, "melderegister", register.Query{Familienname: "Ćosić", Vornamen: "Mirela Ana", Geburtsdatum: "1987-04"})
	if err != nil || len(found) != 1 {
		t.Fatalf("search in %s: %d records, %v", tenantID, len(found), err)
	}
	vs, err := n.Store.History(ctx, clerk(tenantID), tenantID, "melderegister", found[0].ID, register.Temporal{})
	if err != nil {
		t.Fatal(err)
	}
	type span struct {
		From, To   string
		Attributes register.Attributes
		Sources    []string
	}
	var spans []span
	for _, v := range vs {
		spans = append(spans, span{v.ValidFrom, v.ValidTo, v.Attributes, v.Sources})
	}
	b, _ := json.MarshalIndent(spans, "", "  ")
	return found[0], string(b)
}

// TestPipelineEndToEnd sends the XMeld sequence over XTA to Düsseldorf's
// register inbox in order, and to Köln's shuffled with duplicates: both
// registers end with the same person, each in the tenant whose inbox got
// the messages, and every report is green.
func TestPipelineEndToEnd(t *testing.T) {
	all := []string{"zuzug", "auswertung", "anschrift", "tod", "storno"}
	n := startNode(t, map[string]string{"duesseldorf": tenantWith(t, "duesseldorf", all...), "koeln": tenantWith(t, "koeln", all...)})
	sequence := []string{"01", "02", "03", "04", "05"}

	var ids []string
	for _, p := range sequence { // one after the other, as a Fachverfahren sends them
		id := send(t, n, "duesseldorf", p)
		settle(t, n, id...)
		ids = append(ids, id...)
	}
	for id, status := range settle(t, n, ids...) {
		if status != msgbox.StatusGreen {
			t.Errorf("message %s: report status %d, want green", id, status)
		}
	}
	rec, want := cosic(t, n, "duesseldorf")
	a := rec.Attributes
	sperren, _ := a["auskunftssperren"].([]any)
	if a["familienname"] != "Ćosić" || a["geburtsdatum"] != "1987-04" || a["idnr"] != "47158309248" || a["auskunftssperre"] != true ||
		len(sperren) != 1 || a["sterbedatum"] != "2026-01-20" || a["hauptwohnung"] != nil {
		t.Errorf("Düsseldorf's record today, after her death: %v", a)
	}
	// Her death ended her registration; before it she lived where the
	// withdrawn move left her.
	before, err := n.Store.Get(t.Context(), clerk("duesseldorf"), "duesseldorf", "melderegister", rec.ID, register.Temporal{ValidAt: "2026-01-10"})
	if err != nil {
		t.Fatal(err)
	}
	home, _ := before.Attributes["hauptwohnung"].(map[string]any)
	if home["strasse"] != "Lindemannstraße" || home["hausnummer"] != "18" || home["postleitzahl"] != "40237" ||
		home["wohnort"] != "Düsseldorf" || home["seit"] != "2025-03-01" {
		t.Errorf("Düsseldorf's record before her death: %v", before.Attributes)
	}
	if strings.Contains(want, "Kölner Landstraße") {
		t.Errorf("the taken-back address is in the history:\n%s", want)
	}
	if !slices.Contains(rec.Sources, "xmeld-zuzug@1") {
		t.Errorf("record sources %v, want the 0201 spec's version", rec.Sources)
	}
	var reports int
	if err := n.Pool.QueryRow(t.Context(), `SELECT count(*) FROM xta_report_record WHERE code = 'APPLIED'`).Scan(&reports); err != nil || reports != len(sequence) {
		t.Errorf("%d APPLIED report records (%v), want %d", reports, err, len(sequence))
	}

	// Köln: the same messages (their XÖV headers name Düsseldorf) shuffled,
	// each sent twice, all at once.
	shuffled := append(slices.Clone(sequence), sequence...)
	rand.New(rand.NewPCG(7, 11)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for id, status := range settle(t, n, send(t, n, "koeln", shuffled...)...) {
		if status != msgbox.StatusGreen {
			t.Errorf("Köln message %s: report status %d, want green", id, status)
		}
	}
	if _, got := cosic(t, n, "koeln"); got != want {
		t.Errorf("Köln's record, from the shuffled and repeated sequence:\n%s\nwant Düsseldorf's:\n%s", got, want)
	}
	if found, err := n.Store.Search(t.Context(), clerk("koeln"), "koeln", "melderegister", register.Query{Familienname: "Ćosić", Vornamen: "Mirela Ana", Geburtsdatum: "1987-04"}); err != nil || len(found) != 1 {
		t.Errorf("Köln has %d records of her (%v), want exactly one", len(found), err)
	}
}

// TestPipelineDeadLetters: a schema-invalid message is refused by the
// transport at once (9050, with line and column); a message from an author
// the inbox does not accept and a message without a mapping spec end as
// dead letters with reasons a clerk understands, their reports red; once
// the spec is there, retrying applies the message with the new spec and the
// report turns green.
func TestPipelineDeadLetters(t *testing.T) {
	n := startNode(t, map[string]string{"duesseldorf": tenantWith(t, "duesseldorf", "zuzug"), "koeln": tenantWith(t, "koeln", "zuzug")})
	ctx := t.Context()
	typ, doc := message(t, "08")
	_, err := n.Send(ctx, n.XTAClient("duesseldorf", "ags:05111000"), "ags:05111000", "register:05111000", typ, xmeldNS, doc)
	if err == nil || !strings.Contains(err.Error(), "9050") || !strings.Contains(err.Error(), "line 81") {
		t.Errorf("schema-invalid message: %v, want fault 9050 naming line 81", err)
	}
	ids := send(t, n, "duesseldorf", "01", "05")
	typ, doc = message(t, "01")
	stranger, err := n.Send(ctx, n.XTAClient("koeln", "ags:05315000"), "ags:05315000", "register:05111000", typ, xmeldNS, doc)
	if err != nil {
		t.Fatal(err)
	}
	ids = append(ids, stranger)
	status := settle(t, n, ids...)
	if status[ids[0]] != msgbox.StatusGreen || status[ids[1]] != msgbox.StatusRed || status[ids[2]] != msgbox.StatusRed {
		t.Fatalf("report status: %v, want green, red, red", status)
	}
	letters, err := n.Letters.List(ctx, "duesseldorf", false)
	if err != nil || len(letters) != 2 {
		t.Fatalf("dead letters: %+v %v", letters, err)
	}
	byMessage := map[string]jobs.DeadLetter{}
	for _, d := range letters {
		byMessage[d.MessageID] = d
	}
	nospec, foreign := byMessage[ids[1]], byMessage[ids[2]]
	if nospec.Step != jobs.StepMap || !strings.Contains(nospec.Reason, "no mapping spec") || nospec.MessageType != "fortschreibung.tod.0040" {
		t.Errorf("unmapped message's dead letter: %+v", nospec)
	}
	if foreign.Step != jobs.StepAuthorize || !strings.Contains(foreign.Reason, "ags:05315000 may not write to the register inbox register:05111000") {
		t.Errorf("foreign author's dead letter: %+v", foreign)
	}
	var reason string
	outbox, err := n.Box.Report(ctx, "duesseldorf", "ags:05111000", ids[1])
	for _, r := range outbox.Records {
		if r.Code == msgbox.RecordDeadLetter {
			reason = r.Reason
		}
	}
	if err != nil || !strings.Contains(reason, "no mapping spec") {
		t.Errorf("the author's report of the unmapped message says %q (%v)", reason, err)
	}
	if found, err := n.Store.Search(ctx, clerk("duesseldorf"), "duesseldorf", "melderegister", register.Query{Familienname: "Ćosić", Vornamen: "Mirela Ana", Geburtsdatum: "1987-04"}); err != nil || len(found) != 1 {
		t.Fatalf("the foreign author's copy changed the register: %d records (%v)", len(found), err)
	}

	// The 0040 spec is added to the tenant file; a retry applies it.
	file := filepath.Join(n.Dir, "tenants", "duesseldorf.yaml")
	if err := os.WriteFile(file, []byte(strings.ReplaceAll(tenantWith(t, "duesseldorf", "zuzug", "tod"), "{{CA}}", filepath.Join(n.Dir, "ca.crt"))), 0o644); err != nil {
		t.Fatal(err)
	}
	if rep, err := n.Tenants.Reload(ctx); err != nil || len(rep.Rejected) > 0 {
		t.Fatalf("reload: %v %v", err, rep.Rejected)
	}
	operator := tenant.Actor{Tenant: "duesseldorf", Kind: "operator", Subject: "ops@test", Role: "operator", Purpose: "betrieb"}
	if err := n.Letters.Retry(ctx, operator, "duesseldorf", nospec.ID); err != nil {
		t.Fatal(err)
	}
	if err := n.Letters.Retry(ctx, operator, "duesseldorf", nospec.ID); err == nil {
		t.Error("a resolved dead letter was retried twice")
	}
	if st := settle(t, n, ids[1]); st[ids[1]] != msgbox.StatusGreen {
		again, _ := n.Letters.List(ctx, "duesseldorf", false)
		t.Fatalf("retried message: status %d, want green; dead letters now %+v", st[ids[1]], again)
	}
	rec, _ := cosic(t, n, "duesseldorf")
	if rec.Attributes["sterbedatum"] != "2026-01-20" || !slices.Contains(rec.Sources, "xmeld-tod@2") {
		t.Errorf("after the retry: %v from %v", rec.Attributes, rec.Sources)
	}
	if nospec.Cause != jobs.CauseNoSpec || foreign.Cause != jobs.CauseNotWriter || len(nospec.Problems) != 1 || !strings.HasPrefix(nospec.Problems[0], "line 4: ") {
		t.Errorf("causes %q and %q, problems %q: want no-spec (at the root element's line) and not-writer", nospec.Cause, foreign.Cause, nospec.Problems)
	}

	// A retry that fails again keeps the dead letter's identifier and adds
	// an attempt, so that the number an operator knows still works.
	if err := n.Letters.Retry(ctx, operator, "duesseldorf", foreign.ID); err != nil {
		t.Fatal(err)
	}
	if st := settle(t, n, ids[2]); st[ids[2]] != msgbox.StatusRed {
		t.Fatalf("retried foreign message: status %d, want red", st[ids[2]])
	}
	again, err := n.Letters.Show(ctx, "duesseldorf", foreign.ID)
	if err != nil || again.ResolvedAt != nil || len(again.History) != 2 || again.History[1].Cause != jobs.CauseNotWriter {
		t.Fatalf("the dead letter after a failed retry: %+v %v, want it open again with 2 failures", again, err)
	}
	if err := n.Letters.Discard(ctx, operator, "duesseldorf", foreign.ID, "Köln schreibt nicht in Düsseldorfs Register"); err != nil {
		t.Fatal(err)
	}
	open, err := n.Letters.List(ctx, "duesseldorf", false)
	if err != nil || len(open) != 0 {
		t.Errorf("open dead letters after retry and discard: %+v %v", open, err)
	}
	var audited int
	if err := n.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_entry WHERE tenant_id = 'duesseldorf' AND operation LIKE 'dead-letter %' AND actor = 'ops@test'`).Scan(&audited); err != nil || audited != 3 {
		t.Errorf("%d audited dead-letter operations (%v), want 3", audited, err)
	}

	// Past the node's retention, resolved dead letters go with their
	// attempts and sealed texts; one resolved later stays.
	if _, err := n.Pool.Exec(ctx, `UPDATE pipeline_dead_letter SET resolved_at = now() - interval '91 days' WHERE id = $1`, nospec.ID); err != nil {
		t.Fatal(err)
	}
	tenants := []string{"duesseldorf", "koeln"}
	if gone, err := n.Letters.Expire(ctx, tenants, time.Now().Add(-90*24*time.Hour)); err != nil || gone != 1 {
		t.Errorf("expired %d dead letters (%v), want 1", gone, err)
	}
	var rows, attempts int
	if err := n.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM pipeline_dead_letter WHERE id = $1), (SELECT count(*) FROM pipeline_dead_letter_attempt WHERE dead_letter = $1)`,
		nospec.ID).Scan(&rows, &attempts); err != nil || rows+attempts != 0 {
		t.Errorf("the expired dead letter: %d rows, %d attempts left (%v)", rows, attempts, err)
	}
	if _, err := n.Letters.Show(ctx, "duesseldorf", foreign.ID); err != nil {
		t.Errorf("the dead letter resolved today: %v", err)
	}
	if gone, err := n.Letters.Expire(ctx, tenants, time.Now().Add(-90*24*time.Hour)); err != nil || gone != 0 {
		t.Errorf("a second expiry: %d (%v), want 0", gone, err)
	}
	if err := n.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_entry WHERE tenant_id = 'duesseldorf' AND operation = 'dead-letter expired' AND actor_kind = 'retention'`).Scan(&audited); err != nil || audited != 1 {
		t.Errorf("%d audited expiries (%v), want 1", audited, err)
	}

	// Past the node's message retention (here: everything until now), the
	// transport rows of finished messages go: the applied ones' outbox rows,
	// the discarded one's inbox row, and, once that is gone, its author's
	// row in Köln. A message waiting in a box stays.
	typ, doc = message(t, "01")
	waiting, err := n.Send(ctx, n.XTAClient("duesseldorf", "ags:05111000"), "ags:05111000", "ags:05111000", typ, xmeldNS, doc)
	if err != nil {
		t.Fatal(err)
	}
	rowsOf := func(messageIDs ...string) (n2 int) {
		if err := n.Pool.QueryRow(ctx, `SELECT count(*) FROM xta_message WHERE message_id = ANY($1)`, messageIDs).Scan(&n2); err != nil {
			t.Fatal(err)
		}
		return n2
	}
	if got := rowsOf(ids...); got != 4 {
		t.Fatalf("%d transport rows of the settled messages before expiry, want 4 (3 outbox, 1 refused inbox)", got)
	}
	if gone, err := n.Box.Expire(ctx, tenants, time.Now()); err != nil || gone != 4 {
		t.Errorf("expired %d transport rows (%v), want 4", gone, err)
	}
	if got, waits := rowsOf(ids...), rowsOf(waiting); got != 0 || waits != 2 {
		t.Errorf("after expiry: %d rows of the settled messages, %d of the waiting one; want 0 and 2", got, waits)
	}
	if _, err := n.Box.Report(ctx, "duesseldorf", "ags:05111000", ids[0]); err == nil {
		t.Error("the report of an expired message is still there")
	}
	if gone, err := n.Box.Expire(ctx, tenants, time.Now()); err != nil || gone != 0 {
		t.Errorf("a second expiry: %d (%v), want 0", gone, err)
	}
	report, err := register.VerifyAudit(ctx, n.Pool, "duesseldorf")
	if err != nil || !report.OK() {
		t.Errorf("audit chain: %+v %v", report, err)
	}
}

// TestPipelineFairness: while one tenant's mass import is stuck (its audit
// chain held by another transaction, so none of its messages can be
// applied), another tenant's messages are applied all the same: each
// tenant's messages wait in its own queue for its own workers. With one
// shared queue the stuck import would occupy every worker.
func TestPipelineFairness(t *testing.T) {
	n := startNode(t, map[string]string{"duesseldorf": tenantWith(t, "duesseldorf", "zuzug"), "koeln": tenantWith(t, "koeln", "zuzug")})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	settle(t, n, send(t, n, "duesseldorf", "01")...) // Düsseldorf's audit chain exists
	hold, err := n.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Rollback(context.Background())
	if _, err := hold.Exec(ctx, `SELECT 1 FROM audit_head WHERE tenant_id = 'duesseldorf' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	// The import: the family move sent 150 times (each a new transport
	// message), more than Düsseldorf's workers.
	const flood = 150
	var wg sync.WaitGroup
	var mu sync.Mutex
	var floodIDs []string
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < flood; i += 6 {
				id := send(t, n, "duesseldorf", "07")
				mu.Lock()
				floodIDs = append(floodIDs, id...)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	koeln := send(t, n, "koeln", "01", "07")
	deadline := time.Now().Add(30 * time.Second)
	for {
		var open int
		if err := n.Pool.QueryRow(ctx, `SELECT count(*) FROM xta_message WHERE box = 'outbox' AND status = 0 AND message_id = ANY($1)`, koeln).Scan(&open); err != nil {
			t.Fatal(err)
		}
		if open == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Köln's messages were not applied in 30 s while Düsseldorf's import was stuck")
		}
		time.Sleep(50 * time.Millisecond)
	}
	var pending int
	if err := n.Pool.QueryRow(ctx, `SELECT count(*) FROM xta_message WHERE box = 'outbox' AND status = 0 AND message_id = ANY($1)`, floodIDs).Scan(&pending); err != nil {
		t.Fatal(err)
	}
	if pending != flood {
		t.Errorf("%d of Düsseldorf's %d messages were applied although its audit chain was held", flood-pending, flood)
	}
	if err := hold.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for id, st := range settle(t, n, floodIDs...) {
		if st != msgbox.StatusGreen {
			t.Fatalf("import message %s: status %d after the chain was free again", id, st)
		}
	}
}

// gewerbeTenant keeps a Gewerberegister fed through gewerbe:05111000 with
// the XGewerbeanzeige 2.2 spec; no XGewerbeanzeige schema is installed, so
// its policy accepts such messages with a warning.
const gewerbeTenant = `id: duesseldorf
name: Gewerberegister Düsseldorf
identities:
  - {id: "ags:05111000", type: xoev, category: Gewerbeamt, transports: [xta]}
  - {id: "gewerbe:05111000", type: xoev, category: Gewerberegister, transports: [xta]}
clients:
  - {name: fachverfahren, subject: "CN=duesseldorf,OU=Fachverfahren,O=Parzelle Demo", identities: ["ags:05111000"], role: fachverfahren}
trust:
  clientCAs: ["{{CA}}"]
registers:
  - {name: gewerberegister, type: business}
access:
  rules:
    - {role: fachverfahren, operations: [read, search], purposes: [gewerbeaufsicht], legalBasis: "§ 14 GewO"}
    - {role: register-inbox, operations: [write], purposes: [gewerbeaufsicht], legalBasis: "§ 14 GewO"}
inboxes:
  - {identity: "gewerbe:05111000", register: gewerberegister, writers: ["ags:05111000"], purpose: gewerbeaufsicht}
mappings:
  - %s
`

// TestPipelineGewerbe: the genuine XGewerbeanzeige Anmeldung and an
// Ummeldung of the same business, sent over XTA, end as one business in the
// Gewerberegister whose status follows the messages; the reports are
// yellow, since no XGewerbeanzeige schema is installed.
func TestPipelineGewerbe(t *testing.T) {
	spec, err := filepath.Abs(filepath.Join(fixtures, "mappings", "xgewerbeanzeige.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t, map[string]string{"duesseldorf": fmt.Sprintf(gewerbeTenant, spec)})
	ctx := t.Context()
	c := n.XTAClient("duesseldorf", "ags:05111000")
	var ids []string
	for _, file := range []string{filepath.Join(specs, "xoev", "xgewerbeanzeige", "samples", "xgwa2.2-valid.xml"), filepath.Join("..", "mapping", "testdata", "xgwa2.2-ummeldung.xml")} {
		doc, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		id, err := n.Send(ctx, c, "ags:05111000", "gewerbe:05111000", "gewerbemeldung", "http://www.xgewerbeanzeige.de/spezifikation/2.2", doc)
		if err != nil {
			t.Fatalf("send %s: %v", file, err)
		}
		ids = append(ids, id)
		if st := settle(t, n, id); st[id] != msgbox.StatusYellow {
			t.Fatalf("%s: report status %d, want yellow (applied, schema missing)", file, st[id])
		}
	}
	actor := tenant.Actor{Tenant: "duesseldorf", Kind: tenant.ActorCertificate, Subject: "test", Role: "fachverfahren", Purpose: "gewerbeaufsicht"}
	found, err := n.Store.Search(ctx, actor, "duesseldorf", "gewerberegister", register.Query{Name: "tibor pick e.k."})
	if err != nil || len(found) != 1 {
		t.Fatalf("search by name: %d records, %v", len(found), err)
	}
	if a := found[0].Attributes; a["status"] != "umgemeldet" || a["taetigkeit"] == nil {
		t.Errorf("the business after Anmeldung and Ummeldung: %v", a)
	}
	vs, err := n.Store.History(ctx, actor, "duesseldorf", "gewerberegister", found[0].ID, register.Temporal{})
	if err != nil || len(vs) < 2 || vs[len(vs)-2].Attributes["status"] != "aktiv" || vs[len(vs)-1].ValidFrom != "2019-04-01" {
		t.Errorf("history: %+v %v", vs, err)
	}
}

// sendForTomorrow sends fixture messages to the tenant's register inbox for
// tomorrow (NotBefore), so that the transport keeps them in the box
// instead of handing them over, and returns their transport message ids
// and their inbox rows as deliveries.
func sendForTomorrow(t testing.TB, n *nodetest.Node, tenantID string, prefixes ...string) ([]string, []msgbox.Delivery) {
	t.Helper()
	author, reader := "ags:"+ags[tenantID], "register:"+ags[tenantID]
	c := n.XTAClient(tenantID, author)
	tomorrow := time.Now().Add(24 * time.Hour)
	var ids []string
	for _, p := range prefixes {
		typ, doc := message(t, p)
		id, err := n.SendAt(t.Context(), c, author, reader, typ, xmeldNS, doc, &tomorrow)
		if err != nil {
			t.Fatalf("send %s: %v", p, err)
		}
		ids = append(ids, id)
	}
	rows, err := n.Pool.Query(t.Context(), `SELECT id, message_id, message_type FROM xta_message WHERE box = 'inbox' AND message_id = ANY($1) ORDER BY id`, ids)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (msgbox.Delivery, error) {
		d := msgbox.Delivery{ReaderTenant: tenantID, Reader: reader, Author: author}
		return d, row.Scan(&d.Inbox, &d.MessageID, &d.MessageType)
	})
	if err != nil || len(ds) != len(ids) {
		t.Fatalf("%d inbox rows for %d messages: %v", len(ds), len(ids), err)
	}
	return ids, ds
}

// handOver sends fixture messages and hands them over to the pipeline
// together, as messages accepted in one transaction are: one job, whose
// messages are applied as one group.
func handOver(t testing.TB, n *nodetest.Node, tenantID string, prefixes ...string) []string {
	t.Helper()
	ids, ds := sendForTomorrow(t, n, tenantID, prefixes...)
	if err := pgx.BeginFunc(t.Context(), n.Pool, func(tx pgx.Tx) error { return n.Pipeline.Consume(t.Context(), tx, ds) }); err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestPipelineLastAttempt: a message that fails for a reason that may pass
// (here: its tenant is missing from the configuration the pipeline sees)
// stays open for River to try again, until the last attempt makes it a
// dead letter; retried once the reason is gone, it is applied.
func TestPipelineLastAttempt(t *testing.T) {
	n := startNode(t, map[string]string{"duesseldorf": tenantWith(t, "duesseldorf", "zuzug")})
	ids, ds := sendForTomorrow(t, n, "duesseldorf", "01")
	unconfigured := *n.Pipeline
	unconfigured.Tenants = func() *tenant.Set { return tenant.NewSet() }
	w := &jobs.PipelineWorker{Pipeline: &unconfigured}
	job := &river.Job[jobs.PipelineArgs]{JobRow: &rivertype.JobRow{Attempt: 1, MaxAttempts: 8},
		Args: jobs.PipelineArgs{Tenant: "duesseldorf", Messages: []jobs.PipelineMessage{{Inbox: ds[0].Inbox}}}}
	report := func() int {
		var status int
		if err := n.Pool.QueryRow(t.Context(), `SELECT status FROM xta_message WHERE box = 'outbox' AND message_id = $1`, ids[0]).Scan(&status); err != nil {
			t.Fatal(err)
		}
		return status
	}
	if err := w.Work(t.Context(), job); err == nil || !strings.Contains(err.Error(), "authorize") {
		t.Fatalf("attempt 1: %v, want an error naming the authorize step for River to retry", err)
	}
	if letters, _ := n.Letters.List(t.Context(), "duesseldorf", false); len(letters) != 0 || report() != msgbox.StatusOpen {
		t.Fatalf("after attempt 1: dead letters %+v, report status %d; want none and open", letters, report())
	}
	job.Attempt = 8
	if err := w.Work(t.Context(), job); err != nil {
		t.Fatalf("attempt 8: %v", err)
	}
	letters, err := n.Letters.List(t.Context(), "duesseldorf", false)
	if err != nil || len(letters) != 1 || letters[0].Step != jobs.StepAuthorize || letters[0].Attempts != 8 || report() != msgbox.StatusRed {
		t.Fatalf("after the last attempt: dead letters %+v (%v), report status %d; want one at authorize after 8 attempts, red", letters, err, report())
	}
	if err := n.Letters.Retry(t.Context(), clerk("duesseldorf"), "duesseldorf", letters[0].ID); err != nil {
		t.Fatal(err)
	}
	if status := settle(t, n, ids...); status[ids[0]] != msgbox.StatusGreen {
		t.Fatalf("retried with the tenant configured: status %v, want green", status)
	}
	// Applied, the message leaves no box row behind; the dead letter keeps
	// its history.
	var rows int
	if err := n.Pool.QueryRow(t.Context(), `SELECT count(*) FROM xta_message WHERE box = 'inbox' AND message_id = $1`, ids[0]).Scan(&rows); err != nil || rows != 0 {
		t.Errorf("%d inbox rows of the applied message (%v), want none", rows, err)
	}
	if all, err := n.Letters.List(t.Context(), "duesseldorf", true); err != nil || len(all) != 1 || all[0].Resolution != "retried" || all[0].Inbox != 0 {
		t.Errorf("dead letters after the retry: %+v (%v), want the one, resolved as retried, its message no longer stored", all, err)
	}
}

// TestPipelineLegacyJob: a job in the form a node enqueued before jobs
// carried several messages (one "inbox") is still applied after an upgrade.
func TestPipelineLegacyJob(t *testing.T) {
	n := startNode(t, map[string]string{"duesseldorf": tenantWith(t, "duesseldorf", "zuzug")})
	ids, ds := sendForTomorrow(t, n, "duesseldorf", "01")
	if _, err := n.Jobs.Insert(t.Context(), jobs.PipelineArgs{Tenant: "duesseldorf", Inbox: ds[0].Inbox, Validated: true}, nil); err != nil {
		t.Fatal(err)
	}
	if status := settle(t, n, ids...); status[ids[0]] != msgbox.StatusGreen {
		t.Fatalf("report status %v, want green", status)
	}
}

// TestPipelineValidates: content the transport did not validate (here: a
// node without the XMeld schemas, whose tenant accepts such messages with a
// warning) is validated by the pipeline once the schemas are there; an
// invalid message becomes a dead letter at the validate step naming the
// line, while a valid one in the same job is applied.
func TestPipelineValidates(t *testing.T) {
	file := strings.Replace(tenantWith(t, "duesseldorf", "zuzug", "tod"), "missing: refuse", "missing: warn", 1)
	n := nodetest.Start(t, nodetest.Options{Tenants: map[string]string{"duesseldorf": file}, Clients: []string{"duesseldorf"}})
	ids, ds := sendForTomorrow(t, n, "duesseldorf", "01", "08")
	withSchemas := *n.Pipeline
	withSchemas.Schemas = loadSchemas(t)
	job := &river.Job[jobs.PipelineArgs]{JobRow: &rivertype.JobRow{Attempt: 1, MaxAttempts: 8},
		Args: jobs.PipelineArgs{Tenant: "duesseldorf", Messages: []jobs.PipelineMessage{{Inbox: ds[0].Inbox}, {Inbox: ds[1].Inbox}}}}
	if err := (&jobs.PipelineWorker{Pipeline: &withSchemas}).Work(t.Context(), job); err != nil {
		t.Fatal(err)
	}
	// The valid one keeps the yellow of the transport's warning.
	if status := settle(t, n, ids...); status[ids[0]] != msgbox.StatusYellow || status[ids[1]] != msgbox.StatusRed {
		t.Fatalf("report status %v, want the valid message yellow (applied, with the warning) and the invalid one red", status)
	}
	letters, err := n.Letters.List(t.Context(), "duesseldorf", false)
	if err != nil || len(letters) != 1 || letters[0].MessageID != ids[1] || letters[0].Step != jobs.StepValidate ||
		!slices.ContainsFunc(letters[0].Problems, func(p string) bool { return strings.HasPrefix(p, "line 81,") }) {
		t.Fatalf("dead letters: %+v (%v), want the invalid message at the validate step naming line 81", letters, err)
	}
	if rec, _ := cosic(t, n, "duesseldorf"); rec.Attributes["sterbedatum"] != nil {
		t.Errorf("the invalid 0040 changed the record: %v", rec.Attributes)
	}
}

// TestPipelineRegisterRefusal: a spec that states a value the register
// does not accept (geschlecht "q") makes its message a dead letter at the
// apply step, naming the attribute, while a good message handed over with
// it (one job, one group: the register refuses the group, and the pipeline
// applies its messages one by one) goes through, and the refused one
// changes nothing.
func TestPipelineRegisterRefusal(t *testing.T) {
	good, err := filepath.Abs(filepath.Join(fixtures, "mappings", "xmeld-zuzug.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := os.ReadFile(filepath.Join(fixtures, "mappings", "xmeld-anschrift.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(spec), "    set:\n", "    set:\n      - {attribute: geschlecht, value: q}\n", 1)
	bad = strings.Replace(bad, "id: xmeld-anschrift", "id: xmeld-anschrift-broken", 1)
	if bad == string(spec) {
		t.Fatal("the 0090 spec's set list moved: the test cannot break it")
	}
	file := strings.Replace(tenantWith(t, "duesseldorf"), "mappings:\n", "mappings:\n  - "+good+"\n  - {{DIR}}/bad-0090.yaml\n", 1)
	n := nodetest.Start(t, nodetest.Options{Tenants: map[string]string{"duesseldorf": file}, Files: map[string][]byte{"bad-0090.yaml": []byte(bad)},
		Clients: []string{"duesseldorf"}, Schemas: loadSchemas(t)})
	ids := handOver(t, n, "duesseldorf", "01", "03")
	status := settle(t, n, ids...)
	if status[ids[0]] != msgbox.StatusGreen || status[ids[1]] != msgbox.StatusRed {
		t.Fatalf("report status %v, want the 0201 green and the 0090 red", status)
	}
	letters, err := n.Letters.List(t.Context(), "duesseldorf", false)
	if err != nil || len(letters) != 1 || letters[0].Step != jobs.StepApply || !slices.ContainsFunc(letters[0].Problems, func(p string) bool { return strings.HasPrefix(p, "geschlecht:") }) {
		t.Fatalf("dead letters: %+v %v", letters, err)
	}
	rec, _ := cosic(t, n, "duesseldorf")
	if home := rec.Attributes["hauptwohnung"].(map[string]any); home["strasse"] != "Lindemannstraße" || rec.Attributes["geschlecht"] != "w" {
		t.Errorf("the refused 0090 changed the record: %v", rec.Attributes)
	}
}

// TestPipelineSignedMessages: a message with an enveloped signature is
// applied only when the signature is valid and made by a certificate the
// tenant trusts for signatures; a tampered or foreign-signed one is a dead
// letter naming the signature.
func TestPipelineSignedMessages(t *testing.T) {
	spec, err := filepath.Abs(filepath.Join(fixtures, "mappings", "xgewerbeanzeige.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	file := fmt.Sprintf(gewerbeTenant, spec) + "keys:\n  trust:\n    signers: [\"{{CA}}\"]\n"
	n := startNode(t, map[string]string{"duesseldorf": file})
	doc, err := os.ReadFile(filepath.Join(specs, "xoev", "xgewerbeanzeige", "samples", "xgwa2.2-valid.xml"))
	if err != nil {
		t.Fatal(err)
	}
	sign := func(ca *pki.Authority) []byte {
		t.Helper()
		now := time.Now()
		cert, key, err := ca.Issue(pki.Template{Subject: pkix.Name{CommonName: "Gewerbeamt Düsseldorf"}, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(0, 1, 0)}, pki.ECDSAP256)
		if err != nil {
			t.Fatal(err)
		}
		signed, err := (&xmldsig.Signer{Key: key, Certificates: []*x509.Certificate{cert}}).SignEnveloped(doc)
		if err != nil {
			t.Fatal(err)
		}
		return signed
	}
	other, err := pki.NewAuthority(pkix.Name{CommonName: "Fremde CA"}, pki.ECDSAP256, time.Now().Add(-time.Hour), time.Now().AddDate(1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	trusted := sign(n.CA)
	tampered := bytes.Replace(trusted, []byte(">Friseur<"), []byte(">Barbier<"), 1)
	if bytes.Equal(tampered, trusted) {
		t.Fatal("the sample no longer names the Friseur: the test cannot tamper with it")
	}
	c := n.XTAClient("duesseldorf", "ags:05111000")
	want := map[string]int{}
	for _, m := range []struct {
		doc    []byte
		status int
	}{{tampered, msgbox.StatusRed}, {sign(other), msgbox.StatusRed}, {trusted, msgbox.StatusYellow}} {
		id, err := n.Send(t.Context(), c, "ags:05111000", "gewerbe:05111000", "gewerbemeldung", "http://www.xgewerbeanzeige.de/spezifikation/2.2", m.doc)
		if err != nil {
			t.Fatal(err)
		}
		want[id] = m.status
		if st := settle(t, n, id); st[id] != m.status {
			t.Fatalf("message %d: status %d, want %d", len(want), st[id], m.status)
		}
	}
	letters, err := n.Letters.List(t.Context(), "duesseldorf", false)
	if err != nil || len(letters) != 2 {
		t.Fatalf("dead letters: %+v %v", letters, err)
	}
	for _, d := range letters {
		if d.Step != jobs.StepValidate || !strings.Contains(d.Reason, "signature is not valid") {
			t.Errorf("dead letter %+v, want the signature refused", d)
		}
	}
}

// TestRescuedJob: a pipeline job left running by a node that died (kill
// -9 leaves its row 'running') is taken up again once RescueAfter has
// passed, not after River's default hour, and runs without applying
// anything twice.
func TestRescuedJob(t *testing.T) {
	t.Parallel()
	n := startNode(t, map[string]string{"duesseldorf": tenantWith(t, "duesseldorf", "zuzug")})
	ctx := t.Context()
	ids := send(t, n, "duesseldorf", "01")
	if st := settle(t, n, ids...); st[ids[0]] != msgbox.StatusGreen {
		t.Fatalf("status %v", st)
	}
	_, before := cosic(t, n, "duesseldorf")
	var audits int
	if err := n.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_entry`).Scan(&audits); err != nil {
		t.Fatal(err)
	}
	// Once the job has completed, put it back as the dead node would have
	// left it: running, attempted longer ago than the rescue threshold.
	var job int64
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		err := n.Pool.QueryRow(ctx, `UPDATE river_job SET state = 'running', finalized_at = NULL, attempted_at = now() - $1::interval
			WHERE kind = $2 AND state = 'completed' RETURNING id`, (jobs.RescueAfter + time.Second).String(), jobs.PipelineArgs{}.Kind()).Scan(&job)
		if err == nil {
			break
		}
		if !errors.Is(err, pgx.ErrNoRows) || time.Now().After(deadline) {
			t.Fatalf("the pipeline job did not complete: %v", err)
		}
	}
	start := time.Now()
	for {
		var state string
		var attempt int
		if err := n.Pool.QueryRow(ctx, `SELECT state, attempt FROM river_job WHERE id = $1`, job).Scan(&state, &attempt); err != nil {
			t.Fatal(err)
		}
		if state == "completed" && attempt > 1 {
			break
		}
		if time.Since(start) > 2*time.Minute {
			t.Fatalf("the stuck job is %s after %s", state, time.Since(start))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("stuck job rescued and completed after %s", time.Since(start).Round(time.Second))
	var auditsAfter int
	if err := n.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_entry`).Scan(&auditsAfter); err != nil || auditsAfter != audits {
		t.Errorf("audit entries %d → %d (%v): the rescued job wrote again", audits, auditsAfter, err)
	}
	if _, after := cosic(t, n, "duesseldorf"); after != before {
		t.Errorf("the rescued job changed the record's history:\n%s\nwas:\n%s", after, before)
	}
}
