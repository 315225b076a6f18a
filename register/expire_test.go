package register_test

import (
	"net/http"
	"testing"
)

// TestExpire deletes access-log entries past their two years, and only
// those, and forgets day-old idempotency keys.
func TestExpire(t *testing.T) {
	h := startHarness(t)
	ctx := t.Context()
	for i, key := range []string{"old", "new"} {
		res := h.call(t, "duesseldorf", "meldewesen", "POST", records("duesseldorf", "melderegister"),
			person("exp-"+key, idnr("712345678"+string(rune('0'+i)))), "Idempotency-Key", key)
		if res.status != http.StatusCreated {
			t.Fatalf("create: %d %s", res.status, res.body)
		}
	}
	// Age the first disclosure past two years and the first key past a day.
	if _, err := h.pool.Exec(ctx, `UPDATE register_access_log SET at = now() - interval '2 years 1 day' WHERE id = (SELECT min(id) FROM register_access_log)`); err != nil {
		t.Fatal(err)
	}
	if _, err := h.pool.Exec(ctx, `UPDATE register_idempotency SET created_at = now() - interval '25 hours' WHERE key = 'old'`); err != nil {
		t.Fatal(err)
	}
	n, err := h.store.Expire(ctx)
	if err != nil || n != 1 {
		t.Fatalf("expired %d access-log entries (%v), want 1", n, err)
	}
	var logs, keys int
	if err := h.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM register_access_log), (SELECT count(*) FROM register_idempotency)`).Scan(&logs, &keys); err != nil {
		t.Fatal(err)
	}
	if logs != 1 || keys != 1 {
		t.Errorf("after expiry: %d access-log entries, %d idempotency keys; want 1 and 1", logs, keys)
	}
}
