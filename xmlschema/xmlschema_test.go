package xmlschema

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const specs = "../../shared/specs"

func load(t *testing.T) *Registry {
	t.Helper()
	r, err := Load([]string{specs}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Has(XTA2V3.Name) {
		t.Fatalf("%s not found under %s", XTA2V3.Name, specs)
	}
	return r
}

func TestSyntheticXTASamplesValidate(t *testing.T) {
	r := load(t)
	files, _ := filepath.Glob(filepath.Join(specs, "xta2/samples/v3-synthetic/*.xml"))
	if len(files) < 15 {
		t.Fatalf("only %d samples found", len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Validate(XTA2V3.Name, b); err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
		}
	}
}

func TestInvalidDocumentNamesTheProblem(t *testing.T) {
	r := load(t)
	b, _ := os.ReadFile(filepath.Join(specs, "xta2/samples/v3-synthetic/15-fault-PermissionDenied.xml"))
	bad := strings.Replace(string(b), "<code>9012</code>", "<kode>9012</kode>", 1)
	err := r.Validate(XTA2V3.Name, []byte(bad))
	var ve *ValidationError
	if !errors.As(err, &ve) || !strings.Contains(ve.Error(), "kode") {
		t.Fatalf("got %v, want a validation error naming the bad code", err)
	}
}

func TestMissingSetIsReported(t *testing.T) {
	r, err := Load([]string{t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Has(XTA2V3.Name) || len(r.Missing()) != len(Known) {
		t.Fatalf("empty dir: installed %v, missing %v", r.Installed(), r.Missing())
	}
	if err := r.Validate(XTA2V3.Name, []byte("<a/>")); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("got %v, want ErrNotInstalled", err)
	}
}
