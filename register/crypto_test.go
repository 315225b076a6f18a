package register_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/parzelle/parzelle/register"
	"github.com/parzelle/parzelle/tenant"
)

// TestMovedCiphertextDoesNotDecrypt: a payload copied over another row (of
// another record, another version of the same record, or another tenant)
// fails to decrypt, because its additional data binds tenant, register,
// record and seq: the API answers with an error and never with the other
// person's data.
func TestMovedCiphertextDoesNotDecrypt(t *testing.T) {
	h := startHarness(t)
	path := records("duesseldorf", "melderegister")
	victim := h.mustCreate(t, "duesseldorf", isolationPerson("d-victim", idnr("2938475610"), "Opferbeck"))
	source := h.mustCreate(t, "duesseldorf", isolationPerson("d-source", idnr("5647382910"), "Quellenhof"))
	// A second version of the source: a move from 2024-03-01.
	moved := h.call(t, "duesseldorf", "meldewesen", "PATCH", path+"/"+source.ID, map[string]any{
		"validFrom": "2024-03-01", "attributes": map[string]any{"familienname": "Quellenhof-Neu"}})
	if moved.status != http.StatusOK {
		t.Fatalf("update: %d %s", moved.status, moved.body)
	}
	foreign := h.mustCreate(t, "koeln", isolationPerson("k-source", idnr("7465839201"), "Fremdenthal"))

	cases := []struct {
		name string
		// from is the (record, seq) whose payload and key version are
		// copied over to's.
		fromID         string
		fromSeq        int
		toID           string
		toSeq          int
		toTenant       string
		mustNotDisplay string
	}{
		{"another record of the tenant", source.ID, 1, victim.ID, 1, "duesseldorf", "Quellenhof"},
		{"another version of the same record", source.ID, 1, source.ID, 3, "duesseldorf", "Quellenhof"},
		{"another tenant's record", foreign.ID, 1, victim.ID, 1, "duesseldorf", "Fremdenthal"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Keep the row's own payload to put it back afterwards.
			var saved []byte
			var savedKV int
			if err := h.pool.QueryRow(t.Context(), `SELECT payload, key_version FROM register_version WHERE record_id = $1 AND seq = $2`,
				c.toID, c.toSeq).Scan(&saved, &savedKV); err != nil {
				t.Fatal(err)
			}
			tag, err := h.pool.Exec(t.Context(), `UPDATE register_version t SET payload = f.payload, key_version = f.key_version
				FROM register_version f WHERE f.record_id = $1 AND f.seq = $2 AND t.record_id = $3 AND t.seq = $4`,
				c.fromID, c.fromSeq, c.toID, c.toSeq)
			if err != nil || tag.RowsAffected() != 1 {
				t.Fatalf("copy the ciphertext: %v %d", err, tag.RowsAffected())
			}
			defer func() {
				if _, err := h.pool.Exec(context.Background(), `UPDATE register_version SET payload = $3, key_version = $4 WHERE record_id = $1 AND seq = $2`,
					c.toID, c.toSeq, saved, savedKV); err != nil {
					t.Fatal(err)
				}
			}()

			for _, suffix := range []string{"", "/history"} {
				res := h.call(t, c.toTenant, "meldewesen", "GET", records(c.toTenant, "melderegister")+"/"+c.toID+suffix, nil)
				if res.status < 500 {
					t.Errorf("GET %s: status %d, want a server error: %s", suffix, res.status, res.body)
				}
				if p := res.problem(t); p["type"] != "urn:parzelle:problem:unavailable" {
					t.Errorf("GET %s: problem %s", suffix, res.body)
				}
				if containsFold(res.body, c.mustNotDisplay) {
					t.Errorf("GET %s discloses the moved payload: %s", suffix, res.body)
				}
			}

			actor := tenant.Actor{Tenant: c.toTenant, Kind: tenant.ActorCertificate, Subject: "CN=test", Role: "fachverfahren", Purpose: "meldewesen"}
			rec, err := h.store.Get(t.Context(), actor, c.toTenant, "melderegister", c.toID, register.Temporal{})
			if !errors.Is(err, register.ErrDecrypt) {
				t.Errorf("store Get: %v (record %+v), want ErrDecrypt", err, rec)
			}
			if _, err := h.store.History(t.Context(), actor, c.toTenant, "melderegister", c.toID, register.Temporal{}); !errors.Is(err, register.ErrDecrypt) {
				t.Errorf("store History: %v, want ErrDecrypt", err)
			}
		})
	}

	// Put back, every row decrypts again: the failures above were the
	// moves, not a broken store.
	for _, id := range []string{victim.ID, source.ID} {
		if _, err := h.store.History(t.Context(), tenant.Actor{Tenant: "duesseldorf", Kind: tenant.ActorCertificate, Subject: "CN=test",
			Role: "fachverfahren", Purpose: "meldewesen"}, "duesseldorf", "melderegister", id, register.Temporal{}); err != nil {
			t.Errorf("history of %s after restoring: %v", id, err)
		}
	}
	if got := h.mustRead(t, "duesseldorf", victim.ID); got.Attributes["familienname"] != "Opferbeck" {
		t.Errorf("victim after restoring: %+v", got)
	}
}
