package register

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/parzelle/parzelle/tenant"
)

// Applied is what applying facts did to one subject's record.
type Applied struct {
	RecordID string `json:"recordId"`
	// New counts the facts the register did not hold yet; 0 means the
	// facts were applied before and nothing changed.
	New int `json:"new"`
	// Revision is the record's revision afterwards.
	Revision int  `json:"revision"`
	Created  bool `json:"created,omitempty"`
	Deleted  bool `json:"deleted,omitempty"`
}

// maxFacts bounds the facts of one call and of one subject that a fold
// reads.
const maxFacts = 10000

// Apply adds facts to the subjects' records and derives each touched
// record again from all of its facts, ordered by their own dates: the
// same facts give the same record whatever the order or number of times
// they arrive, and a retracted event (storno, correction) drops out as if
// it had never been. A fact whose event the register holds already is
// skipped. It is one write operation, authorized and audited as such, in
// one transaction: all facts apply or none.
func (s *Store) Apply(ctx context.Context, a tenant.Actor, tenantID, register string, facts []Fact) ([]Applied, error) {
	var out []Applied
	err := s.run(ctx, a, tenantID, register, tenant.OpWrite, "", func(o *op) error {
		o.action = "apply"
		if len(facts) == 0 || len(facts) > maxFacts {
			return refuse(KindInvalid, "apply takes 1 to %d facts, not %d", maxFacts, len(facts))
		}
		for i := range facts {
			if err := o.checkFact(&facts[i]); err != nil {
				return err
			}
		}
		// One subject after the other, in the order of their first fact.
		var subjects []string
		bySubject := map[string][]Fact{}
		for _, f := range facts {
			if _, ok := bySubject[f.SubjectKey]; !ok {
				subjects = append(subjects, f.SubjectKey)
			}
			bySubject[f.SubjectKey] = append(bySubject[f.SubjectKey], f)
		}
		var messages []string
		for _, key := range subjects {
			res, err := s.applySubject(ctx, o, key, bySubject[key])
			if err != nil {
				return err
			}
			out = append(out, res)
			for _, f := range bySubject[key] {
				if !slices.Contains(messages, f.MessageID) {
					messages = append(messages, f.MessageID)
				}
			}
		}
		var ids []string
		news := 0
		for _, r := range out {
			ids = append(ids, r.RecordID)
			news += r.New
		}
		o.detail = fmt.Sprintf("applied %d facts (%d new) of message %s to records %s", len(facts), news, strings.Join(messages, ", "), strings.Join(ids, ", "))
		return nil
	})
	return out, err
}

// checkFact refuses a fact the register cannot hold, naming its message and
// the attribute (never the values or the event id, which may contain the
// subject key: refusals are audited).
func (o *op) checkFact(f *Fact) error {
	switch {
	case f.EventID == "" || len(f.EventID) > 500:
		return refuse(KindInvalid, "a fact needs an event id of at most 500 bytes")
	case f.MessageID == "":
		return refuse(KindInvalid, "a fact names no message")
	case !validDate(f.Date):
		return refuse(KindInvalid, "the fact of event %s has no valid date (YYYY-MM-DD)", f.MessageID)
	}
	if err := checkSubjectKey(f.SubjectKey); err != nil {
		return err
	}
	for _, as := range f.Set {
		if as.From != "" && !validDate(as.From) {
			return refuse(KindInvalid, "the fact of event %s sets %s from a day that is not a date", f.MessageID, as.Attribute)
		}
		if errs := o.schema.check(Attributes{as.Attribute: as.Value}); len(errs) > 0 {
			return &Error{Kind: KindInvalid, Detail: fmt.Sprintf("the fact of event %s does not fit register %s", f.MessageID, o.register.Name), Fields: errs}
		}
	}
	return nil
}

// applySubject stores the subject's new facts and derives its record again.
func (s *Store) applySubject(ctx context.Context, o *op, subjectKey string, facts []Fact) (Applied, error) {
	subject, err := s.sealer.blind(ctx, o.tx, o.tenant, o.register.Name, "subject", subjectKey)
	if err != nil {
		return Applied{}, err
	}
	var res Applied
	// The record row, created with the first fact, is the subject's lock.
	var h head
	err = o.tx.QueryRow(ctx, `SELECT r.id::text, r.revision,
		(SELECT coalesce(max(seq), 0) FROM register_version v WHERE v.tenant_id = r.tenant_id AND v.record_id = r.id)
		FROM register_record r WHERE r.tenant_id = $1 AND r.register = $2 AND r.subject_index = $3 AND r.deleted_at IS NULL FOR UPDATE OF r`,
		o.tenant, o.register.Name, subject).Scan(&res.RecordID, &h.revision, &h.maxSeq)
	if errors.Is(err, pgx.ErrNoRows) {
		res.RecordID, res.Created = newID(), true
		err = o.tx.QueryRow(ctx, `INSERT INTO register_record (id, tenant_id, register, subject_index, revision, created_at, updated_at)
			VALUES ($1, $2, $3, $4, 0, now(), now())
			ON CONFLICT (tenant_id, register, subject_index) WHERE deleted_at IS NULL DO NOTHING RETURNING id::text`,
			res.RecordID, o.tenant, o.register.Name, subject).Scan(&res.RecordID)
		if errors.Is(err, pgx.ErrNoRows) {
			return Applied{}, refuse(KindConflict, "another write created this subject's record at the same time; try again")
		}
	}
	if err != nil {
		return Applied{}, fmt.Errorf("register: record of a subject: %w", err)
	}
	b := &pgx.Batch{}
	for i := range facts {
		f := &facts[i]
		index, err := s.sealer.blind(ctx, o.tx, o.tenant, o.register.Name, "event", f.EventID)
		if err != nil {
			return Applied{}, err
		}
		pt, err := json.Marshal(f)
		if err != nil {
			return Applied{}, fmt.Errorf("register: encode fact: %w", err)
		}
		kv, ct, err := s.sealer.seal(ctx, o.tx, o.tenant, factAAD(o.tenant, o.register.Name, index), pt)
		if err != nil {
			return Applied{}, err
		}
		b.Queue(`INSERT INTO register_fact (tenant_id, register, event_index, subject_index, record_id, message_id, day, source, key_version, payload)
			VALUES ($1, $2, $3, $4, $5, $6, $7::date, $8, $9, $10) ON CONFLICT DO NOTHING`,
			o.tenant, o.register.Name, index, subject, res.RecordID, f.MessageID, f.Date, f.Source, kv, ct).Exec(func(tag pgconn.CommandTag) error {
			res.New += int(tag.RowsAffected())
			return nil
		})
	}
	if err := o.tx.SendBatch(ctx, b).Close(); err != nil {
		return Applied{}, fmt.Errorf("register: store facts: %w", err)
	}
	o.recordID = res.RecordID
	res.Revision = h.revision
	if res.New == 0 {
		return res, nil
	}
	all, err := s.facts(ctx, o, res.RecordID)
	if err != nil {
		return Applied{}, err
	}
	timeline, deleted := fold(subjectKey, all)
	current, err := s.rows(ctx, o, res.RecordID, time.Time{}, "")
	if err != nil {
		return Applied{}, err
	}
	var superseded []int
	var added []*row
	for _, r := range current {
		if !slices.ContainsFunc(timeline, r.same) {
			superseded = append(superseded, r.seq)
		}
	}
	for _, r := range timeline {
		if !slices.ContainsFunc(current, r.same) {
			added = append(added, r)
		}
	}
	if len(superseded) == 0 && len(added) == 0 && !deleted {
		return res, nil
	}
	res.Revision = h.revision + 1
	for i, r := range added {
		r.seq, r.revision = h.maxSeq+1+i, res.Revision
	}
	b = &pgx.Batch{}
	if len(superseded) > 0 {
		b.Queue(`UPDATE register_version SET superseded_at = now()
			WHERE tenant_id = $1 AND record_id = $2 AND seq = ANY($3) AND superseded_at = 'infinity'`, o.tenant, res.RecordID, superseded)
	}
	if err := s.queueRows(ctx, o, b, res.RecordID, added...); err != nil {
		return Applied{}, err
	}
	if deleted {
		res.Deleted = true
		b.Queue(`UPDATE register_version SET superseded_at = now() WHERE tenant_id = $1 AND record_id = $2 AND superseded_at = 'infinity'`, o.tenant, res.RecordID)
		b.Queue(`UPDATE register_record SET deleted_at = now(), updated_at = now(), revision = $3 WHERE tenant_id = $1 AND id = $2`, o.tenant, res.RecordID, res.Revision)
		b.Queue(`DELETE FROM register_index WHERE tenant_id = $1 AND record_id = $2`, o.tenant, res.RecordID)
	} else {
		b.Queue(`UPDATE register_record SET revision = $3, updated_at = now() WHERE tenant_id = $1 AND id = $2`, o.tenant, res.RecordID, res.Revision)
		if err := s.queueIndex(ctx, o, b, res.RecordID, subjectKey, timeline); err != nil {
			return Applied{}, err
		}
	}
	if err := o.tx.SendBatch(ctx, b).Close(); err != nil {
		return Applied{}, fmt.Errorf("register: derive record %s: %w", res.RecordID, err)
	}
	if !deleted {
		o.disclose(res.RecordID, timeline[len(timeline)-1].attrs)
	}
	return res, nil
}

// factAAD binds a fact's ciphertext to its tenant, register and event.
func factAAD(tenantID, register string, eventIndex []byte) []byte {
	return []byte("parzelle/register-fact/v1\x00" + tenantID + "\x00" + register + "\x00" + hex.EncodeToString(eventIndex))
}

// facts reads and decrypts every fact of a record.
func (s *Store) facts(ctx context.Context, o *op, recordID string) ([]Fact, error) {
	rows, err := o.tx.Query(ctx, `SELECT event_index, key_version, payload FROM register_fact
		WHERE tenant_id = $1 AND register = $2 AND record_id = $3 LIMIT $4`, o.tenant, o.register.Name, recordID, maxFacts+1)
	if err != nil {
		return nil, fmt.Errorf("register: facts of %s: %w", recordID, err)
	}
	defer rows.Close()
	var out []Fact
	for rows.Next() {
		var index, ct []byte
		var kv int
		var f Fact
		if err := rows.Scan(&index, &kv, &ct); err != nil {
			return nil, fmt.Errorf("register: facts of %s: %w", recordID, err)
		}
		pt, err := s.sealer.open(ctx, o.tx, o.tenant, kv, factAAD(o.tenant, o.register.Name, index), ct)
		if err != nil {
			return nil, fmt.Errorf("register: a fact of %s: %w", recordID, err)
		}
		if err := json.Unmarshal(pt, &f); err != nil {
			return nil, fmt.Errorf("register: a fact of %s: %w", recordID, err)
		}
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("register: facts of %s: %w", recordID, err)
	}
	if len(out) > maxFacts {
		return nil, refuse(KindInvalid, "record %s has more than %d facts", recordID, maxFacts)
	}
	return out, nil
}

// fold derives a record's versions from its facts: every assignment of
// every fact not retracted, ordered by the day it holds from, then by its
// fact's day and event id (so a later event's statement wins and arrival
// order plays no part), swept into versions that begin wherever some
// assignment does; neighbours with equal attributes are joined. deleted is
// true when a fact not retracted ends the record.
func fold(subjectKey string, facts []Fact) (versions []*row, deleted bool) {
	retracted := map[string]bool{}
	for _, f := range facts {
		for _, id := range f.Retracts {
			retracted[id] = true
		}
	}
	type change struct {
		from, day, event, source string
		n                        int
		as                       Assignment
	}
	var changes []change
	for _, f := range facts {
		if retracted[f.EventID] {
			continue
		}
		deleted = deleted || f.Delete
		for n, as := range f.Set {
			from := as.From
			if from == "" {
				from = beginning
			}
			changes = append(changes, change{from, f.Date, f.EventID, f.Source, n, as})
		}
	}
	slices.SortFunc(changes, func(a, b change) int {
		return cmp.Or(cmpDay(a.from, b.from), strings.Compare(a.day, b.day), strings.Compare(a.event, b.event), a.n-b.n)
	})
	attrs := Attributes{}
	var sources []string
	for i := 0; i < len(changes); {
		from := changes[i].from
		next := Attributes{}
		for ; i < len(changes) && changes[i].from == from; i++ {
			next[changes[i].as.Attribute] = changes[i].as.Value
			if !slices.Contains(sources, changes[i].source) {
				sources = append(slices.Clip(sources), changes[i].source)
				slices.Sort(sources)
			}
		}
		attrs = merge(attrs, next)
		if n := len(versions); n > 0 && equalJSON(versions[n-1].attrs, attrs) {
			versions[n-1].sources = sources
			continue
		}
		if n := len(versions); n > 0 {
			versions[n-1].to = from
		}
		versions = append(versions, &row{from: from, to: ending, subject: subjectKey, attrs: attrs, sources: sources})
	}
	if len(versions) == 0 {
		// Facts that set nothing (all retracted): the record holds only
		// its subject key.
		versions = []*row{{from: beginning, to: ending, subject: subjectKey, attrs: Attributes{}}}
	}
	return versions, deleted
}

// same reports whether two versions cover the same span with the same
// attributes.
func (r *row) same(o *row) bool {
	return r.from == o.from && r.to == o.to && r.subject == o.subject && equalJSON(r.attrs, o.attrs) && slices.Equal(r.sources, o.sources)
}
