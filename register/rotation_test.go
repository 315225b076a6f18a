package register_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/riverqueue/river"

	"github.com/parzelle/parzelle/jobs"
	"github.com/parzelle/parzelle/register"
)

// TestKeyRotation rotates Düsseldorf's KEK and data key and re-encrypts
// its data: the job picks up where an interrupted run stopped, counts
// every row once, retires the old data key, and every record still reads;
// Köln's data is not touched.
func TestKeyRotation(t *testing.T) {
	t.Cleanup(register.SetRotationTiming(7, 200*time.Millisecond))
	h := startHarness(t)
	ctx := t.Context()
	var ids []string
	for i := range 12 {
		res := h.call(t, "duesseldorf", "meldewesen", "POST", records("duesseldorf", "melderegister"),
			person(fmt.Sprintf("melde-%d", i), idnr(fmt.Sprintf("81234567%02d", i))))
		if res.status != http.StatusCreated {
			t.Fatalf("create: %d %s", res.status, res.body)
		}
		var rec register.Record
		res.json(t, &rec)
		ids = append(ids, rec.ID)
	}
	if res := h.call(t, "koeln", "meldewesen", "POST", records("koeln", "melderegister"), person("k-1", idnr("9234567890"))); res.status != http.StatusCreated {
		t.Fatalf("create in koeln: %d %s", res.status, res.body)
	}
	keyVersions := func(table, tenantID string) map[int]int {
		t.Helper()
		rows, err := h.pool.Query(ctx, fmt.Sprintf(`SELECT key_version, count(*) FROM %s WHERE tenant_id = $1 GROUP BY 1`, table), tenantID)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[int]int{}
		for rows.Next() {
			var v, n int
			if err := rows.Scan(&v, &n); err != nil {
				t.Fatal(err)
			}
			out[v] = n
		}
		return out
	}
	// 12 versions and 12 creations that disclosed an IDNr.
	if v, l := keyVersions("register_version", "duesseldorf"), keyVersions("register_access_log", "duesseldorf"); v[1] != 12 || l[1] != 12 {
		t.Fatalf("before rotation: versions %v, access log %v", v, l)
	}

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	workers := river.NewWorkers()
	river.AddWorker(workers, &register.ReencryptWorker{Store: h.store})
	client, err := jobs.NewClient(h.pool, workers, log)
	if err != nil {
		t.Fatal(err)
	}
	rot, err := h.store.RotateKey(ctx, client, "duesseldorf", true)
	if err != nil {
		t.Fatal(err)
	}
	if rot.KeyVersion != 2 || rot.Total != 24 {
		t.Fatalf("rotation: %+v", rot)
	}
	// A write after the rotation uses the new key once the node looks
	// again; until then it may use the old one, which the last pass
	// catches.
	if res := h.call(t, "duesseldorf", "meldewesen", "PATCH", records("duesseldorf", "melderegister")+"/"+ids[0],
		map[string]any{"attributes": map[string]any{"familienstand": "ledig"}}); res.status != http.StatusOK {
		t.Fatalf("update during rotation: %d %s", res.status, res.body)
	}
	// An earlier run that stopped after one batch.
	if n, err := register.ReencryptOnce(ctx, h.store, "duesseldorf", 2); err != nil || n != 14 {
		t.Fatalf("first batch: %d %v", n, err)
	}
	if err := client.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stop, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = client.Stop(stop)
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		rs, err := h.store.Rotations(ctx, "duesseldorf")
		if err != nil {
			t.Fatal(err)
		}
		if rs[0].FinishedAt != nil {
			rot = rs[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("re-encryption did not finish: %+v", rs[0])
		}
		time.Sleep(100 * time.Millisecond)
	}
	if rot.Done < rot.Total {
		t.Errorf("rotation counted %d of %d rows", rot.Done, rot.Total)
	}
	for table, want := range map[string]int{"register_version": 12 + 2, "register_access_log": 12 + 1} {
		got := keyVersions(table, "duesseldorf")
		n := 0
		for _, c := range got {
			n += c
		}
		if len(got) != 1 || got[2] != n || n < want {
			t.Errorf("%s after rotation: key versions %v, want all of %d+ under key 2", table, got, want)
		}
	}
	if k := keyVersions("register_version", "koeln"); len(k) != 1 || k[1] != 1 {
		t.Errorf("koeln's data changed: %v", k)
	}
	var dataKeys []int
	rows, err := h.pool.Query(ctx, `SELECT version FROM register_key WHERE tenant_id = 'duesseldorf' AND kind = 'data' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var v int
		_ = rows.Scan(&v)
		dataKeys = append(dataKeys, v)
	}
	if fmt.Sprint(dataKeys) != "[2]" {
		t.Errorf("data keys after rotation: %v, want the old one retired", dataKeys)
	}
	var kek int
	if err := h.pool.QueryRow(ctx, `SELECT min(kek_version) FROM register_key WHERE tenant_id = 'duesseldorf'`).Scan(&kek); err != nil || kek != 2 {
		t.Errorf("register keys are wrapped by KEK %d (%v), want 2", kek, err)
	}
	for _, id := range ids {
		res := h.call(t, "duesseldorf", "meldewesen", "GET", records("duesseldorf", "melderegister")+"/"+id, nil)
		if res.status != http.StatusOK {
			t.Fatalf("read after rotation: %d %s", res.status, res.body)
		}
	}
	if res := h.call(t, "duesseldorf", "meldewesen", "GET", records("duesseldorf", "melderegister")+"?idnr="+idnr("8123456705"), nil); res.status != http.StatusOK {
		t.Fatalf("search after rotation: %d %s", res.status, res.body)
	}
}
