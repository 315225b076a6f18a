package xta_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parzelle/parzelle/msgbox"
	"github.com/parzelle/parzelle/xta"
)

// TestSchemaPolicyAccepts sends content the schema policy lets through and
// checks the transport report each gets: validated content and non-XML
// content stay green, content without an installed schema from a tenant
// that warns turns the report yellow with a SCHEMA_MISSING warning. (The
// refused cases are in TestBadInput, which also checks that nothing is
// written.)
func TestSchemaPolicyAccepts(t *testing.T) {
	h := startHarness(t)
	ctx := context.Background()
	evidence, err := os.ReadFile(filepath.Join(specs, "xnachweis/constructed-examples/DE.EvidenceRequest.0101.example.xml"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		cert    string // muenchen warns, koeln refuses content without a schema
		content string
		status  int
		level   string // level and code of the record the check adds ("" = none)
		code    string
		reason  string
	}{
		{"schema-valid XNachweis, warning tenant", "muenchen", string(evidence), msgbox.StatusGreen, "Info", msgbox.RecordValidated, "gegen das Schema xnachweis-1.2.0 geprüft"},
		{"schema-valid XNachweis, refusing tenant", "koeln", "\ufeff" + string(evidence), msgbox.StatusGreen, "Info", msgbox.RecordValidated, "gegen das Schema xnachweis-1.2.0 geprüft"},
		{"no schema, warning tenant", "muenchen", `<m:Meldung xmlns:m="urn:example:unbekannt"/>`, msgbox.StatusYellow, "Warning", msgbox.RecordSchemaMissing, "Kein Schema für den Namensraum urn:example:unbekannt installiert"},
		{"not XML, refusing tenant", "koeln", "%PDF-1.7 <not xml>", msgbox.StatusGreen, "", "", ""},
		{"starts like XML but is not, refusing tenant", "koeln", "<<<", msgbox.StatusGreen, "", "", ""},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			from, to := author, reader
			if c.cert == "koeln" {
				from, to = reader, author
			}
			id := "urn:de:xta:messageid:test:policy-" + string(rune('a'+i))
			m := outgoing(id, []byte(c.content), nil)
			m.Author, m.Reader = xta.Party{ID: from, Category: "Meldebehörde"}, xta.Party{ID: to}
			m.Attachments = nil
			sender := h.client(c.cert, from, false)
			if err := sender.Send(ctx, m); err != nil {
				t.Fatalf("sendMessage: %v", err)
			}
			r := waitStatus(t, sender, id, c.status)
			var found bool
			for _, rec := range r.Records {
				if rec.Code == msgbox.RecordSchemaMissing || strings.HasPrefix(rec.Reason, "Inhalt") {
					if c.code == "" {
						t.Errorf("unexpected record %+v", rec)
					}
					found = found || (rec.Code == c.code && strings.Contains(rec.Reason, c.reason) && rec.Level == c.level)
				}
			}
			if c.code != "" && !found {
				t.Errorf("no %s record %s %q in %+v", c.level, c.code, c.reason, r.Records)
			}
		})
	}
}
