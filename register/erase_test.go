package register_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/parzelle/parzelle/register"
	"github.com/parzelle/parzelle/tenant"
)

// dsb is Düsseldorf's data protection office carrying out erasure orders.
var dsb = tenant.Actor{Tenant: "duesseldorf", Kind: tenant.ActorCertificate, Subject: "CN=duesseldorf-dsb", Role: "datenschutz", Purpose: "loeschung"}

// rowsOf counts, per table, the rows that hold anything of the records.
func (h *harness) rowsOf(t *testing.T, ids ...string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, table := range []string{"register_record", "register_version", "register_fact", "register_index", "register_merge", "register_idempotency"} {
		col := "record_id"
		switch table {
		case "register_record":
			col = "id"
		case "register_merge":
			col = "survivor"
		}
		var n int
		if err := h.pool.QueryRow(t.Context(), `SELECT count(*) FROM `+table+` WHERE `+col+`::text = ANY($1)`+
			map[bool]string{true: ` OR merged::text = ANY($1)`}[table == "register_merge"], ids).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			out[table] = n
		}
	}
	return out
}

// lastAudit is the tenant's last audit entry.
func (h *harness) lastAudit(t *testing.T, tenantID string) register.AuditEntry {
	t.Helper()
	var e register.AuditEntry
	if err := h.pool.QueryRow(t.Context(), `SELECT operation, coalesce(record_id::text, ''), outcome, detail, legal_basis, actor_kind, role
		FROM audit_entry WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1`, tenantID).Scan(&e.Operation, &e.RecordID, &e.Outcome, &e.Detail,
		&e.LegalBasis, &e.Actor.Kind, &e.Actor.Role); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestEraseOrder: an erasure order by the authorised role erases a record
// with its history, facts, index entries and the record merged into it;
// the audit log names the order, not the values; refusals change nothing.
func TestEraseOrder(t *testing.T) {
	h := startHarness(t)
	ctx := t.Context()
	path := records("duesseldorf", "melderegister")

	// An API record with a history and an idempotency key.
	rec := h.mustCreate(t, "duesseldorf", person("erase-1", idnr("5712345678")))
	if res := h.call(t, "duesseldorf", "meldewesen", "PATCH", path+"/"+rec.ID, map[string]any{"validFrom": "2024-03-01",
		"attributes": map[string]any{"familienname": "Quastenberg"}}, "Idempotency-Key", "erase-move"); res.status != http.StatusOK {
		t.Fatalf("update: %d %s", res.status, res.body)
	}
	// Two records of process messages, one merged into the other.
	r1, err := h.store.Apply(ctx, clerk, "duesseldorf", "melderegister", []register.Fact{statement{"e1", "2023-01-01", anna("Köln"), nil, nil}.fact()})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := h.store.Apply(ctx, clerk, "duesseldorf", "melderegister", []register.Fact{statement{"e2", "2023-02-01", anna("Zagreb"), nil, nil}.fact()})
	if err != nil {
		t.Fatal(err)
	}
	survivor, merged := r1[0].RecordID, r2[0].RecordID
	if _, err := h.store.MergeRecords(ctx, clerk, "duesseldorf", "melderegister", survivor, merged, "Erfassungsfehler"); err != nil {
		t.Fatal(err)
	}
	// Someone else's record, which must survive every erasure here.
	other := h.mustCreate(t, "duesseldorf", isolationPerson("erase-other", idnr("5798765432"), "Bleibtreu"))
	before := h.rowsOf(t, rec.ID)
	if before["register_version"] < 2 || before["register_index"] == 0 || before["register_idempotency"] == 0 {
		t.Fatalf("the record has no history to erase: %v", before)
	}

	// Refusals: each audited, nothing erased.
	for _, c := range []struct {
		name, cn, purpose, tenant, id string
		body                          any
		status                        int
		outcome                       string
	}{
		{"a role without erase", "duesseldorf", "meldewesen", "duesseldorf", rec.ID, map[string]any{"order": "Az. 1"}, http.StatusForbidden, register.OutcomeDenied},
		{"the wrong purpose", "duesseldorf-dsb", "datenschutzauskunft", "duesseldorf", rec.ID, map[string]any{"order": "Az. 1"}, http.StatusForbidden, register.OutcomeDenied},
		{"another tenant's office", "koeln-dsb", "loeschung", "duesseldorf", rec.ID, map[string]any{"order": "Az. 1"}, http.StatusForbidden, register.OutcomeDenied},
		{"no order", "duesseldorf-dsb", "loeschung", "duesseldorf", rec.ID, map[string]any{"order": ""}, http.StatusUnprocessableEntity, register.OutcomeFailed},
		{"an order that is not a reference", "duesseldorf-dsb", "loeschung", "duesseldorf", rec.ID, map[string]any{"order": "<script>"}, http.StatusUnprocessableEntity, register.OutcomeFailed},
		{"an unknown field", "duesseldorf-dsb", "loeschung", "duesseldorf", rec.ID, map[string]any{"order": "Az. 1", "all": true}, http.StatusBadRequest, ""},
		{"no such record", "duesseldorf-dsb", "loeschung", "duesseldorf", "0b7e2d4c-9a51-4f3e-8c6d-2a1b3c4d5e6f", map[string]any{"order": "Az. 1"}, http.StatusNotFound, register.OutcomeFailed},
	} {
		res := h.call(t, c.cn, c.purpose, "POST", records(c.tenant, "melderegister")+"/"+c.id+"/erasure", c.body)
		if res.status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, res.status, res.body, c.status)
			continue
		}
		res.problem(t)
		if c.outcome != "" {
			if e := h.lastAudit(t, "duesseldorf"); e.Operation != tenant.OpErase || e.Outcome != c.outcome {
				t.Errorf("%s: audited %+v, want an erase %s", c.name, e, c.outcome)
			}
		}
		if got := h.rowsOf(t, rec.ID); len(got) != len(before) || got["register_version"] != before["register_version"] {
			t.Errorf("%s changed the record's rows: %v, before %v", c.name, got, before)
		}
	}

	// The order.
	res := h.call(t, "duesseldorf-dsb", "loeschung", "POST", path+"/"+rec.ID+"/erasure", map[string]any{"order": "Az. 32.1-17/2026"})
	if res.status != http.StatusOK {
		t.Fatalf("erasure: %d %s", res.status, res.body)
	}
	var erased register.Erased
	res.json(t, &erased)
	if erased.RecordID != rec.ID || erased.Records != 1 || erased.Versions != int64(before["register_version"]) || erased.Indexes != int64(before["register_index"]) {
		t.Errorf("erased %+v, the record had %v", erased, before)
	}
	if got := h.rowsOf(t, rec.ID); len(got) > 0 {
		t.Errorf("rows left of the erased record: %v", got)
	}
	e := h.lastAudit(t, "duesseldorf")
	if e.Operation != tenant.OpErase || e.Outcome != register.OutcomeGranted || e.RecordID != rec.ID || e.LegalBasis != "Art. 17 DSGVO" ||
		!strings.Contains(e.Detail, `"Az. 32.1-17/2026"`) {
		t.Errorf("audit entry of the erasure: %+v", e)
	}
	for _, value := range []string{"Quastenberg", "Hedwig", "5712345678", "Kiefernweg", "erase-1"} {
		if strings.Contains(e.Detail, value) {
			t.Errorf("the audit entry quotes the erased value %q: %s", value, e.Detail)
		}
	}
	// Nothing of it can be read, not even as known before.
	for _, p := range []string{"/" + rec.ID, "/" + rec.ID + "/history", "/" + rec.ID + "?knownAt=" + rec.RecordedAt.Format("2006-01-02T15:04:05.999999999Z07:00")} {
		if res := h.call(t, "duesseldorf", "meldewesen", "GET", path+p, nil); res.status != http.StatusNotFound {
			t.Errorf("GET %s after the erasure: %d %s", p, res.status, res.body)
		}
	}
	if res := h.call(t, "duesseldorf", "meldewesen", "GET", path+"?idnr="+idnr("5712345678"), nil); res.status != http.StatusOK || strings.Contains(string(res.body), rec.ID) {
		t.Errorf("search after the erasure: %d %s", res.status, res.body)
	}
	// The access log of its disclosures stays until it expires.
	var logged int
	if err := h.pool.QueryRow(ctx, `SELECT count(*) FROM register_access_log WHERE record_id = $1`, rec.ID).Scan(&logged); err != nil || logged == 0 {
		t.Errorf("access log entries of the erased record: %d %v", logged, err)
	}

	// Erasing the survivor erases the record merged into it, facts and all.
	got, err := h.store.Erase(ctx, dsb, "duesseldorf", "melderegister", survivor, "Az. 32.1-18/2026")
	if err != nil || got.Records != 2 || got.Facts != 2 {
		t.Errorf("erasing the survivor: %+v %v, want 2 records and 2 facts", got, err)
	}
	if left := h.rowsOf(t, survivor, merged); len(left) > 0 {
		t.Errorf("rows left of the merged pair: %v", left)
	}
	if _, err := h.store.Erase(ctx, dsb, "duesseldorf", "melderegister", survivor, "Az. 32.1-18/2026"); register.KindOf(err) != register.KindNotFound {
		t.Errorf("erasing twice: %v, want not found", err)
	}

	if got := h.mustRead(t, "duesseldorf", other.ID); got.Attributes["familienname"] != "Bleibtreu" {
		t.Errorf("the other record after the erasures: %+v", got)
	}
	if report, err := register.VerifyAudit(ctx, h.pool, "duesseldorf"); err != nil || !report.OK() {
		t.Errorf("audit chain after the erasures: %+v %v", report, err)
	}
}

// TestEraseFunctionsStayInTheirTenant: the erasure functions, the only
// way a tenant transaction deletes register rows, erase nothing of
// another tenant, and a tenant transaction still cannot DELETE them.
func TestEraseFunctionsStayInTheirTenant(t *testing.T) {
	h := startHarness(t)
	ctx := t.Context()
	d := h.mustCreate(t, "duesseldorf", isolationPerson("d-erase", idnr("6312345678"), "Rheinländer"))
	before := h.rowsOf(t, d.ID)
	// Without a tenant entered, every deleting function refuses to run.
	for _, q := range []string{`SELECT parzelle_erase_record($1::uuid)`, `SELECT parzelle_erase_versions($1::uuid, 'infinity')`, `SELECT parzelle_expire_messages('infinity', 1 + 0 * length($1))`} {
		if _, err := h.pool.Exec(ctx, q, d.ID); err == nil || !strings.Contains(err.Error(), "no tenant entered") {
			t.Errorf("%s without a tenant: %v", q, err)
		}
	}
	tx, err := h.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT set_config('role', 'parzelle_tenant', true), set_config('parzelle.tenant_id', 'koeln', true)`); err != nil {
		t.Fatal(err)
	}
	var records, versions int64
	if err := tx.QueryRow(ctx, `SELECT records FROM parzelle_erase_record($1)`, d.ID).Scan(&records); err != nil || records != 0 {
		t.Errorf("Köln erasing Düsseldorf's record: %d records, %v", records, err)
	}
	if err := tx.QueryRow(ctx, `SELECT parzelle_erase_versions($1, 'infinity')`, d.ID).Scan(&versions); err != nil || versions != 0 {
		t.Errorf("Köln erasing Düsseldorf's versions: %d, %v", versions, err)
	}
	if _, err := tx.Exec(ctx, `SAVEPOINT s; SELECT set_config('parzelle.tenant_id', 'duesseldorf', true)`); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM register_version WHERE record_id = $1`, d.ID); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("a tenant transaction deleting versions: %v, want permission denied", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if got := h.rowsOf(t, d.ID); got["register_version"] != before["register_version"] || got["register_record"] != 1 {
		t.Errorf("Düsseldorf's rows: %v, before %v", got, before)
	}
}

// TestRetention: the hourly retention erases records ended longer ago than
// the register keeps them and versions superseded longer ago, in batches,
// once even when two nodes run it at once, each audited with the legal
// basis; everything younger stays.
func TestRetention(t *testing.T) {
	h := startHarness(t)
	ctx := t.Context()
	h.editTenant(t, "duesseldorf", func(s string) string {
		return strings.Replace(s, "  - {name: melderegister, type: person}",
			"  - {name: melderegister, type: person, retention: {ended: 30d, superseded: 60d, legalBasis: \"§ 14 Abs. 2 BMG\"}}", 1)
	})
	path := records("duesseldorf", "melderegister")
	n := 0
	create := func(key, name string) register.Record {
		n++
		return h.mustCreate(t, "duesseldorf", isolationPerson(key, idnr(fmt.Sprintf("81%08d", n)), name))
	}
	// More ended records than one batch erases, ended 31 days ago.
	var old []string
	for i := range 105 {
		r := create("old-"+string(rune('a'+i/26))+string(rune('a'+i%26)), "Vergangen")
		if res := h.call(t, "duesseldorf", "meldewesen", "DELETE", path+"/"+r.ID, nil); res.status != http.StatusNoContent {
			t.Fatalf("delete: %d %s", res.status, res.body)
		}
		old = append(old, r.ID)
	}
	recent := create("recent", "Kürzlich")
	h.call(t, "duesseldorf", "meldewesen", "DELETE", path+"/"+recent.ID, nil)
	// A live record whose first version was superseded 61 days ago, and
	// one whose change is younger.
	aged, young := create("aged", "Gealtert"), create("young", "Jung")
	for _, id := range []string{aged.ID, young.ID} {
		if res := h.call(t, "duesseldorf", "meldewesen", "PATCH", path+"/"+id, map[string]any{"attributes": map[string]any{"vornamen": "Waltraud Erika"}}); res.status != http.StatusOK {
			t.Fatalf("update: %d %s", res.status, res.body)
		}
	}
	if _, err := h.pool.Exec(ctx, `UPDATE register_record SET deleted_at = now() - interval '31 days' WHERE id::text = ANY($1)`, old); err != nil {
		t.Fatal(err)
	}
	if _, err := h.pool.Exec(ctx, `UPDATE register_version SET recorded_at = now() - interval '70 days', superseded_at = now() - interval '61 days'
		WHERE record_id::text = $1 AND superseded_at <> 'infinity'`, aged.ID); err != nil {
		t.Fatal(err)
	}
	agedBefore, youngBefore := h.versionRows(t, aged.ID), h.versionRows(t, young.ID)

	// Two nodes at once.
	var wg sync.WaitGroup
	results := make([]register.Retained, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() { results[i], errs[i] = h.store.EraseExpired(ctx) })
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	total := register.Retained{Records: results[0].Records + results[1].Records, Versions: results[0].Versions + results[1].Versions}
	if total.Records != int64(len(old)) || total.Versions != int64(agedBefore-h.versionRows(t, aged.ID)) || total.Versions == 0 {
		t.Errorf("erased %+v (runs %+v), want %d records and the aged record's superseded versions", total, results, len(old))
	}
	if left := h.rowsOf(t, old...); len(left) > 0 {
		t.Errorf("rows left of records ended 31 days ago: %v", left)
	}
	if h.rowsOf(t, recent.ID)["register_record"] != 1 || h.versionRows(t, young.ID) != youngBefore {
		t.Error("retention erased what is younger than it")
	}
	if got := h.mustRead(t, "duesseldorf", aged.ID); got.Attributes["vornamen"] != "Waltraud Erika" {
		t.Errorf("the aged record after its old versions went: %+v", got.Attributes)
	}
	var audited int
	if err := h.pool.QueryRow(ctx, `SELECT count(*) FROM audit_entry WHERE operation = 'erase' AND actor_kind = 'retention'
		AND legal_basis = '§ 14 Abs. 2 BMG' AND outcome = 'granted'`).Scan(&audited); err != nil || audited != len(old)+1 {
		t.Errorf("retention audit entries: %d %v, want %d", audited, err, len(old)+1)
	}
	again, err := h.store.EraseExpired(ctx)
	if err != nil || again != (register.Retained{}) {
		t.Errorf("a second run: %+v %v, want nothing", again, err)
	}
	if report, err := register.VerifyAudit(ctx, h.pool, "duesseldorf"); err != nil || !report.OK() {
		t.Errorf("audit chain: %+v %v", report, err)
	}
}
