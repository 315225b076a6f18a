package register_test

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parzelle/parzelle/node/nodetest"
	"github.com/parzelle/parzelle/register"
)

// BenchmarkApply applies groups of 1, 16 and 64 new subjects per call, each
// subject's move-in fact a whole Melderegister person, as the inbox
// pipeline hands them over, and reports subjects/s with the statements and
// round trips per call. REGISTER_BENCH_WORKERS (default 1) callers apply at
// once, each call in a transaction of its own.
func BenchmarkApply(b *testing.B) {
	workers := nodetest.EnvInt(b, "REGISTER_BENCH_WORKERS", 1)
	h := startHarness(b)
	store, trips := countingStore(b, h, int32(workers+1))
	var next atomic.Int64
	group := func(size int) []register.Fact {
		facts := make([]register.Fact, size)
		for i := range facts {
			k := int(next.Add(1))
			facts[i] = moveIn(newBenchPerson(k/100000, k%100000), "msg-"+strconv.Itoa(k))
		}
		return facts
	}
	apply := func(size int) error {
		res, err := store.Apply(b.Context(), pipelineActor, "duesseldorf", "melderegister", group(size))
		if err == nil && (len(res) != size || !res[0].Created || res[0].New != 1) {
			err = fmt.Errorf("apply of %d new subjects: %+v", size, res)
		}
		return err
	}
	// Keys, audit chain, connections and prepared statements first.
	if err := apply(4); err != nil {
		b.Fatal(err)
	}
	for _, size := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("subjects=%d", size), func(b *testing.B) {
			s0, t0 := trips.statements.Load(), trips.n.Load()
			b.ResetTimer()
			start := time.Now()
			runParallel(b, workers, b.N, func(int) error { return apply(size) })
			elapsed := time.Since(start)
			b.StopTimer()
			rate := float64(b.N*size) / elapsed.Seconds()
			b.ReportMetric(rate, "subjects/s")
			b.ReportMetric(float64(trips.statements.Load()-s0)/float64(b.N), "statements/call")
			b.ReportMetric(float64(trips.n.Load()-t0)/float64(b.N), "trips/call")
		})
	}
}
