package register_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/text/unicode/norm"

	"github.com/parzelle/parzelle/pgcluster"
)

// pgDump returns the path of the pg_dump that belongs to the test cluster's
// PostgreSQL (the one pgcluster finds), or the one on PATH.
func pgDump(t *testing.T) string {
	t.Helper()
	if c, err := pgcluster.New(t.TempDir()); err == nil {
		if p := filepath.Join(c.BinDir(), "pg_dump"); fileExists(p) {
			return p
		}
	}
	p, err := exec.LookPath("pg_dump")
	if err != nil {
		t.Fatalf("no pg_dump: %v", err)
	}
	return p
}

func fileExists(p string) bool {
	_, err := exec.LookPath(p)
	return err == nil
}

// encodings are the forms of s a grep through a dump could find: as is,
// lower and upper case, decomposed (NFD), JSON-escaped, hex of its UTF-8
// (how bytea dumps), and base64 at each of the three byte alignments.
func encodings(s string) map[string]string {
	out := map[string]string{}
	for _, v := range []string{s, norm.NFD.String(s)} {
		for _, c := range []string{v, strings.ToLower(v), strings.ToUpper(v)} {
			out["plain "+c] = c
			j, _ := json.Marshal(c)
			out["json "+c] = strings.Trim(string(j), `"`)
			out["json ascii "+c] = strings.Trim(jsonASCII(c), `"`)
			out["hex "+c] = hex.EncodeToString([]byte(c))
			out["HEX "+c] = strings.ToUpper(hex.EncodeToString([]byte(c)))
			for pad := range 3 {
				b := base64.StdEncoding.EncodeToString(append(make([]byte, pad), c...))
				// Drop the characters that mix in the padding bytes before
				// and the unknown bytes after.
				b = strings.TrimRight(b, "=")
				start := (pad*8 + 5) / 6
				end := len(b) - 2
				if end > start {
					out["base64 "+c+string(rune('0'+pad))] = b[start:end]
				}
			}
		}
	}
	return out
}

// jsonASCII is JSON with every non-ASCII rune escaped as \uXXXX, as
// PostgreSQL's and many encoders' ASCII-safe output writes it.
func jsonASCII(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		if r < 0x80 {
			b.WriteRune(r)
			continue
		}
		for _, u := range []rune{r} {
			b.WriteString(`\u`)
			b.WriteString(strings.ToLower(hex.EncodeToString([]byte{byte(u >> 8), byte(u)})))
		}
	}
	b.WriteByte('"')
	return b.String()
}

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

	dump, err := exec.Command(pgDump(t), "--no-password", h.dbURL).Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("pg_dump: %v\n%s", err, exit.Stderr)
		}
		t.Fatalf("pg_dump: %v", err)
	}
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
	lower := bytes.ToLower(dump)
	for what, s := range secrets {
		for form, enc := range encodings(s) {
			if len(enc) < 6 {
				continue
			}
			if bytes.Contains(lower, bytes.ToLower([]byte(enc))) {
				t.Errorf("the dump contains the %s (%s: %q)", what, form, enc)
			}
		}
	}
	// The check itself finds what is there: the same forms of the tenant's
	// name, which the dump holds in plaintext.
	if !bytes.Contains(lower, bytes.ToLower([]byte(encodings("Melderegister duesseldorf")["plain Melderegister duesseldorf"]))) {
		t.Error("the search does not find a string the dump holds")
	}
}
