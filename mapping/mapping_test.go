package mapping

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/parzelle/parzelle/golden"
	"github.com/parzelle/parzelle/register"
)

const (
	specDir  = "../fixtures/mappings"
	xmeldDir = "../fixtures/messages/xmeld"
	// xpersonenstandDir holds the XPersonenstand fixtures.
	xpersonenstandDir = "../fixtures/messages/xpersonenstand"
	gewerbeDir        = "../../shared/specs/xoev/xgewerbeanzeige/samples"
	testdataDir       = "testdata"
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

// demoSet compiles the demo specs but those named; the specs of the two
// perspectives on 0201 (xmeld-zuzug and xmeld-leser) cannot share a set.
func demoSet(t testing.TB, without ...string) *Set {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(specDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no demo specs in %s: %v", specDir, err)
	}
	if len(without) == 0 {
		without = []string{"xmeld-leser.yaml"}
	}
	var specs []*Spec
	for _, f := range files {
		if !slices.Contains(without, filepath.Base(f)) {
			specs = append(specs, mustCompile(t, f))
		}
	}
	set, err := NewSet(specs...)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// goldenCase is a message mapped with a demo set, its spec and golden file.
type goldenCase struct {
	name, message, spec string
	// reader maps with the set of a Meldebehörde that reads the message
	// about its own residents (xmeld-leser instead of xmeld-zuzug).
	reader bool
}

func xmeld(name, file, spec string) goldenCase {
	return goldenCase{name, xmeldDir + "/" + file, spec, false}
}

func xps(name, file, spec string) goldenCase {
	return goldenCase{name, xpersonenstandDir + "/" + file, spec, false}
}

var goldenCases = []goldenCase{
	xmeld("xmeld-0201", "01-rueckmeldung-anmeldung-0201.xml", "xmeld-zuzug@1"),
	xmeld("xmeld-0203", "02-rueckmeldung-auswertung-0203.xml", "xmeld-auswertung@1"),
	xmeld("xmeld-0090", "03-fortschreibung-anschrift-0090.xml", "xmeld-anschrift@2"),
	xmeld("xmeld-0090-ruecknahme", "04-fortschreibung-anschrift-0090-ruecknahme.xml", "xmeld-anschrift@2"),
	xmeld("xmeld-0040", "05-fortschreibung-tod-0040.xml", "xmeld-tod@2"),
	xmeld("xmeld-0075", "06-fortschreibung-stornoperson-0075.xml", "xmeld-storno@2"),
	xmeld("xmeld-0201-umzugsverband", "07-rueckmeldung-anmeldung-0201-umzugsverband.xml", "xmeld-zuzug@1"),
	xmeld("xmeld-0203-familie", "09-rueckmeldung-auswertung-0203-familie.xml", "xmeld-auswertung@1"),
	xmeld("xmeld-0006", "10-fortschreibung-dokument-0006.xml", "xmeld-dokument@1"),
	xmeld("xmeld-0093", "11-fortschreibung-auskunftssperre-0093.xml", "xmeld-sperren@1"),
	xmeld("xmeld-0091", "12-fortschreibung-name-0091.xml", "xmeld-name@1"),
	xmeld("xmeld-0067", "13-fortschreibung-staatsangehoerigkeit-0067.xml", "xmeld-staatsangehoerigkeit@1"),
	xmeld("xmeld-0099", "14-fortschreibung-kind-0099.xml", "xmeld-familie@1"),
	xmeld("xmeld-0095", "15-fortschreibung-gesetzlichervertreter-0095.xml", "xmeld-familie@1"),
	xmeld("xmeld-0066", "16-fortschreibung-religion-0066.xml", "xmeld-berichtigung@1"),
	xmeld("xmeld-0088", "17-fortschreibung-wohnungsbild-0088.xml", "xmeld-anschrift@2"),
	xmeld("xmeld-0089", "18-fortschreibung-wohnungsbild-0089.xml", "xmeld-anschrift@2"),
	xmeld("xmeld-0097", "19-fortschreibung-partner-0097.xml", "xmeld-familie@1"),
	xmeld("xmeld-0070", "20-fortschreibung-staatsangehoerigkeit-0070.xml", "xmeld-staatsangehoerigkeit@1"),
	xmeld("xmeld-0064", "21-fortschreibung-dokument-0064.xml", "xmeld-dokument@1"),
	xmeld("xmeld-0006-kinderreisepass", "22-fortschreibung-dokument-0006-kinderreisepass.xml", "xmeld-dokument@1"),
	xmeld("xmeld-0063", "23-fortschreibung-dokument-0063.xml", "xmeld-dokument@1"),
	xmeld("xmeld-0065", "24-fortschreibung-dokument-0065.xml", "xmeld-dokument@1"),
	xmeld("xmeld-0094", "25-fortschreibung-auskunftssperre-0094.xml", "xmeld-sperren@1"),
	xmeld("xmeld-0074", "26-fortschreibung-todberichtigung-0074.xml", "xmeld-tod@2"),
	xmeld("xmeld-0201-wagner-kassel", "27-rueckmeldung-anmeldung-0201-wagner-kassel.xml", "xmeld-zuzug@1"),
	xmeld("xmeld-0201-wagner-rostock", "28-rueckmeldung-anmeldung-0201-wagner-rostock.xml", "xmeld-zuzug@1"),
	xmeld("xmeld-0014", "29-fortschreibung-geburt-0014.xml", "xmeld-berichtigung@1"),
	xmeld("xmeld-0090-sperrvermerk", "30-fortschreibung-anschrift-0090-wagner.xml", "xmeld-anschrift@2"),
	xmeld("xmeld-0003", "31-fortschreibung-geburt-0003.xml", "xmeld-berichtigung@1"),
	xmeld("xmeld-0001", "32-fortschreibung-geschlecht-0001.xml", "xmeld-berichtigung@1"),
	xmeld("xmeld-0002", "33-fortschreibung-geschlecht-0002.xml", "xmeld-berichtigung@1"),
	xmeld("xmeld-0079", "34-fortschreibung-staatsangehoerigkeit-0079.xml", "xmeld-staatsangehoerigkeit@1"),
	xmeld("xmeld-0078", "35-fortschreibung-staatsangehoerigkeit-0078.xml", "xmeld-staatsangehoerigkeit@1"),
	xmeld("xmeld-0068", "36-fortschreibung-staatsangehoerigkeit-0068.xml", "xmeld-staatsangehoerigkeit@1"),
	xmeld("xmeld-0081", "37-fortschreibung-anschrift-0081.xml", "xmeld-anschrift@2"),
	xmeld("xmeld-0202", "38-rueckmeldung-anmeldungausland-0202.xml", "xmeld-zuzug@1"),
	xmeld("xmeld-0206", "39-rueckmeldung-statuswechsel-0206.xml", "xmeld-zuzug@1"),
	xmeld("xmeld-0103", "40-fortschreibung-waffen-0103.xml", "xmeld-waffen@1"),
	xmeld("xmeld-0104", "41-fortschreibung-waffen-0104.xml", "xmeld-waffen@1"),
	xmeld("xmeld-0092", "42-fortschreibung-name-0092.xml", "xmeld-name@1"),
	xmeld("xmeld-0100", "43-fortschreibung-kind-0100.xml", "xmeld-familie@1"),
	xmeld("xmeld-0096", "44-fortschreibung-gesetzlichervertreter-0096.xml", "xmeld-familie@1"),
	xmeld("xmeld-0098", "45-fortschreibung-partner-0098.xml", "xmeld-familie@1"),
	xps("xpersonenstand-geburt-031010", "01-geburt-031010.xml", "xpersonenstand-geburt@1"),
	xps("xpersonenstand-geburt-031011-vaterschaft", "02-geburt-031011-vaterschaft.xml", "xpersonenstand-geburt@1"),
	xps("xpersonenstand-geburt-031012-nichtvaterschaft", "03-geburt-031012-nichtvaterschaft.xml", "xpersonenstand-geburt@1"),
	xps("xpersonenstand-geburt-031020-annahme", "04-geburt-031020-annahme.xml", "xpersonenstand-geburt@1"),
	xps("xpersonenstand-geburt-031030-geschlecht", "05-geburt-031030-geschlecht.xml", "xpersonenstand-geburt@1"),
	xps("xpersonenstand-geburt-031040-namensaenderung", "06-geburt-031040-namensaenderung.xml", "xpersonenstand-geburt@1"),
	xps("xpersonenstand-geburt-031041-volljaehrigenadoption", "07-geburt-031041-volljaehrigenadoption.xml", "xpersonenstand-geburt@1"),
	xps("xpersonenstand-geburt-031050-staatsangehoerigkeit", "08-geburt-031050-staatsangehoerigkeit.xml", "xpersonenstand-geburt@1"),
	xps("xpersonenstand-geburt-031100-berichtigung", "09-geburt-031100-berichtigung.xml", "xpersonenstand-geburt@1"),
	xps("xpersonenstand-ehe-032010-eheschliessung", "10-ehe-032010-eheschliessung.xml", "xpersonenstand-ehe@1"),
	xps("xpersonenstand-ehe-032020-namenserklaerung", "11-ehe-032020-namenserklaerung.xml", "xpersonenstand-ehe@1"),
	xps("xpersonenstand-ehe-032030-aufloesung", "12-ehe-032030-aufloesung.xml", "xpersonenstand-ehe@1"),
	xps("xpersonenstand-lp-033010-begruendung", "13-lp-033010-begruendung.xml", "xpersonenstand-lebenspartnerschaft@1"),
	xps("xpersonenstand-lp-033020-namenserklaerung", "14-lp-033020-namenserklaerung.xml", "xpersonenstand-lebenspartnerschaft@1"),
	xps("xpersonenstand-lp-033030-aufhebung", "15-lp-033030-aufhebung.xml", "xpersonenstand-lebenspartnerschaft@1"),
	xps("xpersonenstand-sterbefall-035010", "16-sterbefall-035010.xml", "xpersonenstand-sterbefall@1"),
	xps("xpersonenstand-sterbefall-035020-todeserklaerung", "17-sterbefall-035020-todeserklaerung.xml", "xpersonenstand-sterbefall@1"),
	xps("xpersonenstand-sterbefall-034100-berichtigung", "18-sterbefall-034100-berichtigung.xml", "xpersonenstand-sterbefall@1"),
	{"leser-0085", xmeldDir + "/46-fortschreibung-beigeschriebenerpartner-0085.xml", "xmeld-leser@1", true},
	{"leser-0221", xmeldDir + "/47-rueckmeldung-anmeldungauswaertigereglp-0221.xml", "xmeld-leser@1", true},
	{"leser-0201-wegzug", xmeldDir + "/01-rueckmeldung-anmeldung-0201.xml", "xmeld-leser@1", true},
	{"leser-0201-umzugsverband", xmeldDir + "/07-rueckmeldung-anmeldung-0201-umzugsverband.xml", "xmeld-leser@1", true},
	{"leser-0206", xmeldDir + "/39-rueckmeldung-statuswechsel-0206.xml", "xmeld-leser@1", true},
	{"xgewerbeanzeige-2.0-anmeldung", gewerbeDir + "/xgwa2.0-valid.xml", "xgewerbeanzeige@2", false},
	{"xgewerbeanzeige-2.1-abmeldung", gewerbeDir + "/xgwa2.1-valid.xml", "xgewerbeanzeige@2", false},
	{"xgewerbeanzeige-2.2-anmeldung", gewerbeDir + "/xgwa2.2-valid.xml", "xgewerbeanzeige@2", false},
	{"xgewerbeanzeige-2.2-ummeldung", testdataDir + "/xgwa2.2-ummeldung.xml", "xgewerbeanzeige@2", false},
	{"xgewerbeanzeige-2.2-korrektur", testdataDir + "/xgwa2.2-korrektur.xml", "xgewerbeanzeige@2", false},
	{"xgewerbeanzeige-2.2-abmeldung", testdataDir + "/xgwa2.2-abmeldung.xml", "xgewerbeanzeige@2", false},
}

// TestMapGolden maps every fixture message with the demo specs and compares
// the facts with golden JSON.
func TestMapGolden(t *testing.T) {
	sets := map[bool]*Set{false: demoSet(t), true: demoSet(t, "xmeld-zuzug.yaml")}
	for _, c := range goldenCases {
		t.Run(c.name, func(t *testing.T) {
			data, err := os.ReadFile(c.message)
			if err != nil {
				t.Fatal(err)
			}
			set := sets[c.reader]
			spec, facts, err := set.MapXML(data)
			if err != nil {
				t.Fatal(err)
			}
			if spec.Source() != c.spec {
				t.Errorf("mapped by %s, want %s", spec.Source(), c.spec)
			}
			if len(facts) == 0 {
				t.Error("no facts")
			}
			for _, f := range facts {
				if f.Source != c.spec || f.EventID == "" || f.SubjectKey == "" || len(f.Date) != 10 {
					t.Errorf("incomplete fact %+v", f)
				}
				if spec.RegisterType == register.TypePerson && f.Identify == nil {
					t.Errorf("a person's fact without an identity: %+v", f)
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

// TestGoldenCoverage: every valid XMeld fixture has a golden test, and
// every message type a demo spec maps (each variant) is mapped by one.
func TestGoldenCoverage(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(xmeldDir, "*.xml"))
	if err != nil {
		t.Fatal(err)
	}
	more, _ := filepath.Glob(filepath.Join(xpersonenstandDir, "*.xml"))
	for _, f := range append(files, more...) {
		if strings.Contains(f, "invalid") {
			continue
		}
		if !slices.ContainsFunc(goldenCases, func(c goldenCase) bool { return c.message == f }) {
			t.Errorf("fixture %s has no golden test", filepath.Base(f))
		}
	}
	specFiles, _ := filepath.Glob(filepath.Join(specDir, "*.yaml"))
	for _, f := range specFiles {
		spec := mustCompile(t, f)
		for i, root := range spec.Roots {
			covered := false
			for _, c := range goldenCases {
				data, err := os.ReadFile(c.message)
				if err != nil {
					t.Fatal(err)
				}
				doc, err := ParseMessage(data)
				if err == nil && c.spec == spec.Source() && doc.Name == root {
					covered = true
					break
				}
			}
			if !covered {
				t.Errorf("%s: variant %q (%s) has no golden test", spec.Source(), spec.Variants()[i], root.Local)
			}
		}
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

// TestInvalidFixture maps the schema-invalid death message (no tod): it
// states nothing the spec maps, and says so, instead of applying nothing.
func TestInvalidFixture(t *testing.T) {
	set := demoSet(t)
	data, err := os.ReadFile(filepath.Join(xmeldDir, "08-invalid-fortschreibung-tod-0040-ohne-tod.xml"))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = set.MapXML(data)
	var me *Error
	if !errors.As(err, &me) || me.Source != "xmeld-tod@2" || !strings.Contains(err.Error(), "the message states nothing the spec maps") {
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
