package strictyaml

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parzelle/parzelle/golden"
)

type inner struct {
	Name string   `yaml:"name" conf:"required"`
	Tags []string `yaml:"tags"`
}

type sample struct {
	ID      string        `yaml:"id" conf:"required"`
	Enabled bool          `yaml:"enabled"`
	Count   int           `yaml:"count"`
	Every   time.Duration `yaml:"every"`
	Keep    time.Duration `yaml:"keep"`
	Items   []inner       `yaml:"items" conf:"required"`
	Nested  inner         `yaml:"nested"`
}

// TestDecodeErrors decodes each testdata/*.yaml and compares the errors
// with testdata/*.golden (empty for a valid file).
func TestDecodeErrors(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var s sample
			_, err = Decode(file, data, &s)
			got := ""
			if err != nil {
				got = err.Error() + "\n"
			}
			golden.Check(t, strings.TrimSuffix(file, ".yaml")+".golden", []byte(got))
		})
	}
}

func TestDecodeValues(t *testing.T) {
	var s sample
	pos, err := Decode("ok.yaml", []byte("id: a\nenabled: true\ncount: 3\nevery: 90s\nkeep: 1825d\nitems:\n  - name: x\n    tags: [p, q]\nnested:\n  name: n\n"), &s)
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != "a" || !s.Enabled || s.Count != 3 || s.Every != 90*time.Second || s.Keep != 1825*24*time.Hour || len(s.Items) != 1 || s.Items[0].Tags[1] != "q" || s.Nested.Name != "n" {
		t.Errorf("decoded %+v", s)
	}
	if l := pos.Line("items[0].tags[1]"); l != 8 {
		t.Errorf("line of items[0].tags[1] = %d, want 8", l)
	}
	if l := pos.Line("items[0].unknown"); l != 7 {
		t.Errorf("line of an unseen field falls back to its parent: got %d, want 7", l)
	}
	pos.Errorf("items[0].name", "taken")
	if err := pos.Err(); err == nil || err.Error() != "ok.yaml:7: items[0].name: taken" {
		t.Errorf("Errorf: %v", err)
	}
}

func TestDecodeRefusesOversizeFile(t *testing.T) {
	var s sample
	_, err := Decode("big.yaml", []byte("id: "+strings.Repeat("a", MaxFileSize)), &s)
	if err == nil || !strings.Contains(err.Error(), "more than the limit") {
		t.Fatalf("want a size error, got %v", err)
	}
}
