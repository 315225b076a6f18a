package jobs

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parzelle/parzelle/db"
)

// DeadLetterFilter selects a tenant's dead letters by their metadata; zero
// fields select all.
type DeadLetterFilter struct {
	Inbox, MessageType, Step, Cause string
	// MessageID selects the dead letters of one message.
	MessageID string
	// Since and Until bound when the dead letter was first made.
	Since, Until time.Time
	// Resolved includes resolved dead letters.
	Resolved bool
}

// where is the filter as a condition on pipeline_dead_letter, with the
// tenant as $1.
func (f DeadLetterFilter) where(tenantID string) (string, []any) {
	conds, args := []string{"tenant_id = $1"}, []any{tenantID}
	add := func(cond string, v any) {
		args = append(args, v)
		conds = append(conds, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if !f.Resolved {
		conds = append(conds, "resolved_at IS NULL")
	}
	for _, c := range []struct{ col, v string }{{"reader", f.Inbox}, {"message_type", f.MessageType}, {"step", f.Step}, {"cause", f.Cause}, {"message_id", f.MessageID}} {
		if c.v != "" {
			add(c.col+" = ?", c.v)
		}
	}
	if !f.Since.IsZero() {
		add("created_at >= ?", f.Since)
	}
	if !f.Until.IsZero() {
		add("created_at < ?", f.Until)
	}
	return strings.Join(conds, " AND "), args
}

// Find returns a page of the tenant's dead letters that match f, newest
// first, without opening their sealed texts (Reason stays empty), and how
// many match in all.
func (o *DeadLetters) Find(ctx context.Context, tenantID string, f DeadLetterFilter, offset, limit int) ([]DeadLetter, int, error) {
	where, args := f.where(tenantID)
	var out []DeadLetter
	var total int
	err := db.InTenant(ctx, o.Pool, tenantID, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM pipeline_dead_letter WHERE `+where, args...).Scan(&total); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT `+deadLetterColumns+` FROM pipeline_dead_letter WHERE `+where+
			fmt.Sprintf(` ORDER BY created_at DESC, id DESC OFFSET %d LIMIT %d`, max(offset, 0), max(limit, 0)), args...)
		if err != nil {
			return err
		}
		letters, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (sealedLetter, error) { return scanSealed(r) })
		for _, l := range letters {
			out = append(out, l.DeadLetter)
		}
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("jobs: find dead letters of %s: %w", tenantID, err)
	}
	return out, total, nil
}

// CountByCause counts the tenant's dead letters that match f per cause.
func (o *DeadLetters) CountByCause(ctx context.Context, tenantID string, f DeadLetterFilter) (map[string]int, error) {
	where, args := f.where(tenantID)
	counts := map[string]int{}
	err := db.InTenant(ctx, o.Pool, tenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT cause, count(*) FROM pipeline_dead_letter WHERE `+where+` GROUP BY cause`, args...)
		if err != nil {
			return err
		}
		var cause string
		var n int
		_, err = pgx.ForEachRow(rows, []any{&cause, &n}, func() error {
			counts[cause] = n
			return nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: count dead letters of %s: %w", tenantID, err)
	}
	return counts, nil
}

// IDs returns the identifiers of the tenant's dead letters that match f,
// oldest first, at most limit: the set a bulk action works through.
func (o *DeadLetters) IDs(ctx context.Context, tenantID string, f DeadLetterFilter, limit int) ([]int64, error) {
	where, args := f.where(tenantID)
	var ids []int64
	err := db.InTenant(ctx, o.Pool, tenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id FROM pipeline_dead_letter WHERE `+where+fmt.Sprintf(` ORDER BY id LIMIT %d`, max(limit, 0)), args...)
		if err != nil {
			return err
		}
		ids, err = pgx.CollectRows(rows, pgx.RowTo[int64])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: dead letters of %s: %w", tenantID, err)
	}
	return ids, nil
}
