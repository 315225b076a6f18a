package msgbox

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/parzelle/parzelle/db/dbtest"
)

// statementTracer records the statements of a pool.
type statementTracer struct {
	mu         sync.Mutex
	statements []string
}

func (t *statementTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.statements = append(t.statements, d.SQL)
	return ctx
}

func (t *statementTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (t *statementTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}

func (t *statementTracer) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.statements = append(t.statements, d.SQL)
}

func (t *statementTracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// take returns and forgets what was recorded: the statements (less River's
// rate-limited job notifications, which come and go) and the transactions
// begun.
func (t *statementTracer) take() (statements []string, transactions int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.statements {
		if strings.EqualFold(s, "begin") {
			transactions++
		}
		if !strings.Contains(s, "pg_notify") {
			statements = append(statements, s)
		}
	}
	t.statements = nil
	return statements, transactions
}

// TestStoreStatements stores groups of messages like the ones `make
// bench-xta` sends (10 KB from München to a reader in Köln) through a pool
// whose pgx tracer records every statement, and checks that a group of
// any size takes one transaction and as many statements as one message
// alone, and that every row is there.
func TestStoreStatements(t *testing.T) {
	ctx := context.Background()
	tracer := &statementTracer{}
	cfg, err := pgxpool.ParseConfig(dbtest.NewURL(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.Tracer = tracer
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	s := testStore(t, pool)
	jobs, err := river.NewClient(riverpgxv5.New(pool), &river.Config{})
	if err != nil {
		t.Fatal(err)
	}
	s.SetJobClient(jobs)

	// The first insert of a River client asks for the server's version,
	// and the tenants' keys are made and loaded.
	if err := s.store(ctx, []*accepted{s.prepare(testMessage("urn:de:xta:messageid:store:first"))}); err != nil {
		t.Fatal(err)
	}
	var alone int
	for _, n := range []int{1, 2, 16, 64} {
		ms := make([]*accepted, n)
		for i := range ms {
			ms[i] = s.prepare(testMessage(fmt.Sprintf("urn:de:xta:messageid:store:%d-%d", n, i)))
		}
		tracer.take()
		if err := s.store(ctx, ms); err != nil {
			t.Fatalf("%d messages: %v", n, err)
		}
		statements, transactions := tracer.take()
		t.Logf("%2d messages: %d transaction, %d statements: %.2f statements per message",
			n, transactions, len(statements), float64(len(statements))/float64(n))
		if transactions != 1 {
			t.Errorf("%d messages stored in %d transactions", n, transactions)
		}
		if n == 1 {
			alone = len(statements)
		}
		if len(statements) != alone {
			t.Errorf("%d messages took %d statements, one alone %d:\n%s", n, len(statements), alone, strings.Join(statements, "\n"))
		}

		var ids []int64
		for _, m := range ms {
			ids = append(ids, m.outbox, m.inbox)
		}
		var messages, records, parts, chunks, delivery int
		err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM xta_message WHERE id = ANY($1)),
			(SELECT count(*) FROM xta_report_record WHERE message = ANY($1)),
			(SELECT count(*) FROM xta_part WHERE message = ANY($1)),
			(SELECT count(*) FROM xta_chunk WHERE message = ANY($1) AND key_version > 0 AND length(data) = (10 << 10) + 28),
			(SELECT count(*) FROM river_job WHERE kind = 'xta_deliver' AND (args->>'outbox')::bigint = ANY($1))`, ids).
			Scan(&messages, &records, &parts, &chunks, &delivery)
		if err != nil {
			t.Fatal(err)
		}
		// Delivered into the reader's box as they are stored: a DELIVERED
		// record each, no delivery job.
		if messages != 2*n || records != 3*n || parts != n || chunks != n || delivery != 0 {
			t.Errorf("%d messages stored as %d message rows, %d report records, %d parts, %d chunks, %d delivery jobs",
				n, messages, records, parts, chunks, delivery)
		}
	}
}

// testMessage is a 10 KB message from München to Köln, as XTA describes
// it to the boxes.
func testMessage(id string) *Message {
	payload := make([]byte, 10<<10)
	rand.Read(payload)
	now := time.Now()
	return &Message{
		AuthorTenant: "muenchen", MessageID: id, Author: "dvdv:09162000-0001", Reader: "dvdv:05315000-0001", Service: "urn:test",
		BusinessScenario: "XMELD_DATA", MessageType: "test", Metadata: "<MessageMetaData/>", SentAt: now,
		Records: []Record{{now, "info", RecordAccepted, "angenommen"}, {now, "info", RecordValidated, "geprüft"}},
		Parts:   []Part{{ContentType: "text/xml", Filename: "nachricht.xml", Size: int64(len(payload)), Data: payload}},
	}
}
