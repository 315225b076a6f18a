package register_test

import (
	"encoding/json"
	"math/rand/v2"
	"testing"

	"github.com/parzelle/parzelle/register"
)

// moves are the facts of one person's life in the Melderegister: a move-in,
// a move within the city, a storno of a wrongly reported move, a marriage
// with a new name, all as a mapping spec would state them.
func moves(subject string) []register.Fact {
	addr := func(street, since string) map[string]any {
		return map[string]any{"strasse": street, "hausnummer": "1", "postleitzahl": "40210", "wohnort": "Düsseldorf", "seit": since}
	}
	fact := func(msg, date string, set ...register.Assignment) register.Fact {
		return register.Fact{SubjectKey: subject, EventID: msg + "/1/" + subject, MessageID: msg, Date: date, Source: "xmeld-test@1", Set: set}
	}
	always := func(attr string, v any) register.Assignment { return register.Assignment{Attribute: attr, Value: v} }
	from := func(attr string, v any, day string) register.Assignment {
		return register.Assignment{Attribute: attr, Value: v, From: day}
	}
	wrong := fact("m3", "2023-05-01", from("hauptwohnung", addr("Irrweg", "2023-05-01"), "2023-05-01"))
	storno := fact("m4", "2023-05-20")
	storno.Retracts = []string{wrong.EventID}
	return []register.Fact{
		fact("m1", "2020-02-01", always("familienname", "Brückner"), always("vornamen", "Lene"), always("geburtsdatum", "1990-07"),
			from("hauptwohnung", addr("Ahornweg", "2020-02-01"), "2020-02-01"), from("auskunftssperre", false, "2020-02-01")),
		fact("m2", "2022-08-15", from("hauptwohnung", addr("Birkenallee", "2022-08-15"), "2022-08-15")),
		wrong,
		storno,
		fact("m5", "2024-06-01", from("familienname", "Brückner-Cao", "2024-06-01")),
	}
}

// history renders a record's versions as known now, without transaction
// times.
func history(t *testing.T, h *harness, id string) string {
	t.Helper()
	vs, err := h.store.History(t.Context(), clerk, "duesseldorf", "melderegister", id, register.Temporal{})
	if err != nil {
		t.Fatal(err)
	}
	type span struct {
		From, To   string
		Attributes register.Attributes
		Sources    []string
	}
	var out []span
	for _, v := range vs {
		out = append(out, span{v.ValidFrom, v.ValidTo, v.Attributes, v.Sources})
	}
	b, _ := json.MarshalIndent(out, "", " ")
	return string(b)
}

// TestApplyOrderTolerant applies the same facts in order, shuffled, one by
// one and twice over, for different subjects: every record ends up with the
// same history, the storno withdraws the wrong move, and a repeated fact
// changes nothing.
func TestApplyOrderTolerant(t *testing.T) {
	h := startHarness(t)
	ctx := t.Context()
	apply := func(facts []register.Fact) []register.Applied {
		t.Helper()
		res, err := h.store.Apply(ctx, clerk, "duesseldorf", "melderegister", facts)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	inOrder := apply(moves("p-in-order"))
	want := history(t, h, inOrder[0].RecordID)

	shuffled := moves("p-shuffled")
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	res := apply(shuffled)

	oneByOne := moves("p-one-by-one")
	var id string
	for i := len(oneByOne) - 1; i >= 0; i-- { // newest first
		id = apply(oneByOne[i : i+1])[0].RecordID
	}
	twice := append(moves("p-twice"), moves("p-twice")...)
	res2 := apply(twice)

	for name, rid := range map[string]string{"shuffled": res[0].RecordID, "one by one, newest first": id, "twice in one call": res2[0].RecordID} {
		// Versions show no subject key, so different subjects compare.
		if got := history(t, h, rid); got != want {
			t.Errorf("%s: history differs from applying in order:\n%s\nwant\n%s", name, got, want)
		}
	}
	if res2[0].New != 5 {
		t.Errorf("twice in one call stored %d new facts, want 5", res2[0].New)
	}
	again := apply(moves("p-in-order"))
	if again[0].New != 0 || again[0].Revision != inOrder[0].Revision || again[0].RecordID != inOrder[0].RecordID {
		t.Errorf("re-delivered facts: %+v, want no change from %+v", again[0], inOrder[0])
	}

	rec, err := h.store.Get(ctx, clerk, "duesseldorf", "melderegister", inOrder[0].RecordID, register.Temporal{})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Attributes["familienname"] != "Brückner-Cao" || rec.Attributes["hauptwohnung"].(map[string]any)["strasse"] != "Birkenallee" {
		t.Errorf("current record: %v", rec.Attributes)
	}
	at, err := h.store.Get(ctx, clerk, "duesseldorf", "melderegister", inOrder[0].RecordID, register.Temporal{ValidAt: "2023-06-01"})
	if err != nil || at.Attributes["hauptwohnung"].(map[string]any)["strasse"] != "Birkenallee" || at.Attributes["familienname"] != "Brückner" {
		t.Errorf("on 2023-06-01 (the stornoed move withdrawn): %v %v", at.Attributes, err)
	}
	found, err := h.store.Search(ctx, clerk, "duesseldorf", "melderegister", register.Query{Familienname: "Brückner", Vornamen: "Lene", Geburtsdatum: "1990-07"})
	if err != nil || len(found) != 4 {
		t.Errorf("search by the earlier name: %d records, %v", len(found), err)
	}
}

// TestApplyRefusals: facts that do not fit the register change nothing.
func TestApplyRefusals(t *testing.T) {
	h := startHarness(t)
	good := moves("p-ok")[0]
	for name, mutate := range map[string]func(*register.Fact){
		"unknown attribute": func(f *register.Fact) {
			f.Set = append(f.Set, register.Assignment{Attribute: "schuhgroesse", Value: "42"})
		},
		"bad value": func(f *register.Fact) { f.Set = append(f.Set, register.Assignment{Attribute: "idnr", Value: "123"}) },
		"no date":   func(f *register.Fact) { f.Date = "" },
		"no event":  func(f *register.Fact) { f.EventID = "" },
		"bad from":  func(f *register.Fact) { f.Set[0].From = "1.3.2024" },
	} {
		f := good
		f.Set = append([]register.Assignment(nil), good.Set...)
		mutate(&f)
		_, err := h.store.Apply(t.Context(), clerk, "duesseldorf", "melderegister", []register.Fact{moves("p-first")[0], f})
		if register.KindOf(err) != register.KindInvalid {
			t.Errorf("%s: %v, want invalid", name, err)
		}
	}
	var n int
	if err := h.pool.QueryRow(t.Context(), `SELECT count(*) FROM register_fact`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d facts stored after refusals (%v), want none", n, err)
	}
}

// TestApplyCreatedUnchanged: a move-in delivered again after the record
// it made was ended (by a death) finds no live record, so a new one is
// created (the subject's lock), but the fact is known and changes nothing:
// the new record stays at revision 0, in the result and in the database.
func TestApplyCreatedUnchanged(t *testing.T) {
	h := startHarness(t)
	ctx := t.Context()
	apply := func(facts ...register.Fact) register.Applied {
		t.Helper()
		res, err := h.store.Apply(ctx, clerk, "duesseldorf", "melderegister", facts)
		if err != nil {
			t.Fatal(err)
		}
		return res[0]
	}
	revision := func(id string) (n int) {
		t.Helper()
		if err := h.pool.QueryRow(ctx, `SELECT revision FROM register_record WHERE id = $1`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	moveIn := moves("p-died")[0]
	first := apply(moveIn)
	death := register.Fact{SubjectKey: moveIn.SubjectKey, EventID: "m9/1/p-died", MessageID: "m9", Date: "2025-01-02", Source: "xmeld-test@1", Delete: true}
	if ended := apply(death); !ended.Deleted || ended.RecordID != first.RecordID {
		t.Fatalf("death: %+v", ended)
	}
	again := apply(moveIn)
	if !again.Created || again.New != 0 || again.Revision != 0 || revision(again.RecordID) != 0 {
		t.Errorf("move-in again after the death: %+v, stored revision %d; want a new record at revision 0", again, revision(again.RecordID))
	}
	if got := revision(first.RecordID); got != 2 {
		t.Errorf("the ended record has revision %d, want 2", got)
	}
}
