package register_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/parzelle/parzelle/register"
)

// statement is a message's statement about a person: who (the identity) and
// what (attributes from the event's day, names from always).
type statement struct {
	event, date string
	id          register.Identity
	set         register.Attributes
	// always are attributes set from the record's beginning (corrections).
	always register.Attributes
}

func (p statement) fact() register.Fact {
	key := "person/" + p.id.Familienname + "/" + p.id.Vornamen + "/" + p.id.Geburtsdatum
	if p.id.Familienname == "" {
		key = "person/idnr/" + p.id.IDNr
	}
	id := p.id
	f := register.Fact{SubjectKey: key, EventID: p.event + "/" + key, MessageID: "msg-" + p.event, Date: p.date, Source: "identity-test@1", Identify: &id}
	for _, a := range []string{"familienname", "vornamen", "geburtsdatum", "geburtsort", "idnr"} {
		if v := map[string]string{"familienname": id.Familienname, "vornamen": id.Vornamen, "geburtsdatum": id.Geburtsdatum,
			"geburtsort": id.Geburtsort, "idnr": id.IDNr}[a]; v != "" {
			f.Set = append(f.Set, register.Assignment{Attribute: a, Value: v, Op: register.OpDefault})
		}
	}
	for a, v := range p.set {
		f.Set = append(f.Set, register.Assignment{Attribute: a, Value: v, From: p.date})
	}
	for a, v := range p.always {
		f.Set = slices.DeleteFunc(f.Set, func(as register.Assignment) bool { return as.Attribute == a })
		f.Set = append(f.Set, register.Assignment{Attribute: a, Value: v})
	}
	slices.SortFunc(f.Set, func(a, b register.Assignment) int { return strings.Compare(a.Attribute+a.From, b.Attribute+b.From) })
	return f
}

func anna(geburtsort string) register.Identity {
	return register.Identity{Familienname: "Krüger", Vornamen: "Anna Sophie", Geburtsdatum: "1990-05-17", Geburtsort: geburtsort}
}

func home(street, plz string) map[string]any {
	return map[string]any{"strasse": street, "hausnummer": "7", "postleitzahl": plz, "wohnort": "Düsseldorf"}
}

// TestIdentityRules applies the facts of each case one call after the other
// to a fresh register and checks how many records there are, which record
// each fact found, and the refusal of the last fact where one is expected.
func TestIdentityRules(t *testing.T) {
	h := startHarness(t)
	x, y := idnr("4715830924"), idnr("8317264059")
	renamed := anna("Köln")
	renamed.Familienname = "Krüger-Lindqvist"
	cases := []struct {
		name  string
		facts []statement
		// same[i] is the index of the earlier fact whose record fact i
		// found, or -1 for a new record; refused the kind of the last
		// fact's refusal (0: applied).
		same    []int
		records int
		refused register.ErrorKind
		// attrs are attributes the first fact's record has today.
		attrs register.Attributes
	}{
		{"the same Basisdaten are the same person", []statement{
			{"a1", "2024-01-10", anna("Köln"), nil, nil},
			{"a2", "2024-03-01", anna(""), register.Attributes{"familienstand": "ledig"}, nil},
		}, []int{-1, 0}, 1, 0, nil},
		{"a name change keeps the person: later messages name her by the new name", []statement{
			{"b1", "2024-01-10", anna("Köln"), nil, nil},
			{"b2", "2024-06-01", anna(""), register.Attributes{"familienname": "Krüger-Lindqvist"}, nil},
			{"b3", "2024-09-01", renamed, register.Attributes{"familienstand": "verheiratet"}, nil},
			// A late message by the old name still finds her.
			{"b4", "2024-02-01", anna("Köln"), register.Attributes{"religionszugehoerigkeit": "ev"}, nil},
			// One dated after the change that still names her by the old
			// name finds her too (and restates it only by default).
			{"b5", "2024-10-01", anna("Köln"), register.Attributes{"doktorgrad": "Dr."}, nil},
		}, []int{-1, 0, 0, 0, 0}, 1, 0, register.Attributes{"familienname": "Krüger-Lindqvist", "doktorgrad": "Dr.", "religionszugehoerigkeit": "ev"}},
		{"namesakes born elsewhere are two people", []statement{
			{"c1", "2024-01-10", anna("Köln"), nil, nil},
			{"c2", "2024-01-12", anna("Zagreb"), nil, nil},
			{"c3", "2024-02-01", anna("Zagreb"), register.Attributes{"familienstand": "ledig"}, nil},
		}, []int{-1, -1, 1}, 2, 0, nil},
		{"namesakes without a birth place in the message are ambiguous", []statement{
			{"d1", "2024-01-10", anna("Köln"), nil, nil},
			{"d2", "2024-01-12", anna("Zagreb"), nil, nil},
			{"d3", "2024-02-01", anna(""), register.Attributes{"familienstand": "ledig"}, nil},
		}, []int{-1, -1, -2}, 2, register.KindAmbiguous, nil},
		{"an address tells namesakes apart", []statement{
			{"e1", "2024-01-10", anna("Köln"), register.Attributes{"hauptwohnung": home("Ackerstraße", "40233")}, nil},
			{"e2", "2024-01-12", anna("Zagreb"), register.Attributes{"hauptwohnung": home("Bilker Allee", "40219")}, nil},
			{"e3", "2024-02-01", withAddress(anna(""), "40219", "Bilker Allee"), register.Attributes{"familienstand": "ledig"}, nil},
		}, []int{-1, -1, 1}, 2, 0, nil},
		{"a corrected birth place still finds her by the old one", []statement{
			{"r1", "2024-01-10", anna("Zagreb"), nil, nil},
			{"r2", "2024-03-01", anna("Zagreb"), nil, register.Attributes{"geburtsort": "Split"}},
			{"r3", "2024-02-01", anna("Zagreb"), register.Attributes{"familienstand": "ledig"}, nil},
			{"r4", "2024-04-01", anna("Split"), register.Attributes{"religionszugehoerigkeit": "rk"}, nil},
		}, []int{-1, 0, 0, 0}, 1, 0, nil},
		{"an IDNr joins the person its Basisdaten find", []statement{
			{"f1", "2024-01-10", anna("Köln"), nil, nil},
			{"f2", "2024-01-20", withIDNr(anna(""), x), nil, nil},
			{"f3", "2024-03-01", register.Identity{IDNr: x}, register.Attributes{"familienstand": "ledig"}, nil},
		}, []int{-1, 0, 0}, 1, 0, nil},
		{"another IDNr is another person, whatever the name", []statement{
			{"g1", "2024-01-10", withIDNr(anna("Köln"), x), nil, nil},
			{"g2", "2024-01-12", withIDNr(anna("Köln"), y), nil, nil},
			{"g3", "2024-02-01", withIDNr(anna(""), y), register.Attributes{"familienstand": "ledig"}, nil},
		}, []int{-1, -1, 1}, 2, 0, nil},
		{"an IDNr finds the person under any name", []statement{
			{"h1", "2024-01-10", withIDNr(anna("Köln"), x), nil, nil},
			{"h2", "2024-06-01", withIDNr(register.Identity{Familienname: "Lindqvist", Vornamen: "Anna", Geburtsdatum: "1990-05-17"}, x), nil, nil},
		}, []int{-1, 0}, 1, 0, nil},
		{"an unknown IDNr without Basisdaten cannot make a person", []statement{
			{"i1", "2024-01-10", register.Identity{IDNr: x}, register.Attributes{"familienstand": "ledig"}, nil},
		}, []int{-2}, 0, register.KindAmbiguous, nil},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			reg := fmt.Sprintf("case%d", i)
			h.addRegister(t, reg)
			var found []string
			for n, p := range c.facts {
				res, err := h.store.Apply(t.Context(), clerk, "duesseldorf", reg, []register.Fact{p.fact()})
				if n == len(c.facts)-1 && c.refused != 0 {
					if register.KindOf(err) != c.refused {
						t.Fatalf("fact %s: %v, want a refusal of kind %d", p.event, err, c.refused)
					}
					found = append(found, "")
					continue
				}
				if err != nil {
					t.Fatalf("fact %s: %v", p.event, err)
				}
				found = append(found, res[0].RecordID)
			}
			for n, want := range c.same {
				switch {
				case want == -2:
				case want == -1 && slices.Contains(found[:n], found[n]):
					t.Errorf("fact %s found an earlier fact's record, want a new one", c.facts[n].event)
				case want >= 0 && found[n] != found[want]:
					t.Errorf("fact %s found record %s, want %s (fact %s's)", c.facts[n].event, found[n], found[want], c.facts[want].event)
				}
			}
			if n := h.liveRecords(t, reg); n != c.records {
				t.Errorf("%d records, want %d", n, c.records)
			}
			if c.attrs != nil {
				rec, err := h.store.Get(t.Context(), clerk, "duesseldorf", reg, found[0], register.Temporal{})
				if err != nil {
					t.Fatal(err)
				}
				for a, v := range c.attrs {
					if rec.Attributes[a] != v {
						t.Errorf("%s is %v, want %v", a, rec.Attributes[a], v)
					}
				}
			}
		})
	}
}

func withIDNr(id register.Identity, n string) register.Identity { id.IDNr = n; return id }

func withAddress(id register.Identity, plz, street string) register.Identity {
	id.Anschrift = &register.IdentityAddress{Postleitzahl: plz, Strasse: street, Hausnummer: "7"}
	return id
}

// addRegister adds a person register to Düsseldorf's tenant file and
// reloads it, so that each case has a register of its own.
func (h *harness) addRegister(t *testing.T, name string) {
	t.Helper()
	h.editTenant(t, "duesseldorf", func(s string) string {
		return strings.Replace(s, "registers:\n", "registers:\n  - {name: "+name+", type: person}\n", 1)
	})
}

func (h *harness) liveRecords(t *testing.T, reg string) int {
	t.Helper()
	var n int
	if err := h.pool.QueryRow(t.Context(), `SELECT count(*) FROM register_record WHERE tenant_id = 'duesseldorf' AND register = $1 AND deleted_at IS NULL`, reg).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestIdentityOneCall: facts of one call about one person, one by the
// Basisdaten and one adding her IDNr, make one record; namesakes with
// different IDNrs in one call make two.
func TestIdentityOneCall(t *testing.T) {
	h := startHarness(t)
	x, y := idnr("4715830924"), idnr("8317264059")
	res, err := h.store.Apply(t.Context(), clerk, "duesseldorf", "melderegister", []register.Fact{
		statement{"j1", "2024-01-10", anna("Köln"), nil, nil}.fact(),
		statement{"j2", "2024-01-20", withIDNr(anna(""), x), nil, nil}.fact(),
	})
	if err != nil || len(res) != 1 {
		t.Fatalf("one person: %+v %v", res, err)
	}
	rec, err := h.store.Get(t.Context(), clerk, "duesseldorf", "melderegister", res[0].RecordID, register.Temporal{})
	if err != nil || rec.Attributes["idnr"] != x || rec.Attributes["geburtsort"] != "Köln" {
		t.Errorf("her record: %v %v", rec.Attributes, err)
	}
	res, err = h.store.Apply(t.Context(), clerk, "duesseldorf", "melderegister", []register.Fact{
		statement{"k1", "2024-01-10", withIDNr(register.Identity{Familienname: "Lind", Vornamen: "Ole", Geburtsdatum: "1977"}, y), nil, nil}.fact(),
		statement{"k2", "2024-01-10", withIDNr(register.Identity{Familienname: "Lind", Vornamen: "Ole", Geburtsdatum: "1977"}, idnr("1122334455")), nil, nil}.fact(),
	})
	if err != nil || len(res) != 2 || res[0].RecordID == res[1].RecordID {
		t.Fatalf("two namesakes: %+v %v", res, err)
	}
	// Both exist under subject keys of their own.
	for _, r := range res {
		if _, err := h.store.Get(t.Context(), clerk, "duesseldorf", "melderegister", r.RecordID, register.Temporal{}); err != nil {
			t.Error(err)
		}
	}
}

// TestIdentityMerge: a message whose IDNr finds one record and whose full
// Basisdaten find another proves they are one person: merged into the
// older, audited, reads of the other name it, and undoing the merge gives
// both records back as they were.
func TestIdentityMerge(t *testing.T) {
	h := startHarness(t)
	ctx := t.Context()
	x := idnr("4715830924")
	apply := func(ps ...statement) []register.Applied {
		t.Helper()
		var facts []register.Fact
		for _, p := range ps {
			facts = append(facts, p.fact())
		}
		res, err := h.store.Apply(ctx, clerk, "duesseldorf", "melderegister", facts)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	// A: known by her birth name, born in Köln, no IDNr.
	a := apply(statement{"m1", "2023-04-01", anna("Köln"), register.Attributes{"hauptwohnung": home("Ackerstraße", "40233")}, nil})[0].RecordID
	before := history(t, h, a)
	// B: known by her married name and IDNr (the move-in under the new name
	// came before the name change reached this register).
	married := withIDNr(register.Identity{Familienname: "Lindqvist", Vornamen: "Anna Sophie", Geburtsdatum: "1990-05-17", Geburtsort: "Köln"}, x)
	b := apply(statement{"m2", "2024-02-01", married, register.Attributes{"familienstand": "verheiratet"}, nil})[0].RecordID
	if a == b {
		t.Fatal("the second message found the first record")
	}
	// The proof: her IDNr with her birth name and birth place.
	res := apply(statement{"m3", "2024-02-15", withIDNr(anna("Köln"), x), register.Attributes{"religionszugehoerigkeit": "rk"}, nil})
	if len(res) != 1 || res[0].RecordID != a {
		t.Fatalf("the proving message went to %+v, want the older record %s", res, a)
	}
	rec, err := h.store.Get(ctx, clerk, "duesseldorf", "melderegister", a, register.Temporal{})
	if err != nil || rec.Attributes["idnr"] != x || rec.Attributes["familienstand"] != "verheiratet" || rec.Attributes["religionszugehoerigkeit"] != "rk" {
		t.Fatalf("the merged record: %v %v", rec.Attributes, err)
	}
	_, err = h.store.Get(ctx, clerk, "duesseldorf", "melderegister", b, register.Temporal{})
	var gone *register.Error
	if !errors.As(err, &gone) || gone.Kind != register.KindGone || gone.MergedInto != a {
		t.Errorf("reading the merged record: %v, want gone, merged into %s", err, a)
	}
	found, err := h.store.Search(ctx, clerk, "duesseldorf", "melderegister", register.Query{IDNr: x})
	if err != nil || len(found) != 1 || found[0].ID != a {
		t.Errorf("search by IDNr after the merge: %+v %v", found, err)
	}
	merges, err := h.store.Merges(ctx, clerk, "duesseldorf", "melderegister", a)
	if err != nil || len(merges) != 1 || merges[0].Survivor != a || merges[0].Merged != b || merges[0].Facts != 1 || merges[0].MessageID != "msg-m3" {
		t.Fatalf("merges of %s: %+v %v", a, merges, err)
	}
	var audited int
	if err := h.pool.QueryRow(ctx, `SELECT count(*) FROM audit_entry WHERE tenant_id = 'duesseldorf' AND operation = 'merge' AND record_id = $1
		AND detail LIKE 'merged record ' || $2 || ' into ' || $1 || ': message msg-m3%'`, a, b).Scan(&audited); err != nil || audited != 1 {
		t.Errorf("%d audited merges (%v)", audited, err)
	}

	// Undone: B lives again with its own fact, A keeps the proving one.
	undone, err := h.store.Unmerge(ctx, clerk, "duesseldorf", "melderegister", merges[0].ID, "Namensgleichheit, nicht dieselbe Person")
	if err != nil || undone.UndoneAt == nil {
		t.Fatalf("unmerge: %+v %v", undone, err)
	}
	if _, err := h.store.Unmerge(ctx, clerk, "duesseldorf", "melderegister", merges[0].ID, "noch einmal"); register.KindOf(err) != register.KindConflict {
		t.Errorf("undoing the merge twice: %v", err)
	}
	recB, err := h.store.Get(ctx, clerk, "duesseldorf", "melderegister", b, register.Temporal{})
	if err != nil || recB.Attributes["familienname"] != "Lindqvist" || recB.Attributes["familienstand"] != "verheiratet" {
		t.Errorf("B after the undo: %v %v", recB.Attributes, err)
	}
	recA, err := h.store.Get(ctx, clerk, "duesseldorf", "melderegister", a, register.Temporal{})
	if err != nil || recA.Attributes["familienstand"] != nil || recA.Attributes["religionszugehoerigkeit"] != "rk" {
		t.Errorf("A after the undo: %v %v", recA.Attributes, err)
	}
	if strings.Contains(history(t, h, a), "verheiratet") || !strings.Contains(before, "Ackerstraße") {
		t.Errorf("A's history after the undo still has B's facts:\n%s", history(t, h, a))
	}
	report, err := register.VerifyAudit(ctx, h.pool, "duesseldorf")
	if err != nil || !report.OK() {
		t.Errorf("audit chain: %+v %v", report, err)
	}
}

// TestIdentityManualMerge: a clerk merges two records by hand; records
// kept through the API alone, and a merge without a reason, are refused.
func TestIdentityManualMerge(t *testing.T) {
	h := startHarness(t)
	ctx := t.Context()
	res1, err := h.store.Apply(ctx, clerk, "duesseldorf", "melderegister", []register.Fact{statement{"n1", "2023-01-01", anna("Köln"), nil, nil}.fact()})
	if err != nil {
		t.Fatal(err)
	}
	res2, err := h.store.Apply(ctx, clerk, "duesseldorf", "melderegister", []register.Fact{statement{"n2", "2023-02-01", anna("Zagreb"), nil, nil}.fact()})
	if err != nil {
		t.Fatal(err)
	}
	a, b := res1[0].RecordID, res2[0].RecordID
	manual := h.mustCreate(t, "duesseldorf", isolationPerson("manual-1", idnr("3141592653"), "Krüger"))
	for _, c := range []struct {
		name, survivor, duplicate, reason string
		kind                              register.ErrorKind
	}{
		{"no reason", a, b, " ", register.KindInvalid},
		{"itself", a, a, "Dublette", register.KindInvalid},
		{"an API record", a, manual.ID, "Dublette", register.KindInvalid},
		{"no such record", a, "0b7e2d4c-9a51-4f3e-8c6d-2a1b3c4d5e6f", "Dublette", register.KindNotFound},
	} {
		if _, err := h.store.MergeRecords(ctx, clerk, "duesseldorf", "melderegister", c.survivor, c.duplicate, c.reason); register.KindOf(err) != c.kind {
			t.Errorf("%s: %v, want kind %d", c.name, err, c.kind)
		}
	}
	m, err := h.store.MergeRecords(ctx, clerk, "duesseldorf", "melderegister", a, b, "Geburtsort in Zagreb war ein Erfassungsfehler")
	if err != nil || m.Survivor != a || m.Merged != b || m.Facts != 1 {
		t.Fatalf("merge: %+v %v", m, err)
	}
	if n := h.liveRecords(t, "melderegister"); n != 2 { // a and the API record
		t.Errorf("%d live records after the merge, want 2", n)
	}
	var detail string
	if err := h.pool.QueryRow(ctx, `SELECT detail FROM audit_entry WHERE tenant_id = 'duesseldorf' AND operation = 'write' AND record_id = $1 ORDER BY seq DESC LIMIT 1`, a).Scan(&detail); err != nil ||
		!strings.Contains(detail, "by hand: Geburtsort in Zagreb war ein Erfassungsfehler") {
		t.Errorf("audit detail %q (%v)", detail, err)
	}
}

// TestIdentityConcurrent: two writers that create the same new person at
// the same time make one record; the loser is refused as a conflict and
// finds her when it tries again.
func TestIdentityConcurrent(t *testing.T) {
	h := startHarness(t)
	for round := range 5 {
		id := anna("Köln")
		id.Vornamen = fmt.Sprintf("Anna %d", round)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for w := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				f := statement{fmt.Sprintf("p%d-%d", round, w), "2024-01-10", id, register.Attributes{"familienstand": []string{"ledig", "verheiratet"}[w]}, nil}.fact()
				for range 5 {
					_, errs[w] = h.store.Apply(t.Context(), clerk, "duesseldorf", "melderegister", []register.Fact{f})
					if register.KindOf(errs[w]) != register.KindConflict {
						return
					}
				}
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		found, err := h.store.Search(t.Context(), clerk, "duesseldorf", "melderegister", register.Query{Familienname: id.Familienname, Vornamen: id.Vornamen, Geburtsdatum: id.Geburtsdatum})
		if err != nil || len(found) != 1 {
			t.Fatalf("round %d: %d records of her (%v), want 1", round, len(found), err)
		}
	}
}

// TestAssignmentOperations: items added by separate events accumulate in a
// list attribute, a repeated item is kept once, a removal by key fields
// takes out the item that has them, and a default fills only a gap.
func TestAssignmentOperations(t *testing.T) {
	h := startHarness(t)
	child := func(name, born string) map[string]any {
		return map[string]any{"familienname": "Krüger", "vornamen": name, "geburtsdatum": born}
	}
	f := func(event, date, op string, v any) register.Fact {
		p := statement{event, date, anna("Köln"), nil, nil}.fact()
		p.Set = append(p.Set, register.Assignment{Attribute: "kinder", Value: v, From: date, Op: op})
		return p
	}
	res, err := h.store.Apply(t.Context(), clerk, "duesseldorf", "melderegister", []register.Fact{
		f("q1", "2020-03-01", register.OpAdd, child("Mia", "2020-03-01")),
		f("q2", "2022-07-09", register.OpAdd, child("Ben", "2022-07-09")),
		f("q3", "2022-07-10", register.OpAdd, child("Ben", "2022-07-09")),
		f("q4", "2023-01-01", register.OpRemove, map[string]any{"vornamen": "Mia"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	got := spans(mustHistory(t, h, res[0].RecordID), "kinder")
	want := "..2020-03-01:<nil> 2020-03-01..2022-07-09:[map[familienname:Krüger geburtsdatum:2020-03-01 vornamen:Mia]] " +
		"2022-07-09..2023-01-01:[map[familienname:Krüger geburtsdatum:2020-03-01 vornamen:Mia] map[familienname:Krüger geburtsdatum:2022-07-09 vornamen:Ben]] " +
		"2023-01-01..:[map[familienname:Krüger geburtsdatum:2022-07-09 vornamen:Ben]]"
	if got != want {
		t.Errorf("kinder over time:\n got %s\nwant %s", got, want)
	}
	// A default fills a gap and never undoes a value set.
	byDefault := f("q6", "2024-01-01", register.OpDefault, nil)
	byDefault.Set = append(byDefault.Set[:len(byDefault.Set)-1],
		register.Assignment{Attribute: "familienname", Value: "Alt", From: "2024-01-01", Op: register.OpDefault},
		register.Assignment{Attribute: "doktorgrad", Value: "Dr.", From: "2024-01-01", Op: register.OpDefault})
	if _, err := h.store.Apply(t.Context(), clerk, "duesseldorf", "melderegister", []register.Fact{byDefault}); err != nil {
		t.Fatal(err)
	}
	rec, err := h.store.Get(t.Context(), clerk, "duesseldorf", "melderegister", res[0].RecordID, register.Temporal{})
	if err != nil || rec.Attributes["familienname"] != "Krüger" || rec.Attributes["doktorgrad"] != "Dr." {
		t.Errorf("after defaults: %v %v", rec.Attributes, err)
	}
	bad := f("q5", "2023-02-01", register.OpAdd, "Lea")
	bad.Set[len(bad.Set)-1].Attribute = "familienname"
	if _, err := h.store.Apply(t.Context(), clerk, "duesseldorf", "melderegister", []register.Fact{bad}); register.KindOf(err) != register.KindInvalid {
		t.Errorf("adding to a text attribute: %v", err)
	}
}

func mustHistory(t *testing.T, h *harness, id string) []register.Version {
	t.Helper()
	vs, err := h.store.History(t.Context(), clerk, "duesseldorf", "melderegister", id, register.Temporal{})
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// TestWithdrawByReference: an event withdrawn by a later message that names
// the person by a new name (so its subject key differs) drops out of her
// record all the same: within a record, withdrawals match by reference.
func TestWithdrawByReference(t *testing.T) {
	h := startHarness(t)
	ctx := t.Context()
	death := statement{"w1", "2026-01-20", anna("Köln"), register.Attributes{"sterbedatum": "2026-01-20"}, nil}.fact()
	death.Ref = "tod/2026-01-20"
	rename := statement{"w2", "2025-06-01", anna("Köln"), register.Attributes{"familienname": "Lindqvist"}, nil}.fact()
	renamed := anna("Köln")
	renamed.Familienname = "Lindqvist"
	correction := statement{"w3", "2026-02-01", renamed, nil, nil}.fact()
	correction.Withdraws = []string{"tod/2026-01-20"}
	res, err := h.store.Apply(ctx, clerk, "duesseldorf", "melderegister", []register.Fact{death, rename})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.store.Apply(ctx, clerk, "duesseldorf", "melderegister", []register.Fact{correction}); err != nil {
		t.Fatal(err)
	}
	if got := spans(mustHistory(t, h, res[0].RecordID), "sterbedatum"); strings.Contains(got, "2026-01-20") {
		t.Errorf("the withdrawn death is still in the history: %s", got)
	}
}

// TestIdentityKnown: a fact about someone the message only mentions
// (known: only) is left out while the register does not keep them (refused
// as not found while the caller waits for them) and applied once it does;
// a fact that needs its person (known: required) is refused as not found
// until the person is there.
func TestIdentityKnown(t *testing.T) {
	h := startHarness(t)
	ctx := t.Context()
	mentioned := anna("Köln")
	mentioned.Known = register.KnownOnly
	res, err := h.store.Apply(ctx, clerk, "duesseldorf", "melderegister", []register.Fact{statement{"k1", "2024-05-01", mentioned, register.Attributes{"familienstand": "verheiratet"}, nil}.fact()})
	if err != nil || len(res) != 0 || h.liveRecords(t, "melderegister") != 0 {
		t.Fatalf("a mentioned stranger: %+v %v, %d records", res, err, h.liveRecords(t, "melderegister"))
	}
	wait := register.ApplyOptions{WaitForKnown: true}
	if _, err := h.store.ApplyWith(ctx, clerk, "duesseldorf", "melderegister", []register.Fact{statement{"k1", "2024-05-01", mentioned, register.Attributes{"familienstand": "verheiratet"}, nil}.fact()}, wait); register.KindOf(err) != register.KindNotFound {
		t.Fatalf("a mentioned stranger while waiting for them: %v, want not found", err)
	}
	needed := anna("Köln")
	needed.Known = register.KnownRequired
	death := statement{"k2", "2024-06-01", needed, register.Attributes{"sterbedatum": "2024-06-01"}, nil}.fact()
	if _, err := h.store.Apply(ctx, clerk, "duesseldorf", "melderegister", []register.Fact{death}); register.KindOf(err) != register.KindNotFound {
		t.Fatalf("a death of a person not registered: %v, want not found", err)
	}
	if _, err := h.store.Apply(ctx, clerk, "duesseldorf", "melderegister", []register.Fact{statement{"k3", "2024-01-01", anna("Köln"), nil, nil}.fact()}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []register.Fact{statement{"k1", "2024-05-01", mentioned, register.Attributes{"familienstand": "verheiratet"}, nil}.fact(), death} {
		if res, err := h.store.Apply(ctx, clerk, "duesseldorf", "melderegister", []register.Fact{f}); err != nil || len(res) != 1 || res[0].New != 1 {
			t.Errorf("once she is registered: %+v %v", res, err)
		}
	}
}

// TestIdentityStatedNames: a message that names Anna by her new name is
// applied before the name change itself, which names her by the old one:
// the change finds her by the name it gives her, in one call or in two.
func TestIdentityStatedNames(t *testing.T) {
	h := startHarness(t)
	renamed := anna("Köln")
	renamed.Familienname = "Krüger-Lindqvist"
	later := statement{"s1", "2024-09-01", renamed, register.Attributes{"familienstand": "verheiratet"}, nil}.fact()
	change := statement{"s2", "2024-06-01", anna("Köln"), register.Attributes{"familienname": "Krüger-Lindqvist"}, nil}.fact()
	for i, calls := range [][][]register.Fact{{{later}, {change}}, {{later, change}}} {
		reg := fmt.Sprintf("stated%d", i)
		h.addRegister(t, reg)
		for _, facts := range calls {
			if _, err := h.store.Apply(t.Context(), clerk, "duesseldorf", reg, facts); err != nil {
				t.Fatal(err)
			}
		}
		if n := h.liveRecords(t, reg); n != 1 {
			t.Errorf("%d calls: %d records of Anna, want 1", len(calls), n)
		}
	}
}
