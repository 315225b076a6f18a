package register_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parzelle/parzelle/register"
	"github.com/parzelle/parzelle/tenant"
)

// clerk is Düsseldorf's Fachverfahren acting through the store directly.
var clerk = tenant.Actor{Tenant: "duesseldorf", Kind: tenant.ActorCertificate, Subject: "CN=duesseldorf", Role: "fachverfahren", Purpose: "meldewesen"}

// spans renders versions as "from..to:value" of one attribute.
func spans(vs []register.Version, attr string) string {
	var out []string
	for _, v := range vs {
		out = append(out, fmt.Sprintf("%s..%s:%v", v.ValidFrom, v.ValidTo, v.Attributes[attr]))
	}
	return strings.Join(out, " ")
}

// TestBitemporalChanges applies changes over spans of valid time and checks
// the versions as known after each, and that earlier knowledge stays
// readable.
func TestBitemporalChanges(t *testing.T) {
	h := startHarness(t)
	ctx := t.Context()
	rec, err := h.store.Create(ctx, clerk, "duesseldorf", "melderegister", register.Create{
		SubjectKey: "bt-1", ValidFrom: "2020-01-01",
		Attributes: register.Attributes{"familienname": "Alt", "familienstand": "ledig"},
	})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name   string
		change register.Change
		want   string // familienstand spans after the change
		err    register.ErrorKind
	}{
		{"open-ended from a day", register.Change{ValidFrom: "2022-06-01", Attributes: register.Attributes{"familienstand": "verheiratet"}},
			"2020-01-01..2022-06-01:ledig 2022-06-01..:verheiratet", 0},
		{"a span inside one version splits it in three", register.Change{ValidFrom: "2021-01-01", ValidTo: "2021-03-01", Attributes: register.Attributes{"familienstand": "x"}},
			"2020-01-01..2021-01-01:ledig 2021-01-01..2021-03-01:x 2021-03-01..2022-06-01:ledig 2022-06-01..:verheiratet", 0},
		{"a correction from the record's first day joins equal neighbours", register.Change{Correction: true, ValidTo: "2021-03-01", Attributes: register.Attributes{"familienstand": "ledig"}},
			"2020-01-01..2022-06-01:ledig 2022-06-01..:verheiratet", 0},
		{"a change that changes nothing", register.Change{ValidFrom: "2023-01-01", Attributes: register.Attributes{"familienstand": "verheiratet"}},
			"2020-01-01..2022-06-01:ledig 2022-06-01..:verheiratet", 0},
		{"before the record began", register.Change{ValidFrom: "2019-01-01", Attributes: register.Attributes{"familienstand": "y"}}, "", register.KindInvalid},
		{"an empty span", register.Change{ValidFrom: "2024-01-01", ValidTo: "2024-01-01", Attributes: register.Attributes{"familienstand": "y"}}, "", register.KindInvalid},
		{"removing a required attribute", register.Change{ValidFrom: "2024-01-01", Attributes: register.Attributes{"familienname": nil}}, "", register.KindInvalid},
	}
	var marks []time.Time
	var seen []string
	for _, s := range steps {
		marks = append(marks, time.Now())
		time.Sleep(5 * time.Millisecond)
		_, err := h.store.Update(ctx, clerk, "duesseldorf", "melderegister", rec.ID, s.change)
		if register.KindOf(err) != s.err || (s.err == 0 && err != nil) {
			t.Fatalf("%s: error %v, want kind %d", s.name, err, s.err)
		}
		if s.err != 0 {
			continue
		}
		vs, err := h.store.History(ctx, clerk, "duesseldorf", "melderegister", rec.ID, register.Temporal{})
		if err != nil {
			t.Fatal(err)
		}
		if got := spans(vs, "familienstand"); got != s.want {
			t.Errorf("%s:\n got %s\nwant %s", s.name, got, s.want)
		}
		seen = append(seen, s.want)
	}
	// What was known before each step is still what it was then.
	for i, want := range seen[:len(seen)-1] {
		vs, err := h.store.History(ctx, clerk, "duesseldorf", "melderegister", rec.ID, register.Temporal{KnownAt: marks[i+1]})
		if err != nil {
			t.Fatal(err)
		}
		if got := spans(vs, "familienstand"); got != want {
			t.Errorf("as known before step %d:\n got %s\nwant %s", i+2, got, want)
		}
	}
	got, err := h.store.Get(ctx, clerk, "duesseldorf", "melderegister", rec.ID, register.Temporal{ValidAt: "2021-02-01", KnownAt: marks[2]})
	if err != nil || got.Attributes["familienstand"] != "x" {
		t.Errorf("valid 2021-02-01 as known before the correction: %v %v", got.Attributes, err)
	}
	got, err = h.store.Get(ctx, clerk, "duesseldorf", "melderegister", rec.ID, register.Temporal{ValidAt: "2021-02-01"})
	if err != nil || got.Attributes["familienstand"] != "ledig" || got.Revision != 4 {
		t.Errorf("valid 2021-02-01 as known now: %+v %v", got, err)
	}
}
