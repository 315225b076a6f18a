package register_test

import (
	"bytes"
	"net/url"
	"testing"

	"github.com/parzelle/parzelle/db/dbtest"
)

// TestDumpHoldsNoPlaintext: after a person is written, read, searched,
// changed and exported through the API, a pg_dump of the whole database
// contains none of the person's data in any form a grep finds.
func TestDumpHoldsNoPlaintext(t *testing.T) {
	h := startHarness(t)
	path := records("duesseldorf", "melderegister")
	id := idnr("8642097531")
	secrets := map[string]string{
		"familienname": "Zwetschgenbaum-Quirinius",
		"vornamen":     "Ottilie Jördis",
		"strasse":      "Quittengässchen",
		"wohnort":      "Kleinöttingshausen",
		"idnr":         id,
		"subject key":  "melde-zwetschgenbaum-77",
		"new name":     "Quirinius-Wolkenstein",
	}
	rec := h.mustCreate(t, "duesseldorf", map[string]any{
		"subjectKey": secrets["subject key"],
		"validFrom":  "2021-06-01",
		"attributes": map[string]any{
			"familienname": secrets["familienname"], "vornamen": secrets["vornamen"], "geburtsdatum": "1957-02-14", "idnr": id,
			"hauptwohnung": map[string]any{"strasse": secrets["strasse"], "hausnummer": "3", "postleitzahl": "40211", "wohnort": secrets["wohnort"], "seit": "2021-06-01"},
		},
	})
	steps := []struct {
		cn, purpose, method, path string
		body                      any
		status                    int
	}{
		{"duesseldorf", "meldewesen", "GET", path + "/" + rec.ID, nil, 200},
		{"duesseldorf", "meldewesen", "GET", path + "?idnr=" + id, nil, 200},
		{"duesseldorf", "meldewesen", "GET", path + "?" + url.Values{"familienname": {secrets["familienname"]}, "vornamen": {secrets["vornamen"]}, "geburtsdatum": {"1957-02-14"}}.Encode(), nil, 200},
		{"duesseldorf", "meldewesen", "GET", path + "?subjectKey=" + url.QueryEscape(secrets["subject key"]), nil, 200},
		{"duesseldorf", "meldewesen", "PATCH", path + "/" + rec.ID, map[string]any{"validFrom": "2024-05-01", "attributes": map[string]any{"familienname": secrets["new name"]}}, 200},
		{"duesseldorf", "meldewesen", "GET", path + "/" + rec.ID + "/history", nil, 200},
		{"duesseldorf-sb", "auskunft", "GET", path + "/" + rec.ID, nil, 200},
		{"duesseldorf-sb", "auskunft", "GET", "/api/v1/tenants/duesseldorf/registers/melderegister/access-log?idnr=" + id, nil, 403},
		{"koeln", "meldewesen", "GET", path + "?idnr=" + id, nil, 403},
		{"duesseldorf-dsb", "datenschutzauskunft", "GET", "/api/v1/tenants/duesseldorf/registers/melderegister/access-log?idnr=" + id, nil, 200},
	}
	for _, s := range steps {
		if res := h.call(t, s.cn, s.purpose, s.method, s.path, s.body); res.status != s.status {
			t.Fatalf("%s %s as %s: %d %s", s.method, s.path, s.cn, res.status, res.body)
		}
	}
	export := h.call(t, "duesseldorf-dsb", "datenschutzauskunft", "GET", "/api/v1/tenants/duesseldorf/registers/melderegister/access-log?idnr="+id, nil)
	if lines := bytes.Count(export.body, []byte("\n")); lines < 5 || !bytes.Contains(export.body, []byte(id)) {
		t.Fatalf("the access log has %d disclosures of the person: %s", lines, export.body)
	}

	dump := dbtest.Dump(t, h.dbURL)
	// The dump holds the data, only not readable: the record, its audit
	// entries and access-log rows are in it.
	for _, want := range []string{rec.ID, "COPY public.register_version", "COPY public.audit_entry", "COPY public.register_access_log", "Melderegister duesseldorf"} {
		if !bytes.Contains(dump, []byte(want)) {
			t.Fatalf("the dump (%d bytes) lacks %q: it does not show the register's data", len(dump), want)
		}
	}
	if n := bytes.Count(dump, []byte(rec.ID)); n < 10 {
		t.Errorf("the record id appears %d times in the dump; versions, index, audit and access log should name it", n)
	}
	for _, leak := range dbtest.Leaks(dump, secrets) {
		t.Errorf("the dump contains the %s", leak)
	}
	// The check itself finds what is there: the same forms of the tenant's
	// name, which the dump holds in plaintext.
	if leaks := dbtest.Leaks(dump, map[string]string{"tenant name": "Melderegister duesseldorf"}); len(leaks) == 0 {
		t.Error("the search does not find a string the dump holds")
	}
}
