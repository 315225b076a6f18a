package register_test

import (
	"context"
	"testing"
	"time"

	"github.com/parzelle/parzelle/register"
	"github.com/parzelle/parzelle/tenant"
)

// TestFirstKeysOutliveARolledBackOperation: a tenant's first register
// operation that rolls back must not leave keys behind that only this
// process knows. The second operation's data must decrypt in another
// process (a new Store with the same key provider), which reads the keys
// from the database.
func TestFirstKeysOutliveARolledBackOperation(t *testing.T) {
	h := startHarness(t)
	ctx := t.Context()
	koeln := tenant.Actor{Tenant: "koeln", Kind: tenant.ActorCertificate, Subject: "CN=koeln", Role: "fachverfahren", Purpose: "meldewesen"}

	// An invalid call is refused and audited: the audit chain's head
	// exists, and the next call's end can be held up at it.
	if _, err := h.store.Apply(ctx, koeln, "koeln", "melderegister", nil); err == nil {
		t.Fatal("an empty apply was not refused")
	}
	hold, err := h.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Rollback(ctx)
	if _, err := hold.Exec(ctx, `SELECT FROM audit_head WHERE tenant_id = 'koeln' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}

	// The first write seals its facts, then waits for the audit chain
	// and is cancelled there: its transaction rolls back.
	first, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := h.store.Apply(first, koeln, "koeln", "melderegister", []register.Fact{moveIn(newBenchPerson(2, 1), "m1")})
		done <- err
	}()
	for waiting := 0; waiting == 0; time.Sleep(10 * time.Millisecond) {
		if err := h.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the cancelled apply succeeded")
	}
	if err := hold.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	applied, err := h.store.Apply(ctx, koeln, "koeln", "melderegister", []register.Fact{moveIn(newBenchPerson(2, 2), "m2")})
	if err != nil {
		t.Fatal(err)
	}
	var stored int
	if err := h.pool.QueryRow(ctx, `SELECT count(*) FROM register_key WHERE tenant_id = 'koeln'`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != 2 {
		t.Errorf("%d keys of koeln stored, want its data key and index key", stored)
	}
	other := register.NewStore(register.Config{Pool: h.pool, Keys: h.keys, Tenants: h.tenants.Current})
	rec, err := other.Get(ctx, koeln, "koeln", "melderegister", applied[0].RecordID, register.Temporal{})
	if err != nil {
		t.Fatalf("another store reads the record: %v", err)
	}
	if rec.Attributes["familienname"] != newBenchPerson(2, 2).attrs["familienname"] {
		t.Errorf("another store reads %v", rec.Attributes)
	}
}
