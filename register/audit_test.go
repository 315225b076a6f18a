package register_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"testing"
	"time"

	"github.com/parzelle/parzelle/register"
)

// auditTrail makes a tenant's audit log of at least ten entries through the
// API, granted, denied and failed, and returns how many there are.
func auditTrail(t *testing.T, h *harness) int64 {
	t.Helper()
	path := records("duesseldorf", "melderegister")
	a := h.mustCreate(t, "duesseldorf", isolationPerson("audit-a", idnr("1357924680"), "Kettwiger"))
	b := h.mustCreate(t, "duesseldorf", isolationPerson("audit-b", idnr("2468013579"), "Gerresheimer"))
	for _, c := range []struct{ cn, purpose, method, path string }{
		{"duesseldorf", "meldewesen", "GET", path + "/" + a.ID},
		{"duesseldorf-sb", "auskunft", "GET", path + "/" + b.ID},
		{"duesseldorf-sb", "auskunft", "GET", path + "?idnr=" + idnr("1357924680")},
		{"koeln", "meldewesen", "GET", path + "/" + a.ID},
		{"duesseldorf-sb", "auskunft", "DELETE", path + "/" + b.ID},
		{"duesseldorf", "meldewesen", "GET", path + "/" + a.ID + "/history"},
		{"duesseldorf", "meldewesen", "DELETE", path + "/" + b.ID},
		{"duesseldorf", "meldewesen", "GET", path + "/" + b.ID},
	} {
		h.call(t, c.cn, c.purpose, c.method, c.path, nil)
	}
	n := h.auditHead(t, "duesseldorf")
	if n < 10 {
		t.Fatalf("only %d audit entries", n)
	}
	return n
}

// storedEntry is an audit_entry row with its hashes.
type storedEntry struct {
	seq                                                                         int64
	at                                                                          time.Time
	kind, actor, actorTenant, role, purpose, legalBasis, operation, reg, record string
	outcome, detail                                                             string
	prev, hash                                                                  []byte
}

func (h *harness) storedEntries(t *testing.T, tenantID string) []storedEntry {
	t.Helper()
	rows, err := h.pool.Query(t.Context(), `SELECT seq, at, actor_kind, actor, actor_tenant, role, purpose, legal_basis, operation, register,
		coalesce(record_id::text, ''), outcome, detail, prev_hash, hash FROM audit_entry WHERE tenant_id = $1 ORDER BY seq`, tenantID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []storedEntry
	for rows.Next() {
		var e storedEntry
		if err := rows.Scan(&e.seq, &e.at, &e.kind, &e.actor, &e.actorTenant, &e.role, &e.purpose, &e.legalBasis, &e.operation, &e.reg,
			&e.record, &e.outcome, &e.detail, &e.prev, &e.hash); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// digest is the entry hash as its documentation describes it, written
// again here: what a forger who knows the format computes.
func (e storedEntry) digest(tenantID string, prev []byte) []byte {
	h := sha256.New()
	h.Write([]byte("parzelle/audit/v1"))
	h.Write(prev)
	var n [8]byte
	field := func(s string) {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	field(tenantID)
	binary.BigEndian.PutUint64(n[:], uint64(e.seq))
	h.Write(n[:])
	field(e.at.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano))
	for _, s := range []string{e.kind, e.actor, e.actorTenant, e.role, e.purpose, e.legalBasis, e.operation, e.reg, e.record, e.outcome, e.detail} {
		field(s)
	}
	return h.Sum(nil)
}

// rehash recomputes the hashes (and links) of the tenant's entries from
// seq from on, as a forger would after an edit; with head it moves the
// chain's head too.
func (h *harness) rehash(t *testing.T, tenantID string, from int64, head bool) {
	t.Helper()
	entries := h.storedEntries(t, tenantID)
	prev := make([]byte, sha256.Size)
	for _, e := range entries {
		if e.seq >= from {
			e.prev = prev
			e.hash = e.digest(tenantID, prev)
			if _, err := h.pool.Exec(t.Context(), `UPDATE audit_entry SET prev_hash = $3, hash = $4 WHERE tenant_id = $1 AND seq = $2`,
				tenantID, e.seq, e.prev, e.hash); err != nil {
				t.Fatal(err)
			}
		}
		prev = e.hash
	}
	if head {
		if _, err := h.pool.Exec(t.Context(), `UPDATE audit_head SET seq = $2, hash = $3 WHERE tenant_id = $1`,
			tenantID, entries[len(entries)-1].seq, prev); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAuditTampering edits, deletes and reorders entries of the audit log
// directly in SQL, as someone with database access could, and checks that
// VerifyAudit names the first entry that no longer fits.
func TestAuditTampering(t *testing.T) {
	type tamper func(t *testing.T, h *harness, n int64)
	exec := func(sql string, args ...any) tamper {
		return func(t *testing.T, h *harness, n int64) {
			t.Helper()
			tag, err := h.pool.Exec(t.Context(), sql, append([]any{n}, args...)...)
			if err != nil || tag.RowsAffected() == 0 {
				t.Fatalf("tamper: %v (%d rows)", err, tag.RowsAffected())
			}
		}
	}
	swap := func(a, b func(n int64) int64) tamper {
		return func(t *testing.T, h *harness, n int64) {
			t.Helper()
			x, y := a(n), b(n)
			for _, q := range []struct {
				sql  string
				args []any
			}{
				{`UPDATE audit_entry SET seq = 1000000 WHERE tenant_id = 'duesseldorf' AND seq = $1`, []any{x}},
				{`UPDATE audit_entry SET seq = $1 WHERE tenant_id = 'duesseldorf' AND seq = $2`, []any{x, y}},
				{`UPDATE audit_entry SET seq = $1 WHERE tenant_id = 'duesseldorf' AND seq = 1000000`, []any{y}},
			} {
				if tag, err := h.pool.Exec(t.Context(), q.sql, q.args...); err != nil || tag.RowsAffected() != 1 {
					t.Fatalf("swap: %v", err)
				}
			}
		}
	}
	const where = ` WHERE tenant_id = 'duesseldorf' AND seq = `
	cases := []struct {
		name   string
		tamper tamper
		// firstBad is the seq VerifyAudit must name, given the number of
		// entries n.
		firstBad func(n int64) int64
	}{
		{"edit the detail", exec(`UPDATE audit_entry SET detail = 'nothing to see'` + where + `4 AND $1 > 0`), func(int64) int64 { return 4 }},
		{"edit the purpose", exec(`UPDATE audit_entry SET purpose = 'meldewesen'` + where + `5 AND $1 > 0`), func(int64) int64 { return 5 }},
		{"turn a denial into a grant", exec(`UPDATE audit_entry SET outcome = 'granted' WHERE tenant_id = 'duesseldorf' AND seq = (SELECT min(seq) FROM audit_entry WHERE outcome = 'denied') AND $1 > 0`),
			func(int64) int64 { return 0 }}, // resolved below
		{"edit the actor of the first entry", exec(`UPDATE audit_entry SET actor = 'CN=jemand'` + where + `1 AND $1 > 0`), func(int64) int64 { return 1 }},
		{"edit the time", exec(`UPDATE audit_entry SET at = at - interval '1 hour'` + where + `6 AND $1 > 0`), func(int64) int64 { return 6 }},
		{"edit the record id", exec(`UPDATE audit_entry SET record_id = NULL` + where + `3 AND $1 > 0`), func(int64) int64 { return 3 }},
		{"edit the last entry", exec(`UPDATE audit_entry SET detail = 'x'` + where + `$1`), func(n int64) int64 { return n }},
		{"delete an entry in the middle", exec(`DELETE FROM audit_entry` + where + `5 AND $1 > 0`), func(int64) int64 { return 5 }},
		{"delete the first entry", exec(`DELETE FROM audit_entry` + where + `1 AND $1 > 0`), func(int64) int64 { return 1 }},
		{"delete the last entry", exec(`DELETE FROM audit_entry` + where + `$1`), func(n int64) int64 { return n }},
		{"delete the last two entries", exec(`DELETE FROM audit_entry WHERE tenant_id = 'duesseldorf' AND seq >= $1 - 1`), func(n int64) int64 { return n - 1 }},
		{"delete every entry", exec(`DELETE FROM audit_entry WHERE tenant_id = 'duesseldorf' AND $1 > 0`), func(int64) int64 { return 1 }},
		{"swap two entries", swap(func(int64) int64 { return 3 }, func(int64) int64 { return 6 }), func(int64) int64 { return 3 }},
		{"swap the last two entries", swap(func(n int64) int64 { return n - 1 }, func(n int64) int64 { return n }), func(n int64) int64 { return n - 1 }},
		{"move the head", exec(`UPDATE audit_head SET seq = $1 + 1 WHERE tenant_id = 'duesseldorf'`), func(n int64) int64 { return n + 1 }},
		{"edit an entry and recompute its hash", func(t *testing.T, h *harness, n int64) {
			exec(`UPDATE audit_entry SET detail = 'nothing to see'`+where+`4 AND $1 > 0`)(t, h, n)
			e := h.storedEntries(t, "duesseldorf")[3]
			if _, err := h.pool.Exec(t.Context(), `UPDATE audit_entry SET hash = $1`+where+`4`, e.digest("duesseldorf", e.prev)); err != nil {
				t.Fatal(err)
			}
		}, func(int64) int64 { return 5 }},
		{"edit an entry and recompute the rest of the chain, not the head", func(t *testing.T, h *harness, n int64) {
			exec(`UPDATE audit_entry SET detail = 'nothing to see'`+where+`4 AND $1 > 0`)(t, h, n)
			h.rehash(t, "duesseldorf", 4, false)
		}, func(n int64) int64 { return n }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := startHarness(t)
			n := auditTrail(t, h)
			intact, err := register.VerifyAudit(t.Context(), h.pool, "duesseldorf")
			if err != nil || !intact.OK() || intact.Entries != n {
				t.Fatalf("before tampering: %+v %v", intact, err)
			}
			want := c.firstBad(n)
			if want == 0 {
				if err := h.pool.QueryRow(t.Context(), `SELECT min(seq) FROM audit_entry WHERE tenant_id = 'duesseldorf' AND outcome = 'denied'`).Scan(&want); err != nil {
					t.Fatal(err)
				}
			}
			c.tamper(t, h, n)
			r, err := register.VerifyAudit(t.Context(), h.pool, "duesseldorf")
			if err != nil {
				t.Fatal(err)
			}
			if r.OK() || r.FirstBad != want || r.Problem == "" {
				t.Errorf("report %+v, want the first bad entry %d", r, want)
			}
			t.Logf("%s: %s", c.name, r.Problem)
		})
	}
}

// TestAuditIntactAndForgedChain: an untouched log verifies, with the head
// the chain records and the hash format as documented; a forger who
// recomputes the chain and its head from an edited entry on gets a log
// that verifies, but with another head than the one noted before, which
// is what an operator who keeps the head elsewhere compares.
func TestAuditIntactAndForgedChain(t *testing.T) {
	h := startHarness(t)
	n := auditTrail(t, h)
	r, err := register.VerifyAudit(t.Context(), h.pool, "duesseldorf")
	if err != nil || !r.OK() || r.Entries != n || r.Problem != "" {
		t.Fatalf("intact chain: %+v %v", r, err)
	}
	var headHash []byte
	var headSeq int64
	if err := h.pool.QueryRow(t.Context(), `SELECT seq, hash FROM audit_head WHERE tenant_id = 'duesseldorf'`).Scan(&headSeq, &headHash); err != nil {
		t.Fatal(err)
	}
	if headSeq != n || r.Head != hex.EncodeToString(headHash) {
		t.Errorf("report head %s, chain head %d %x", r.Head, headSeq, headHash)
	}
	prev := make([]byte, sha256.Size)
	for _, e := range h.storedEntries(t, "duesseldorf") {
		if !bytes.Equal(e.prev, prev) || !bytes.Equal(e.hash, e.digest("duesseldorf", prev)) {
			t.Fatalf("entry %d does not hash as documented", e.seq)
		}
		prev = e.hash
	}
	// Köln's refused read went into Düsseldorf's log, not Köln's.
	if k, err := register.VerifyAudit(t.Context(), h.pool, "koeln"); err != nil || !k.OK() || k.Entries != 0 {
		t.Errorf("koeln's chain: %+v %v", k, err)
	}

	if _, err := h.pool.Exec(context.Background(), `UPDATE audit_entry SET detail = 'nothing to see' WHERE tenant_id = 'duesseldorf' AND seq = 4`); err != nil {
		t.Fatal(err)
	}
	h.rehash(t, "duesseldorf", 4, true)
	forged, err := register.VerifyAudit(t.Context(), h.pool, "duesseldorf")
	if err != nil || !forged.OK() {
		t.Fatalf("a fully recomputed chain: %+v %v", forged, err)
	}
	if forged.Head == r.Head {
		t.Error("the forged chain has the head noted before the forgery")
	}

	// Appending still works on the forged chain (it links to its head).
	h.call(t, "duesseldorf", "meldewesen", "GET", records("duesseldorf", "melderegister")+"?subjectKey=audit-a", nil)
	if after, err := register.VerifyAudit(t.Context(), h.pool, "duesseldorf"); err != nil || !after.OK() || after.Entries != n+1 {
		t.Errorf("after one more access: %+v %v", after, err)
	}
}
