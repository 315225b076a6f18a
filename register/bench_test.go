package register_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parzelle/parzelle/node/nodetest"
	"github.com/parzelle/parzelle/register"
	"github.com/parzelle/parzelle/tenant"
)

// BenchmarkRegister prints what `make bench-register` reports: creates,
// updates, reads by id and searches by IDNr per second with the register
// data encrypted (the production Store) beside the same operations with
// the plaintext stored (NewPlaintextStore), in one run against one
// database and one connection pool, and the cost of encryption per
// operation. Each mode has a tenant of its own with the same policy (the
// encrypted one Düsseldorf, the plaintext one Köln), so the data sets and
// audit chains do not mix; the phases alternate between the modes, the
// order flipping every round, so that noise on the shared machine hits
// both alike. It runs once whatever b.N is.
//
// REGISTER_BENCH_N (operations per phase, mode and round; default 100),
// REGISTER_BENCH_ROUNDS (default 10), REGISTER_BENCH_WORKERS (concurrent
// callers; default 8) and REGISTER_BENCH_MODES (encrypted,plaintext) tune
// it; a single mode is for profiling that path.
func BenchmarkRegister(b *testing.B) {
	n, rounds, workers := nodetest.EnvInt(b, "REGISTER_BENCH_N", 100), nodetest.EnvInt(b, "REGISTER_BENCH_ROUNDS", 10), nodetest.EnvInt(b, "REGISTER_BENCH_WORKERS", 8)
	h := startHarness(b)
	ctx := context.Background()

	// One pool for both stores, with a connection per worker, counting
	// the round trips each operation makes.
	cfg, err := pgxpool.ParseConfig(h.dbURL)
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = int32(workers + 2)
	trips := &tripCounter{}
	cfg.ConnConfig.Tracer = trips
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()

	all := []*benchMode{
		{name: "encrypted", tenant: "duesseldorf", store: register.NewStore(register.Config{Pool: pool, Keys: h.keys, Tenants: h.tenants.Current})},
		{name: "plaintext", tenant: "koeln", store: register.NewPlaintextStore(register.Config{Pool: pool, Tenants: h.tenants.Current})},
	}
	var modes []*benchMode
	only := os.Getenv("REGISTER_BENCH_MODES")
	for _, m := range all {
		if only == "" || strings.Contains(only, m.name) {
			m.actor = tenant.Actor{Tenant: m.tenant, Kind: tenant.ActorCertificate, Subject: "bench", Role: "fachverfahren", Purpose: "meldewesen"}
			modes = append(modes, m)
		}
	}
	if len(modes) == 0 {
		b.Fatalf("REGISTER_BENCH_MODES=%q names neither encrypted nor plaintext", only)
	}

	// Round 0 warms up (keys created and unwrapped, connections opened,
	// statements prepared) and is not counted.
	for round := 0; round <= rounds; round++ {
		size := n
		if round == 0 {
			size = 4 * workers
		}
		order := modes
		if round%2 == 0 && len(modes) == 2 {
			order = []*benchMode{modes[1], modes[0]}
		}
		for _, m := range order {
			m.people = make([]benchPerson, size)
			for i := range m.people {
				m.people[i] = newBenchPerson(round, i)
			}
		}
		for p, phase := range benchPhases {
			for _, m := range order {
				before := trips.n.Load()
				elapsed := runParallel(b, workers, size, func(i int) error { return phase.do(ctx, m, &m.people[i]) })
				if round > 0 {
					m.elapsed[p] += elapsed
					m.ops[p] += size
					m.trips[p] += trips.n.Load() - before
					m.rounds[p] = append(m.rounds[p], float64(size)/elapsed.Seconds())
				}
			}
		}
	}

	for _, m := range modes {
		m.checkStorage(b, ctx, pool)
	}

	fmt.Printf("register records, %d workers, %d rounds x %d operations per phase and mode, same run and database\n", workers, rounds, n)
	fmt.Printf("%-20s", "operation")
	for _, m := range modes {
		fmt.Printf(" %12s", m.name+"/s")
	}
	fmt.Printf(" %9s %18s %15s\n", "cost", "cost, round range", "round trips/op")
	for p, phase := range benchPhases {
		fmt.Printf("%-20s", phase.name)
		for _, m := range modes {
			fmt.Printf(" %12.0f", m.rate(p))
		}
		if len(modes) == 2 {
			enc, plain := modes[0].rate(p), modes[1].rate(p)
			costs := make([]float64, rounds)
			for r := range costs {
				enc, plain := modes[0].rounds[p][r], modes[1].rounds[p][r]
				costs[r] = 100 * (plain - enc) / plain
			}
			fmt.Printf(" %8.1f %% %7.0f .. %3.0f %%", 100*(plain-enc)/plain, slices.Min(costs), slices.Max(costs))
		} else {
			fmt.Printf(" %9s %18s", "-", "-")
		}
		var perOp []string
		for _, m := range modes {
			perOp = append(perOp, strconv.FormatFloat(float64(m.trips[p])/float64(m.ops[p]), 'f', 1, 64))
		}
		fmt.Printf(" %15s\n", strings.Join(perOp, " / "))
	}
	fmt.Println("cost = (plaintext - encrypted) / plaintext ops/s over all rounds (goal: under 25 %); round range: the same per round")
}

// benchMode is one way of storing the data, with its tenant and counts.
type benchMode struct {
	name, tenant string
	store        *register.Store
	actor        tenant.Actor
	people       []benchPerson

	elapsed [4]time.Duration
	ops     [4]int
	trips   [4]int64
	rounds  [4][]float64 // ops/s per measured round
}

func (m *benchMode) rate(phase int) float64 {
	return float64(m.ops[phase]) / m.elapsed[phase].Seconds()
}

// checkStorage makes sure each mode stored what it claims: ciphertext
// under a data key, or the plaintext JSON.
func (m *benchMode) checkStorage(b *testing.B, ctx context.Context, pool *pgxpool.Pool) {
	var rows, plain, keyed int
	err := pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE position('"familienname":'::bytea in payload) > 0),
		count(*) FILTER (WHERE key_version > 0) FROM register_version WHERE tenant_id = $1`, m.tenant).Scan(&rows, &plain, &keyed)
	if err != nil {
		b.Fatal(err)
	}
	want := map[string][2]int{"encrypted": {0, rows}, "plaintext": {rows, 0}}[m.name]
	if rows == 0 || plain != want[0] || keyed != want[1] {
		b.Fatalf("%s: %d version rows, %d with plaintext, %d under a data key; want %d and %d", m.name, rows, plain, keyed, want[0], want[1])
	}
}

// benchPerson is a Melderegister person and what the phases learn of it.
type benchPerson struct {
	subject string
	attrs   register.Attributes
	idnr    string
	moved   register.Attributes
	id      string
}

var (
	familiennamen = []string{"Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder", "Neumann", "Schwarz", "Zimmermann", "Braun", "Krüger", "Hofmann", "Hartmann", "Lange", "Schmitt", "Werner", "Schmitz", "Krause", "Meier"}
	vornamen      = []string{"Anna Maria", "Lukas", "Sophie", "Jonas Alexander", "Marie", "Felix", "Emilia", "Leon", "Hannah Luise", "Paul", "Mia", "Ben", "Lea Sophie", "Elias", "Clara", "Noah Maximilian", "Lina", "Finn", "Ida", "Jürgen"}
	strassen      = []string{"Königsallee", "Kasernenstraße", "Graf-Adolf-Straße", "Bilker Allee", "Kölner Landstraße", "Oststraße", "Lindenstraße", "Aachener Straße", "Ackerstraße", "Brunnenstraße"}
	ortsteile     = []string{"Altstadt", "Bilk", "Derendorf", "Flingern-Nord", "Oberkassel", "Pempelfort", "Unterbilk", "Gerresheim"}
)

// newBenchPerson makes the i-th person of a round: a distinct subject key
// and IDNr, a plausible name, birth date and main residence, and the
// residence it moves to in the update phase.
func newBenchPerson(round, i int) benchPerson {
	k := round*100003 + i
	idnr := fmt.Sprintf("%d%09d", 1+round%9, k%1_000_000_000)
	idnr += string(register.IDNrCheckDigit(idnr))
	address := func(j int) map[string]any {
		return map[string]any{
			"strasse":      strassen[j%len(strassen)],
			"hausnummer":   strconv.Itoa(1 + j%187),
			"postleitzahl": fmt.Sprintf("402%02d", 10+j%80),
			"wohnort":      "Düsseldorf",
			"ortsteil":     ortsteile[j%len(ortsteile)],
		}
	}
	return benchPerson{
		subject: fmt.Sprintf("OM-%d-%07d", round, i),
		idnr:    idnr,
		attrs: register.Attributes{
			"familienname":         familiennamen[k%len(familiennamen)],
			"vornamen":             vornamen[(k/7)%len(vornamen)],
			"geburtsdatum":         fmt.Sprintf("%d-%02d-%02d", 1940+k%80, 1+k%12, 1+k%28),
			"geburtsort":           "Düsseldorf",
			"geschlecht":           []string{"m", "w", "d"}[k%3],
			"staatsangehoerigkeit": []any{"000"},
			"idnr":                 idnr,
			"familienstand":        "LD",
			"hauptwohnung":         address(k),
		},
		moved: register.Attributes{"hauptwohnung": address(k + 3)},
	}
}

// benchPhase is one operation measured in both modes.
type benchPhase struct {
	name string
	do   func(ctx context.Context, m *benchMode, p *benchPerson) error
}

var benchPhases = []benchPhase{
	{"create (writes)", func(ctx context.Context, m *benchMode, p *benchPerson) error {
		rec, err := m.store.Create(ctx, m.actor, m.tenant, "melderegister", register.Create{SubjectKey: p.subject, Attributes: p.attrs, ValidFrom: "2019-04-01"})
		p.id = rec.ID
		return err
	}},
	{"update (writes)", func(ctx context.Context, m *benchMode, p *benchPerson) error {
		rec, err := m.store.Update(ctx, m.actor, m.tenant, "melderegister", p.id, register.Change{Attributes: p.moved, IfRevision: 1})
		if err == nil && rec.Revision != 2 {
			err = fmt.Errorf("update of %s: revision %d, want 2", p.id, rec.Revision)
		}
		return err
	}},
	{"read by id (reads)", func(ctx context.Context, m *benchMode, p *benchPerson) error {
		rec, err := m.store.Get(ctx, m.actor, m.tenant, "melderegister", p.id, register.Temporal{})
		if err == nil && (rec.Attributes["familienname"] != p.attrs["familienname"] || fmt.Sprint(rec.Attributes["hauptwohnung"]) != fmt.Sprint(p.moved["hauptwohnung"])) {
			err = fmt.Errorf("read of %s: %v, want %v living at %v", p.id, rec.Attributes, p.attrs["familienname"], p.moved["hauptwohnung"])
		}
		return err
	}},
	{"search IDNr (reads)", func(ctx context.Context, m *benchMode, p *benchPerson) error {
		recs, err := m.store.Search(ctx, m.actor, m.tenant, "melderegister", register.Query{IDNr: p.idnr})
		if err == nil && (len(recs) != 1 || recs[0].ID != p.id) {
			err = fmt.Errorf("search for %s found %d records, want %s", p.idnr, len(recs), p.id)
		}
		return err
	}},
}

// runParallel calls fn for 0..n-1 from the given number of goroutines and
// returns the wall time, failing the benchmark on the first error.
func runParallel(b *testing.B, workers, n int, fn func(i int) error) time.Duration {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if err := fn(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return elapsed
}

// tripCounter counts the round trips to PostgreSQL (n: each statement
// sent alone and each batch is one) and the statements they carry.
type tripCounter struct{ n, statements atomic.Int64 }

func (t *tripCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	t.n.Add(1)
	t.statements.Add(1)
	return ctx
}

func (t *tripCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (t *tripCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	t.n.Add(1)
	return ctx
}

func (t *tripCounter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {
	t.statements.Add(1)
}

func (t *tripCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}
