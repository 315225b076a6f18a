package register

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/tenant"
)

// Merge is one merge of two records found to be the same person: by a
// message's proof (resolve.go) or by a clerk.
type Merge struct {
	ID int64 `json:"id"`
	// Survivor is the record that goes on; Merged the one that ended.
	Survivor string `json:"survivor"`
	Merged   string `json:"merged"`
	// Facts is how many facts the merge moved.
	Facts     int        `json:"facts"`
	Reason    string     `json:"reason"`
	MessageID string     `json:"messageId,omitempty"`
	MergedAt  time.Time  `json:"mergedAt"`
	UndoneAt  *time.Time `json:"undoneAt,omitempty"`
}

// maxReason bounds a clerk's reason for a merge, which the audit log keeps.
const maxReason = 300

// MergeRecords merges record duplicate into record survivor, which a clerk
// found to be the same person: duplicate's facts move to survivor, which is
// derived again from all of them, and duplicate ends (reads name survivor).
// Both must be records derived from messages. It is a write, audited; Unmerge
// undoes it.
func (s *Store) MergeRecords(ctx context.Context, a tenant.Actor, tenantID, register, survivor, duplicate, reason string) (Merge, error) {
	var m Merge
	err := s.run(ctx, a, tenantID, register, tenant.OpWrite, survivor, func(o *op) error {
		o.action = "merge"
		reason = strings.TrimSpace(reason)
		switch {
		case !validID(survivor) || !validID(duplicate):
			return refuse(KindNotFound, "the record id is not a UUID")
		case survivor == duplicate:
			return refuse(KindInvalid, "a record cannot be merged into itself")
		case reason == "" || len(reason) > maxReason || strings.ContainsFunc(reason, func(r rune) bool { return r < ' ' }):
			return &Error{Kind: KindInvalid, Detail: "a merge needs a reason", Fields: []FieldError{{"reason", fmt.Sprintf("give a reason of at most %d bytes on one line (it is audited: name no personal data)", maxReason)}}}
		}
		for _, id := range []string{survivor, duplicate} {
			if err := s.derivedRecord(ctx, o, id); err != nil {
				return err
			}
		}
		key, err := s.subjectOf(ctx, o, survivor)
		if err != nil {
			return err
		}
		sub := &subject{key: key, res: Applied{RecordID: survivor}, merge: []merged{{duplicate, "by hand: " + reason}}}
		if err := s.applySubjects(ctx, o, []*subject{sub}); err != nil {
			return err
		}
		o.notes = nil // the merge is this operation's own entry
		o.detail = fmt.Sprintf("merged record %s into %s by hand: %s", duplicate, survivor, reason)
		m, err = s.lastMerge(ctx, o, survivor, duplicate)
		return err
	})
	return m, err
}

// derivedRecord refuses a record that is not live or not derived from
// messages: only facts can be moved.
func (s *Store) derivedRecord(ctx context.Context, o *op, id string) error {
	h, err := s.head(ctx, o, id, false)
	if err != nil {
		return err
	}
	if err := h.visible(id, Temporal{}); err != nil {
		return err
	}
	var facts bool
	if err := o.tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM register_fact WHERE tenant_id = $1 AND register = $2 AND record_id = $3)`,
		o.tenant, o.register.Name, id).Scan(&facts); err != nil {
		return fmt.Errorf("register: facts of %s: %w", id, err)
	}
	if !facts {
		return refuse(KindInvalid, "record %s is kept through the API, not derived from messages: it cannot be merged", id)
	}
	return nil
}

// subjectOf reads a record's subject key from its newest version.
func (s *Store) subjectOf(ctx context.Context, o *op, id string) (string, error) {
	rows, err := o.tx.Query(ctx, `SELECT `+versionColumns+` FROM register_version WHERE tenant_id = $1 AND record_id = $2 ORDER BY seq DESC LIMIT 1`, o.tenant, id)
	if err != nil {
		return "", fmt.Errorf("register: versions of %s: %w", id, err)
	}
	sealed, err := collectVersions(rows)
	if err != nil {
		return "", fmt.Errorf("register: versions of %s: %w", id, err)
	}
	if len(sealed) == 0 {
		return "", refuse(KindNotFound, "record %s has no versions", id)
	}
	vs, err := s.openVersions(ctx, o, sealed)
	if err != nil {
		return "", err
	}
	return vs[0].subject, nil
}

const mergeColumns = `id, survivor::text, merged::text, cardinality(events), reason, coalesce(message_id, ''), merged_at, undone_at`

func scanMerge(row pgx.Row) (Merge, error) {
	var m Merge
	err := row.Scan(&m.ID, &m.Survivor, &m.Merged, &m.Facts, &m.Reason, &m.MessageID, &m.MergedAt, &m.UndoneAt)
	return m, err
}

// lastMerge reads the newest merge of duplicate into survivor.
func (s *Store) lastMerge(ctx context.Context, o *op, survivor, duplicate string) (Merge, error) {
	m, err := scanMerge(o.tx.QueryRow(ctx, `SELECT `+mergeColumns+` FROM register_merge
		WHERE tenant_id = $1 AND register = $2 AND survivor = $3 AND merged = $4 ORDER BY id DESC LIMIT 1`, o.tenant, o.register.Name, survivor, duplicate))
	if err != nil {
		return m, fmt.Errorf("register: read merge: %w", err)
	}
	return m, nil
}

// Merges lists the merges a record took part in, as survivor or as the
// merged one, oldest first. It is a read of the record, audited.
func (s *Store) Merges(ctx context.Context, a tenant.Actor, tenantID, register, id string) ([]Merge, error) {
	var out []Merge
	err := s.run(ctx, a, tenantID, register, tenant.OpRead, id, func(o *op) error {
		o.action = "merges"
		if _, err := s.head(ctx, o, id, false); err != nil {
			return err
		}
		rows, err := o.tx.Query(ctx, `SELECT `+mergeColumns+` FROM register_merge
			WHERE tenant_id = $1 AND register = $2 AND (survivor = $3 OR merged = $3) ORDER BY id`, tenantID, register, id)
		if err != nil {
			return fmt.Errorf("register: merges of %s: %w", id, err)
		}
		defer rows.Close()
		for rows.Next() {
			m, err := scanMerge(rows)
			if err != nil {
				return fmt.Errorf("register: merges of %s: %w", id, err)
			}
			out = append(out, m)
		}
		o.detail = fmt.Sprintf("merges: %d", len(out))
		return rows.Err()
	})
	return out, err
}

// Unmerge undoes a merge: the facts it moved go back to the merged record,
// which lives again, and both records are derived again from their facts.
// Facts applied to the survivor since stay with it. It is a write,
// audited; a merge undone once cannot be undone again.
func (s *Store) Unmerge(ctx context.Context, a tenant.Actor, tenantID, register string, mergeID int64, reason string) (Merge, error) {
	var m Merge
	err := s.run(ctx, a, tenantID, register, tenant.OpWrite, "", func(o *op) error {
		o.action = "unmerge"
		reason = strings.TrimSpace(reason)
		if reason == "" || len(reason) > maxReason || strings.ContainsFunc(reason, func(r rune) bool { return r < ' ' }) {
			return &Error{Kind: KindInvalid, Detail: "undoing a merge needs a reason", Fields: []FieldError{{"reason", fmt.Sprintf("give a reason of at most %d bytes on one line (it is audited: name no personal data)", maxReason)}}}
		}
		var err error
		m, err = scanMerge(o.tx.QueryRow(ctx, `SELECT `+mergeColumns+` FROM register_merge WHERE tenant_id = $1 AND register = $2 AND id = $3 FOR UPDATE`,
			tenantID, register, mergeID))
		if errors.Is(err, pgx.ErrNoRows) {
			return refuse(KindNotFound, "register %s has no merge %d", register, mergeID)
		}
		if err != nil {
			return fmt.Errorf("register: read merge %d: %w", mergeID, err)
		}
		o.recordID = m.Survivor
		if m.UndoneAt != nil {
			return refuse(KindConflict, "merge %d was undone on %s", mergeID, m.UndoneAt.Format(time.RFC3339))
		}
		h, err := s.head(ctx, o, m.Merged, true)
		if err != nil {
			return err
		}
		if h.mergedInto == nil || *h.mergedInto != m.Survivor {
			return refuse(KindConflict, "record %s is no longer merged into %s", m.Merged, m.Survivor)
		}
		b := &pgx.Batch{}
		b.Queue(`UPDATE register_fact f SET record_id = $4 FROM register_merge m
			WHERE m.tenant_id = $1 AND m.id = $5 AND f.tenant_id = $1 AND f.register = $2 AND f.record_id = $3 AND f.event_index = ANY(m.events)`,
			tenantID, register, m.Survivor, m.Merged, mergeID)
		b.Queue(`UPDATE register_merge SET undone_at = now() WHERE tenant_id = $1 AND id = $2`, tenantID, mergeID)
		b.Queue(`UPDATE register_record SET deleted_at = NULL, merged_into = NULL, updated_at = now() WHERE tenant_id = $1 AND id = $2`, tenantID, m.Merged)
		if err := o.tx.SendBatch(ctx, b).Close(); err != nil {
			if db.IsUniqueViolation(err) {
				return refuse(KindConflict, "record %s cannot live again: another record has taken its subject key since", m.Merged)
			}
			return fmt.Errorf("register: undo merge %d: %w", mergeID, err)
		}
		var subjects []*subject
		for _, id := range []string{m.Survivor, m.Merged} {
			key, err := s.subjectOf(ctx, o, id)
			if err != nil {
				return err
			}
			subjects = append(subjects, &subject{key: key, res: Applied{RecordID: id}, rederive: true})
		}
		if err := s.applySubjects(ctx, o, subjects); err != nil {
			return err
		}
		o.detail = fmt.Sprintf("undid merge %d of record %s into %s: %s", mergeID, m.Merged, m.Survivor, reason)
		now := time.Now()
		m.UndoneAt = &now
		return nil
	})
	return m, err
}
