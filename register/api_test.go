package register_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/parzelle/parzelle/register"
)

// person is the fixture person of the API tests.
func person(key, id string) map[string]any {
	return map[string]any{
		"subjectKey": key,
		"validFrom":  "2020-01-15",
		"attributes": map[string]any{
			"familienname": "Quastenberg-Ölmüller", "vornamen": "Hedwig Amalie", "geburtsdatum": "1983-11",
			"idnr": id, "auskunftssperre": false,
			"hauptwohnung": map[string]any{"strasse": "Kiefernweg", "hausnummer": "7", "postleitzahl": "40210", "wohnort": "Düsseldorf", "seit": "2020-01-15"},
		},
	}
}

func TestRecordLifecycle(t *testing.T) {
	h := startHarness(t)
	path := records("duesseldorf", "melderegister")
	id := idnr("4711081512")

	created := h.call(t, "duesseldorf", "meldewesen", "POST", path, person("melde-1", id), "Idempotency-Key", "create-1")
	if created.status != http.StatusCreated {
		t.Fatalf("create: %d %s", created.status, created.body)
	}
	var rec register.Record
	created.json(t, &rec)
	if rec.ID == "" || rec.Revision != 1 || rec.Attributes["familienname"] != "Quastenberg-Ölmüller" || rec.ValidFrom != "2020-01-15" {
		t.Fatalf("created record: %+v", rec)
	}
	if loc := created.header.Get("Location"); loc != path+"/"+rec.ID {
		t.Errorf("Location %q", loc)
	}

	t.Run("idempotent repeat", func(t *testing.T) {
		again := h.call(t, "duesseldorf", "meldewesen", "POST", path, person("melde-1", id), "Idempotency-Key", "create-1")
		var rec2 register.Record
		again.json(t, &rec2)
		if again.status != http.StatusCreated || rec2.ID != rec.ID || again.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("repeat: %d %s %v", again.status, again.body, again.header)
		}
		other := h.call(t, "duesseldorf", "meldewesen", "POST", path, person("melde-2", id), "Idempotency-Key", "create-1")
		if other.status != http.StatusConflict {
			t.Fatalf("same key, other request: %d %s", other.status, other.body)
		}
		dup := h.call(t, "duesseldorf", "meldewesen", "POST", path, person("melde-1", id))
		if dup.status != http.StatusConflict {
			t.Fatalf("same subject key: %d %s", dup.status, dup.body)
		}
	})

	t.Run("search", func(t *testing.T) {
		for name, q := range map[string]url.Values{
			"idnr":         {"idnr": {id}},
			"name":         {"familienname": {"quastenberg-ölmüller"}, "vornamen": {"Hedwig  Amalie"}, "geburtsdatum": {"1983-11"}},
			"subject key":  {"subjectKey": {"melde-1"}},
			"wrong birth":  {"familienname": {"Quastenberg-Ölmüller"}, "vornamen": {"Hedwig Amalie"}, "geburtsdatum": {"1983-12"}},
			"unknown idnr": {"idnr": {idnr("1111111111")}},
		} {
			res := h.call(t, "duesseldorf", "meldewesen", "GET", path+"?"+q.Encode(), nil)
			var out struct{ Records []register.Record }
			res.json(t, &out)
			want := 1
			if name == "wrong birth" || name == "unknown idnr" {
				want = 0
			}
			if res.status != http.StatusOK || len(out.Records) != want || (want == 1 && out.Records[0].ID != rec.ID) {
				t.Errorf("search by %s: %d %s", name, res.status, res.body)
			}
		}
		bad := h.call(t, "duesseldorf", "meldewesen", "GET", path+"?familienname=X", nil)
		if bad.status != http.StatusUnprocessableEntity {
			t.Errorf("incomplete name search: %d %s", bad.status, bad.body)
		}
	})

	// A move on 2024-03-01, recorded now.
	beforeMove := time.Now()
	time.Sleep(10 * time.Millisecond)
	moved := h.call(t, "duesseldorf", "meldewesen", "PATCH", path+"/"+rec.ID, map[string]any{
		"validFrom": "2024-03-01",
		"attributes": map[string]any{"hauptwohnung": map[string]any{
			"strasse": "Rheinallee", "hausnummer": "12a", "postleitzahl": "40545", "wohnort": "Düsseldorf", "seit": "2024-03-01"}},
	}, "If-Match", `"1"`)
	if moved.status != http.StatusOK || moved.header.Get("ETag") != `"2"` {
		t.Fatalf("move: %d %s", moved.status, moved.body)
	}
	stale := h.call(t, "duesseldorf", "meldewesen", "PATCH", path+"/"+rec.ID, map[string]any{"attributes": map[string]any{"familienname": "X"}}, "If-Match", `"1"`)
	if stale.status != http.StatusPreconditionFailed {
		t.Fatalf("stale If-Match: %d %s", stale.status, stale.body)
	}

	street := func(q string) string {
		t.Helper()
		res := h.call(t, "duesseldorf", "meldewesen", "GET", path+"/"+rec.ID+"?"+q, nil)
		if res.status != http.StatusOK {
			return res.problem(t)["type"].(string)
		}
		var r register.Record
		res.json(t, &r)
		return r.Attributes["hauptwohnung"].(map[string]any)["strasse"].(string)
	}
	for q, want := range map[string]string{
		"":                   "Rheinallee",
		"validAt=2024-02-29": "Kiefernweg",
		"validAt=2024-03-01": "Rheinallee",
		"validAt=2019-12-31": "urn:parzelle:problem:not-found",
		"validAt=2024-03-01&knownAt=" + url.QueryEscape(beforeMove.UTC().Format(time.RFC3339Nano)): "Kiefernweg",
	} {
		if got := street(q); got != want {
			t.Errorf("main residence at %q: %s, want %s", q, got, want)
		}
	}

	// A correction of the earlier address: it replaces what was recorded,
	// history as known now shows only the corrected one.
	corr := h.call(t, "duesseldorf", "meldewesen", "PATCH", path+"/"+rec.ID, map[string]any{
		"correction": true, "validTo": "2024-03-01",
		"attributes": map[string]any{"hauptwohnung": map[string]any{"strasse": "Kiefernweg", "hausnummer": "9", "postleitzahl": "40210", "wohnort": "Düsseldorf", "seit": "2020-01-15"}},
	})
	if corr.status != http.StatusOK {
		t.Fatalf("correction: %d %s", corr.status, corr.body)
	}
	hist := h.call(t, "duesseldorf", "meldewesen", "GET", path+"/"+rec.ID+"/history", nil)
	var versions struct{ Versions []register.Version }
	hist.json(t, &versions)
	if len(versions.Versions) != 2 {
		t.Fatalf("history: %s", hist.body)
	}
	first, second := versions.Versions[0], versions.Versions[1]
	if first.ValidFrom != "2020-01-15" || first.ValidTo != "2024-03-01" || first.Attributes["hauptwohnung"].(map[string]any)["hausnummer"] != "9" ||
		second.ValidFrom != "2024-03-01" || second.ValidTo != "" {
		t.Errorf("history after correction: %s", hist.body)
	}

	invalid := h.call(t, "duesseldorf", "meldewesen", "PATCH", path+"/"+rec.ID, map[string]any{"attributes": map[string]any{
		"idnr": "12345678901", "lieblingsfarbe": "blau", "familienname": nil}})
	p := invalid.problem(t)
	if invalid.status != http.StatusUnprocessableEntity || len(p["errors"].([]any)) != 2 {
		t.Errorf("invalid change: %d %s", invalid.status, invalid.body)
	}

	del := h.call(t, "duesseldorf", "meldewesen", "DELETE", path+"/"+rec.ID, nil)
	if del.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", del.status, del.body)
	}
	if gone := h.call(t, "duesseldorf", "meldewesen", "GET", path+"/"+rec.ID, nil); gone.status != http.StatusGone {
		t.Errorf("read after delete: %d %s", gone.status, gone.body)
	}
	if got := street("knownAt=" + url.QueryEscape(beforeMove.UTC().Format(time.RFC3339Nano))); got != "Kiefernweg" {
		t.Errorf("read of earlier knowledge after delete: %s", got)
	}
	res := h.call(t, "duesseldorf", "meldewesen", "GET", path+"?idnr="+id, nil)
	var found struct{ Records []register.Record }
	if res.json(t, &found); len(found.Records) != 0 {
		t.Errorf("search finds a deleted record: %s", res.body)
	}

	report, err := register.VerifyAudit(t.Context(), h.pool, "duesseldorf")
	if err != nil || !report.OK() || report.Entries < 15 {
		t.Fatalf("audit chain: %+v %v", report, err)
	}
}

// TestInvalidUTF8: text that is not UTF-8 anywhere in a JSON body is
// refused with a problem naming the field, and nothing is stored (it was
// turned into U+FFFD and stored before).
func TestInvalidUTF8(t *testing.T) {
	h := startHarness(t)
	path := records("duesseldorf", "melderegister")
	good, err := json.Marshal(person("melde-utf8", idnr("4711081599")))
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string][]byte{
		"raw byte":       bytes.Replace(good, []byte("Quastenberg"), []byte("Quasten\xe9berg"), 1),
		"lone surrogate": bytes.Replace(good, []byte("Quastenberg"), []byte(`Quasten\ud800berg`), 1),
	} {
		if bytes.Equal(bad, good) {
			t.Fatalf("%s: the fixture has no Quastenberg", name)
		}
		resp := h.call(t, "duesseldorf", "meldewesen", "POST", path, bad)
		if resp.status != http.StatusBadRequest {
			t.Fatalf("%s: %d %s", name, resp.status, resp.body)
		}
		if p := resp.problem(t); !strings.Contains(fmt.Sprint(p["detail"]), "attributes.familienname") || !strings.Contains(fmt.Sprint(p["detail"]), "not valid UTF-8") {
			t.Errorf("%s: problem %v does not name the field", name, p)
		}
	}
	var stored int
	if err := h.pool.QueryRow(t.Context(), `SELECT count(*) FROM register_record`).Scan(&stored); err != nil || stored != 0 {
		t.Errorf("%d records stored after the refusals (%v)", stored, err)
	}
}

// TestNoPurposeNamesHeader: a request without a purpose is told which
// header to send.
func TestNoPurposeNamesHeader(t *testing.T) {
	h := startHarness(t)
	resp := h.call(t, "duesseldorf", "", "GET", records("duesseldorf", "melderegister")+"?idnr="+idnr("4711081512"), nil)
	if p := resp.problem(t); resp.status != http.StatusForbidden || !strings.Contains(fmt.Sprint(p["detail"]), "send the Parzelle-Purpose header") {
		t.Errorf("no purpose: %d %v", resp.status, p)
	}
}
