package xta_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/parzelle/parzelle/msgbox"
	"github.com/parzelle/parzelle/node/nodetest"
	"github.com/parzelle/parzelle/xta"
)

// BenchmarkXTA prints what `make bench-xta` reports: sendMessage of a 10 KB
// message at 16 concurrent mTLS keep-alive clients (with the transactions
// that stored them and the CPU time per message of this process and of
// PostgreSQL) beside a raw pgx baseline (single-row INSERT+COMMIT of the
// same payload at the same concurrency), then a 40 MB MTOM send and fetch
// with the process's peak RSS growth. It runs once whatever b.N is.
func BenchmarkXTA(b *testing.B) {
	const clients, perClient, size = 16, 200, 10 << 10
	h := startHarness(b)
	ctx := context.Background()
	payload := make([]byte, size)
	rand.Read(payload)

	lat := make([][]time.Duration, clients)
	run := func(work func(c, i int) error) (time.Duration, []time.Duration) {
		var wg sync.WaitGroup
		errs := make(chan error, clients)
		start := time.Now()
		for c := 0; c < clients; c++ {
			wg.Add(1)
			go func(c int) {
				defer wg.Done()
				lat[c] = lat[c][:0]
				for i := 0; i < perClient; i++ {
					t0 := time.Now()
					if err := work(c, i); err != nil {
						errs <- err
						return
					}
					lat[c] = append(lat[c], time.Since(t0))
				}
			}(c)
		}
		wg.Wait()
		elapsed := time.Since(start)
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		var all []time.Duration
		for _, l := range lat {
			all = append(all, l...)
		}
		slices.Sort(all)
		return elapsed, all
	}
	report := func(name string, elapsed time.Duration, all []time.Duration) float64 {
		rate := float64(len(all)) / elapsed.Seconds()
		fmt.Printf("%-44s %6d msgs  %8.0f msgs/s  p50 %6.1f ms  p99 %6.1f ms\n", name, len(all), rate,
			float64(all[len(all)/2].Microseconds())/1000, float64(all[len(all)*99/100].Microseconds())/1000)
		return rate
	}

	senders := make([]*xta.Client, clients)
	for c := range senders {
		senders[c] = h.client("muenchen", author, false)
	}
	prefix := "urn:de:xta:messageid:bench:" + strconv.FormatInt(time.Now().UnixNano(), 36)
	cpu0 := processCPU(b, h.pool)
	elapsed, all := run(func(c, i int) error {
		m := outgoing(fmt.Sprintf("%s-%d-%d", prefix, c, i), payload, nil)
		m.Attachments = nil
		return senders[c].Send(ctx, m)
	})
	cpu1 := processCPU(b, h.pool)
	xtaRate := report("XTA sendMessage 10 KB, mTLS, 16 clients", elapsed, all)
	// The transactions that stored the messages: those of their ACCEPTED
	// records (rows of one transaction share its xmin).
	var stored, txs int
	if err := h.pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT r.xmin::text) FROM xta_report_record r
		JOIN xta_message m ON m.id = r.message WHERE r.code = 'ACCEPTED' AND m.box = 'outbox' AND m.message_id LIKE $1 || '%'`, prefix).Scan(&stored, &txs); err != nil {
		b.Fatal(err)
	}
	perMsg := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(len(all)) }
	fmt.Printf("  stored in %d transactions (%.1f messages each); CPU per message: node and clients %.2f ms, PostgreSQL backends %.2f ms\n",
		txs, float64(stored)/float64(txs), perMsg(cpu1.Sub(cpu0).Self), perMsg(cpu1.Sub(cpu0).Postgres))

	if _, err := h.pool.Exec(ctx, `CREATE TABLE bench_raw (id bigserial PRIMARY KEY, payload bytea NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	elapsed, all = run(func(c, i int) error {
		_, err := h.pool.Exec(ctx, `INSERT INTO bench_raw (payload) VALUES ($1)`, payload)
		return err
	})
	rawRate := report("raw pgx INSERT+COMMIT 10 KB, 16 clients", elapsed, all)
	fmt.Printf("XTA at %.0f %% of the raw baseline (goal: at least 50 %%)\n\n", 100*xtaRate/rawRate)

	// 40 MB: send with MTOM, then fetch with MTOM, discarding the bytes as
	// they arrive so that only the node's memory counts.
	big := make([]byte, 40<<20-1024)
	rand.Read(big)
	runtime.GC()
	resetPeakRSS()
	base := rssKB("VmRSS")
	id := prefix + "-big"
	m := outgoing(id, big, nil)
	m.Attachments = nil
	sender := h.client("muenchen", author, true)
	t0 := time.Now()
	if err := sender.Send(ctx, m); err != nil {
		b.Fatal(err)
	}
	sendTime := time.Since(t0)
	sendPeak := rssKB("VmHWM")
	waitStatus(b, sender, id, msgbox.StatusGreen)
	runtime.GC()
	resetPeakRSS()
	base2 := rssKB("VmRSS")
	fetchBody := strings.Replace(strings.Replace(sample(b, "10-getMessage-request.xml"), "urn:de:xta:messageid:hub.example.invalid:6c1e9a52-7d41-4b8e-93f0-2a6b8c0d1e2f", id, 1), `<?xml version="1.0" encoding="UTF-8"?>`, "", 1)
	ct, pkg := mtomPackage(fetchBody, nil, true)
	req, _ := http.NewRequest(http.MethodPost, h.base+xta.PortMsgBox, bytes.NewReader(pkg))
	req.Header.Set("Content-Type", ct)
	t0 = time.Now()
	resp, err := h.http("koeln").Do(req)
	if err != nil {
		b.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	fetchTime := time.Since(t0)
	if resp.StatusCode != 200 || n < int64(len(big)) {
		b.Fatalf("fetch: HTTP %d, %d bytes", resp.StatusCode, n)
	}
	fetchPeak := rssKB("VmHWM")
	fmt.Printf("40 MB MTOM sendMessage   %6.2f s   peak RSS growth %5.1f MB (goal: under 64 MB)\n", sendTime.Seconds(), float64(sendPeak-base)/1024)
	fmt.Printf("40 MB MTOM getMessage    %6.2f s   peak RSS growth %5.1f MB (goal: under 64 MB)\n", fetchTime.Seconds(), float64(fetchPeak-base2)/1024)
	fmt.Println("(RSS is the test process: node and client share it; the client streams and discards.)")
}

func processCPU(b *testing.B, pool *pgxpool.Pool) nodetest.ProcessCPU {
	c, err := nodetest.ReadProcessCPU(context.Background(), pool)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// resetPeakRSS resets VmHWM (Linux: writing 5 to clear_refs).
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

func rssKB(field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), field+":"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}
