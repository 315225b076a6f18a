package jobs_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/db/dbtest"
	"github.com/parzelle/parzelle/jobs"
	"github.com/parzelle/parzelle/msgbox"
	"github.com/parzelle/parzelle/node/nodetest"
	"github.com/parzelle/parzelle/register"
	"github.com/parzelle/parzelle/sealing"
	"github.com/parzelle/parzelle/xta"
)

// waiting are messages waiting at rest, of three kinds, and the personal
// data they hold.
type waiting struct {
	// box is a Namenserklärung from Köln with a scanned certificate of
	// several chunks, waiting in Düsseldorf's Meldebehörde box.
	box        string
	boxDoc     []byte
	attachment []byte
	// inbox is an Anmeldung waiting in Düsseldorf's register inbox until
	// tomorrow.
	inbox    msgbox.Delivery
	inboxDoc []byte
	// letter is a Sterbefall Düsseldorf has no mapping for: a dead letter.
	letter    jobs.DeadLetter
	letterDoc []byte
	secrets   map[string]string
}

// sendWaiting sends the three messages and waits until the dead letter is
// one.
func sendWaiting(t *testing.T, n *nodetest.Node) *waiting {
	t.Helper()
	ctx := t.Context()
	w := &waiting{secrets: map[string]string{
		"Namenserklärung: name":       "Ruiz Ñáñez",
		"Namenserklärung: first name": "Lucía Carmen",
		"Namenserklärung: street":     "Subbelrather Straße",
		"Namenserklärung: birthplace": "Sevilla",
		"Anmeldung: street":           "Hermannstraße",
		"Anmeldung: former street":    "Wilhelmshöher Allee",
		"Sterbefall: name":            "Ćosić",
		"Sterbefall: first name":      "Mirela Ana",
		"Sterbefall: street":          "Lindemannstraße",
		"Sterbefall: birthplace":      "Zagreb",
		"Sterbefall: certificate":     "S 0117/2026",
		// The dead letter's reason, in the dead letter and the author's
		// report.
		"reason": "no mapping spec",
	}}
	var certificate bytes.Buffer
	for i := 0; certificate.Len() < 2*msgbox.ChunkSize+4096; i++ {
		fmt.Fprintf(&certificate, "Seite %d: Bescheinigung über die Namenserklärung von Lucía Carmen Ruiz Ñáñez, Subbelrather Straße 77, 50823 Köln\n", i)
	}
	w.attachment = certificate.Bytes()
	var typ string
	typ, w.boxDoc = message(t, "12")
	c := n.XTAClient("koeln", "ags:05315000")
	var err error
	if w.box, err = c.CreateMessageID(ctx); err != nil {
		t.Fatal(err)
	}
	err = c.Send(ctx, &xta.OutgoingMessage{
		MessageID: w.box, Author: xta.Party{ID: "ags:05315000"}, Reader: xta.Party{ID: "ags:05111000"},
		Service: "urn:xoev-de:xmeld", BusinessScenario: "XMELD_DATA", MessageType: typ, MessageTypeSchema: xmeldNS,
		Message:     xta.OutgoingContent{ContentType: "text/xml", Encoding: "UTF-8", Filename: "nachricht.xml", Data: bytes.NewReader(w.boxDoc), Size: int64(len(w.boxDoc))},
		Attachments: []xta.OutgoingContent{{ContentType: "application/pdf", Filename: "anlage.pdf", Data: bytes.NewReader(w.attachment), Size: int64(len(w.attachment))}},
	})
	if err != nil {
		t.Fatal(err)
	}

	_, ds := sendForTomorrow(t, n, "duesseldorf", "27")
	w.inbox = ds[0]
	_, w.inboxDoc = message(t, "27")

	ids := send(t, n, "duesseldorf", "05")
	_, w.letterDoc = message(t, "05")
	if st := settle(t, n, ids...); st[ids[0]] != msgbox.StatusRed {
		t.Fatalf("the Sterbefall's report: %v, want red", st)
	}
	letters, err := n.Letters.List(ctx, "duesseldorf", false)
	if err != nil || len(letters) != 1 || !strings.Contains(letters[0].Reason, w.secrets["reason"]) {
		t.Fatalf("dead letters: %+v %v", letters, err)
	}
	w.letter = letters[0]
	return w
}

// check fetches the three messages and fails unless each is byte-identical
// to what was sent.
func (w *waiting) check(t *testing.T, n *nodetest.Node) {
	t.Helper()
	ctx := t.Context()
	got, err := n.XTAClient("duesseldorf", "ags:05111000").GetMessage(ctx, w.box)
	if err != nil {
		t.Fatalf("fetch the waiting message: %v", err)
	}
	if len(got.Contents) != 2 || !bytes.Equal(got.Contents[0].Data, w.boxDoc) || !bytes.Equal(got.Contents[1].Data, w.attachment) {
		t.Errorf("the waiting message fetched differs from the one sent (%d parts)", len(got.Contents))
	}
	content := func(inbox int64) []byte {
		var c []byte
		err := db.InTenant(ctx, n.Pool, "duesseldorf", func(tx pgx.Tx) (err error) {
			c, err = n.Box.ReadContent(ctx, tx, "duesseldorf", inbox)
			return err
		})
		if err != nil {
			t.Fatalf("read message %d: %v", inbox, err)
		}
		return c
	}
	if !bytes.Equal(content(w.inbox.Inbox), w.inboxDoc) {
		t.Error("the message in the register inbox differs from the one sent")
	}
	if !bytes.Equal(content(w.letter.Inbox), w.letterDoc) {
		t.Error("the dead letter's message differs from the one sent")
	}
	letter, err := n.Letters.Show(ctx, "duesseldorf", w.letter.ID)
	if err != nil || letter.Reason != w.letter.Reason || letter.Step != w.letter.Step {
		t.Errorf("the dead letter reads %+v (%v), want %+v", letter, err, w.letter)
	}
	report, err := n.Box.Report(ctx, "duesseldorf", "ags:05111000", w.letter.MessageID)
	if err != nil || !reportSays(report, w.letter.Reason) {
		t.Errorf("the author's report of the dead letter does not give its reason: %+v %v", report, err)
	}
}

func reportSays(o *msgbox.Outbox, reason string) bool {
	for _, r := range o.Records {
		if r.Code == msgbox.RecordDeadLetter && strings.Contains(r.Reason, reason) {
			return true
		}
	}
	return false
}

// checkDump takes a pg_dump and fails if it holds any of the secrets in a
// form a grep finds, or does not hold the messages' routing metadata.
func (w *waiting) checkDump(t *testing.T, n *nodetest.Node) {
	t.Helper()
	dump := dbtest.Dump(t, n.DBURL)
	for _, want := range []string{"COPY public.xta_chunk", w.box, w.inbox.MessageID, w.letter.MessageID, "fortschreibung.tod.0040"} {
		if !bytes.Contains(dump, []byte(want)) {
			t.Fatalf("the dump (%d bytes) lacks %q: it does not show the messages", len(dump), want)
		}
	}
	for _, leak := range dbtest.Leaks(dump, w.secrets) {
		t.Errorf("the dump contains the %s", leak)
	}
}

// TestSealedAtRest: messages waiting in a reader's box, in a register
// inbox and as a dead letter are in a pg_dump only sealed: none of their
// personal data, nor the dead letter's reason, in any form a grep finds.
// After a rotation of the data keys (and of the key-encryption keys) they
// are re-encrypted under the new keys and fetch byte-identical.
func TestSealedAtRest(t *testing.T) {
	ttl := sealing.CurrentTTL
	sealing.CurrentTTL = 50 * time.Millisecond
	t.Cleanup(func() { sealing.CurrentTTL = ttl })
	n := startNode(t, map[string]string{"duesseldorf": tenantWith(t, "duesseldorf", "zuzug"), "koeln": tenantWith(t, "koeln", "zuzug")})
	ctx := t.Context()
	w := sendWaiting(t, n)
	w.checkDump(t, n)
	w.check(t, n)

	for _, id := range []string{"duesseldorf", "koeln"} {
		rot, err := n.Store.RotateKey(ctx, n.Jobs, id, true)
		if err != nil {
			t.Fatal(err)
		}
		finished := waitRotation(t, n, id, rot.KeyVersion)
		var older int
		err = n.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM xta_chunk WHERE tenant_id = $1 AND key_version <> $2)
			+ (SELECT count(*) FROM xta_report_record WHERE tenant_id = $1 AND key_version <> $2)
			+ (SELECT count(*) FROM pipeline_dead_letter WHERE tenant_id = $1 AND key_version <> $2)`, id, rot.KeyVersion).Scan(&older)
		if err != nil || older != 0 {
			t.Errorf("%s: %d rows of the boxes and dead letters not under key %d (%v)", id, older, rot.KeyVersion, err)
		}
		if id == "duesseldorf" && finished.Done < 6 {
			t.Errorf("the rotation re-encrypted %d rows; the waiting messages' chunks alone are 5", finished.Done)
		}
	}
	w.check(t, n)
	w.checkDump(t, n)
}

// waitRotation waits until the tenant's rotation to key version v is
// finished and returns it.
func waitRotation(t *testing.T, n *nodetest.Node, tenantID string, v int) register.Rotation {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		rs, err := n.Store.Rotations(t.Context(), tenantID)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) > 0 && rs[0].KeyVersion == v && rs[0].FinishedAt != nil {
			return rs[0]
		}
		if time.Now().After(deadline) {
			var failures []string
			_ = n.Pool.QueryRow(t.Context(), `SELECT coalesce(array_agg(errors[array_length(errors, 1)]::text), '{}') FROM river_job WHERE kind = 'register_reencrypt' AND errors IS NOT NULL`).Scan(&failures)
			t.Logf("re-encryption job failures: %v", failures)
			t.Fatalf("the rotation of %s to key %d has not finished after a minute: %+v", tenantID, v, rs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSealPlaintext: rows an earlier version stored in plaintext (message
// content, report texts, dead letters) are read as they are, and sealed
// under the tenant's current key by the job the node enqueues at start.
func TestSealPlaintext(t *testing.T) {
	n := startNode(t, map[string]string{"duesseldorf": tenantWith(t, "duesseldorf", "zuzug"), "koeln": tenantWith(t, "koeln", "zuzug")})
	ctx := t.Context()
	w := sendWaiting(t, n)
	// Undo the sealing, as the rows were before the upgrade.
	plain := []struct {
		id  string
		doc []byte
	}{{w.box, w.boxDoc}, {w.inbox.MessageID, w.inboxDoc}, {w.letter.MessageID, w.letterDoc}}
	for _, p := range plain {
		if _, err := n.Pool.Exec(ctx, `UPDATE xta_chunk c SET data = $1, key_version = 0 FROM xta_message m
			WHERE m.id = c.message AND m.message_id = $2 AND m.box = 'inbox' AND c.part = 0`, p.doc, p.id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := n.Pool.Exec(ctx, `UPDATE pipeline_dead_letter SET reason = convert_to($1, 'UTF8'), problems = convert_to('[]', 'UTF8'), key_version = 0 WHERE id = $2`, w.letter.Reason, w.letter.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Pool.Exec(ctx, `UPDATE xta_report_record r SET reason = convert_to($1, 'UTF8'), key_version = 0 FROM xta_message m
		WHERE m.id = r.message AND m.message_id = $2 AND r.code = $3`, w.letter.Reason, w.letter.MessageID, msgbox.RecordDeadLetter); err != nil {
		t.Fatal(err)
	}
	w.check(t, n)
	// The check finds what is there.
	leaks := strings.Join(dbtest.Leaks(dbtest.Dump(t, n.DBURL), w.secrets), "\n")
	for what := range w.secrets {
		if !strings.Contains(leaks, what+" (") {
			t.Errorf("the dump of the rows in plaintext does not show the %s", what)
		}
	}

	if err := n.Store.SealPlaintext(ctx, n.Jobs); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		var left int
		err := n.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM xta_chunk WHERE key_version = 0)
			+ (SELECT count(*) FROM xta_report_record WHERE key_version = 0)
			+ (SELECT count(*) FROM pipeline_dead_letter WHERE key_version = 0)`).Scan(&left)
		if err != nil {
			t.Fatal(err)
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d rows still in plaintext after a minute", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
	w.check(t, n)
	w.checkDump(t, n)
}
