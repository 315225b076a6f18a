package xta

import (
	"encoding/xml"
	"regexp"
	"strings"
	"testing"
)

// TestUUID: uuid gives random version 4 UUIDs in the 8-4-4-4-12 form.
func TestUUID(t *testing.T) {
	form := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 100 {
		u := uuid()
		if !form.MatchString(u) || seen[u] {
			t.Fatalf("uuid %q: not a fresh version 4 UUID", u)
		}
		seen[u] = true
	}
}

// TestEsc: esc escapes as encoding/xml.EscapeText does, also where it
// takes its shortcut for text that needs no escaping.
func TestEsc(t *testing.T) {
	for _, s := range []string{"", "plain ASCII: urn:de:xta:messageid:x/y?z=1", "a\"b'c&d<e>f", "tab\there", "nl\ncr\r", "ctl\x01", "Grüße", "bad\xff", "\uFFFD", "del\x7f"} {
		var want strings.Builder
		_ = xml.EscapeText(&want, []byte(s))
		if got := esc(s); got != want.String() {
			t.Errorf("esc(%q) = %q, want %q", s, got, want.String())
		}
	}
}
