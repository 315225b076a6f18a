package register_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/parzelle/parzelle/keys"
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

// TestFirstKeysFailClosed: when the tenant's first keys cannot be made (the
// key provider cannot store the tenant's key-encryption key), the write
// fails, is audited as failed, and stores nothing: no keys, no record, no
// fact. The keyring does not pretend to have keys either: it finds no data
// key until a write made them.
func TestFirstKeysFailClosed(t *testing.T) {
	h := startHarness(t)
	ctx := t.Context()
	koeln := tenant.Actor{Tenant: "koeln", Kind: tenant.ActorCertificate, Subject: "CN=koeln", Role: "fachverfahren", Purpose: "meldewesen"}
	if _, err := register.CurrentDataKey(ctx, h.store, "koeln"); err == nil || !strings.Contains(err.Error(), "no data key yet") {
		t.Errorf("data key of a tenant without keys: %v, want 'no data key yet'", err)
	}

	broken := register.NewStore(register.Config{Pool: h.pool, Keys: keys.NewFileProvider("/dev/null/keys", func() keys.Tenants { return h.tenants.Current() }), Tenants: h.tenants.Current})
	_, err := broken.Apply(ctx, koeln, "koeln", "melderegister", []register.Fact{moveIn(newBenchPerson(3, 1), "m1")})
	if err == nil || !strings.Contains(err.Error(), "wrap index key 1 of koeln") {
		t.Fatalf("a write whose keys cannot be made: %v, want the wrapping of its first key to fail", err)
	}
	var keyRows, records, facts int
	var outcome string
	if err := h.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM register_key WHERE tenant_id = 'koeln'),
		(SELECT count(*) FROM register_record WHERE tenant_id = 'koeln'), (SELECT count(*) FROM register_fact WHERE tenant_id = 'koeln'),
		(SELECT outcome FROM audit_entry WHERE tenant_id = 'koeln' ORDER BY seq DESC LIMIT 1)`).Scan(&keyRows, &records, &facts, &outcome); err != nil {
		t.Fatal(err)
	}
	if keyRows != 0 || records != 0 || facts != 0 || outcome != register.OutcomeFailed {
		t.Errorf("after the failed write: %d keys, %d records, %d facts, last audit outcome %q; want nothing stored and the failure audited", keyRows, records, facts, outcome)
	}

	if _, err := h.store.Apply(ctx, koeln, "koeln", "melderegister", []register.Fact{moveIn(newBenchPerson(3, 1), "m1")}); err != nil {
		t.Fatal(err)
	}
	if v, err := register.CurrentDataKey(ctx, h.store, "koeln"); err != nil || v != 1 {
		t.Errorf("data key after the first write: %d, %v; want version 1", v, err)
	}
}
