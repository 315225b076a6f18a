package register_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parzelle/parzelle/golden"
	"github.com/parzelle/parzelle/register"
)

// TestApplyCalls applies a series of calls, each with several subjects
// (new and existing ones, facts new and known, an event twice, a record
// ended and its subject's next fact, a refusal), and compares what each
// call returned, its audit entry and access-log entries, and the records'
// versions and blind indexes afterwards with testdata/apply_calls.golden
// (made with the Apply that worked one subject after the other). Record ids
// are numbered in the order they appear.
func TestApplyCalls(t *testing.T) {
	h := startHarness(t)
	ctx := t.Context()
	a, b := newBenchPerson(1, 1), newBenchPerson(1, 2)
	lene := moves("lene")
	end := register.Fact{SubjectKey: a.subject, EventID: "m9/1/" + a.subject, MessageID: "m9", Date: "2024-09-01", Source: "xmeld-test@1", Delete: true}
	bad := moveIn(b, "m6")
	bad.Set = append(bad.Set, register.Assignment{Attribute: "schuhgroesse", Value: "42"})
	calls := []struct {
		name  string
		facts []register.Fact
	}{
		{"move-ins", []register.Fact{lene[0], moveIn(a, "m1"), lene[1]}},
		{"known and new facts, an event twice", []register.Fact{moveIn(a, "m1"), move(a, "m2", "2024-03-01"), lene[2], lene[3], moveIn(b, "m3"), moveIn(b, "m3")}},
		{"a record ends", []register.Fact{end, lene[4]}},
		{"the ended subject again", []register.Fact{move(a, "m7", "2025-01-01"), moveIn(b, "m3")}},
		{"a refusal", []register.Fact{move(b, "m8", "2025-02-01"), bad}},
	}
	var out strings.Builder
	var ids []string // record ids in the order they appeared
	label := func(s string) string {
		for i, id := range ids {
			s = strings.ReplaceAll(s, id, fmt.Sprintf("record-%d", i+1))
		}
		return s
	}
	var beforeEnd time.Time
	for _, c := range calls {
		if c.name == "a record ends" {
			beforeEnd = time.Now()
		}
		res, err := h.store.Apply(ctx, clerk, "duesseldorf", "melderegister", c.facts)
		fmt.Fprintf(&out, "== %s\n", c.name)
		if err != nil {
			fmt.Fprintf(&out, "refused: %v: %v\n", register.KindOf(err), err)
		}
		for _, r := range res {
			if !slices.Contains(ids, r.RecordID) {
				ids = append(ids, r.RecordID)
			}
			fmt.Fprintf(&out, "applied: %s\n", label(fmt.Sprintf("%+v", r)))
		}
		var seq int64
		var op, record, outcome, detail string
		if err := h.pool.QueryRow(ctx, `SELECT seq, operation, coalesce(record_id::text, ''), outcome, detail FROM audit_entry
			WHERE tenant_id = 'duesseldorf' ORDER BY seq DESC LIMIT 1`).Scan(&seq, &op, &record, &outcome, &detail); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&out, "audit: %s %s record %q: %s\n", op, outcome, label(record), label(detail))
		rows, err := h.pool.Query(ctx, `SELECT record_id::text, operation, actor, legal_basis FROM register_access_log
			WHERE tenant_id = 'duesseldorf' AND audit_seq = $1 ORDER BY id`, seq)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var rid, op, actor, basis string
			if err := rows.Scan(&rid, &op, &actor, &basis); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&out, "access log: %s %s by %s (%s)\n", label(rid), op, actor, basis)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range ids {
		fmt.Fprintf(&out, "== record-%d\n", i+1)
		var revision int
		var deleted bool
		if err := h.pool.QueryRow(ctx, `SELECT revision, deleted_at IS NOT NULL FROM register_record WHERE id = $1`, id).Scan(&revision, &deleted); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&out, "revision %d, deleted %v\n", revision, deleted)
		rows, err := h.pool.Query(ctx, `SELECT seq, revision, valid_from::text, valid_to::text, superseded_at < 'infinity' FROM register_version
			WHERE record_id = $1 ORDER BY seq`, id)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var seq, rev int
			var from, to string
			var superseded bool
			if err := rows.Scan(&seq, &rev, &from, &to, &superseded); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&out, "version %d (revision %d) %s .. %s superseded %v\n", seq, rev, from, to, superseded)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		var kinds string
		if err := h.pool.QueryRow(ctx, `SELECT coalesce(string_agg(kind, ' ' ORDER BY kind), '') FROM register_index WHERE record_id = $1`, id).Scan(&kinds); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&out, "index: %s\n", kinds)
		at := register.Temporal{}
		if deleted {
			at.KnownAt = beforeEnd
		}
		vs, err := h.store.History(ctx, clerk, "duesseldorf", "melderegister", id, at)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vs {
			attrs, _ := json.Marshal(v.Attributes)
			fmt.Fprintf(&out, "%s .. %s: %s %v\n", v.ValidFrom, v.ValidTo, attrs, v.Sources)
		}
	}
	golden.Check(t, "testdata/apply_calls.golden", []byte(out.String()))
}
