package dbtest

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/text/unicode/norm"

	"github.com/parzelle/parzelle/pgcluster"
)

// Dump returns a pg_dump of the database at url, taken with the pg_dump of
// the PostgreSQL that pgcluster finds (or the one on PATH).
func Dump(t testing.TB, url string) []byte {
	t.Helper()
	bin, err := exec.LookPath("pg_dump")
	if c, cerr := pgcluster.New(t.TempDir()); cerr == nil {
		if p, perr := exec.LookPath(filepath.Join(c.BinDir(), "pg_dump")); perr == nil {
			bin, err = p, nil
		}
	}
	if err != nil {
		t.Fatalf("no pg_dump: %v", err)
	}
	dump, err := exec.Command(bin, "--no-password", url).Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("pg_dump: %v\n%s", err, exit.Stderr)
		}
		t.Fatalf("pg_dump: %v", err)
	}
	return dump
}

// Leaks returns, sorted, the secrets (by name) found in dump in any form a
// grep through it could find them: as is, in any case, decomposed (NFD),
// JSON-escaped, hex of the UTF-8 (how bytea dumps) and base64 at each of
// the three byte alignments. Forms shorter than six characters are not
// looked for (they match by chance).
func Leaks(dump []byte, secrets map[string]string) []string {
	lower := bytes.ToLower(dump)
	var out []string
	for what, s := range secrets {
		for form, enc := range Encodings(s) {
			if len(enc) >= 6 && bytes.Contains(lower, bytes.ToLower([]byte(enc))) {
				out = append(out, what+" ("+form+": "+enc+")")
			}
		}
	}
	sort.Strings(out)
	return out
}

// Encodings are the forms of s that Leaks looks for, by name.
func Encodings(s string) map[string]string {
	out := map[string]string{}
	for _, v := range []string{s, norm.NFD.String(s)} {
		for _, c := range []string{v, strings.ToLower(v), strings.ToUpper(v)} {
			out["plain "+c] = c
			j, _ := json.Marshal(c)
			out["json "+c] = strings.Trim(string(j), `"`)
			out["json ascii "+c] = jsonASCII(c)
			out["hex "+c] = hex.EncodeToString([]byte(c))
			for pad := range 3 {
				b := base64.StdEncoding.EncodeToString(append(make([]byte, pad), c...))
				// Drop the characters that mix in the padding bytes before
				// and the unknown bytes after.
				b = strings.TrimRight(b, "=")
				start := (pad*8 + 5) / 6
				if end := len(b) - 2; end > start {
					out["base64 "+c+string(rune('0'+pad))] = b[start:end]
				}
			}
		}
	}
	return out
}

// jsonASCII is s JSON-escaped with every non-ASCII rune as \uXXXX, as
// PostgreSQL's and many encoders' ASCII-safe output writes it.
func jsonASCII(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x80 {
			b.WriteRune(r)
			continue
		}
		b.WriteString(`\u`)
		b.WriteString(hex.EncodeToString([]byte{byte(r >> 8), byte(r)}))
	}
	return b.String()
}
