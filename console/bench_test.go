package console_test

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/parzelle/parzelle/config"
)

// BenchmarkConsole renders the dead-letter list (server-side paging) with
// 10,000 open dead letters, first, filtered and deep pages, and the
// overview, and prints p50/p99 per page (goals: list under 200 ms, overview
// under 100 ms at p99). Run it with make bench-console.
func BenchmarkConsole(b *testing.B) {
	n := startNode(b, config.Console{})
	const letters = 10000
	if _, err := n.Pool.Exec(b.Context(), `INSERT INTO pipeline_dead_letter (tenant_id, message_id, author, reader, message_type, step, cause, reason, problems, key_version, attempts, created_at)
		SELECT 'duesseldorf', 'urn:bench:' || i, 'ags:05111000', 'register:05111000', 'fortschreibung.tod.0040', 'map',
			(ARRAY['no-spec', 'mapping', 'schema-invalid'])[1 + i % 3], '\x00'::bytea, '\x00'::bytea, 1, 1, now() - i * interval '1 minute'
		FROM generate_series(1, $1) i`, letters); err != nil {
		b.Fatal(err)
	}
	if _, err := n.Pool.Exec(b.Context(), `ANALYZE pipeline_dead_letter`); err != nil {
		b.Fatal(err)
	}
	c := newClient(b, n)
	if resp := c.login("betrieb", passwords["betrieb"]); resp.StatusCode != http.StatusSeeOther {
		b.Fatalf("sign-in: %d", resp.StatusCode)
	}
	pages := []struct{ name, path string }{
		{"dead letters, page 1", "/console/dead-letters?tenant=duesseldorf"},
		{"dead letters, filtered by cause", "/console/dead-letters?tenant=duesseldorf&cause=mapping"},
		{"dead letters, page 150 of 200", "/console/dead-letters?tenant=duesseldorf&page=150"},
		{"overview", "/console/"},
	}
	const rounds = 300
	b.ResetTimer()
	for range b.N {
		for _, p := range pages {
			var took []time.Duration
			for range rounds {
				start := time.Now()
				resp, _ := c.do("GET", p.path, nil)
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("%s: %d", p.path, resp.StatusCode)
				}
				took = append(took, time.Since(start))
			}
			slices.Sort(took)
			fmt.Printf("%-34s p50 %6.1f ms  p99 %6.1f ms  (%d requests, %d dead letters)\n", p.name,
				ms(took[len(took)/2]), ms(took[len(took)*99/100]), rounds, letters)
		}
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
