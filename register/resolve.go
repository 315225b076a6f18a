package register

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Who a person is. A fact that carries an Identity (the mapping specs of
// person registers give one) is applied to the record the identity finds,
// by these rules, in this order:
//
//  1. Strong identifiers: a record that carries the fact's IDNr or
//     Ordnungsmerkmal is the person. When they find several records, the
//     message proves that these are one person: they are merged (see
//     below), unless they carry different IDNrs or Ordnungsmerkmale, which
//     refuses the fact as contradictory.
//  2. Basisdaten: else the records known by the fact's family name, given
//     names and birth date (any a message ever identified them by, and
//     those of any of their versions) are the candidates, less those that
//     carry another IDNr or Ordnungsmerkmal than the fact and those whose
//     birth place differs from the fact's (when both are known). One
//     candidate is the person; none is a new person; of several, the one
//     that lives or lived at the fact's address, if exactly one does; else
//     the fact is refused as ambiguous, naming how many records fit. Never
//     a guess.
//  3. A fact that states neither is refused.
//
// When the identity finds nobody, the names the facts give the person (a
// name change says who the person becomes) are looked up by rule 2, so a
// name change applied after a message that already used the new name finds
// the record that message made; within one call, persons new to the
// register are one when their names meet either way.
//
// A message proves that two records are one person, and they are merged,
// when its strong identifiers find both, or when its IDNr finds one record
// whose Basisdaten are not the message's (a name change it did not hear of)
// and its full Basisdaten, birth place included, find exactly one other
// record, which carries no IDNr and the same birth place. The merge keeps
// the older record: the other's facts move to it and it is derived again
// from all of them; the other record ends (reads say which record it was
// merged into). Every merge is audited on its own and can be undone
// (Store.Unmerge). Records kept through the API alone (no facts) are never
// candidates: messages do not overwrite what clerks keep by hand.

// profile is what identification compares of a candidate record: the
// blind indexes of every IDNr, Ordnungsmerkmal, birth place and address it
// is known by (in any of its versions or any message's identification),
// and which lookups it answers.
type profile struct {
	id      string
	created time.Time
	// the index values of kinds idnr, ordnungsmerkmal, geburtsort and
	// anschrift, by kind
	known map[string][]string
	// keys are the lookups (lookup.key) it answers.
	keys map[string]bool
}

// ident is one identity-carrying subject's identity, normalized, with the
// blind indexes it is looked up by and compared with.
type ident struct {
	*Identity
	name       string // the Basisdaten key (personName), "" without them
	geburtsort string
	address    string
	lookups    []lookup
	// blind are the index values of the identity's idnr, ordnungsmerkmal,
	// geburtsort and anschrift, by kind.
	blind map[string]string
	// stated are the Basisdaten keys of the names the subject's facts give
	// the person (a name change: who the person becomes), and statedLookups
	// their lookups: when the identity finds nobody, they identify.
	stated        []string
	statedLookups []lookup
}

// statedNames are the Basisdaten keys of the names the facts set (plain
// sets of familienname, vornamen, geburtsdatum), each with the identity's
// other parts, that differ from the identity's own.
func statedNames(id *ident, facts []Fact) []string {
	if id.name == "" {
		return nil
	}
	var out []string
	for _, f := range facts {
		for _, as := range f.Set {
			v, _ := as.Value.(string)
			if as.Op != OpSet || v == "" {
				continue
			}
			fam, vor, geb := id.Familienname, id.Vornamen, id.Geburtsdatum
			switch as.Attribute {
			case "familienname":
				fam = v
			case "vornamen":
				vor = v
			case "geburtsdatum":
				geb = v
			default:
				continue
			}
			if k := personName(fam, vor, geb); k != id.name && !slices.Contains(out, k) {
				out = append(out, k)
			}
		}
	}
	return out
}

// lookup is one blind-index lookup: a kind and the index value.
type lookup struct {
	kind  string
	value []byte
}

func (l lookup) key() string { return l.kind + "\x00" + string(l.value) }

// group is the key subjectsOf groups identity-carrying facts by: facts
// with the same identity are about the same subject.
func (id *ident) group() string {
	return strings.Join([]string{"\x00identity", id.name, id.IDNr, id.Ordnungsmerkmal, id.geburtsort, id.address}, "\x00")
}

// checkIdentity refuses an identity the register cannot resolve by.
func checkIdentity(f *Fact) error {
	id := f.Identify
	if id.Known != "" && id.Known != KnownOnly && id.Known != KnownRequired {
		return refuse(KindInvalid, "the fact of event %s has an unknown identity mode %q", f.MessageID, id.Known)
	}
	if id.IDNr != "" && !ValidIDNr(id.IDNr) {
		return &Error{Kind: KindInvalid, Detail: fmt.Sprintf("the fact of event %s identifies its person by an invalid IDNr", f.MessageID),
			Fields: []FieldError{{"identify.idnr", "is not a valid Identifikationsnummer (11 digits, check digit per § 139b AO)"}}}
	}
	basis := 0
	for _, v := range []string{id.Familienname, id.Vornamen, id.Geburtsdatum} {
		if strings.TrimSpace(v) != "" {
			basis++
		}
	}
	switch {
	case basis != 0 && basis != 3:
		return &Error{Kind: KindInvalid, Detail: fmt.Sprintf("the fact of event %s gives part of the Basisdaten", f.MessageID),
			Fields: []FieldError{{"identify", "give familienname, vornamen and geburtsdatum together"}}}
	case basis == 3 && !ValidPartialDate(id.Geburtsdatum):
		return &Error{Kind: KindInvalid, Detail: fmt.Sprintf("the fact of event %s identifies its person by a birth date that is not a date", f.MessageID),
			Fields: []FieldError{{"identify.geburtsdatum", "is not a date (YYYY-MM-DD, YYYY-MM or YYYY)"}}}
	case basis == 0 && id.IDNr == "" && strings.TrimSpace(id.Ordnungsmerkmal) == "":
		return refuse(KindInvalid, "the fact of event %s identifies its person by neither IDNr, Ordnungsmerkmal nor Basisdaten (familienname, vornamen, geburtsdatum)", f.MessageID)
	}
	return nil
}

// identityIndexKeys are the blind-index lookups a fact's identity makes its
// record answer.
func identityIndexKeys(id *Identity) []indexKey {
	n := newIdent(id)
	var out []indexKey
	for _, k := range []indexKey{{"idnr", n.IDNr}, {"ordnungsmerkmal", n.Ordnungsmerkmal}, {"name", n.name}, {"geburtsort", n.geburtsort}, {"anschrift", n.address}} {
		if k.value != "" {
			out = append(out, k)
		}
	}
	return out
}

// addressKey is an address as identification compares it.
func addressKey(plz, strasse, hausnummer string) string {
	if plz == "" && strasse == "" {
		return ""
	}
	return normalize(plz) + "\x1f" + normalize(strasse) + "\x1f" + normalize(hausnummer)
}

// resolve finds the records the identity-carrying subjects are (the rules
// above): each gets its record's id, or none for a new person, and the
// records its facts prove to be the same person (merge). Subjects found to
// be one person become one subject. Subjects without an identity are left
// as they are: they are found by their subject key.
func (s *Store) resolve(ctx context.Context, o *op, subjects []*subject, opts ApplyOptions) ([]*subject, error) {
	var idents []*subject
	for _, sub := range subjects {
		if sub.ident != nil {
			idents = append(idents, sub)
		}
	}
	if len(idents) == 0 {
		return subjects, nil
	}
	if o.register.Type != TypePerson {
		return nil, refuse(KindInvalid, "facts for register %s cannot identify persons: it is a %s register", o.register.Name, o.register.Type)
	}
	blind := func(kind, value string) ([]byte, error) {
		return s.sealer.blind(ctx, o.tx, o.tenant, o.register.Name, kind, value)
	}
	// The lookups: each identity's keys, and the subject keys new records
	// would be created under (a record holding one is not necessarily the
	// person: see unify).
	var kinds []string
	var values [][]byte
	seen := map[string]bool{}
	want := func(l lookup) {
		if !seen[l.key()] {
			seen[l.key()] = true
			kinds, values = append(kinds, l.kind), append(values, l.value)
		}
	}
	for _, sub := range idents {
		id := sub.ident
		id.blind = map[string]string{}
		for _, k := range identityIndexKeys(id.Identity) {
			v, err := blind(k.kind, k.value)
			if err != nil {
				return nil, err
			}
			switch k.kind {
			case "idnr", "ordnungsmerkmal", "name":
				id.lookups = append(id.lookups, lookup{k.kind, v})
				want(lookup{k.kind, v})
			}
			if k.kind != "name" {
				id.blind[k.kind] = string(v)
			}
		}
		id.stated = statedNames(id, sub.facts)
		for _, name := range id.stated {
			v, err := blind("name", name)
			if err != nil {
				return nil, err
			}
			id.statedLookups = append(id.statedLookups, lookup{"name", v})
			want(lookup{"name", v})
		}
		v, err := blind("subject", sub.key)
		if err != nil {
			return nil, err
		}
		want(lookup{"subject", v})
	}
	profiles, found, err := candidates(ctx, o, kinds, values)
	if err != nil {
		return nil, err
	}
	merges := newUnion()
	for _, sub := range idents {
		if err := decide(sub, profiles, found, merges); err != nil {
			return nil, err
		}
	}
	var kept []*subject
	for _, sub := range subjects {
		switch {
		case sub.ident == nil || sub.res.RecordID != "":
		case sub.ident.Known == KnownOnly && opts.WaitForKnown:
			return nil, refuse(KindNotFound, "message %s also concerns a person register %s does not keep (yet): it waits for them a while", sub.facts[0].MessageID, o.register.Name)
		case sub.ident.Known == KnownOnly:
			continue // about someone this register does not keep
		case sub.ident.Known == KnownRequired:
			return nil, refuse(KindNotFound, "the person of message %s is not in register %s (yet)", sub.facts[0].MessageID, o.register.Name)
		}
		kept = append(kept, sub)
	}
	return s.unify(ctx, o, kept, profiles, found, merges)
}

// candidates reads the records that answer any of the lookups, with what
// identification compares of them, as profiles by record id, and which
// records answer each lookup (by lookup key). Records without facts are
// candidates only for holding a subject key.
func candidates(ctx context.Context, o *op, kinds []string, values [][]byte) (map[string]*profile, map[string][]string, error) {
	rows, err := o.tx.Query(ctx, `SELECT i.kind, i.value, r.id::text, r.created_at FROM register_index i
		JOIN register_record r ON r.tenant_id = i.tenant_id AND r.id = i.record_id AND r.deleted_at IS NULL
		WHERE i.tenant_id = $1 AND i.register = $2 AND (i.kind, i.value) IN (SELECT * FROM unnest($3::text[], $4::bytea[]))
			AND (i.kind = 'subject' OR EXISTS (SELECT 1 FROM register_fact f WHERE f.tenant_id = r.tenant_id AND f.record_id = r.id))`,
		o.tenant, o.register.Name, kinds, values)
	if err != nil {
		return nil, nil, fmt.Errorf("register: identify: %w", err)
	}
	profiles := map[string]*profile{}
	found := map[string][]string{}
	var ids []string
	for rows.Next() {
		var l lookup
		var id string
		var created time.Time
		if err := rows.Scan(&l.kind, &l.value, &id, &created); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("register: identify: %w", err)
		}
		if profiles[id] == nil {
			profiles[id] = &profile{id: id, created: created, known: map[string][]string{}, keys: map[string]bool{}}
			ids = append(ids, id)
		}
		profiles[id].keys[l.key()] = true
		found[l.key()] = append(found[l.key()], id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("register: identify: %w", err)
	}
	if len(ids) == 0 {
		return profiles, found, nil
	}
	rows, err = o.tx.Query(ctx, `SELECT record_id::text, kind, value FROM register_index
		WHERE tenant_id = $1 AND register = $2 AND record_id = ANY($3) AND kind IN ('idnr', 'ordnungsmerkmal', 'geburtsort', 'anschrift')`,
		o.tenant, o.register.Name, ids)
	if err != nil {
		return nil, nil, fmt.Errorf("register: identify: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, kind string
		var value []byte
		if err := rows.Scan(&id, &kind, &value); err != nil {
			return nil, nil, fmt.Errorf("register: identify: %w", err)
		}
		p := profiles[id]
		p.known[kind] = append(p.known[kind], string(value))
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("register: identify: %w", err)
	}
	return profiles, found, nil
}

// differs reports whether the record is known by other values of the kind
// than the identity's, and never by the identity's: both are known and
// they do not meet.
func (p *profile) differs(id *ident, kind string) bool {
	v := id.blind[kind]
	return v != "" && len(p.known[kind]) > 0 && !slices.Contains(p.known[kind], v)
}

// contradicts reports whether the record carries another IDNr or
// Ordnungsmerkmal than the identity, or another birth place.
func (p *profile) contradicts(id *ident) bool {
	return p.differs(id, "idnr") || p.differs(id, "ordnungsmerkmal") || p.differs(id, "geburtsort")
}

// decide applies the rules to one subject: its record (sub.res.RecordID),
// or none for a new person, and the merges its facts prove.
func decide(sub *subject, profiles map[string]*profile, found map[string][]string, merges *union) error {
	id := sub.ident
	var strong, basis []string
	for _, l := range id.lookups {
		for _, rec := range found[l.key()] {
			list := &basis
			if l.kind != "name" {
				list = &strong
			}
			if !slices.Contains(*list, rec) {
				*list = append(*list, rec)
			}
		}
	}
	msg := sub.facts[0].MessageID
	if len(strong) > 0 {
		// Records the strong identifiers find must not contradict each
		// other or the message: a record with another IDNr is another
		// person.
		for _, rec := range strong {
			p := profiles[rec]
			if p.differs(id, "idnr") || p.differs(id, "ordnungsmerkmal") {
				return refuse(KindAmbiguous, "the person of message %s is not identified: its IDNr and Ordnungsmerkmal find records that carry other identifiers (%s)", msg, strings.Join(strong, ", "))
			}
		}
		slices.SortFunc(strong, func(a, b string) int { return older(profiles[a], profiles[b]) })
		sub.res.RecordID = strong[0]
		for _, rec := range strong[1:] {
			merges.join(strong[0], rec, fmt.Sprintf("message %s: its IDNr and Ordnungsmerkmal identify both records", msg))
		}
		// Proof by IDNr and full Basisdaten (see above).
		target := profiles[strong[0]]
		nameKey := ""
		for _, l := range id.lookups {
			if l.kind == "name" {
				nameKey = l.key()
			}
		}
		if id.IDNr != "" && nameKey != "" && id.geburtsort != "" && !target.keys[nameKey] {
			var others []string
			for _, rec := range basis {
				p := profiles[rec]
				if !slices.Contains(strong, rec) && len(p.known["idnr"]) == 0 && !p.contradicts(id) && slices.Contains(p.known["geburtsort"], id.blind["geburtsort"]) {
					others = append(others, rec)
				}
			}
			if len(others) == 1 {
				merges.join(strong[0], others[0], fmt.Sprintf("message %s: its IDNr identifies one record and its Basisdaten with birth place the other", msg))
			}
		}
		return nil
	}
	fitting := func(recs []string) []string {
		var out []string
		for _, rec := range recs {
			if !profiles[rec].contradicts(id) {
				out = append(out, rec)
			}
		}
		return out
	}
	fit := fitting(basis)
	if len(fit) == 0 {
		// Nobody is known by the names the message identifies the person
		// by: perhaps by the names it gives them (a name change applied
		// after a message that already used the new name).
		var stated []string
		for _, l := range id.statedLookups {
			for _, rec := range found[l.key()] {
				if !slices.Contains(stated, rec) {
					stated = append(stated, rec)
				}
			}
		}
		fit = fitting(stated)
	}
	if len(fit) > 1 && id.address != "" {
		var there []string
		for _, rec := range fit {
			if slices.Contains(profiles[rec].known["anschrift"], id.blind["anschrift"]) {
				there = append(there, rec)
			}
		}
		if len(there) == 1 {
			fit = there
		}
	}
	switch len(fit) {
	case 0:
		if id.name == "" {
			// Only strong identifiers, and no record carries them: a new
			// person needs the Basisdaten to be recognised later.
			return refuse(KindAmbiguous, "the person of message %s is not identified: no record carries its IDNr or Ordnungsmerkmal, and the message gives no Basisdaten for a new record", msg)
		}
	case 1:
		sub.res.RecordID = fit[0]
	default:
		slices.Sort(fit)
		return refuse(KindAmbiguous, "the person of message %s is not identified: its Basisdaten fit %d records (%s) and nothing in it tells them apart; a message with the IDNr, or a merge of the records, decides", msg, len(fit), strings.Join(fit, ", "))
	}
	return nil
}

// older orders records by creation, then id.
func older(a, b *profile) int {
	return cmp.Or(a.created.Compare(b.created), strings.Compare(a.id, b.id))
}

// union joins the records that merges make one: each group keeps its
// oldest record.
type union struct {
	parent  map[string]string
	reasons map[string]string // why a record joined its group
}

func newUnion() *union { return &union{parent: map[string]string{}, reasons: map[string]string{}} }

func (u *union) find(id string) string {
	for u.parent[id] != "" && u.parent[id] != id {
		id = u.parent[id]
	}
	return id
}

func (u *union) join(a, b, reason string) {
	ra, rb := u.find(a), u.find(b)
	if ra == rb {
		return
	}
	if u.parent[ra] == "" {
		u.parent[ra] = ra
	}
	u.parent[rb] = ra
	// Either record may be the one that ends (the older survives).
	for _, id := range []string{a, b} {
		if u.reasons[id] == "" {
			u.reasons[id] = reason
		}
	}
}

// unify makes the subjects that are one person one subject: those whose
// records are the same (after merges, the survivor's), and new persons
// whose identities agree. It gives each new person a subject key no other
// record holds, and each found one its record's subject key.
func (s *Store) unify(ctx context.Context, o *op, subjects []*subject, profiles map[string]*profile, found map[string][]string, merges *union) ([]*subject, error) {
	// A merge group survives in its oldest record.
	groups := map[string][]string{}
	for rec := range merges.parent {
		root := merges.find(rec)
		groups[root] = append(groups[root], rec)
	}
	survivor := map[string]string{}
	for _, members := range groups {
		slices.SortFunc(members, func(a, b string) int { return older(profiles[a], profiles[b]) })
		for _, m := range members {
			survivor[m] = members[0]
		}
	}
	var out []*subject
	byRecord := map[string]*subject{}
	var fresh []*subject
	for _, sub := range subjects {
		if sub.ident == nil {
			out = append(out, sub)
			continue
		}
		if rec := sub.res.RecordID; rec != "" {
			if sv, ok := survivor[rec]; ok {
				rec = sv
			}
			if prev := byRecord[rec]; prev != nil {
				prev.facts = append(prev.facts, sub.facts...)
				continue
			}
			sub.res.RecordID = rec // its subject key is the record's (derive)
			byRecord[rec] = sub
			out = append(out, sub)
			continue
		}
		if prev := slices.IndexFunc(fresh, func(f *subject) bool { return samePerson(f.ident, sub.ident) }); prev >= 0 {
			fresh[prev].facts = append(fresh[prev].facts, sub.facts...)
			continue
		}
		fresh = append(fresh, sub)
		out = append(out, sub)
	}
	// The merges, by surviving record.
	for rec, sv := range survivor {
		if rec == sv {
			continue
		}
		sub := byRecord[sv]
		if sub == nil {
			// Only a record merged away was found; its survivor takes the
			// subject (it was found through the merged record).
			return nil, fmt.Errorf("register: merge into %s without a subject", sv)
		}
		sub.merge = append(sub.merge, merged{record: rec, reason: merges.reasons[rec]})
	}
	for _, sub := range out {
		slices.SortFunc(sub.merge, func(a, b merged) int { return strings.Compare(a.record, b.record) })
	}
	// New persons get a subject key of their own: a record holding the
	// key they would take is someone else (it did not fit), and namesakes
	// new in the same call must not share one.
	taken := map[string]bool{}
	for _, sub := range fresh {
		key := sub.key
		index, err := s.sealer.blind(ctx, o.tx, o.tenant, o.register.Name, "subject", key)
		if err != nil {
			return nil, err
		}
		if len(found[lookup{"subject", index}.key()]) > 0 || taken[key] {
			key = distinctKey(sub)
		}
		taken[key] = true
		sub.key = key
	}
	for _, sub := range out {
		index, err := s.sealer.blind(ctx, o.tx, o.tenant, o.register.Name, "subject", sub.key)
		if err != nil {
			return nil, err
		}
		sub.index = index
	}
	return out, nil
}

// samePerson reports whether two new persons of one call are the same: the
// same IDNr or Ordnungsmerkmal, or the same Basisdaten (one's, or the names
// the other's facts give it) without contradicting identifiers or birth
// places.
func samePerson(a, b *ident) bool {
	switch {
	case a.IDNr != "" && a.IDNr == b.IDNr:
		return true
	case a.Ordnungsmerkmal != "" && a.Ordnungsmerkmal == b.Ordnungsmerkmal:
		return true
	case a.name == "" || b.name == "":
		return false
	case a.name != b.name && !slices.Contains(a.stated, b.name) && !slices.Contains(b.stated, a.name):
		return false
	}
	conflict := func(x, y string) bool { return x != "" && y != "" && x != y }
	return !conflict(a.IDNr, b.IDNr) && !conflict(a.Ordnungsmerkmal, b.Ordnungsmerkmal) && !conflict(a.geburtsort, b.geburtsort)
}

// distinctKey is the subject key of a new person whose plain key another
// record holds: the key with what tells the person apart.
func distinctKey(sub *subject) string {
	id := sub.ident
	var what string
	switch {
	case id.IDNr != "":
		what = "idnr:" + id.IDNr
	case id.Ordnungsmerkmal != "":
		what = "om:" + strings.TrimSpace(id.Ordnungsmerkmal)
	default:
		h := sha256.Sum256([]byte(id.geburtsort + "\x00" + sub.facts[0].EventID))
		what = hex.EncodeToString(h[:6])
	}
	key := sub.key + "#" + what
	if len(key) > 200 {
		key = key[len(key)-200:]
	}
	return key
}

// merged is a record a subject's facts prove to be its person, merged into
// the subject's record, and why.
type merged struct {
	record, reason string
}

// newIdent normalizes a fact's identity for comparison.
func newIdent(id *Identity) *ident {
	c := *id
	c.IDNr, c.Ordnungsmerkmal = strings.TrimSpace(c.IDNr), strings.TrimSpace(c.Ordnungsmerkmal)
	out := &ident{Identity: &c, geburtsort: normalize(c.Geburtsort)}
	if c.Familienname != "" && c.Vornamen != "" && c.Geburtsdatum != "" {
		out.name = personName(c.Familienname, c.Vornamen, c.Geburtsdatum)
	}
	if a := c.Anschrift; a != nil {
		out.address = addressKey(a.Postleitzahl, a.Strasse, a.Hausnummer)
	}
	return out
}

// queueMerges queues, before the facts of the subjects' records are read,
// the merges their facts prove: the merged records' facts move to the
// subject's record, each merge is recorded (register_merge, with the facts
// it moved, so that it can be undone), and the merged records end.
func queueMerges(b *pgx.Batch, o *op, subjects []*subject) {
	for _, sub := range subjects {
		message := "" // a clerk's merge has none
		if len(sub.facts) > 0 {
			message = sub.facts[0].MessageID
		}
		for _, m := range sub.merge {
			queueMerge(b, o, sub.res.RecordID, m.record, m.reason, message)
			o.note("merge", sub.res.RecordID, fmt.Sprintf("merged record %s into %s: %s", m.record, sub.res.RecordID, m.reason))
		}
	}
}

// queueMerge queues one merge of record merged into survivor.
func queueMerge(b *pgx.Batch, o *op, survivor, mergedID, reason, messageID string) {
	b.Queue(`WITH moved AS (
			UPDATE register_fact SET record_id = $3 WHERE tenant_id = $1 AND register = $2 AND record_id = $4 RETURNING event_index)
		INSERT INTO register_merge (tenant_id, register, survivor, merged, events, reason, message_id)
		SELECT $1, $2, $3, $4, coalesce(array_agg(event_index), '{}'), $5, nullif($6, '') FROM moved`,
		o.tenant, o.register.Name, survivor, mergedID, reason, messageID)
	b.Queue(`UPDATE register_version SET superseded_at = now() WHERE tenant_id = $1 AND record_id = $2 AND superseded_at = 'infinity'`, o.tenant, mergedID)
	b.Queue(`UPDATE register_record SET deleted_at = now(), merged_into = $3, updated_at = now(), revision = revision + 1
		WHERE tenant_id = $1 AND id = $2`, o.tenant, mergedID, survivor)
	b.Queue(`DELETE FROM register_index WHERE tenant_id = $1 AND record_id = $2`, o.tenant, mergedID)
}
