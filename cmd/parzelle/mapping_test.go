package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parzelle/parzelle/register"
)

// TestMappingCommand runs `parzelle mapping test` and `parzelle mapping
// lint` as an operator would, on the demo specs and fixture messages.
func TestMappingCommand(t *testing.T) {
	abs := func(p ...string) string {
		a, err := filepath.Abs(filepath.Join(append([]string{"..", ".."}, p...)...))
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	spec := abs("fixtures", "mappings", "xmeld-zuzug.yaml")

	out, err := parzelle(t.TempDir(), nil, "mapping", "test", "--spec", spec,
		"--message", abs("fixtures", "messages", "xmeld", "07-rueckmeldung-anmeldung-0201-umzugsverband.xml")).Output()
	if err != nil {
		t.Fatalf("mapping test: %v\n%s", err, out)
	}
	var facts []register.Fact
	if err := json.Unmarshal(out, &facts); err != nil {
		t.Fatalf("output is not JSON facts: %v\n%s", err, out)
	}
	if len(facts) != 3 {
		t.Fatalf("%d facts for the family of three, want 3:\n%s", len(facts), out)
	}
	for _, f := range facts {
		if f.Source != "xmeld-zuzug@1" || !strings.HasPrefix(f.EventID, "DUS-EW-2025-0601-") {
			t.Errorf("fact %+v", f)
		}
	}

	// A message of another type is refused with the reason.
	out, err = parzelle(t.TempDir(), nil, "mapping", "test", "--spec", spec,
		"--message", abs("fixtures", "messages", "xmeld", "05-fortschreibung-tod-0040.xml")).CombinedOutput()
	if exitCode(err) != 1 || !strings.Contains(string(out), "which none of the specs maps; they map:\n  xmeld-zuzug@1  {http://www.osci.de/xmeld243}rueckmeldung.anmeldunginland.0201") {
		t.Errorf("mapping a 0040 with the Zuzug spec: %v\n%s", err, out)
	}
	// Given the directory of specs, the one for the message's type maps it.
	cmd := parzelle(t.TempDir(), nil, "mapping", "test", "--spec", abs("fixtures", "mappings"),
		"--message", abs("fixtures", "messages", "xmeld", "05-fortschreibung-tod-0040.xml"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if out, err = cmd.Output(); err != nil || !strings.Contains(stderr.String(), "mapped by xmeld-tod@2") || !strings.Contains(string(out), `"sterbedatum"`) {
		t.Errorf("mapping a 0040 with the demo specs: %v\n%s\n%s", err, stderr.String(), out)
	}

	schemas := []string{"--schemas", abs("..", "shared", "specs"), "--schemas", abs("fixtures", "schemas")}
	out, err = parzelle(t.TempDir(), nil, append([]string{"mapping", "lint", "--spec", spec}, schemas...)...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "xmeld-zuzug.yaml: ok") {
		t.Errorf("lint of the demo spec: %v\n%s", err, out)
	}

	data, err := os.ReadFile(spec)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	broken := strings.Replace(string(data), "x:NAMENATUERLICHEPERSON/x:vornamen", "x:NAMENATUERLICHEPERSON/x:vorname", 1)
	if err := os.WriteFile(bad, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	line := 1 + strings.Count(string(data[:strings.Index(string(data), "x:NAMENATUERLICHEPERSON/x:vornamen")]), "\n")
	out, err = parzelle(t.TempDir(), nil, append([]string{"mapping", "lint", "--spec", bad}, schemas...)...).CombinedOutput()
	if want := fmt.Sprintf("bad.yaml:%d: error: subjects[0].set[2].select: unknown path: no schema declares element {http://www.osci.de/xmeld243}vorname", line); exitCode(err) != 1 || !strings.Contains(string(out), want) {
		t.Errorf("lint of a misspelled element: %v\n%s", err, out)
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return 0
}
