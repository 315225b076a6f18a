package msgbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/db/dbtest"
	"github.com/parzelle/parzelle/sealing"
)

// TestSealedChunksStayInPlace: content is stored sealed, small messages as
// one chunk and large ones streamed in several; a sealed chunk or report
// text copied to another message, part or place in the sequence does not
// open there (the ciphertext is bound to where it is stored), and reading
// it says which message is damaged instead of returning another's content.
func TestSealedChunksStayInPlace(t *testing.T) {
	ctx := context.Background()
	pool := dbtest.New(t)
	s := testStore(t, pool)
	jobs, err := river.NewClient(riverpgxv5.New(pool), &river.Config{})
	if err != nil {
		t.Fatal(err)
	}
	s.SetJobClient(jobs)

	small, other := testMessage("urn:de:xta:messageid:sealed:small"), testMessage("urn:de:xta:messageid:sealed:other")
	large := testMessage("urn:de:xta:messageid:sealed:large")
	content := bytes.Repeat([]byte("<Zeile>Lindemannstraße 12</Zeile>\n"), 2*ChunkSize/30)
	large.Parts[0].Data, large.Parts[0].Size = nil, int64(len(content))
	large.Parts[0].Open = func() (io.Reader, error) { return bytes.NewReader(content), nil }
	ms := []*accepted{s.prepare(small), s.prepare(other)}
	if err := s.store(ctx, ms); err != nil {
		t.Fatal(err)
	}
	big := s.prepare(large)
	if err := s.store(ctx, []*accepted{big}); err != nil {
		t.Fatal(err)
	}
	read := func(inbox int64) ([]byte, error) {
		var c []byte
		err := db.InTenant(ctx, pool, "koeln", func(tx pgx.Tx) (err error) {
			c, err = s.ReadContent(ctx, tx, "koeln", inbox)
			return err
		})
		return c, err
	}
	for _, m := range []struct {
		a    *accepted
		want []byte
	}{{ms[0], small.Parts[0].Data}, {ms[1], other.Parts[0].Data}, {big, content}} {
		got, err := read(m.a.inbox)
		if err != nil || !bytes.Equal(got, m.want) {
			t.Fatalf("%s: read %d bytes (%v), want the %d stored", m.a.MessageID, len(got), err, len(m.want))
		}
	}
	var chunks int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM xta_chunk WHERE message = $1 AND key_version > 0`, big.inbox).Scan(&chunks); err != nil || chunks != 3 {
		t.Fatalf("the large message is stored in %d sealed chunks (%v), want 3", chunks, err)
	}
	if bytes.Contains(dbtest.Dump(t, pool.Config().ConnString()), []byte("Lindemannstra")) {
		t.Error("the dump shows the content")
	}

	moves := []struct {
		name, sql string
		damaged   int64
		args      []any
	}{
		{"another message's chunk", `UPDATE xta_chunk SET data = (SELECT data FROM xta_chunk WHERE message = $2) WHERE message = $1`,
			ms[0].inbox, []any{ms[0].inbox, ms[1].inbox}},
		{"the chunks of a message swapped", `UPDATE xta_chunk c SET data = o.data FROM xta_chunk o
			WHERE c.message = $1 AND o.message = $1 AND o.seq = 1 - c.seq AND c.seq < 2`, big.inbox, []any{big.inbox}},
	}
	for _, m := range moves {
		if _, err := pool.Exec(ctx, m.sql, m.args...); err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		got, err := read(m.damaged)
		if !errors.Is(err, sealing.ErrDecrypt) || got != nil || !strings.Contains(err.Error(), fmt.Sprint(m.damaged)) {
			t.Errorf("%s: read %d bytes, error %v; want ErrDecrypt naming message %d", m.name, len(got), err, m.damaged)
		}
	}

	// A report text moved to another message's report does not open.
	if _, err := pool.Exec(ctx, `UPDATE xta_report_record SET reason = (SELECT reason FROM xta_report_record WHERE message = $2 LIMIT 1)
		WHERE message = $1`, ms[1].outbox, ms[0].outbox); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Report(ctx, "muenchen", small.Author, other.MessageID); !errors.Is(err, sealing.ErrDecrypt) {
		t.Errorf("the report with a moved text: %v, want ErrDecrypt", err)
	}
	if o, err := s.Report(ctx, "muenchen", small.Author, small.MessageID); err != nil || len(o.Records) != 3 || o.Records[0].Reason != "angenommen" {
		t.Errorf("the report the text was taken from: %+v %v", o, err)
	}
}
