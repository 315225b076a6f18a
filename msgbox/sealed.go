package msgbox

import (
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/parzelle/parzelle/sealing"
)

// What sealing binds a ciphertext to: its tenant and the message row it
// belongs to, and for content the part and chunk, so that no ciphertext
// can be moved to another place and still open.

func chunkAAD(tenant string, message int64, part, seq int) []byte {
	return []byte("parzelle/msgbox/chunk/v1\x00" + tenant + "\x00" + strconv.FormatInt(message, 10) + "\x00" + strconv.Itoa(part) + "\x00" + strconv.Itoa(seq))
}

func recordAAD(tenant string, message int64) []byte {
	return []byte("parzelle/msgbox/report/v1\x00" + tenant + "\x00" + strconv.FormatInt(message, 10))
}

// Tables are the message boxes' sealed tables, for key rotation and for
// sealing what an earlier version stored in plaintext: content and report
// texts.
func Tables() []sealing.Table {
	return []sealing.Table{
		{Name: "message content", SQL: "xta_chunk", Reseal: sealing.Rows[chunkRow]{
			Select: `SELECT message, part, seq, key_version, data FROM xta_chunk
				WHERE tenant_id = $1 AND key_version < $2 LIMIT $3 FOR UPDATE SKIP LOCKED`,
			Divide: 10, // content is up to a MiB a chunk: fewer of them to a batch
			Fields: func(tenant string, c chunkRow) (int, []sealing.Field) {
				return c.Key, []sealing.Field{{AAD: chunkAAD(tenant, c.Message, c.Part, c.Seq), Sealed: c.Data}}
			},
			Update: func(b *pgx.Batch, _ string, c chunkRow, version int, sealed [][]byte) {
				b.Queue(`UPDATE xta_chunk SET key_version = $4, data = $5 WHERE message = $1 AND part = $2 AND seq = $3`, c.Message, c.Part, c.Seq, version, sealed[0])
			},
			Name: func(c chunkRow) string {
				return fmt.Sprintf("chunk %d of part %d of message %d", c.Seq, c.Part, c.Message)
			},
		}.Reseal},
		{Name: "transport report texts", SQL: "xta_report_record", Reseal: sealing.Rows[recordRow]{
			Select: `SELECT id, message, key_version, reason FROM xta_report_record
				WHERE tenant_id = $1 AND key_version < $2 LIMIT $3 FOR UPDATE SKIP LOCKED`,
			Fields: func(tenant string, r recordRow) (int, []sealing.Field) {
				return r.Key, []sealing.Field{{AAD: recordAAD(tenant, r.Message), Sealed: r.Reason}}
			},
			Update: func(b *pgx.Batch, _ string, r recordRow, version int, sealed [][]byte) {
				b.Queue(`UPDATE xta_report_record SET key_version = $2, reason = $3 WHERE id = $1`, r.ID, version, sealed[0])
			},
			Name: func(r recordRow) string { return fmt.Sprintf("report record %d", r.ID) },
		}.Reseal},
	}
}

// chunkRow and recordRow are sealed rows as key rotation reads them.
type chunkRow struct {
	Message   int64
	Part, Seq int
	Key       int
	Data      []byte
}

type recordRow struct {
	ID, Message int64
	Key         int
	Reason      []byte
}
