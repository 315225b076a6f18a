package xnachweis_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parzelle/parzelle/node/nodetest"
	"github.com/parzelle/parzelle/xnachweis"
)

// BenchmarkEvidence measures signed answers per second over HTTPS with
// mTLS keep-alive at 16 concurrent requesters (XNACHWEIS_BENCH_CLIENTS),
// each answer a Meldebescheinigung found by IDNr, signed (the evidence
// document's XML signature and the transport's JWS: two signatures), and
// accounted (audit log, access log, token); then the latency at half that
// rate. Beside it, in the same run, raw RSA signatures per second with the
// tenant's signing key on every core. Run it with make bench-xnachweis.
func BenchmarkEvidence(b *testing.B) {
	n := nodetest.EnvInt(b, "XNACHWEIS_BENCH_N", 2000)
	clients := nodetest.EnvInt(b, "XNACHWEIS_BENCH_CLIENTS", 16)
	w := newWorld(b, worldOptions{messages: family})
	key, err := w.Keys.SigningKey(context.Background(), "duesseldorf")
	if err != nil {
		b.Fatal(err)
	}
	// The requests are sealed before the clock runs: the Vermittlungsstelle
	// is not part of what is measured.
	requests := make([][]byte, 2*n+n/4)
	for i := range requests {
		requests[i] = w.sealed(b, spec(buergeramt, tobiasByIDNr), "wohnsitznachweis")
	}
	hc := w.HTTP("buergeramt")
	// The requesters only check that evidence came: verifying its two
	// signatures is the requester's work, not the node's, and would take
	// the cores the node is measured on (the warm-up verifies them).
	send := func(req []byte) time.Duration {
		start := time.Now()
		resp, err := hc.Post(w.Base+xnachweis.Path, "application/xml", bytes.NewReader(req))
		if err != nil {
			b.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || resp.Header.Get(xnachweis.SignatureHeader) == "" || !bytes.Contains(body, []byte("DE.EvidenceResponse.0102")) {
			b.Fatalf("answer: HTTP %d %v\n%s", resp.StatusCode, err, body)
		}
		return time.Since(start)
	}
	// Warm up: connections, caches, plans.
	for _, r := range requests[2*n:] {
		if x, err := xnachweis.Post(context.Background(), hc, w.Base, r, w.trust); err != nil || x.Evidence == nil {
			b.Fatalf("answer: %v %s %s", err, x.Code, x.Details)
		}
	}
	// Raw signing is measured before and after the answers, and the
	// faster of the two counts: the machine's speed drifts.
	signs := rawSigns(key.Key, 2*time.Second)
	b.ResetTimer()
	cpu0, cpuOK := nodetest.MachineCPU()
	lat, elapsed := run(requests[:n], clients, 0, send)
	cpu1, _ := nodetest.MachineCPU()
	rate := float64(n) / elapsed.Seconds()
	half, _ := run(requests[n:2*n], clients, rate/2, send)
	b.StopTimer()
	signs = max(signs, rawSigns(key.Key, 2*time.Second))
	bits := "?"
	if k, ok := key.Key.Public().(interface{ Size() int }); ok {
		bits = strconv.Itoa(k.Size() * 8)
	}
	fmt.Printf("evidence answers over HTTPS (mTLS keep-alive), %d clients, %d requests, RSA-%s signing key, 2 signatures per answer:\n", clients, n, bits)
	fmt.Printf("  at full speed:  %7.1f answers/s   p50 %6.1f ms   p99 %6.1f ms\n", rate, ms(pct(lat, 50)), ms(pct(lat, 99)))
	fmt.Printf("  at half speed:  %7.1f answers/s   p50 %6.1f ms   p99 %6.1f ms\n", rate/2, ms(pct(half, 50)), ms(pct(half, 99)))
	fmt.Printf("  raw RSA signing with the same key on %d cores: %.1f signs/s → at most %.1f answers/s; measured %.0f %% of that (goal ≥ 60 %%)\n",
		runtime.GOMAXPROCS(0), signs, signs/2, 100*rate/(signs/2))
	if cpuOK {
		fmt.Printf("  machine CPU (node, requesters and PostgreSQL) at full speed: %.2f ms per answer; the cores were %.0f %% busy\n",
			cpu1.Sub(cpu0).PerOp(n), cpu1.Sub(cpu0).Busy())
	}
	b.ReportMetric(rate, "answers/s")
	b.ReportMetric(ms(pct(half, 99)), "p99-ms-at-half")
}

// run sends the requests from the clients, paced to rate per second in all
// (0: as fast as they go), and returns every latency and the time taken.
func run(requests [][]byte, clients int, rate float64, send func([]byte) time.Duration) ([]time.Duration, time.Duration) {
	var next atomic.Int64
	lat := make([]time.Duration, len(requests))
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(requests) {
					return
				}
				if rate > 0 {
					if due := start.Add(time.Duration(float64(i) / rate * float64(time.Second))); time.Until(due) > 0 {
						time.Sleep(time.Until(due))
					}
				}
				lat[i] = send(requests[i])
			}
		}()
	}
	wg.Wait()
	return lat, time.Since(start)
}

// rawSigns signs SHA-256 digests with the key on every core for d and
// returns signatures per second.
func rawSigns(key crypto.Signer, d time.Duration) float64 {
	var count atomic.Int64
	digest := sha256.Sum256([]byte("parzelle"))
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				if _, err := key.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
					panic(err)
				}
				count.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(count.Load()) / d.Seconds()
}

func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
