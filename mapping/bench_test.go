package mapping

import (
	"os"
	"testing"
	"time"

	"github.com/parzelle/parzelle/xmlsafe"
)

// benchMessages reads the fixture messages of every golden case the demo
// set maps: every message type of every demo spec.
func benchMessages(b *testing.B) [][]byte {
	var out [][]byte
	for _, c := range goldenCases {
		if c.reader {
			continue
		}
		data, err := os.ReadFile(c.message)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, data)
	}
	return out
}

// BenchmarkMap measures mapping throughput on one goroutine, in events
// (facts) per second: "map" maps parsed messages, "parse+map" includes
// xmlsafe's parse, as the pipeline does it.
func BenchmarkMap(b *testing.B) {
	set := demoSet(b)
	msgs := benchMessages(b)
	var docs []*xmlsafe.Element
	for _, m := range msgs {
		d, err := ParseMessage(m)
		if err != nil {
			b.Fatal(err)
		}
		docs = append(docs, d)
	}
	b.Run("map", func(b *testing.B) {
		b.ReportAllocs()
		events := 0
		start := time.Now()
		for i := 0; i < b.N; i++ {
			_, facts, err := set.Map(docs[i%len(docs)])
			if err != nil {
				b.Fatal(err)
			}
			events += len(facts)
		}
		b.ReportMetric(float64(events)/time.Since(start).Seconds(), "events/s")
	})
	b.Run("parse+map", func(b *testing.B) {
		b.ReportAllocs()
		events := 0
		start := time.Now()
		for i := 0; i < b.N; i++ {
			_, facts, err := set.MapXML(msgs[i%len(msgs)])
			if err != nil {
				b.Fatal(err)
			}
			events += len(facts)
		}
		b.ReportMetric(float64(events)/time.Since(start).Seconds(), "events/s")
	})
}
