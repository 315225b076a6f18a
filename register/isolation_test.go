package register_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/register"
)

// auditRow is an audit_entry row as the isolation tests check it.
type auditRow struct {
	seq                                  int64
	operation, register, recordID        string
	outcome, actorTenant, actor, purpose string
}

// auditSince returns a tenant's audit entries after seq, read as the
// test's superuser, oldest first.
func (h *harness) auditSince(t testing.TB, tenantID string, seq int64) []auditRow {
	t.Helper()
	rows, err := h.pool.Query(t.Context(), `SELECT seq, operation, register, coalesce(record_id::text, ''), outcome, actor_tenant, actor, purpose
		FROM audit_entry WHERE tenant_id = $1 AND seq > $2 ORDER BY seq`, tenantID, seq)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (auditRow, error) {
		var a auditRow
		err := r.Scan(&a.seq, &a.operation, &a.register, &a.recordID, &a.outcome, &a.actorTenant, &a.actor, &a.purpose)
		return a, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// auditHead is the seq of a tenant's last audit entry (0 for none).
func (h *harness) auditHead(t testing.TB, tenantID string) int64 {
	t.Helper()
	var seq int64
	if err := h.pool.QueryRow(t.Context(), `SELECT coalesce(max(seq), 0) FROM audit_entry WHERE tenant_id = $1`, tenantID).Scan(&seq); err != nil {
		t.Fatal(err)
	}
	return seq
}

// mustCreate creates a record through the API as the tenant's
// Fachverfahren and returns it.
func (h *harness) mustCreate(t testing.TB, tenantID string, body map[string]any) register.Record {
	t.Helper()
	res := h.call(t, tenantID, "meldewesen", "POST", records(tenantID, "melderegister"), body)
	if res.status != http.StatusCreated {
		t.Fatalf("create in %s: %d %s", tenantID, res.status, res.body)
	}
	var rec register.Record
	res.json(t, &rec)
	return rec
}

// mustRead reads a record through the API as the tenant's Fachverfahren.
func (h *harness) mustRead(t testing.TB, tenantID, id string) register.Record {
	t.Helper()
	res := h.call(t, tenantID, "meldewesen", "GET", records(tenantID, "melderegister")+"/"+id, nil)
	if res.status != http.StatusOK {
		t.Fatalf("read %s in %s: %d %s", id, tenantID, res.status, res.body)
	}
	var rec register.Record
	res.json(t, &rec)
	return rec
}

// versionRows counts a record's register_version rows, as superuser.
func (h *harness) versionRows(t testing.TB, id string) int {
	t.Helper()
	var n int
	if err := h.pool.QueryRow(t.Context(), `SELECT count(*) FROM register_version WHERE record_id = $1`, id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func isolationPerson(key, id, name string) map[string]any {
	return map[string]any{
		"subjectKey": key,
		"attributes": map[string]any{"familienname": name, "vornamen": "Waltraud", "geburtsdatum": "1961-04-30", "idnr": id},
	}
}

// TestTenantIsolationMatrix: Köln's Fachverfahren, fully authorized in its
// own tenant, reaches none of Düsseldorf's register data through any
// operation; every refusal is a 403 problem and an entry in Düsseldorf's
// audit log, and nothing changes.
func TestTenantIsolationMatrix(t *testing.T) {
	h := startHarness(t)
	dIDNr := idnr("5820374619")
	dRec := h.mustCreate(t, "duesseldorf", isolationPerson("d-1", dIDNr, "Rheinländer"))
	// Köln's own data, so that its certificate demonstrably works.
	kRec := h.mustCreate(t, "koeln", isolationPerson("k-1", idnr("7302918465"), "Domstädter"))
	if got := h.mustRead(t, "koeln", kRec.ID); got.Attributes["familienname"] != "Domstädter" {
		t.Fatalf("koeln reads its own record: %+v", got)
	}
	before := h.mustRead(t, "duesseldorf", dRec.ID)
	beforeRows := h.versionRows(t, dRec.ID)

	d := records("duesseldorf", "melderegister")
	missing := "0b7e2d4c-9a51-4f3e-8c6d-2a1b3c4d5e6f"
	cases := []struct {
		name, method, path string
		body               any
		headers            []string
		operation          string // audited operation
		register, recordID string
	}{
		{"create", "POST", d, isolationPerson("k-injected", idnr("6102938475"), "Eindringling"), nil, "write", "melderegister", ""},
		{"create with idempotency key", "POST", d, isolationPerson("k-injected", idnr("6102938475"), "Eindringling"), []string{"Idempotency-Key", "x1"}, "write", "melderegister", ""},
		{"read", "GET", d + "/" + dRec.ID, nil, nil, "read", "melderegister", dRec.ID},
		{"read as known earlier", "GET", d + "/" + dRec.ID + "?validAt=2024-01-01&knownAt=" + url.QueryEscape("2030-01-01T00:00:00Z"), nil, nil, "read", "melderegister", dRec.ID},
		{"read of a record that does not exist", "GET", d + "/" + missing, nil, nil, "read", "melderegister", missing},
		{"update", "PATCH", d + "/" + dRec.ID, map[string]any{"attributes": map[string]any{"familienname": "Überschrieben"}}, nil, "write", "melderegister", dRec.ID},
		{"update with If-Match", "PATCH", d + "/" + dRec.ID, map[string]any{"attributes": map[string]any{"familienname": "Überschrieben"}}, []string{"If-Match", `"1"`}, "write", "melderegister", dRec.ID},
		{"delete", "DELETE", d + "/" + dRec.ID, nil, nil, "write", "melderegister", dRec.ID},
		{"search by idnr", "GET", d + "?idnr=" + dIDNr, nil, nil, "search", "melderegister", ""},
		{"search by name", "GET", d + "?" + url.Values{"familienname": {"Rheinländer"}, "vornamen": {"Waltraud"}, "geburtsdatum": {"1961-04-30"}}.Encode(), nil, nil, "search", "melderegister", ""},
		{"search by subject key", "GET", d + "?subjectKey=d-1", nil, nil, "search", "melderegister", ""},
		{"search with an invalid idnr", "GET", d + "?idnr=12345", nil, nil, "search", "melderegister", ""},
		{"history", "GET", d + "/" + dRec.ID + "/history", nil, nil, "read", "melderegister", dRec.ID},
		{"access-log export", "GET", "/api/v1/tenants/duesseldorf/registers/melderegister/access-log", nil, nil, "export", "melderegister", ""},
		{"access-log export of one subject", "GET", "/api/v1/tenants/duesseldorf/registers/melderegister/access-log?idnr=" + dIDNr, nil, nil, "export", "melderegister", ""},
		{"another register", "GET", records("duesseldorf", "gewerberegister") + "?name=Rheinländer", nil, nil, "search", "gewerberegister", ""},
		// Probing for registers Düsseldorf does not keep is refused the
		// same way: no 404 that would tell what exists.
		{"unknown register", "GET", records("duesseldorf", "steuerregister") + "?subjectKey=x", nil, nil, "search", "-", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			seq := h.auditHead(t, "duesseldorf")
			res := h.call(t, "koeln", "meldewesen", c.method, c.path, c.body, c.headers...)
			if res.status != http.StatusForbidden {
				t.Fatalf("status %d, want 403: %s", res.status, res.body)
			}
			if p := res.problem(t); p["type"] != "urn:parzelle:problem:forbidden" || p["status"] != float64(403) {
				t.Errorf("problem: %s", res.body)
			}
			for _, secret := range []string{"Rheinländer", dIDNr, "Waltraud"} {
				if containsFold(res.body, secret) {
					t.Errorf("the refusal discloses %q: %s", secret, res.body)
				}
			}
			entries := h.auditSince(t, "duesseldorf", seq)
			if len(entries) != 1 {
				t.Fatalf("audit entries for the refusal: %+v", entries)
			}
			e := entries[0]
			want := auditRow{seq: seq + 1, operation: c.operation, register: c.register, recordID: c.recordID, outcome: register.OutcomeDenied,
				actorTenant: "koeln", actor: e.actor, purpose: "meldewesen"}
			if e != want || e.actor == "" {
				t.Errorf("audit entry %+v, want %+v", e, want)
			}
			if k := h.auditSince(t, "koeln", 0); len(k) != 2 {
				t.Errorf("koeln's own audit log changed: %d entries, want its create and read", len(k))
			}
		})
	}

	// A tenant that does not exist: refused alike, audited nowhere.
	res := h.call(t, "koeln", "meldewesen", "GET", records("muenster", "melderegister")+"/"+dRec.ID, nil)
	if res.status != http.StatusForbidden || res.problem(t)["type"] != "urn:parzelle:problem:forbidden" {
		t.Errorf("unknown tenant: %d %s", res.status, res.body)
	}

	after := h.mustRead(t, "duesseldorf", dRec.ID)
	if after.Revision != before.Revision || !equalAttributes(after.Attributes, before.Attributes) || after.RecordedAt != before.RecordedAt {
		t.Errorf("the record changed: before %+v, after %+v", before, after)
	}
	if n := h.versionRows(t, dRec.ID); n != beforeRows {
		t.Errorf("record has %d version rows, had %d", n, beforeRows)
	}
	var stray int
	if err := h.pool.QueryRow(t.Context(), `SELECT count(*) FROM register_record WHERE tenant_id = 'duesseldorf'`).Scan(&stray); err != nil || stray != 1 {
		t.Errorf("duesseldorf has %d records (%v), want 1: a refused create wrote", stray, err)
	}
	for _, tenantID := range []string{"duesseldorf", "koeln"} {
		if r, err := register.VerifyAudit(t.Context(), h.pool, tenantID); err != nil || !r.OK() {
			t.Errorf("audit chain of %s after the refusals: %+v %v", tenantID, r, err)
		}
	}
}

// TestRolesWithinTenant: Düsseldorf's own clients get what their role and
// purpose allow and nothing else; a listed certificate without a role and
// a certificate no tenant lists get nothing.
func TestRolesWithinTenant(t *testing.T) {
	h := startHarness(t)
	id := idnr("4938271650")
	rec := h.mustCreate(t, "duesseldorf", isolationPerson("d-roles", id, "Kaiserswerther"))
	d := records("duesseldorf", "melderegister")
	log := "/api/v1/tenants/duesseldorf/registers/melderegister/access-log"
	change := map[string]any{"attributes": map[string]any{"familienname": "Geändert"}}

	cases := []struct {
		name, cn, purpose, method, path string
		body                            any
		status                          int
		// outcome of the audit entry; "" for none
		outcome string
	}{
		{"clerk reads for auskunft", "duesseldorf-sb", "auskunft", "GET", d + "/" + rec.ID, nil, 200, register.OutcomeGranted},
		{"clerk reads history for auskunft", "duesseldorf-sb", "auskunft", "GET", d + "/" + rec.ID + "/history", nil, 200, register.OutcomeGranted},
		{"clerk searches for auskunft", "duesseldorf-sb", "auskunft", "GET", d + "?idnr=" + id, nil, 200, register.OutcomeGranted},
		{"clerk may not export", "duesseldorf-sb", "auskunft", "GET", log, nil, 403, register.OutcomeDenied},
		{"clerk may not create", "duesseldorf-sb", "auskunft", "POST", d, isolationPerson("d-sb", idnr("1029384756"), "Neu"), 403, register.OutcomeDenied},
		{"clerk may not update", "duesseldorf-sb", "auskunft", "PATCH", d + "/" + rec.ID, change, 403, register.OutcomeDenied},
		{"clerk may not delete", "duesseldorf-sb", "auskunft", "DELETE", d + "/" + rec.ID, nil, 403, register.OutcomeDenied},
		{"clerk may not read for meldewesen", "duesseldorf-sb", "meldewesen", "GET", d + "/" + rec.ID, nil, 403, register.OutcomeDenied},
		{"clerk may not read without purpose", "duesseldorf-sb", "", "GET", d + "/" + rec.ID, nil, 403, register.OutcomeDenied},
		{"clerk's rule covers only the melderegister", "duesseldorf-sb", "auskunft", "GET", records("duesseldorf", "gewerberegister") + "?name=X", nil, 403, register.OutcomeDenied},
		{"data protection office exports", "duesseldorf-dsb", "datenschutzauskunft", "GET", log + "?idnr=" + id, nil, 200, register.OutcomeGranted},
		{"data protection office may not read", "duesseldorf-dsb", "datenschutzauskunft", "GET", d + "/" + rec.ID, nil, 403, register.OutcomeDenied},
		{"Fachverfahren may not export", "duesseldorf", "meldewesen", "GET", log, nil, 403, register.OutcomeDenied},
		{"Fachverfahren may not read for auskunft", "duesseldorf", "auskunft", "GET", d + "/" + rec.ID, nil, 403, register.OutcomeDenied},
		{"no role: read", "duesseldorf-norole", "meldewesen", "GET", d + "/" + rec.ID, nil, 403, register.OutcomeDenied},
		{"no role: search", "duesseldorf-norole", "auskunft", "GET", d + "?idnr=" + id, nil, 403, register.OutcomeDenied},
		{"no role: create", "duesseldorf-norole", "meldewesen", "POST", d, isolationPerson("d-nr", idnr("1029384756"), "Neu"), 403, register.OutcomeDenied},
		{"stranger: read", "stranger", "meldewesen", "GET", d + "/" + rec.ID, nil, 403, ""},
		{"stranger: create", "stranger", "meldewesen", "POST", d, isolationPerson("d-st", idnr("1029384756"), "Neu"), 403, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			seq := h.auditHead(t, "duesseldorf")
			res := h.call(t, c.cn, c.purpose, c.method, c.path, c.body)
			if res.status != c.status {
				t.Fatalf("status %d, want %d: %s", res.status, c.status, res.body)
			}
			if c.status == 403 {
				want := "urn:parzelle:problem:forbidden"
				if c.cn == "stranger" {
					want = "urn:parzelle:problem:unknown-client"
				}
				if p := res.problem(t); p["type"] != want {
					t.Errorf("problem type %v, want %s", p["type"], want)
				}
				if containsFold(res.body, "Kaiserswerther") || containsFold(res.body, id) {
					t.Errorf("the refusal discloses the record: %s", res.body)
				}
			}
			entries := h.auditSince(t, "duesseldorf", seq)
			switch {
			case c.outcome == "" && len(entries) != 0:
				t.Errorf("audited: %+v", entries)
			case c.outcome != "" && (len(entries) != 1 || entries[0].outcome != c.outcome || entries[0].actorTenant != "duesseldorf" || entries[0].purpose != c.purpose):
				t.Errorf("audit entries %+v, want one %s for purpose %q", entries, c.outcome, c.purpose)
			}
		})
	}
	if got := h.mustRead(t, "duesseldorf", rec.ID); got.Revision != 1 || got.Attributes["familienname"] != "Kaiserswerther" {
		t.Errorf("a refused write changed the record: %+v", got)
	}
}

// TestRowLevelSecurityBlocksWrongQueries: even when the application's
// query forgets or contradicts its tenant, PostgreSQL confines a tenant
// transaction to the tenant's rows, and the audit log is append-only.
func TestRowLevelSecurityBlocksWrongQueries(t *testing.T) {
	h := startHarness(t)
	dRec := h.mustCreate(t, "duesseldorf", isolationPerson("d-rls", idnr("3849201756"), "Benrather"))
	h.mustRead(t, "duesseldorf", dRec.ID) // an access-log row
	kRec := h.mustCreate(t, "koeln", isolationPerson("k-rls", idnr("8273640195"), "Ehrenfelder"))

	tables := []string{"register_record", "register_version", "register_index", "register_key", "audit_entry", "audit_head", "register_access_log"}
	for _, table := range tables {
		var n int
		if err := h.pool.QueryRow(t.Context(), `SELECT count(*) FROM `+table+` WHERE tenant_id = 'duesseldorf'`).Scan(&n); err != nil || n == 0 {
			t.Fatalf("precondition: duesseldorf has %d rows in %s (%v)", n, table, err)
		}
	}

	t.Run("reads", func(t *testing.T) {
		for _, table := range tables {
			for name, q := range map[string]string{
				"where duesseldorf": `SELECT count(*) FROM ` + table + ` WHERE tenant_id = 'duesseldorf'`,
				"no where":          `SELECT count(*) FROM ` + table + ` WHERE tenant_id <> 'koeln'`,
				"all rows":          `SELECT count(*) - count(*) FILTER (WHERE tenant_id = 'koeln') FROM ` + table,
			} {
				var n int
				err := db.InTenant(t.Context(), h.pool, "koeln", func(tx pgx.Tx) error { return tx.QueryRow(t.Context(), q).Scan(&n) })
				if err != nil || n != 0 {
					t.Errorf("%s %s: koeln sees %d rows of others (%v)", table, name, n, err)
				}
			}
		}
		var n int
		err := db.InTenant(t.Context(), h.pool, "koeln", func(tx pgx.Tx) error {
			return tx.QueryRow(t.Context(), `SELECT count(*) FROM register_version WHERE record_id = $1`, dRec.ID).Scan(&n)
		})
		if err != nil || n != 0 {
			t.Errorf("koeln reads duesseldorf's versions by record id: %d rows (%v)", n, err)
		}
		// And koeln's own rows are there: the zeros above are not an
		// empty view of everything.
		err = db.InTenant(t.Context(), h.pool, "koeln", func(tx pgx.Tx) error {
			return tx.QueryRow(t.Context(), `SELECT count(*) FROM register_version WHERE record_id = $1`, kRec.ID).Scan(&n)
		})
		if err != nil || n != 1 {
			t.Errorf("koeln reads its own versions: %d rows (%v)", n, err)
		}
	})

	writes := []struct {
		name, sql string
		args      []any
		// code is the SQLSTATE the statement fails with; "" means it must
		// succeed but touch no row.
		code string
	}{
		{"insert a record for duesseldorf", `INSERT INTO register_record (id, tenant_id, register, subject_index, revision, created_at, updated_at)
			VALUES ('11111111-2222-4333-8444-555555555555', 'duesseldorf', 'melderegister', '\x00', 1, now(), now())`, nil, "42501"},
		{"insert a version for duesseldorf", `INSERT INTO register_version (tenant_id, record_id, seq, revision, valid_from, valid_to, recorded_at, key_version, payload)
			VALUES ('duesseldorf', $1, 99, 99, '-infinity', 'infinity', now(), 1, '\x00')`, []any{dRec.ID}, "42501"},
		{"insert an audit entry for duesseldorf", `INSERT INTO audit_entry (tenant_id, seq, at, actor_kind, actor, actor_tenant, role, purpose, legal_basis, operation, register, outcome, detail, prev_hash, hash)
			VALUES ('duesseldorf', 999, now(), 'certificate', 'x', 'koeln', '', '', '', 'read', '-', 'granted', '', '\x00', '\x00')`, nil, "42501"},
		{"update duesseldorf's record", `UPDATE register_record SET revision = 99 WHERE tenant_id = 'duesseldorf'`, nil, ""},
		{"update duesseldorf's record by id", `UPDATE register_record SET revision = 99 WHERE id = $1`, []any{dRec.ID}, ""},
		{"supersede duesseldorf's versions", `UPDATE register_version SET superseded_at = now() WHERE record_id = $1`, []any{dRec.ID}, ""},
		{"delete duesseldorf's index", `DELETE FROM register_index WHERE tenant_id = 'duesseldorf'`, nil, ""},
		{"delete duesseldorf's access log", `DELETE FROM register_access_log WHERE record_id = $1`, []any{dRec.ID}, ""},
		{"move the audit head", `UPDATE audit_head SET seq = 0 WHERE tenant_id = 'duesseldorf'`, nil, ""},
		{"update an audit entry", `UPDATE audit_entry SET detail = 'x' WHERE tenant_id = 'koeln'`, nil, "42501"},
		{"update duesseldorf's audit entries", `UPDATE audit_entry SET detail = 'x'`, nil, "42501"},
		{"delete an audit entry", `DELETE FROM audit_entry WHERE tenant_id = 'koeln'`, nil, "42501"},
		{"delete duesseldorf's audit entries", `DELETE FROM audit_entry`, nil, "42501"},
		{"truncate the audit log", `TRUNCATE audit_entry`, nil, "42501"},
		{"delete a record", `DELETE FROM register_record WHERE id = $1`, []any{kRec.ID}, "42501"},
	}
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			var tag pgconn.CommandTag
			err := db.InTenant(t.Context(), h.pool, "koeln", func(tx pgx.Tx) error {
				var err error
				tag, err = tx.Exec(t.Context(), w.sql, w.args...)
				return err
			})
			var pg *pgconn.PgError
			switch {
			case w.code != "" && (!errors.As(err, &pg) || pg.Code != w.code):
				t.Errorf("err %v, want SQLSTATE %s", err, w.code)
			case w.code == "" && err != nil:
				t.Errorf("err %v", err)
			case w.code == "" && tag.RowsAffected() != 0:
				t.Errorf("%d rows affected", tag.RowsAffected())
			}
		})
	}

	// Düsseldorf's data is as it was.
	if got := h.mustRead(t, "duesseldorf", dRec.ID); got.Revision != 1 || got.Attributes["familienname"] != "Benrather" {
		t.Errorf("duesseldorf's record after koeln's statements: %+v", got)
	}
	search := h.call(t, "duesseldorf", "meldewesen", "GET", records("duesseldorf", "melderegister")+"?subjectKey=d-rls", nil)
	var found struct{ Records []register.Record }
	if search.json(t, &found); len(found.Records) != 1 {
		t.Errorf("duesseldorf's blind index after koeln's statements: %s", search.body)
	}
	if r, err := register.VerifyAudit(t.Context(), h.pool, "duesseldorf"); err != nil || !r.OK() {
		t.Errorf("duesseldorf's audit chain: %+v %v", r, err)
	}
}

// containsFold reports whether b contains s, ignoring case.
func containsFold(b []byte, s string) bool {
	return bytes.Contains(bytes.ToLower(b), bytes.ToLower([]byte(s)))
}

// equalAttributes compares attributes by their JSON.
func equalAttributes(a, b register.Attributes) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}
