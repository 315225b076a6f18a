package main

import (
	"context"
	"strconv"
	"strings"
	"testing"
)

// TestDLQCommands lists, shows and discards a dead letter with `parzelle
// dlq` on the demo checkout's database: the discard is audited in the
// tenant's audit log, another tenant sees nothing, and a second discard is
// refused.
func TestDLQCommands(t *testing.T) {
	root, dbURL, pool, _ := demoDatabase(t)
	ctx := context.Background()
	// A message in Düsseldorf's register inbox that the pipeline could not
	// map, as the pipeline leaves it.
	var dead int64
	err := pool.QueryRow(ctx, `WITH m AS (
		INSERT INTO xta_message (tenant_id, box, message_id, account, author, reader, service, business_scenario, message_type, metadata, content_size, closed_at, status)
		VALUES ('duesseldorf', 'inbox', 'urn:test:1', 'register:05111000', 'ags:05111000', 'register:05111000', 'urn:xoev-de:xmeld', 'XMELD_DATA',
			'fortschreibung.tod.0040', '<m/>', 10, now(), 3) RETURNING id)
		INSERT INTO pipeline_dead_letter (tenant_id, inbox, message_id, author, reader, message_type, step, reason, problems, attempts)
		SELECT 'duesseldorf', id, 'urn:test:1', 'ags:05111000', 'register:05111000', 'fortschreibung.tod.0040', 'map',
			'mapping: no mapping spec for this message type', '["a problem"]', 1 FROM m RETURNING id`).Scan(&dead)
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		out, err := parzelle(root, []string{"DATABASE_URL=" + dbURL}, append([]string{"dlq"}, append(args, "--config", "fixtures/node.yaml")...)...).CombinedOutput()
		return string(out), err
	}
	id := strconv.FormatInt(dead, 10)
	if out, err := run("list", "--tenant", "duesseldorf"); err != nil || !strings.Contains(out, "urn:test:1") || !strings.Contains(out, "no mapping spec") {
		t.Errorf("list: %v\n%s", err, out)
	}
	if out, err := run("list", "--tenant", "koeln"); err != nil || !strings.Contains(out, "no dead letters") {
		t.Errorf("list of another tenant: %v\n%s", err, out)
	}
	if out, err := run("show", "--tenant", "duesseldorf", id); err != nil || !strings.Contains(out, "step       map (unknown)") || !strings.Contains(out, "- a problem") {
		t.Errorf("show: %v\n%s", err, out)
	}
	if out, err := run("discard", "--tenant", "koeln", "--reason", "x", id); err == nil {
		t.Errorf("discard in another tenant succeeded:\n%s", out)
	}
	if out, err := run("discard", "--tenant", "duesseldorf", "--reason", "Absender sendet neu", id); err != nil {
		t.Errorf("discard: %v\n%s", err, out)
	}
	if out, err := run("discard", "--tenant", "duesseldorf", "--reason", "again", id); err == nil {
		t.Errorf("second discard succeeded:\n%s", out)
	}
	var audited int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_entry WHERE tenant_id = 'duesseldorf' AND operation = 'dead-letter discarded' AND actor_kind = 'operator'`).Scan(&audited); err != nil || audited != 1 {
		t.Errorf("%d audited discards (%v), want 1", audited, err)
	}
}
