package jobs_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parzelle/parzelle/mapping"
	"github.com/parzelle/parzelle/msgbox"
	"github.com/parzelle/parzelle/node/nodetest"
	"github.com/parzelle/parzelle/xta"
)

// letters spells n in letters, for names that must be DIN 91379 text.
func letters(n int) string {
	s := ""
	for {
		s = string(rune('a'+n%26)) + s
		n /= 26
		if n == 0 {
			return s
		}
	}
}

// moveIns makes n different 0201 messages from the fixture: each a new
// person (another surname), event and message id.
func moveIns(t testing.TB, n int) [][]byte {
	_, doc := message(t, "01")
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte(strings.NewReplacer(
			"Ćosić", "Ćosić-"+strings.ToUpper(letters(i)[:1])+letters(i)[1:]+"x",
			"DUS-EW-2025-0301-004711", fmt.Sprintf("DUS-EW-BENCH-%07d", i),
			"6f1c2a9e-3b7d-4e21-9a55-0c8d2f41b701", fmt.Sprintf("6f1c2a9e-3b7d-4e21-9a55-%012d", i),
		).Replace(string(doc)))
	}
	return out
}

// BenchmarkPipeline prints what `make bench-pipeline` reports: N XMeld
// move-ins (0201) sent over XTA at C concurrent clients to Düsseldorf's
// register inbox (after a warm-up round of PIPELINE_BENCH_WARMUP other
// ones and ANALYZE), waited for until every one is applied to the register:
// accepted/s, applied/s, and the accept-to-applied latency; beside it a raw
// baseline in the same run and database, the same number of register
// writes straight through pgx (a person's register rows in one
// transaction each, at the same concurrency; and, simpler still, one row
// INSERT+COMMIT each); and pure mapping throughput on one core. It runs once
// whatever b.N is; PIPELINE_BENCH_N and PIPELINE_BENCH_CLIENTS size it.
func BenchmarkPipeline(b *testing.B) {
	n, clients := nodetest.EnvInt(b, "PIPELINE_BENCH_N", 2000), nodetest.EnvInt(b, "PIPELINE_BENCH_CLIENTS", 16)
	node := startNode(b, map[string]string{"duesseldorf": tenantWith(b, "duesseldorf", "zuzug")})
	ctx := context.Background()
	docs := moveIns(b, n)

	// The simplest raw baseline: one row of an encrypted person's size per
	// message, INSERT+COMMIT.
	if _, err := node.Pool.Exec(ctx, `CREATE TABLE bench_raw (id bigserial PRIMARY KEY, subject text NOT NULL, payload bytea NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	rawRow := run(b, n, clients, func(i int) error {
		return pgx.BeginFunc(ctx, node.Pool, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO bench_raw (subject, payload) VALUES ($1, $2)`, strconv.Itoa(i), docs[i][:600])
			return err
		})
	})

	// The pipeline: a warm-up round of other persons, so that PostgreSQL
	// knows the tables' statistics (ANALYZE) as it does in a node that has
	// been running, then the measured round: send everything, then wait
	// for the last application.
	author, reader := "ags:05111000", "register:05111000"
	xc := make([]*xta.Client, clients)
	for c := range xc {
		xc[c] = node.XTAClient("duesseldorf", author)
	}
	sendAll := func(docs [][]byte) (ids []string, accept, applied time.Duration) {
		ids = make([]string, len(docs))
		start := time.Now()
		accept = run(b, len(docs), clients, func(i int) error {
			id, err := node.Send(ctx, xc[i%clients], author, reader, "rueckmeldung.anmeldunginland.0201", xmeldNS, docs[i])
			ids[i] = id
			return err
		})
		// Wait until no inbox message is open (an applied one's row is
		// deleted, a refused one's closed), asking no more often than a
		// clerk's screen would and with a query that reads only the open
		// rows: the waiting is not what is measured. The end is when the
		// last message was applied, as its report says.
		for {
			var open int
			if err := node.Pool.QueryRow(ctx, `SELECT count(*) FROM xta_message WHERE box = 'inbox' AND closed_at IS NULL`).Scan(&open); err != nil {
				b.Fatal(err)
			}
			if open == 0 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		var last time.Time
		if err := node.Pool.QueryRow(ctx, `SELECT max(r.at) FROM xta_message m JOIN xta_report_record r ON r.message = m.id AND r.code = 'APPLIED'
			WHERE m.box = 'outbox' AND m.message_id = ANY($1)`, ids).Scan(&last); err != nil {
			b.Fatal(err)
		}
		applied = last.Sub(start)
		for _, s := range settle(b, node, ids...) {
			if s != msgbox.StatusGreen {
				b.Fatalf("a message was not applied: status %d", s)
			}
		}
		return ids, accept, applied
	}
	warm := moveIns(b, n+nodetest.EnvInt(b, "PIPELINE_BENCH_WARMUP", 1000))[n:]
	sendAll(warm)
	if _, err := node.Pool.Exec(ctx, `ANALYZE`); err != nil {
		b.Fatal(err)
	}
	cpuBefore, cpuOK := nodetest.MachineCPU()
	procBefore, err := nodetest.ReadProcessCPU(ctx, node.Pool)
	if err != nil {
		b.Fatal(err)
	}
	ids, accept, applied := sendAll(docs)
	cpuAfter, _ := nodetest.MachineCPU()
	procAfter, err := nodetest.ReadProcessCPU(ctx, node.Pool)
	if err != nil {
		b.Fatal(err)
	}
	proc := procAfter.Sub(procBefore)

	// The register baseline: the rows the register holds for a person
	// after a move-in (record, versions, index entries, fact; as the
	// pipeline wrote one in the warm-up round), written for n other persons
	// straight through pgx, one transaction each.
	person := readPerson(b, node)
	raw := run(b, n, clients, func(i int) error {
		return pgx.BeginFunc(ctx, node.Pool, func(tx pgx.Tx) error {
			return tx.SendBatch(ctx, person.batch(i)).Close()
		})
	})
	var lat []time.Duration
	rows, err := node.Pool.Query(ctx, `SELECT r.at - m.sent_at FROM xta_message m JOIN xta_report_record r ON r.message = m.id AND r.code = 'APPLIED'
		WHERE m.box = 'outbox' AND m.message_id = ANY($1)`, ids)
	if err != nil {
		b.Fatal(err)
	}
	for rows.Next() {
		var d time.Duration
		if err := rows.Scan(&d); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, d)
	}
	if len(lat) != n {
		b.Fatalf("%d applied messages, want %d", len(lat), n)
	}
	slices.Sort(lat)

	// Mapping alone: parse and map the messages on one goroutine.
	set, err := mapping.ForTenant(node.Tenants.Current().Tenant("duesseldorf"))
	if err != nil {
		b.Fatal(err)
	}
	events, mapStart := 0, time.Now()
	for _, d := range docs {
		_, facts, err := set.MapXML(d)
		if err != nil {
			b.Fatal(err)
		}
		events += len(facts)
	}
	mapped := time.Since(mapStart)

	var jobCount, retried int
	var jobAvg, jobMax time.Duration
	if err := node.Pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE attempt > 1), avg(finalized_at - attempted_at), max(finalized_at - attempted_at)
		FROM river_job WHERE kind = 'register_pipeline'`).Scan(&jobCount, &retried, &jobAvg, &jobMax); err != nil {
		b.Fatal(err)
	}
	rate := func(d time.Duration) float64 { return float64(n) / d.Seconds() }
	fmt.Printf("register pipeline, %d XMeld 0201 move-ins over XTA at %d clients, same run and database\n", n, clients)
	fmt.Printf("  accepted (sendMessage answered)   %8.0f messages/s\n", rate(accept))
	fmt.Printf("  applied end to end                %8.0f messages/s   (goal: 1,000)\n", rate(applied))
	fmt.Printf("  raw baseline: a person's register rows, one transaction each (%d rows)\n", person.rows())
	fmt.Printf("                                    %8.0f writes/s     applied = %.0f %% of raw (goal: 40 %%)\n", rate(raw), 100*rate(applied)/rate(raw))
	fmt.Printf("  raw single-row INSERT+COMMIT      %8.0f writes/s     applied = %.0f %% of it\n", rate(rawRow), 100*rate(applied)/rate(rawRow))
	fmt.Printf("  accept to applied                 p50 %v   p99 %v   max %v\n",
		lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)*99/100].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	if cpuOK {
		fmt.Printf("  machine CPU (node, clients and PostgreSQL) %.2f ms per message; the cores were %.0f %% busy\n",
			cpuAfter.Sub(cpuBefore).PerOp(n), cpuAfter.Sub(cpuBefore).Busy())
	}
	perMsg := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(n) }
	fmt.Printf("  process CPU per message: node and clients %.2f ms, PostgreSQL backends %.2f ms\n", perMsg(proc.Self), perMsg(proc.Postgres))
	fmt.Printf("  pipeline jobs (warm-up included)  %8d, %d of them tried more than once; each ran %v on average, at most %v\n",
		jobCount, retried, jobAvg.Round(time.Millisecond), jobMax.Round(time.Millisecond))
	if retried > 0 {
		var first string
		if err := node.Pool.QueryRow(ctx, `SELECT errors[1]->>'error' FROM river_job WHERE kind = 'register_pipeline' AND attempt > 1 ORDER BY id LIMIT 1`).Scan(&first); err != nil {
			b.Fatal(err)
		}
		fmt.Printf("    the first retried job's first error: %s\n", first)
	}
	fmt.Printf("  mapping alone (parse + map, one goroutine, no database) %8.0f events/s   (goal: 20,000)\n", float64(events)/mapped.Seconds())
}

// personRows are the register rows of one person, by table.
type personRows []personTable

// personTable are a person's rows of one table: each row its columns'
// values in the order of columns.
type personTable struct {
	name    string
	columns []string
	rows    [][]any
}

// readPerson reads the rows of a person the pipeline wrote.
func readPerson(b *testing.B, node *nodetest.Node) personRows {
	ctx := context.Background()
	var id string
	if err := node.Pool.QueryRow(ctx, `SELECT id::text FROM register_record WHERE tenant_id = 'duesseldorf' LIMIT 1`).Scan(&id); err != nil {
		b.Fatal(err)
	}
	var p personRows
	for _, t := range []struct{ name, columns, key string }{
		{"register_record", "id, tenant_id, register, subject_index, revision, created_at, updated_at", "id"},
		{"register_version", "tenant_id, record_id, seq, revision, valid_from, valid_to, recorded_at, key_version, payload", "record_id"},
		{"register_index", "tenant_id, register, kind, value, record_id", "record_id"},
		{"register_fact", "tenant_id, register, event_index, subject_index, record_id, message_id, day, source, key_version, payload", "record_id"},
	} {
		rows, err := node.Pool.Query(ctx, `SELECT `+t.columns+` FROM `+t.name+` WHERE `+t.key+` = $1`, id)
		if err != nil {
			b.Fatal(err)
		}
		values, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]any, error) { return r.Values() })
		if err != nil || len(values) == 0 {
			b.Fatalf("%s of person %s: %d rows, %v", t.name, id, len(values), err)
		}
		p = append(p, personTable{t.name, strings.Split(t.columns, ", "), values})
	}
	return p
}

// rows counts the rows of one person.
func (p personRows) rows() int {
	n := 0
	for _, t := range p {
		n += len(t.rows)
	}
	return n
}

// batch inserts the rows of the i-th other person: another record id,
// register, subject, index values, event and message id.
func (p personRows) batch(i int) *pgx.Batch {
	id := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
	suffix := []byte(strconv.Itoa(i))
	b := &pgx.Batch{}
	for _, t := range p {
		params := make([]string, len(t.columns))
		for c := range params {
			params[c] = fmt.Sprintf("$%d", c+1)
		}
		sql := `INSERT INTO ` + t.name + ` (` + strings.Join(t.columns, ", ") + `) VALUES (` + strings.Join(params, ", ") + `)`
		for _, row := range t.rows {
			args := slices.Clone(row)
			for c, col := range t.columns {
				switch col {
				case "id", "record_id":
					args[c] = id
				case "register":
					args[c] = "bench_raw"
				case "subject_index", "value", "event_index":
					args[c] = append(slices.Clone(row[c].([]byte)), suffix...)
				case "message_id":
					args[c] = row[c].(string) + string(suffix)
				}
			}
			b.Queue(sql, args...)
		}
	}
	return b
}

// run calls work(i) for i in [0, n) on the given number of goroutines and
// returns the elapsed time.
func run(b *testing.B, n, clients int, work func(i int) error) time.Duration {
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	start := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; i < n; i += clients {
				if err := work(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}
