package xta_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/parzelle/parzelle/msgbox"
	"github.com/parzelle/parzelle/xta"
)

// groupKinds are the messages TestGroupCommit mixes in one group: message
// i is of kind i%3. records are the codes of the report once the message
// reached status (warnings first, as the report lists them).
var groupKinds = []struct {
	name       string
	reader     string
	xml        bool
	attachment bool
	status     int
	records    []string
}{
	{"plain, with an attachment", reader, false, true, msgbox.StatusGreen,
		[]string{msgbox.RecordAccepted, msgbox.RecordValidated, msgbox.RecordDelivered}},
	{"XML without an installed schema", reader, true, false, msgbox.StatusYellow,
		[]string{msgbox.RecordSchemaMissing, msgbox.RecordAccepted, msgbox.RecordValidated, msgbox.RecordDelivered}},
	{"reader hosted elsewhere", foreign, false, false, msgbox.StatusOpen,
		[]string{msgbox.RecordAccepted, msgbox.RecordValidated, msgbox.RecordForwarding}},
}

// groupMessage returns message i of TestGroupCommit with its own content.
func groupMessage(i int, id string) *xta.OutgoingMessage {
	k := groupKinds[i%len(groupKinds)]
	payload := make([]byte, 2<<10+i)
	rand.Read(payload)
	if k.xml {
		payload = fmt.Appendf(nil, `<?xml version="1.0" encoding="UTF-8"?><nachricht nr="%d">Grüße</nachricht>`, i)
	}
	attachment := make([]byte, 300+i)
	rand.Read(attachment)
	m := outgoing(id, payload, attachment)
	m.Reader = xta.Party{ID: k.reader}
	if !k.attachment {
		m.Attachments = nil
	}
	return m
}

// TestGroupCommit sends messages at once while both committers are held in
// the database, so that the messages queue up and are stored together, and
// checks what each client is answered, what is stored for each message (its
// report, its box row and content, all its rows in one transaction), and
// in how many transactions. A group in which a MessageID is used twice, or
// was used before, is stored message by message: only the offending
// message gets fault 9024.
func TestGroupCommit(t *testing.T) {
	h := startHarness(t)
	ctx := context.Background()
	sender := h.client("muenchen", author, false)
	box := h.client("koeln", reader, false)
	prefix := "urn:de:xta:messageid:group:" + strconv.FormatInt(time.Now().UnixNano(), 36)
	earlier := prefix + "-earlier"
	earlierMsg := groupMessage(0, earlier)
	if err := sender.Send(ctx, earlierMsg); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, sender, earlier, msgbox.StatusGreen)

	cases := []struct {
		name string
		n    int
		// dup[i] is the message whose MessageID message i reuses, -1 for
		// the message sent before.
		dup map[int]int
		// groups is the number of transactions that store the accepted
		// messages.
		groups int
	}{
		{name: "one group", n: 40, groups: 1},
		{name: "more than a group holds", n: 100, groups: 2},
		{name: "MessageID used before", n: 12, dup: map[int]int{5: -1}, groups: 11},
		{name: "MessageID twice in the group", n: 12, dup: map[int]int{7: 3}, groups: 11},
	}
	for ci, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ids := make([]string, tc.n)
			for i := range ids {
				ids[i] = fmt.Sprintf("%s-%d-%d", prefix, ci, i)
			}
			for i, j := range tc.dup {
				ids[i] = earlier
				if j >= 0 {
					ids[i] = ids[j]
				}
			}
			msgs := make([]*xta.OutgoingMessage, tc.n)
			for i := range msgs {
				msgs[i] = groupMessage(i, ids[i])
			}
			errs := sendHeld(t, h, sender, prefix+"-plug-"+strconv.Itoa(ci), msgs)

			// Exactly the messages that reuse a MessageID fail (of two
			// messages of the group with one MessageID, the one stored
			// second), with 9024; the others are accepted.
			var faulted, stored []int
			for i, err := range errs {
				switch {
				case err == nil:
					stored = append(stored, i)
				case isCode(err, "9024"):
					faulted = append(faulted, i)
				default:
					t.Errorf("message %d: %v", i, err)
				}
			}
			if len(faulted) != len(tc.dup) {
				t.Fatalf("faulted %v, want %d of the messages that share a MessageID (%v)", faulted, len(tc.dup), tc.dup)
			}
			for _, i := range faulted {
				_, reuses := tc.dup[i]
				for _, j := range tc.dup {
					reuses = reuses || i == j
				}
				if !reuses {
					t.Errorf("message %d, whose MessageID is its own, got 9024", i)
				}
			}

			for _, i := range stored {
				checkStored(t, h, sender, box, ids[i], msgs[i], groupKinds[i%len(groupKinds)].status, groupKinds[i%len(groupKinds)].records)
			}
			if slices.Contains(slices.Collect(maps.Values(tc.dup)), -1) {
				// The message whose MessageID was reused is unchanged.
				checkStored(t, h, sender, box, earlier, earlierMsg, groupKinds[0].status, groupKinds[0].records)
			}

			// Each message's rows were written by one transaction, and the
			// accepted messages by tc.groups transactions.
			var storedIDs []string
			for _, i := range stored {
				storedIDs = append(storedIDs, ids[i])
			}
			rows, err := h.pool.Query(ctx, `SELECT m.message_id, r.xmin::text, p.xmin::text, c.xmin::text
				FROM xta_message m
				JOIN xta_report_record r ON r.message = m.id AND r.code = 'ACCEPTED'
				JOIN xta_part p ON p.message = coalesce(m.peer_id, m.id) AND p.part = 0
				JOIN xta_chunk c ON c.message = p.message AND c.part = 0 AND c.seq = 0
				WHERE m.box = 'outbox' AND m.message_id = ANY($1)`, storedIDs)
			if err != nil {
				t.Fatal(err)
			}
			txs := map[string]int{}
			n := 0
			for rows.Next() {
				var id, record, part, chunk string
				if err := rows.Scan(&id, &record, &part, &chunk); err != nil {
					t.Fatal(err)
				}
				if record != part || part != chunk {
					t.Errorf("%s: report record, part and chunk written by transactions %s, %s, %s", id, record, part, chunk)
				}
				txs[record]++
				n++
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if n != len(stored) {
				t.Fatalf("%d of %d accepted messages stored with report record, part and chunk", n, len(stored))
			}
			sizes := slices.Sorted(maps.Values(txs))
			t.Logf("%d messages accepted in %d transactions of %v messages", len(stored), len(txs), sizes)
			if len(txs) != tc.groups {
				t.Errorf("%d accepted messages stored in %d transactions, want %d", len(stored), len(txs), tc.groups)
			}
		})
	}
}

// sendHeld sends msgs at once while the committers cannot finish: a test
// transaction locks xta_message against inserts, one message per
// committer (named plug-…) is sent and waits for the lock, then msgs are
// sent. Once all of them wait for a committer the lock is released. It
// returns the outcome of each message.
func sendHeld(t *testing.T, h *harness, sender *xta.Client, plug string, msgs []*xta.OutgoingMessage) []error {
	t.Helper()
	ctx := context.Background()
	lock, err := h.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(ctx)
	if _, err := lock.Exec(ctx, `LOCK TABLE xta_message IN SHARE MODE`); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	send := func(m *xta.OutgoingMessage, err *error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			*err = sender.Send(ctx, m)
		}()
	}
	plugErrs := make([]error, msgbox.MaxCommitters)
	for k := range plugErrs {
		m := groupMessage(0, fmt.Sprintf("%s-%d", plug, k))
		send(m, &plugErrs[k])
		eventually(t, fmt.Sprintf("%d committers waiting for the lock", k+1), func() bool {
			var n int
			err := h.pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
				WHERE NOT l.granted AND l.relation = 'xta_message'::regclass AND a.query LIKE 'INSERT INTO xta_message%'`).Scan(&n)
			if err != nil {
				t.Fatal(err)
			}
			return n == k+1
		})
	}
	errs := make([]error, len(msgs))
	for i, m := range msgs {
		send(m, &errs[i])
	}
	eventually(t, fmt.Sprintf("%d messages waiting for a committer", len(msgs)), func() bool {
		return h.box.Waiting() == len(msgs)
	})
	if err := lock.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for k, err := range plugErrs {
		if err != nil {
			t.Fatalf("message %d sent ahead: %v", k, err)
		}
	}
	return errs
}

// checkStored checks what is stored of an accepted message: its report
// reached status with records, it has one outbox row, and, for a reader
// hosted here, one inbox row whose contents the reader fetches unchanged.
func checkStored(t *testing.T, h *harness, sender, box *xta.Client, id string, m *xta.OutgoingMessage, status int, records []string) {
	t.Helper()
	r := waitStatus(t, sender, id, status)
	var codes []string
	for _, rec := range r.Records {
		codes = append(codes, rec.Code)
	}
	if !slices.Equal(codes, records) {
		t.Errorf("%s: report records %v, want %v", id, codes, records)
	}
	var outboxes, inboxes int
	if err := h.pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE box = 'outbox'), count(*) FILTER (WHERE box = 'inbox')
		FROM xta_message WHERE message_id = $1`, id).Scan(&outboxes, &inboxes); err != nil {
		t.Fatal(err)
	}
	local, wantInboxes := m.Reader.ID == reader, 0
	if local {
		wantInboxes = 1
	}
	if outboxes != 1 || inboxes != wantInboxes {
		t.Errorf("%s: %d outbox and %d inbox rows", id, outboxes, inboxes)
	}
	if !local {
		return
	}
	got, err := box.GetMessage(context.Background(), id)
	if err != nil {
		t.Fatalf("%s: getMessage: %v", id, err)
	}
	want := append([]xta.OutgoingContent{m.Message}, m.Attachments...)
	if len(got.Contents) != len(want) {
		t.Fatalf("%s: %d parts, want %d", id, len(got.Contents), len(want))
	}
	for i, c := range want {
		data := c.Data.(*bytes.Reader)
		sent := make([]byte, data.Size())
		data.ReadAt(sent, 0)
		if !bytes.Equal(got.Contents[i].Data, sent) || got.Contents[i].Filename != c.Filename {
			t.Errorf("%s: part %d differs (%s, %d bytes)", id, i, got.Contents[i].Filename, len(got.Contents[i].Data))
		}
	}
}

// eventually waits up to a minute for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
