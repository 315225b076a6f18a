package register

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

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
// one transaction: all facts apply or none. The subjects of a call are
// applied together, in as many statements for one subject as for a
// hundred (applySubjects).
func (s *Store) Apply(ctx context.Context, a tenant.Actor, tenantID, register string, facts []Fact) ([]Applied, error) {
	return s.ApplyWith(ctx, a, tenantID, register, facts, ApplyOptions{})
}

// ApplyOptions tune Apply.
type ApplyOptions struct {
	// WaitForKnown refuses facts about persons the register does not keep
	// (Identity.Known only) as not found instead of leaving them out: a
	// caller that will try again (the pipeline, on its first attempts)
	// lets a message that overtook the one registering the person wait.
	WaitForKnown bool
}

// ApplyWith is Apply with options.
func (s *Store) ApplyWith(ctx context.Context, a tenant.Actor, tenantID, register string, facts []Fact, opts ApplyOptions) ([]Applied, error) {
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
		subjects, err := s.subjectsOf(ctx, o, facts)
		if err != nil {
			return err
		}
		if subjects, err = s.resolve(ctx, o, subjects, opts); err != nil {
			return err
		}
		if err := s.applySubjects(ctx, o, subjects); err != nil {
			return err
		}
		if len(subjects) == 0 {
			o.detail = fmt.Sprintf("applied none of %d facts: they are about persons this register does not keep", len(facts))
			return nil
		}
		out = make([]Applied, len(subjects))
		for i, sub := range subjects {
			out[i] = sub.res
		}
		o.recordID = out[len(out)-1].RecordID
		o.detail = applyDetail(len(facts), subjects)
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
	if f.Identify != nil {
		if err := checkIdentity(f); err != nil {
			return err
		}
	}
	for _, as := range f.Set {
		if as.From != "" && !validDate(as.From) {
			return refuse(KindInvalid, "the fact of event %s sets %s from a day that is not a date", f.MessageID, as.Attribute)
		}
		errs := o.schema.check(Attributes{as.Attribute: as.Value})
		switch as.Op {
		case OpSet, OpDefault:
		case OpAdd, OpRemove:
			if !o.schema.isList(as.Attribute) || as.Value == nil {
				return refuse(KindInvalid, "the fact of event %s cannot %s an item of %s, which is not a list", f.MessageID, as.Op, as.Attribute)
			}
			if errs = o.schema.check(Attributes{as.Attribute: []any{as.Value}}); as.Op == OpRemove {
				errs = o.schema.checkPattern(as.Attribute, as.Value)
			}
		default:
			return refuse(KindInvalid, "the fact of event %s has an unknown operation %q on %s", f.MessageID, as.Op, as.Attribute)
		}
		if len(errs) > 0 {
			return &Error{Kind: KindInvalid, Detail: fmt.Sprintf("the fact of event %s does not fit register %s", f.MessageID, o.register.Name), Fields: errs}
		}
	}
	return nil
}

// subject is one subject's share of an Apply call: its facts, its record
// and what applying them did (res).
type subject struct {
	key   string
	index []byte // the blind index of key
	facts []Fact
	res   Applied
	// ident is the identity of facts that carry one (resolve finds their
	// record by it, setting res.RecordID before the records are locked),
	// merge the records they prove to be the same person.
	ident *ident
	merge []merged
	// rederive derives the record again though no fact is new (a merge
	// undone).
	rederive bool
	// What deriving the record needs, read once it is locked: the last
	// seq of its versions, all of its facts (the new ones too) and its
	// current versions, still encrypted.
	maxSeq  int
	stored  []sealedFact
	current []sealedVersion
}

// subjectsOf groups the facts by subject, in the order of each subject's
// first fact.
func (s *Store) subjectsOf(ctx context.Context, o *op, facts []Fact) ([]*subject, error) {
	var out []*subject
	byKey := map[string]*subject{}
	for _, f := range facts {
		group, id := f.SubjectKey, (*ident)(nil)
		if f.Identify != nil {
			id = newIdent(f.Identify)
			group = id.group()
		}
		sub := byKey[group]
		if sub == nil {
			index, err := s.sealer.blind(ctx, o.tx, o.tenant, o.register.Name, "subject", f.SubjectKey)
			if err != nil {
				return nil, err
			}
			sub = &subject{key: f.SubjectKey, index: index, ident: id}
			byKey[group] = sub
			out = append(out, sub)
		}
		sub.facts = append(sub.facts, f)
	}
	return out, nil
}

// applySubjects stores the subjects' new facts and derives their records
// again, all subjects at once, in three round trips however many there
// are: one locks the records there are (lockRecords), one creates the
// missing records, stores the facts and reads back what the folds need
// (storeFacts), and one writes the records whose versions changed
// (writeChanges). Each record is folded on its own, exactly as if it were
// the only one (derive).
func (s *Store) applySubjects(ctx context.Context, o *op, subjects []*subject) error {
	if err := s.lockRecords(ctx, o, subjects); err != nil {
		return err
	}
	facts, err := s.sealFacts(ctx, o, subjects)
	if err != nil {
		return err
	}
	if err := s.storeFacts(ctx, o, subjects, facts); err != nil {
		return err
	}
	var changes []*change
	var unchanged []string
	for _, sub := range subjects {
		if sub.res.New > 0 || len(sub.merge) > 0 || sub.rederive { // else nothing new: the record stays as it is
			c, err := s.derive(ctx, o, sub)
			if err != nil {
				return err
			}
			if c != nil {
				changes = append(changes, c)
			}
		}
		if sub.res.Created && sub.res.Revision == 0 {
			// Created at revision 1 (queueCreate), but no fact changed it.
			unchanged = append(unchanged, sub.res.RecordID)
		}
	}
	return s.writeChanges(ctx, o, changes, unchanged)
}

// lockRecords locks the subjects' records (the record row, created with a
// subject's first fact, is the subject's lock) and notes their ids and
// revisions; a subject without a record gets the id of the one to create.
// The rows are locked in the order of their blind indexes, so that two
// calls with subjects in common lock them in the same order and cannot
// deadlock.
func (s *Store) lockRecords(ctx context.Context, o *op, subjects []*subject) error {
	var indexes [][]byte
	var ids []string // records resolve found, and those they merge
	for _, sub := range subjects {
		if sub.res.RecordID != "" {
			ids = append(ids, sub.res.RecordID)
			for _, m := range sub.merge {
				ids = append(ids, m.record)
			}
		} else {
			indexes = append(indexes, sub.index)
		}
	}
	rows, err := o.tx.Query(ctx, `SELECT subject_index, id::text, revision FROM register_record
		WHERE tenant_id = $1 AND register = $2 AND (subject_index = ANY($3) OR id = ANY($4)) AND deleted_at IS NULL
		ORDER BY subject_index FOR UPDATE`, o.tenant, o.register.Name, indexes, ids)
	if err != nil {
		return fmt.Errorf("register: lock records: %w", err)
	}
	type record struct {
		Index    []byte
		ID       string
		Revision int
	}
	found, err := pgx.CollectRows(rows, pgx.RowToStructByPos[record])
	if err != nil {
		return fmt.Errorf("register: lock records: %w", err)
	}
	byIndex, byID := map[string]record{}, map[string]record{}
	for _, r := range found {
		byIndex[string(r.Index)], byID[r.ID] = r, r
	}
	for _, sub := range subjects {
		if id := sub.res.RecordID; id != "" {
			r, ok := byID[id]
			for _, m := range sub.merge {
				_, live := byID[m.record]
				ok = ok && live
			}
			if !ok {
				// Merged or deleted since resolve read it.
				return refuse(KindConflict, "a record this write identified changed at the same time; try again")
			}
			sub.res.Revision = r.Revision
			continue
		}
		r, ok := byIndex[string(sub.index)]
		switch {
		case ok && sub.ident != nil:
			// Created since resolve found no such person.
			return refuse(KindConflict, "another write created this person's record at the same time; try again")
		case ok:
			sub.res.RecordID, sub.res.Revision = r.ID, r.Revision
		default:
			sub.res.RecordID, sub.res.Created = newID(), true
		}
	}
	return nil
}

// factRows are the facts to store, as columns (one element per fact), and
// whose each is, by event index.
type factRows struct {
	event, subject               [][]byte
	record, message, day, source []string
	transport                    []string
	keyVersion                   []int
	payload                      [][]byte
	of                           map[string]*subject
}

// sealFacts blind-indexes and encrypts the facts of the call for storing,
// each event once: of facts of the same event the first one is stored, as
// it would be if they were stored one after the other.
func (s *Store) sealFacts(ctx context.Context, o *op, subjects []*subject) (*factRows, error) {
	r := &factRows{of: map[string]*subject{}}
	for _, sub := range subjects {
		for i := range sub.facts {
			f := &sub.facts[i]
			index, err := s.sealer.blind(ctx, o.tx, o.tenant, o.register.Name, "event", f.EventID)
			if err != nil {
				return nil, err
			}
			if r.of[string(index)] != nil {
				continue
			}
			pt, err := json.Marshal(f)
			if err != nil {
				return nil, fmt.Errorf("register: encode fact: %w", err)
			}
			kv, ct, err := s.sealer.seal(ctx, o.tx, o.tenant, factAAD(o.tenant, o.register.Name, index), pt)
			if err != nil {
				return nil, err
			}
			r.of[string(index)] = sub
			r.event, r.subject, r.record = append(r.event, index), append(r.subject, sub.index), append(r.record, sub.res.RecordID)
			r.message, r.day, r.source = append(r.message, f.MessageID), append(r.day, f.Date), append(r.source, f.Source)
			r.transport = append(r.transport, f.Transport)
			r.keyVersion, r.payload = append(r.keyVersion, kv), append(r.payload, ct)
		}
	}
	return r, nil
}

// storeFacts creates the records the subjects lack, stores the facts the
// register does not hold yet (counting them as each subject's New), and
// reads what deriving the records needs, all in one round trip: each
// statement of it sees what the ones before stored. A record another
// transaction created for one of the subjects meanwhile refuses the call
// as a conflict.
func (s *Store) storeFacts(ctx context.Context, o *op, subjects []*subject, facts *factRows) error {
	b := &pgx.Batch{}
	conflict := queueCreate(b, o, subjects)
	queueMerges(b, o, subjects)
	b.Queue(`INSERT INTO register_fact (tenant_id, register, event_index, subject_index, record_id, message_id, day, source, key_version, payload, transport_id)
		SELECT $1, $2, f.event_index, f.subject_index, f.record_id, f.message_id, f.day, f.source, f.key_version, f.payload, nullif(f.transport_id, '')
		FROM unnest($3::bytea[], $4::bytea[], $5::uuid[], $6::text[], $7::date[], $8::text[], $9::int[], $10::bytea[], $11::text[])
			AS f(event_index, subject_index, record_id, message_id, day, source, key_version, payload, transport_id)
		ON CONFLICT DO NOTHING RETURNING event_index`,
		o.tenant, o.register.Name, facts.event, facts.subject, facts.record, facts.message, facts.day, facts.source, facts.keyVersion, facts.payload, facts.transport).
		Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var index []byte
				if err := rows.Scan(&index); err != nil {
					return err
				}
				facts.of[string(index)].res.New++
			}
			return rows.Err()
		})
	byRecord := map[string]*subject{}
	var all, existing []string
	for _, sub := range subjects {
		byRecord[sub.res.RecordID] = sub
		all = append(all, sub.res.RecordID)
		if !sub.res.Created {
			existing = append(existing, sub.res.RecordID)
		}
	}
	b.Queue(`SELECT f.record_id::text, f.event_index, f.key_version, f.payload FROM unnest($3::uuid[]) AS r(id)
		CROSS JOIN LATERAL (SELECT record_id, event_index, key_version, payload FROM register_fact
			WHERE tenant_id = $1 AND register = $2 AND record_id = r.id LIMIT $4) f`,
		o.tenant, o.register.Name, all, maxFacts+1).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var id string
			var f sealedFact
			if err := rows.Scan(&id, &f.index, &f.keyVersion, &f.payload); err != nil {
				return err
			}
			byRecord[id].stored = append(byRecord[id].stored, f)
		}
		return rows.Err()
	})
	if len(existing) > 0 {
		// A new record has neither versions nor seqs yet.
		b.Queue(`SELECT `+versionColumns+` FROM register_version
			WHERE tenant_id = $1 AND record_id = ANY($2) AND superseded_at = 'infinity' ORDER BY record_id, valid_from`,
			o.tenant, existing).Query(func(rows pgx.Rows) error {
			versions, err := collectVersions(rows)
			for _, v := range versions {
				byRecord[v.recordID].current = append(byRecord[v.recordID].current, v)
			}
			return err
		})
		b.Queue(`SELECT r.id::text, (SELECT coalesce(max(seq), 0) FROM register_version v WHERE v.tenant_id = $1 AND v.record_id = r.id)
			FROM unnest($2::uuid[]) AS r(id)`, o.tenant, existing).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var id string
				var seq int
				if err := rows.Scan(&id, &seq); err != nil {
					return err
				}
				byRecord[id].maxSeq = seq
			}
			return rows.Err()
		})
	}
	err := o.tx.SendBatch(ctx, b).Close()
	if *conflict {
		// The facts of the record not created failed to insert: the
		// conflict is the cause.
		return refuse(KindConflict, "another write created this subject's record at the same time; try again")
	}
	if err != nil {
		return fmt.Errorf("register: store facts: %w", err)
	}
	return nil
}

// queueCreate queues the insert of the subjects' records that are to be
// created, in the order of their blind indexes (as lockRecords locks), and
// returns what is set when the batch runs: whether another transaction
// created one of them first.
func queueCreate(b *pgx.Batch, o *op, subjects []*subject) *bool {
	conflict := new(bool)
	var ids []string
	var indexes [][]byte
	for _, sub := range subjects {
		if sub.res.Created {
			ids, indexes = append(ids, sub.res.RecordID), append(indexes, sub.index)
		}
	}
	if len(ids) == 0 {
		return conflict
	}
	// A record is created with the revision its first change gives it, so
	// that writeChanges has nothing to update in the common case: a new
	// subject whose facts make versions.
	b.Queue(`INSERT INTO register_record (id, tenant_id, register, subject_index, revision, created_at, updated_at)
		SELECT n.id, $1, $2, n.subject_index, 1, now(), now() FROM unnest($3::uuid[], $4::bytea[]) AS n(id, subject_index)
		ORDER BY n.subject_index
		ON CONFLICT (tenant_id, register, subject_index) WHERE deleted_at IS NULL DO NOTHING`,
		o.tenant, o.register.Name, ids, indexes).Exec(func(tag pgconn.CommandTag) error {
		*conflict = tag.RowsAffected() < int64(len(ids))
		return nil
	})
	return conflict
}

// change is what deriving a record again changes: the seqs of the current
// versions it supersedes, the versions it adds, the versions the record
// has then (timeline) and whether the facts end the record.
type change struct {
	sub        *subject
	superseded []int
	added      []*row
	timeline   []*row
	deleted    bool
	// identities are the lookups the facts' identities make the record
	// answer; indexOnly marks a change of them alone, which leaves the
	// versions and revision as they are.
	identities []indexKey
	indexOnly  bool
}

// derive folds the subject's facts into versions and compares them with
// the record's current ones: it returns nil when nothing changes, else the
// change, with the subject's revision counted up and the new versions
// numbered. A record the facts end supersedes all its current versions and
// adds none.
func (s *Store) derive(ctx context.Context, o *op, sub *subject) (*change, error) {
	id := sub.res.RecordID
	if len(sub.stored) > maxFacts {
		return nil, refuse(KindInvalid, "record %s has more than %d facts", id, maxFacts)
	}
	facts, err := s.openFacts(ctx, o, id, sub.stored)
	if err != nil {
		return nil, err
	}
	current, err := s.openVersions(ctx, o, sub.current)
	if err != nil {
		return nil, err
	}
	if len(current) > 0 && sub.ident != nil {
		// Found by its identity: the record keeps its own subject key.
		sub.key = current[0].subject
	}
	timeline, deleted := fold(sub.key, facts)
	c := &change{sub: sub, timeline: timeline, deleted: deleted}
	for _, f := range facts {
		if f.Identify != nil {
			c.identities = append(c.identities, identityIndexKeys(f.Identify)...)
		}
	}
	for _, r := range current {
		if deleted || !slices.ContainsFunc(timeline, r.same) {
			c.superseded = append(c.superseded, r.seq)
		}
	}
	if !deleted {
		for _, r := range timeline {
			if !slices.ContainsFunc(current, r.same) {
				c.added = append(c.added, r)
			}
		}
		if len(c.superseded) == 0 && len(c.added) == 0 {
			if len(c.identities) == 0 || sub.res.Created {
				return nil, nil
			}
			// The versions stay; the new facts may identify the
			// person by more than the record's indexes know.
			c.indexOnly = true
			return c, nil
		}
	}
	sub.res.Revision++
	sub.res.Deleted = deleted
	for i, r := range c.added {
		r.seq, r.revision = sub.maxSeq+1+i, sub.res.Revision
	}
	return c, nil
}

// writeChanges writes the derived records in one round trip: their
// superseded versions end, their new versions are stored, the records get
// their new revisions (or end), and each record's blind indexes are
// replaced by those of its versions now (none for an ended record). The
// records it writes are disclosed. Records created at revision 1 get their
// revision 0 back when no fact changed them (unchanged).
func (s *Store) writeChanges(ctx context.Context, o *op, changes []*change, unchanged []string) error {
	if len(changes) == 0 && len(unchanged) == 0 {
		return nil
	}
	var endIDs, ids, replaced []string
	var endSeqs, revisions []int
	var deleted []bool
	var versions []version
	var entries []indexEntry
	for _, c := range changes {
		id := c.sub.res.RecordID
		if c.indexOnly {
			e, err := s.indexEntries(ctx, o, id, c.sub.key, c.timeline, c.identities...)
			if err != nil {
				return err
			}
			entries, replaced = append(entries, e...), append(replaced, id)
			continue
		}
		for _, seq := range c.superseded {
			endIDs, endSeqs = append(endIDs, id), append(endSeqs, seq)
		}
		for _, r := range c.added {
			versions = append(versions, version{id, r})
		}
		if !c.sub.res.Created || c.deleted {
			// A created record has revision 1 already (queueCreate).
			ids, revisions, deleted = append(ids, id), append(revisions, c.sub.res.Revision), append(deleted, c.deleted)
		}
		if !c.sub.res.Created {
			replaced = append(replaced, id)
		}
		if !c.deleted {
			e, err := s.indexEntries(ctx, o, id, c.sub.key, c.timeline, c.identities...)
			if err != nil {
				return err
			}
			entries = append(entries, e...)
		}
	}
	b := &pgx.Batch{}
	if len(endIDs) > 0 {
		b.Queue(`UPDATE register_version v SET superseded_at = now()
			FROM unnest($2::uuid[], $3::int[]) AS e(record_id, seq)
			WHERE v.tenant_id = $1 AND v.record_id = e.record_id AND v.seq = e.seq AND v.superseded_at = 'infinity'`, o.tenant, endIDs, endSeqs)
	}
	if err := s.queueVersions(ctx, o, b, versions); err != nil {
		return err
	}
	for _, id := range unchanged {
		ids, revisions, deleted = append(ids, id), append(revisions, 0), append(deleted, false)
	}
	if len(ids) > 0 {
		// Each record's values are found by its position in the arrays:
		// the primary key finds the rows, whatever the planner knows of
		// the table.
		b.Queue(`UPDATE register_record r SET revision = ($3::int[])[array_position($2::uuid[], r.id)], updated_at = now(),
				deleted_at = CASE WHEN ($4::bool[])[array_position($2::uuid[], r.id)] THEN now() ELSE r.deleted_at END
			WHERE r.tenant_id = $1 AND r.id = ANY($2)`, o.tenant, ids, revisions, deleted)
	}
	queueIndexes(b, o, replaced, entries)
	if err := o.tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("register: derive %d records: %w", len(ids), err)
	}
	for _, c := range changes {
		if !c.deleted && !c.indexOnly {
			o.disclose(c.sub.res.RecordID, c.timeline[len(c.timeline)-1].attrs)
		}
	}
	return nil
}

// applyDetail is the audit entry's account of an Apply: how many facts,
// how many of them new, their messages and the records, in the order of
// the subjects.
func applyDetail(facts int, subjects []*subject) string {
	var messages, ids []string
	seen := map[string]bool{}
	news := 0
	for _, sub := range subjects {
		for _, f := range sub.facts {
			if !seen[f.MessageID] {
				seen[f.MessageID] = true
				messages = append(messages, f.MessageID)
			}
		}
		ids = append(ids, sub.res.RecordID)
		news += sub.res.New
	}
	return fmt.Sprintf("applied %d facts (%d new) of message %s to records %s", facts, news, strings.Join(messages, ", "), strings.Join(ids, ", "))
}

// factAAD binds a fact's ciphertext to its tenant, register and event.
func factAAD(tenantID, register string, eventIndex []byte) []byte {
	return []byte("parzelle/register-fact/v1\x00" + tenantID + "\x00" + register + "\x00" + hex.EncodeToString(eventIndex))
}

// sealedFact is a register_fact row as read, its payload still encrypted.
type sealedFact struct {
	index      []byte
	keyVersion int
	payload    []byte
}

// openFacts decrypts the stored facts of a record (after their rows are
// read: opening may load a key in the same transaction).
func (s *Store) openFacts(ctx context.Context, o *op, recordID string, sealed []sealedFact) ([]Fact, error) {
	out := make([]Fact, len(sealed))
	for i, f := range sealed {
		pt, err := s.sealer.open(ctx, o.tx, o.tenant, f.keyVersion, factAAD(o.tenant, o.register.Name, f.index), f.payload)
		if err != nil {
			return nil, fmt.Errorf("register: a fact of %s: %w", recordID, err)
		}
		if err := json.Unmarshal(pt, &out[i]); err != nil {
			return nil, fmt.Errorf("register: a fact of %s: %w", recordID, err)
		}
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
	retracted, withdrawn := map[string]bool{}, map[string]bool{}
	for _, f := range facts {
		for _, id := range f.Retracts {
			retracted[id] = true
		}
		for _, ref := range f.Withdraws {
			withdrawn[ref] = true
		}
	}
	type change struct {
		from, day, event, source string
		n                        int
		as                       Assignment
	}
	var changes []change
	for _, f := range facts {
		if retracted[f.EventID] || (f.Ref != "" && withdrawn[f.Ref]) {
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
		next := maps.Clone(attrs)
		for ; i < len(changes) && changes[i].from == from; i++ {
			assign(next, changes[i].as)
			if !slices.Contains(sources, changes[i].source) {
				sources = append(slices.Clip(sources), changes[i].source)
				slices.Sort(sources)
			}
		}
		attrs = next
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

// assign applies one assignment to attrs: set (nil removes the attribute),
// set by default (only when attrs lacks it), add an item to a list unless
// the list has it, or remove the items that have every field of the given
// object (or equal the given text).
func assign(attrs Attributes, as Assignment) {
	switch as.Op {
	case OpAdd:
		list, _ := attrs[as.Attribute].([]any)
		if slices.ContainsFunc(list, func(item any) bool { return equalValue(item, as.Value) }) {
			return
		}
		attrs[as.Attribute] = append(slices.Clip(list), as.Value)
	case OpDefault:
		if _, ok := attrs[as.Attribute]; !ok && as.Value != nil {
			attrs[as.Attribute] = as.Value
		}
	case OpRemove:
		list, _ := attrs[as.Attribute].([]any)
		kept := slices.DeleteFunc(slices.Clone(list), func(item any) bool { return covers(item, as.Value) })
		if len(kept) == 0 {
			delete(attrs, as.Attribute)
		} else {
			attrs[as.Attribute] = kept
		}
	default:
		if as.Value == nil {
			delete(attrs, as.Attribute)
		} else {
			attrs[as.Attribute] = as.Value
		}
	}
}

// covers reports whether item has every field of pattern with the same
// value (for objects) or equals it (for anything else).
func covers(item, pattern any) bool {
	p, ok := pattern.(map[string]any)
	o, isObj := item.(map[string]any)
	if !ok || !isObj {
		return equalValue(item, pattern)
	}
	for k, v := range p {
		if !equalValue(o[k], v) {
			return false
		}
	}
	return true
}

func equalValue(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

// same reports whether two versions cover the same span with the same
// attributes.
func (r *row) same(o *row) bool {
	return r.from == o.from && r.to == o.to && r.subject == o.subject && equalJSON(r.attrs, o.attrs) && slices.Equal(r.sources, o.sources)
}
