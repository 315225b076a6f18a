package msgbox

import (
	"context"
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
		{Name: "message content", SQL: "xta_chunk", Reseal: resealChunks},
		{Name: "transport report texts", SQL: "xta_report_record", Reseal: resealRecords},
	}
}

func resealChunks(ctx context.Context, tx pgx.Tx, k *sealing.Keyring, tenant string, version, limit int) (int, error) {
	// Content is up to a MiB a chunk: fewer of them to a batch.
	rows, err := tx.Query(ctx, `SELECT message, part, seq, key_version, data FROM xta_chunk
		WHERE tenant_id = $1 AND key_version < $2 LIMIT $3 FOR UPDATE SKIP LOCKED`, tenant, version, max(1, limit/10))
	if err != nil {
		return 0, err
	}
	type chunkRow struct {
		Message   int64
		Part, Seq int
		Key       int
		Data      []byte
	}
	chunks, err := pgx.CollectRows(rows, pgx.RowToStructByPos[chunkRow])
	if err != nil {
		return 0, err
	}
	b := &pgx.Batch{}
	for _, c := range chunks {
		ct, err := k.Reseal(ctx, tx, tenant, c.Key, version, chunkAAD(tenant, c.Message, c.Part, c.Seq), c.Data)
		if err != nil {
			return 0, fmt.Errorf("chunk %d of part %d of message %d: %w", c.Seq, c.Part, c.Message, err)
		}
		b.Queue(`UPDATE xta_chunk SET key_version = $4, data = $5 WHERE message = $1 AND part = $2 AND seq = $3`, c.Message, c.Part, c.Seq, version, ct)
	}
	return len(chunks), tx.SendBatch(ctx, b).Close()
}

func resealRecords(ctx context.Context, tx pgx.Tx, k *sealing.Keyring, tenant string, version, limit int) (int, error) {
	rows, err := tx.Query(ctx, `SELECT id, message, key_version, reason FROM xta_report_record
		WHERE tenant_id = $1 AND key_version < $2 LIMIT $3 FOR UPDATE SKIP LOCKED`, tenant, version, limit)
	if err != nil {
		return 0, err
	}
	type recordRow struct {
		ID, Message int64
		Key         int
		Reason      []byte
	}
	records, err := pgx.CollectRows(rows, pgx.RowToStructByPos[recordRow])
	if err != nil {
		return 0, err
	}
	b := &pgx.Batch{}
	for _, r := range records {
		ct, err := k.Reseal(ctx, tx, tenant, r.Key, version, recordAAD(tenant, r.Message), r.Reason)
		if err != nil {
			return 0, fmt.Errorf("report record %d: %w", r.ID, err)
		}
		b.Queue(`UPDATE xta_report_record SET key_version = $2, reason = $3 WHERE id = $1`, r.ID, version, ct)
	}
	return len(records), tx.SendBatch(ctx, b).Close()
}
