package console

import (
	"fmt"
	"html/template"
	"io/fs"
	"net/url"
	"path"
	"strings"
	"time"
)

// labels are the console's words, German first, English second.
var labels = map[string][2]string{
	"overview": {"Übersicht", "Overview"}, "deadletters": {"Dead Letters", "Dead letters"}, "trace": {"Nachrichtenverlauf", "Message trace"},
	"tenants": {"Mandanten", "Tenants"}, "logout": {"Abmelden", "Sign out"}, "login": {"Anmelden", "Sign in"}, "user": {"Benutzer", "User"},
	"password": {"Passwort", "Password"}, "tenant": {"Mandant", "Tenant"}, "inbox": {"Postfach", "Inbox"}, "type": {"Nachrichtentyp", "Message type"},
	"step": {"Schritt", "Step"}, "cause": {"Ursache", "Cause"}, "since": {"Seit", "Since"}, "until": {"Bis", "Until"}, "filter": {"Filtern", "Filter"},
	"all": {"alle", "all"}, "message": {"Nachricht", "Message"}, "author": {"Absender", "Author"}, "attempts": {"Versuche", "Attempts"},
	"retry": {"Erneut einarbeiten", "Retry"}, "discard": {"Verwerfen", "Discard"}, "reason": {"Begründung", "Reason"},
	"retryall": {"Alle gefilterten erneut einarbeiten", "Retry all filtered"}, "discardall": {"Alle gefilterten verwerfen", "Discard all filtered"},
	"reveal": {"Inhalt anzeigen (wird protokolliert)", "Show content (audited)"}, "hide": {"Inhalt verbergen", "Hide content"},
	"page": {"Seite", "Page"}, "of": {"von", "of"}, "prev": {"zurück", "previous"}, "next": {"weiter", "next"}, "none": {"Keine", "None"},
	"status": {"Status", "Status"}, "queue": {"Warteschlange", "Queue"}, "open": {"Offene Dead Letters", "Open dead letters"},
	"permin": {"Nachrichten/min", "Messages/min"}, "stuck": {"Hängende Jobs", "Stuck jobs"}, "expiring": {"Läuft in 30 Tagen ab", "Expires within 30 days"},
	"version": {"Version", "Version"}, "applied": {"Angewendet", "Applied"}, "identities": {"Kennungen", "Identities"}, "inboxes": {"Registerpostfächer", "Register inboxes"},
	"certs": {"Zertifikate", "Certificates"}, "history": {"Änderungen", "Config changes"}, "diff": {"Unterschied", "Difference"},
	"attemptshist": {"Fehlversuche", "Failures"}, "failingstep": {"Fehlgeschlagener Schritt", "Failing step"}, "content": {"Inhalt", "Content"},
	"show": {"Anzeigen", "Show"}, "rejected": {"Abgelehnte Mandantendateien", "Rejected tenant files"}, "progress": {"Fortschritt", "Progress"},
	"done": {"erledigt", "done"}, "failed": {"fehlgeschlagen", "failed"}, "back": {"Zurück zur Liste", "Back to the list"}, "when": {"Zeitpunkt", "When"},
	"where": {"Ort", "Where"}, "record": {"Registereintrag", "Register record"}, "expires": {"Läuft ab", "Expires"}, "usage": {"Verwendung", "Usage"},
	"subject": {"Inhaber", "Subject"}, "resolved": {"auch erledigte", "also resolved"}, "count": {"Anzahl", "Count"}, "mappings": {"Mapping-Spezifikationen", "Mapping specs"},
	"line": {"Zeile", "line"},
}

var funcs = template.FuncMap{
	"t": func(lang, key string) string {
		l, ok := labels[key]
		if !ok {
			return key
		}
		if lang == "en" {
			return l[1]
		}
		return l[0]
	},
	"time": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			return v.Local().Format("2006-01-02 15:04:05")
		case *time.Time:
			if v == nil {
				return "–"
			}
			return v.Local().Format("2006-01-02 15:04:05")
		}
		return fmt.Sprint(t)
	},
	"days":         func(until, now time.Time) int { return int(until.Sub(now).Hours() / 24) },
	"query":        func(q url.Values, key string) string { return q.Get(key) },
	"sortedCauses": sortedCauses,
	"langURL":      func(l, back string) string { return Prefix + "lang/" + l + "?" + url.Values{"back": {back}}.Encode() },
	"dec":          func(n int) int { return n - 1 },
}

// parsePages parses each page's template (every file in templates/ but
// the layout) with the layout; a page is named after its file.
func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, file := range names {
		p := strings.TrimSuffix(path.Base(file), ".html")
		if p == "layout" {
			continue
		}
		t, err := template.New(p).Funcs(funcs).ParseFS(files, "templates/layout.html", file)
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", p, err)
		}
		pages[p] = t
	}
	return pages, nil
}
