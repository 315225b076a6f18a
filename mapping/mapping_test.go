package mapping

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/parzelle/parzelle/golden"
)

const (
	specDir     = "../fixtures/mappings"
	xmeldDir    = "../fixtures/messages/xmeld"
	gewerbeDir  = "../../shared/specs/xoev/xgewerbeanzeige/samples"
	testdataDir = "testdata"
)

func mustCompile(t testing.TB, file string) *Spec {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Compile(file, data)
	if err != nil {
		t.Fatalf("compile %s: %v", file, err)
	}
	return s
}

func demoSet(t testing.TB) *Set {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(specDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no demo specs in %s: %v", specDir, err)
	}
	var specs []*Spec
	for _, f := range files {
		specs = append(specs, mustCompile(t, f))
	}
	set, err := NewSet(specs...)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// TestMapGolden maps every fixture message with the demo specs and compares
// the facts with golden JSON.
func TestMapGolden(t *testing.T) {
	set := demoSet(t)
	cases := []struct{ name, message, spec string }{
		{"xmeld-0201", xmeldDir + "/01-rueckmeldung-anmeldung-0201.xml", "xmeld-0201@1"},
		{"xmeld-0203", xmeldDir + "/02-rueckmeldung-auswertung-0203.xml", "xmeld-0203@1"},
		{"xmeld-0090", xmeldDir + "/03-fortschreibung-anschrift-0090.xml", "xmeld-0090@1"},
		{"xmeld-0090-ruecknahme", xmeldDir + "/04-fortschreibung-anschrift-0090-ruecknahme.xml", "xmeld-0090@1"},
		{"xmeld-0040", xmeldDir + "/05-fortschreibung-tod-0040.xml", "xmeld-0040@1"},
		{"xmeld-0075", xmeldDir + "/06-fortschreibung-stornoperson-0075.xml", "xmeld-0075@1"},
		{"xmeld-0201-umzugsverband", xmeldDir + "/07-rueckmeldung-anmeldung-0201-umzugsverband.xml", "xmeld-0201@1"},
		{"xgewerbeanzeige-2.0-anmeldung", gewerbeDir + "/xgwa2.0-valid.xml", "xgewerbeanzeige@2"},
		{"xgewerbeanzeige-2.1-abmeldung", gewerbeDir + "/xgwa2.1-valid.xml", "xgewerbeanzeige@2"},
		{"xgewerbeanzeige-2.2-anmeldung", gewerbeDir + "/xgwa2.2-valid.xml", "xgewerbeanzeige@2"},
		{"xgewerbeanzeige-2.2-ummeldung", testdataDir + "/xgwa2.2-ummeldung.xml", "xgewerbeanzeige@2"},
		{"xgewerbeanzeige-2.2-korrektur", testdataDir + "/xgwa2.2-korrektur.xml", "xgewerbeanzeige@2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data, err := os.ReadFile(c.message)
			if err != nil {
				t.Fatal(err)
			}
			spec, facts, err := set.MapXML(data)
			if err != nil {
				t.Fatal(err)
			}
			if spec.Source() != c.spec {
				t.Errorf("mapped by %s, want %s", spec.Source(), c.spec)
			}
			for _, f := range facts {
				if f.Source != c.spec || f.EventID == "" || f.SubjectKey == "" || len(f.Date) != 10 {
					t.Errorf("incomplete fact %+v", f)
				}
			}
			out, err := json.MarshalIndent(facts, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join(testdataDir, c.name+".golden"), append(out, '\n'))
			// Deterministic: mapping again gives the same facts.
			_, again, err := set.MapXML(data)
			if err != nil {
				t.Fatal(err)
			}
			if out2, _ := json.MarshalIndent(again, "", "  "); string(out2) != string(out) {
				t.Errorf("a second mapping differs:\n%s", out2)
			}
		})
	}
}

// TestRetraction checks that the Rücknahme (Anlass 32) retracts exactly the
// event id of the address change it takes back.
func TestRetraction(t *testing.T) {
	set := demoSet(t)
	mapFile := func(name string) []string {
		data, err := os.ReadFile(filepath.Join(xmeldDir, name))
		if err != nil {
			t.Fatal(err)
		}
		_, facts, err := set.MapXML(data)
		if err != nil || len(facts) != 1 {
			t.Fatalf("%s: %d facts, %v", name, len(facts), err)
		}
		return append([]string{facts[0].EventID}, facts[0].Retracts...)
	}
	change := mapFile("03-fortschreibung-anschrift-0090.xml")
	back := mapFile("04-fortschreibung-anschrift-0090-ruecknahme.xml")
	if len(back) != 2 || back[1] != change[0] {
		t.Errorf("the Rücknahme retracts %q, want the change's event %q", back[1:], change[0])
	}
	if back[0] == change[0] {
		t.Errorf("the Rücknahme has the change's own event id %q", back[0])
	}
}

func TestNoSpec(t *testing.T) {
	set := demoSet(t)
	_, _, err := set.MapXML([]byte(`<a xmlns="urn:x"/>`))
	if err == nil || !strings.Contains(err.Error(), "no mapping spec") {
		t.Fatalf("got %v, want ErrNoSpec", err)
	}
}

// TestInvalidFixture maps the schema-invalid death message (no tod): the
// error names the subject and the missing date.
func TestInvalidFixture(t *testing.T) {
	set := demoSet(t)
	data, err := os.ReadFile(filepath.Join(xmeldDir, "08-invalid-fortschreibung-tod-0040-ohne-tod.xml"))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = set.MapXML(data)
	var me *Error
	if !errors.As(err, &me) || me.Attribute != "date" || me.Subject != 1 || !strings.Contains(err.Error(), "the event has no date (../x:tod/x:sterbetag)") {
		t.Fatalf("got %v", err)
	}
}

// TestConcurrentMap maps the fixtures from several goroutines at once (run
// with -race): every result equals the sequential one.
func TestConcurrentMap(t *testing.T) {
	set := demoSet(t)
	files, _ := filepath.Glob(filepath.Join(xmeldDir, "0[1-7]-*.xml"))
	want := map[string]string{}
	docs := map[string][]byte{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_, facts, err := set.MapXML(data)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := json.Marshal(facts)
		want[f], docs[f] = string(out), data
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				for f, data := range docs {
					_, facts, err := set.MapXML(data)
					out, _ := json.Marshal(facts)
					if err != nil || string(out) != want[f] {
						t.Errorf("%s: concurrent mapping differs (%v)", f, err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}
