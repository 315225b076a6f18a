package register_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parzelle/parzelle/register"
	"github.com/parzelle/parzelle/tenant"
)

// pipelineActor applies facts as an inbox pipeline would, in a role the
// test tenants let write.
var pipelineActor = tenant.Actor{Tenant: "duesseldorf", Kind: "pipeline", Subject: "test via inbox", Role: "fachverfahren", Purpose: "meldewesen"}

// countingStore is a Store on a pool of its own whose statements and round
// trips a tripCounter counts.
func countingStore(t testing.TB, h *harness, conns int32) (*register.Store, *tripCounter) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(h.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = conns
	trips := &tripCounter{}
	cfg.ConnConfig.Tracer = trips
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return register.NewStore(register.Config{Pool: pool, Keys: h.keys, Tenants: h.tenants.Current}), trips
}

// moveIn is the fact of a person's move-in, as the XMeld mapping states it:
// the names, birth and IDNr from the beginning, the main residence from the
// day of the move.
func moveIn(p benchPerson, msg string) register.Fact {
	f := register.Fact{SubjectKey: p.subject, EventID: msg + "/1/" + p.subject, MessageID: msg, Date: "2019-04-01", Source: "xmeld-test@1"}
	for _, name := range []string{"familienname", "vornamen", "geburtsdatum", "geburtsort", "geschlecht", "staatsangehoerigkeit", "idnr", "familienstand"} {
		f.Set = append(f.Set, register.Assignment{Attribute: name, Value: p.attrs[name]})
	}
	f.Set = append(f.Set, register.Assignment{Attribute: "hauptwohnung", Value: p.attrs["hauptwohnung"], From: "2019-04-01"})
	return f
}

// move is the fact of the person's move within the city on day.
func move(p benchPerson, msg, day string) register.Fact {
	return register.Fact{SubjectKey: p.subject, EventID: msg + "/1/" + p.subject, MessageID: msg, Date: day, Source: "xmeld-test@1",
		Set: []register.Assignment{{Attribute: "hauptwohnung", Value: p.moved["hauptwohnung"], From: day}}}
}

// TestApplyStatements counts what one Apply sends to PostgreSQL for one
// subject and for forty: new subjects, then a new fact for each of them,
// then the same facts again. The count must not grow with the number of
// subjects: Apply works on all subjects of a call at once.
func TestApplyStatements(t *testing.T) {
	h := startHarness(t)
	defer register.SetKeyCacheTTL(time.Hour)()
	store, trips := countingStore(t, h, 2)
	ctx := t.Context()
	// A first call creates the tenant's keys and audit chain and prepares
	// the statements; it is not counted.
	warm := newBenchPerson(9, 0)
	if _, err := store.Apply(ctx, pipelineActor, "duesseldorf", "melderegister", []register.Fact{moveIn(warm, "warm")}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Apply(ctx, pipelineActor, "duesseldorf", "melderegister", []register.Fact{move(warm, "warm2", "2024-03-01")}); err != nil {
		t.Fatal(err)
	}

	type count struct{ statements, trips int64 }
	counts := map[string]map[int]count{}
	for _, n := range []int{1, 40} {
		people := make([]benchPerson, n)
		for i := range people {
			people[i] = newBenchPerson(n, i)
		}
		for _, c := range []struct {
			name string
			fact func(p benchPerson) register.Fact
			// want is what each subject's Applied says.
			want register.Applied
		}{
			{"new subjects", func(p benchPerson) register.Fact { return moveIn(p, "m1") }, register.Applied{New: 1, Revision: 1, Created: true}},
			{"a new fact each", func(p benchPerson) register.Fact { return move(p, "m2", "2024-03-01") }, register.Applied{New: 1, Revision: 2}},
			{"facts applied before", func(p benchPerson) register.Fact { return move(p, "m2", "2024-03-01") }, register.Applied{New: 0, Revision: 2}},
		} {
			var facts []register.Fact
			for _, p := range people {
				facts = append(facts, c.fact(p))
			}
			s0, t0 := trips.statements.Load(), trips.n.Load()
			res, err := store.Apply(ctx, pipelineActor, "duesseldorf", "melderegister", facts)
			if err != nil {
				t.Fatalf("%s, %d subjects: %v", c.name, n, err)
			}
			if counts[c.name] == nil {
				counts[c.name] = map[int]count{}
			}
			counts[c.name][n] = count{trips.statements.Load() - s0, trips.n.Load() - t0}
			if len(res) != n {
				t.Fatalf("%s: %d results for %d subjects", c.name, len(res), n)
			}
			for i, r := range res {
				if r.RecordID == "" || r.New != c.want.New || r.Revision != c.want.Revision || r.Created != c.want.Created || r.Deleted {
					t.Errorf("%s, %d subjects: subject %d: %+v, want %+v", c.name, n, i, r, c.want)
				}
			}
			if c.name == "a new fact each" {
				checkMoved(t, h, h.store, res, people)
			}
		}
	}
	for _, name := range []string{"new subjects", "a new fact each", "facts applied before"} {
		byN := counts[name]
		t.Logf("%-22s 1 subject: %2d statements in %2d round trips; 40 subjects: %2d statements in %2d round trips",
			name, byN[1].statements, byN[1].trips, byN[40].statements, byN[40].trips)
		if byN[40] != byN[1] {
			t.Errorf("%s: %+v for 40 subjects, %+v for one: the count grows with the subjects", name, byN[40], byN[1])
		}
		if byN[1].statements > 20 || byN[1].trips > 10 {
			t.Errorf("%s: %+v, want at most 20 statements in 10 round trips", name, byN[1])
		}
	}
}

// checkMoved reads each record back with store: the move is its current
// address, the move-in the one before, and the access log names the
// pipeline's disclosure of its IDNr.
func checkMoved(t *testing.T, h *harness, store *register.Store, res []register.Applied, people []benchPerson) {
	t.Helper()
	ctx := t.Context()
	for i, r := range res {
		p := people[i]
		now, err := store.Get(ctx, clerk, "duesseldorf", "melderegister", r.RecordID, register.Temporal{})
		if err != nil {
			t.Fatal(err)
		}
		before, err := store.Get(ctx, clerk, "duesseldorf", "melderegister", r.RecordID, register.Temporal{ValidAt: "2020-01-01"})
		if err != nil {
			t.Fatal(err)
		}
		if now.SubjectKey != p.subject || fmt.Sprint(now.Attributes["hauptwohnung"]) != fmt.Sprint(p.moved["hauptwohnung"]) ||
			fmt.Sprint(before.Attributes["hauptwohnung"]) != fmt.Sprint(p.attrs["hauptwohnung"]) || now.Attributes["idnr"] != p.idnr {
			t.Errorf("record %s of %s: now %v, on 2020-01-01 %v", r.RecordID, p.subject, now.Attributes, before.Attributes)
		}
		var n int
		if err := h.pool.QueryRow(ctx, `SELECT count(*) FROM register_access_log WHERE record_id = $1 AND operation = 'apply' AND actor = $2`,
			r.RecordID, pipelineActor.Subject).Scan(&n); err != nil || n != 2 {
			t.Errorf("record %s: %d access-log entries of the pipeline (%v), want 2 (move-in and move)", r.RecordID, n, err)
		}
	}
}

// TestApplyConcurrentOverlap applies new facts to the same subjects from
// two callers at once, one in the opposite order of the other: Apply locks
// its records in an order of its own, so neither deadlocks, and every fact
// is applied once.
func TestApplyConcurrentOverlap(t *testing.T) {
	h := startHarness(t)
	store, _ := countingStore(t, h, 4)
	ctx := t.Context()
	people := make([]benchPerson, 20)
	var facts []register.Fact
	for i := range people {
		people[i] = newBenchPerson(1, i)
		facts = append(facts, moveIn(people[i], "m0"))
	}
	if _, err := store.Apply(ctx, pipelineActor, "duesseldorf", "melderegister", facts); err != nil {
		t.Fatal(err)
	}
	const rounds = 10
	var wg sync.WaitGroup
	errs := make(chan error, 2*rounds)
	for caller := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range rounds {
				var facts []register.Fact
				for i := range people {
					p := people[i]
					if caller == 1 {
						p = people[len(people)-1-i]
					}
					facts = append(facts, move(p, fmt.Sprintf("c%d-r%d", caller, round), fmt.Sprintf("2024-%02d-%02d", 1+round, 1+caller)))
				}
				if _, err := store.Apply(ctx, pipelineActor, "duesseldorf", "melderegister", facts); err != nil {
					errs <- fmt.Errorf("caller %d, round %d: %w", caller, round, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var n int
	if err := h.pool.QueryRow(ctx, `SELECT count(*) FROM register_fact`).Scan(&n); err != nil || n != len(people)*(1+2*rounds) {
		t.Errorf("%d facts stored (%v), want %d", n, err, len(people)*(1+2*rounds))
	}
}

// TestApplyCreatedMeanwhile: when another transaction creates the record
// of one of a call's subjects while the call runs, the call is refused as
// a conflict (to be tried again) and stores nothing.
func TestApplyCreatedMeanwhile(t *testing.T) {
	h := startHarness(t)
	ctx := t.Context()
	// The plaintext store's blind index of a subject key is the key, so
	// the test can create the record the way another writer would.
	store := register.NewPlaintextStore(register.Config{Pool: h.pool, Tenants: h.tenants.Current})
	koeln := tenant.Actor{Tenant: "koeln", Kind: tenant.ActorCertificate, Subject: "CN=koeln", Role: "fachverfahren", Purpose: "meldewesen"}
	other, p := newBenchPerson(1, 1), newBenchPerson(1, 2)
	tx, err := h.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `INSERT INTO register_record (id, tenant_id, register, subject_index, revision, created_at, updated_at)
		VALUES ('6ba7b810-9dad-41d1-80b4-00c04fd430c8', 'koeln', 'melderegister', $1, 0, now(), now())`, []byte(p.subject)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := store.Apply(ctx, koeln, "koeln", "melderegister", []register.Fact{moveIn(other, "m1"), moveIn(p, "m1")})
		done <- err
	}()
	// Let the call wait for the other transaction's record, then commit it.
	for waiting := 0; waiting == 0; time.Sleep(10 * time.Millisecond) {
		if err := h.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	err = <-done
	var refusal *register.Error
	if !errors.As(err, &refusal) || refusal.Kind != register.KindConflict || refusal.Detail != "another write created this subject's record at the same time; try again" {
		t.Fatalf("apply while another transaction created a subject's record: %v, want a conflict", err)
	}
	var records, facts int
	if err := h.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM register_record WHERE tenant_id = 'koeln'), (SELECT count(*) FROM register_fact WHERE tenant_id = 'koeln')`).Scan(&records, &facts); err != nil || records != 1 || facts != 0 {
		t.Errorf("%d records and %d facts after the refusal (%v), want only the other transaction's record", records, facts, err)
	}
}

// TestApplyEndWithChanges: a fact that ends a record and also sets
// attributes ends the record; the attributes it sets are in its facts, not
// in versions nobody could read.
func TestApplyEndWithChanges(t *testing.T) {
	h := startHarness(t)
	ctx := t.Context()
	p := newBenchPerson(1, 1)
	res, err := h.store.Apply(ctx, clerk, "duesseldorf", "melderegister", []register.Fact{moveIn(p, "m1")})
	if err != nil {
		t.Fatal(err)
	}
	id := res[0].RecordID
	death := register.Fact{SubjectKey: p.subject, EventID: "m2/1/" + p.subject, MessageID: "m2", Date: "2024-01-05", Source: "xmeld-test@1", Delete: true,
		Set: []register.Assignment{{Attribute: "familienstand", Value: "VW", From: "2024-01-05"}}}
	res, err = h.store.Apply(ctx, clerk, "duesseldorf", "melderegister", []register.Fact{death})
	if err != nil {
		t.Fatal(err)
	}
	if want := (register.Applied{RecordID: id, New: 1, Revision: 2, Deleted: true}); res[0] != want {
		t.Errorf("the end of a record: %+v, want %+v", res[0], want)
	}
	if _, err := h.store.Get(ctx, clerk, "duesseldorf", "melderegister", id, register.Temporal{}); register.KindOf(err) != register.KindGone {
		t.Errorf("read of the ended record: %v, want gone", err)
	}
	var current, index int
	if err := h.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM register_version WHERE record_id = $1 AND superseded_at = 'infinity'),
		(SELECT count(*) FROM register_index WHERE record_id = $1)`, id).Scan(&current, &index); err != nil || current != 0 || index != 0 {
		t.Errorf("ended record: %d current versions, %d index rows (%v), want none", current, index, err)
	}
}
