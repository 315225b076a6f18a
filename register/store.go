package register

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // the register's days are Europe/Berlin days on any host

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/sealing"
	"github.com/parzelle/parzelle/tenant"
)

// Store is the register: every read and write of register data goes
// through it, and each one is authorized against the tenant's policy,
// confined to the tenant's rows by PostgreSQL, encrypted under the
// tenant's keys and appended to the tenant's audit log in the same
// transaction as the change it records.
type Store struct {
	pool    *pgxpool.Pool
	tenants func() *tenant.Set
	sealer  sealer
	keyring *sealing.Keyring
	// sealed are the tables a key rotation re-encrypts; plain those of
	// them that may hold rows an earlier version stored in plaintext.
	sealed, plain []sealing.Table
	log           *slog.Logger
	metrics       *metrics
	now           func() time.Time
}

// Config is what a Store needs.
type Config struct {
	Pool *pgxpool.Pool
	// Keys wraps the tenants' data keys with their key-encryption keys.
	Keys keys.Provider
	// Keyring, if set, is the tenants' keyring shared with the other
	// stores that seal tenant data (else one is made of Keys).
	Keyring *sealing.Keyring
	// Sealed are further tables of tenant data sealed with the keyring
	// (message content, dead letters), which a key rotation re-encrypts
	// with the register's own.
	Sealed []sealing.Table
	// Tenants returns the current tenant set, whose policies decide.
	Tenants func() *tenant.Set
	Log     *slog.Logger
	// Metrics, if set, receives the register's collectors.
	Metrics prometheus.Registerer
}

// NewStore returns the register store.
func NewStore(c Config) *Store {
	k := c.Keyring
	if k == nil {
		k = sealing.NewKeyring(c.Keys)
	}
	s := &Store{pool: c.Pool, tenants: c.Tenants, sealer: keyringSealer{k}, keyring: k, log: c.Log, metrics: newMetrics(), now: time.Now,
		sealed: append(slices.Clone(registerTables), c.Sealed...), plain: c.Sealed}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if c.Metrics != nil {
		s.metrics.register(c.Metrics, s)
	}
	return s
}

// Record is a register record as valid at one day and known at one time.
type Record struct {
	ID         string `json:"id"`
	Register   string `json:"register"`
	SubjectKey string `json:"subjectKey"`
	// Revision counts the record's writes; give it as If-Match to update
	// only what you have seen.
	Revision int `json:"revision"`
	// ValidFrom and ValidTo bound the valid time of these attributes
	// (ValidTo exclusive); empty means unbounded.
	ValidFrom  string     `json:"validFrom,omitempty"`
	ValidTo    string     `json:"validTo,omitempty"`
	RecordedAt time.Time  `json:"recordedAt"`
	Attributes Attributes `json:"attributes"`
	// Sources are the mapping specs (id@version) whose facts made these
	// attributes, for records that process messages derive.
	Sources []string `json:"sources,omitempty"`
	// Replayed is true when an idempotency key returned an earlier write's
	// result instead of writing again.
	Replayed bool `json:"-"`
}

// Version is one row of a record's history: attributes over a span of
// valid time, as recorded at one time and, if superseded, until when.
type Version struct {
	Seq          int        `json:"seq"`
	Revision     int        `json:"revision"`
	ValidFrom    string     `json:"validFrom,omitempty"`
	ValidTo      string     `json:"validTo,omitempty"`
	RecordedAt   time.Time  `json:"recordedAt"`
	SupersededAt *time.Time `json:"supersededAt,omitempty"`
	Attributes   Attributes `json:"attributes"`
	// Sources are the mapping specs (id@version) whose facts made a
	// version that process messages derived.
	Sources []string `json:"sources,omitempty"`
}

// Temporal selects what a read sees: the day the attributes are valid
// (ValidAt, YYYY-MM-DD; empty: today in Germany) as known at a time
// (KnownAt; zero: now).
type Temporal struct {
	ValidAt string
	KnownAt time.Time
}

// Create is a new record.
type Create struct {
	SubjectKey string
	Attributes Attributes
	// ValidFrom is the day the attributes hold from (empty: always).
	ValidFrom string
	Idempotency
}

// Change updates a record's attributes over a span of valid time: a nil
// attribute value removes the attribute.
type Change struct {
	Attributes Attributes
	// ValidFrom and ValidTo bound the span (ValidTo exclusive). Empty
	// ValidFrom: today, or for a correction the record's first day; empty
	// ValidTo: open-ended.
	ValidFrom, ValidTo string
	// Correction marks a change that corrects what was recorded rather
	// than something that changed in the world; it is audited as such.
	Correction bool
	// IfRevision, if not 0, refuses the change when the record has
	// another revision.
	IfRevision int
	Idempotency
}

// Idempotency makes a write repeatable: the same Key with the same
// RequestHash returns the first write's result; with another request it
// is a conflict. An empty Key writes every time.
type Idempotency struct {
	Key         string
	RequestHash []byte
}

// Query is a lookup by blind index: by IDNr, by name and birth date
// (person registers), by name (business registers), or by subject key.
type Query struct {
	IDNr         string
	Familienname string
	Vornamen     string
	Geburtsdatum string
	Name         string
	SubjectKey   string
}

// Days outside any date, as PostgreSQL writes them.
const (
	beginning = "-infinity"
	ending    = "infinity"
)

var berlin, _ = time.LoadLocation("Europe/Berlin")

// today is the current day in Germany.
func (s *Store) today() string { return s.now().In(berlin).Format(time.DateOnly) }

// cmpDay orders days, -infinity first and infinity last.
func cmpDay(a, b string) int {
	rank := func(d string) int {
		switch d {
		case beginning:
			return -1
		case ending:
			return 1
		}
		return 0
	}
	if ra, rb := rank(a), rank(b); ra != rb || ra != 0 {
		return ra - rb
	}
	return strings.Compare(a, b)
}

// op is one authorized operation in its tenant's transaction: the
// operation fills in what the audit entry and the access log record.
type op struct {
	tx       pgx.Tx
	tenant   string
	register tenant.RegisterDecl
	schema   schema
	actor    tenant.Actor
	decision tenant.Decision
	name     string
	// action is what the operation did (create, read, history, update,
	// correct, delete, search, export), for the access log.
	action string

	recordID  string
	detail    string
	disclosed []disclosure
	// notes are further entries for the audit log, appended before the
	// operation's own when it succeeds (the merges an Apply proved).
	notes []note
	// evidence is the evidence request an operation answers, for the
	// access log.
	evidence *evidenceAccess
}

// note is an audit entry an operation adds to its own.
type note struct {
	operation, recordID, detail string
}

// note adds an audit entry to the operation's, for when it succeeds.
func (o *op) note(operation, recordID, detail string) {
	o.notes = append(o.notes, note{operation, recordID, detail})
}

// disclosure is a record with an IDNr that the operation disclosed.
type disclosure struct {
	recordID, idnr string
}

// run authorizes the actor for the operation on the tenant's register and
// runs fn in the tenant's transaction, then appends the audit entry (and
// the access log of IDNr disclosures) in that transaction. A denial and a
// refused operation are audited too, each in a transaction of its own.
func (s *Store) run(ctx context.Context, a tenant.Actor, tenantID, register, operation, recordID string, fn func(o *op) error, prepare ...func(o *op)) error {
	cfg := s.tenants().Tenant(tenantID)
	if cfg == nil {
		s.metrics.denied("-", "-", operation)
		s.log.Warn("register access to an unknown tenant", "tenant", tenantID, "actor", a.Subject, "actor_tenant", a.Tenant)
		return refuse(KindDenied, "no access to tenant %q", tenantID)
	}
	decl, known := cfg.Register(register)
	if !known && a.Tenant == tenantID {
		return refuse(KindNotFound, "tenant %q has no register %q", tenantID, register)
	}
	d := cfg.Authorize(a, operation, register)
	o := &op{tenant: tenantID, register: decl, schema: schemas[decl.Type], actor: a, decision: d, name: operation, action: operation, recordID: recordID}
	for _, p := range prepare {
		p(o)
	}
	// Metric labels only take names the tenant declares: a path is
	// anyone's to invent.
	label := decl.Name
	if label == "" {
		label = "-"
	}
	if !d.Allowed {
		s.metrics.denied(tenantID, label, operation)
		o.detail = d.Reason
		if err := s.audit(ctx, o, OutcomeDenied); err != nil {
			return err
		}
		return refuse(KindDenied, "%s", d.Reason)
	}
	err := s.sealer.ensure(ctx, s.pool, tenantID)
	if err == nil {
		err = db.InTenant(ctx, s.pool, tenantID, func(tx pgx.Tx) error {
			o.tx = tx
			if err := fn(o); err != nil {
				return err
			}
			return s.record(ctx, o, OutcomeGranted)
		})
	}
	if err == nil {
		s.metrics.done(tenantID, label, operation, OutcomeGranted)
		return nil
	}
	// A refusal is audited with its reason; any other error (a database
	// failure, a ciphertext that does not decrypt) as an error whose
	// details are in the node's log, not in the audit log.
	o.detail, o.disclosed, o.notes = "error: the operation could not be completed", nil, nil
	var refusal *Error
	if errors.As(err, &refusal) {
		o.detail = refusal.Detail
	} else {
		s.log.Error("register operation failed", "tenant", tenantID, "register", label, "operation", operation, "error", err)
	}
	s.metrics.done(tenantID, label, operation, OutcomeFailed)
	if aerr := s.audit(ctx, o, OutcomeFailed); aerr != nil {
		return errors.Join(err, aerr)
	}
	return err
}

// audit appends o's audit entry in a transaction of its own.
func (s *Store) audit(ctx context.Context, o *op, outcome string) error {
	return db.InTenant(ctx, s.pool, o.tenant, func(tx pgx.Tx) error {
		o.tx = tx
		return s.record(ctx, o, outcome)
	})
}

// record appends o's audit entry and its access-log rows to o's
// transaction.
func (s *Store) record(ctx context.Context, o *op, outcome string) error {
	e := &AuditEntry{Tenant: o.tenant, Actor: o.actor, LegalBasis: o.decision.LegalBasis, Operation: o.name,
		Register: o.register.Name, RecordID: o.recordID, Outcome: outcome, Detail: o.detail}
	if e.Register == "" {
		e.Register = "-"
	}
	if ev := o.evidence; ev != nil {
		e.Operation = "evidence"
		switch {
		case outcome == OutcomeGranted:
			ev.result = EvidenceAnswered
		case outcome == OutcomeDenied && ev.result == "":
			ev.result = EvidenceDenied
		case ev.result == "":
			ev.result = EvidenceError
		}
		if !strings.HasPrefix(e.Detail, "evidence request") {
			e.Detail = ev.describe() + ": " + ev.result + ": " + e.Detail
		}
		// A request that failed still spends what its admission spends,
		// with the entry that accounts for it.
		if ev.admit != nil && outcome != OutcomeGranted {
			var rf *Refusal
			if err := ev.admit(ctx, o.tx); err != nil && !errors.As(err, &rf) {
				return err
			}
		}
	}
	if outcome == OutcomeGranted {
		for _, n := range o.notes {
			ne := &AuditEntry{Tenant: o.tenant, Actor: o.actor, LegalBasis: o.decision.LegalBasis, Operation: n.operation,
				Register: e.Register, RecordID: n.recordID, Outcome: outcome, Detail: n.detail}
			if err := appendAudit(ctx, o.tx, ne, nil); err != nil {
				return err
			}
		}
	}
	entries, err := s.prepareDisclosures(ctx, o)
	if err != nil {
		return err
	}
	return appendAudit(ctx, o.tx, e, func(b *pgx.Batch) { queueDisclosures(b, o, e, entries) })
}

// Create adds a record. Its subject key must not be in use by another
// record of the register.
func (s *Store) Create(ctx context.Context, a tenant.Actor, tenantID, register string, in Create) (Record, error) {
	var rec Record
	err := s.run(ctx, a, tenantID, register, tenant.OpWrite, "", func(o *op) error {
		o.action = "create"
		if r, ok, err := s.replay(ctx, o, in.Idempotency, "create"); ok || err != nil {
			rec = r
			return err
		}
		if errs := append(o.schema.check(in.Attributes), o.schema.complete(merge(nil, in.Attributes))...); len(errs) > 0 {
			return &Error{Kind: KindInvalid, Detail: "the attributes are not valid for register " + register, Fields: errs}
		}
		if err := checkSubjectKey(in.SubjectKey); err != nil {
			return err
		}
		from := beginning
		if in.ValidFrom != "" {
			if !validDate(in.ValidFrom) {
				return refuse(KindInvalid, "validFrom %q is not a date (YYYY-MM-DD)", in.ValidFrom)
			}
			from = in.ValidFrom
		}
		subject, err := s.sealer.blind(ctx, o.tx, tenantID, register, "subject", in.SubjectKey)
		if err != nil {
			return err
		}
		id := newID()
		var now time.Time
		err = o.tx.QueryRow(ctx, `INSERT INTO register_record (id, tenant_id, register, subject_index, revision, created_at, updated_at)
			VALUES ($1, $2, $3, $4, 1, now(), now())
			ON CONFLICT (tenant_id, register, subject_index) WHERE deleted_at IS NULL DO NOTHING RETURNING created_at`,
			id, tenantID, register, subject).Scan(&now)
		if errors.Is(err, pgx.ErrNoRows) {
			var existing string
			if err := o.tx.QueryRow(ctx, `SELECT id::text FROM register_record WHERE tenant_id = $1 AND register = $2 AND subject_index = $3 AND deleted_at IS NULL`,
				tenantID, register, subject).Scan(&existing); err != nil {
				return fmt.Errorf("register: look up subject: %w", err)
			}
			return refuse(KindConflict, "register %s has a record for this subject key already: %s", register, existing)
		} else if err != nil {
			return fmt.Errorf("register: create record: %w", err)
		}
		o.recordID = id
		attrs := merge(nil, in.Attributes)
		v := &row{seq: 1, revision: 1, from: from, to: ending, subject: in.SubjectKey, attrs: attrs}
		b := &pgx.Batch{}
		if err := s.queueRows(ctx, o, b, id, v); err != nil {
			return err
		}
		if err := s.queueIndex(ctx, o, b, id, false, in.SubjectKey, []*row{v}); err != nil {
			return err
		}
		s.queueRemember(b, o, in.Idempotency, "create", id, 1)
		if err := o.tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("register: create record: %w", err)
		}
		o.detail = "created"
		rec = Record{ID: id, Register: register, SubjectKey: in.SubjectKey, Revision: 1, ValidFrom: day(from), RecordedAt: now, Attributes: attrs}
		o.disclose(id, attrs)
		return nil
	})
	return rec, err
}

// Get returns the record as valid and known at the given times.
func (s *Store) Get(ctx context.Context, a tenant.Actor, tenantID, register, id string, at Temporal) (Record, error) {
	var rec Record
	err := s.run(ctx, a, tenantID, register, tenant.OpRead, id, func(o *op) error {
		if err := at.check(); err != nil {
			return err
		}
		var err error
		rec, err = s.read(ctx, o, id, at)
		if err != nil {
			return err
		}
		o.disclose(id, rec.Attributes)
		return nil
	})
	return rec, err
}

// read loads one record as valid and known at the given times.
func (s *Store) read(ctx context.Context, o *op, id string, at Temporal) (Record, error) {
	h, err := s.head(ctx, o, id, false)
	if err != nil {
		return Record{}, err
	}
	validAt := at.ValidAt
	if validAt == "" {
		validAt = s.today()
	}
	if err := h.visible(id, at); err != nil {
		return Record{}, err
	}
	rows, err := s.rows(ctx, o, id, at.KnownAt, validAt)
	if err != nil {
		return Record{}, err
	}
	known := "now"
	if !at.KnownAt.IsZero() {
		known = at.KnownAt.UTC().Format(time.RFC3339Nano)
	}
	if len(rows) == 0 {
		return Record{}, refuse(KindNotFound, "record %s has no attributes valid on %s as known %s", id, validAt, known)
	}
	o.detail = fmt.Sprintf("read valid on %s as known %s", validAt, known)
	return rows[0].record(id, o.register.Name, h.revision), nil
}

// check refuses a Temporal that is not well-formed.
func (at Temporal) check() error {
	if at.ValidAt != "" && !validDate(at.ValidAt) {
		return refuse(KindInvalid, "validAt %q is not a date (YYYY-MM-DD)", at.ValidAt)
	}
	return nil
}

// History returns the record's versions over valid time as known at
// at.KnownAt, oldest first; with at.ValidAt only the one valid that day.
func (s *Store) History(ctx context.Context, a tenant.Actor, tenantID, register, id string, at Temporal) ([]Version, error) {
	var out []Version
	err := s.run(ctx, a, tenantID, register, tenant.OpRead, id, func(o *op) error {
		o.action = "history"
		if err := at.check(); err != nil {
			return err
		}
		h, err := s.head(ctx, o, id, false)
		if err != nil {
			return err
		}
		if err := h.visible(id, at); err != nil {
			return err
		}
		rows, err := s.rows(ctx, o, id, at.KnownAt, at.ValidAt)
		if err != nil {
			return err
		}
		out = make([]Version, 0, len(rows))
		for _, r := range rows {
			v := Version{Seq: r.seq, Revision: r.revision, ValidFrom: day(r.from), ValidTo: day(r.to), RecordedAt: r.recordedAt, Attributes: r.attrs, Sources: r.sources}
			if !r.supersededAt.IsZero() {
				t := r.supersededAt
				v.SupersededAt = &t
			}
			out = append(out, v)
			o.disclose(id, r.attrs)
		}
		o.detail = fmt.Sprintf("history: %d versions", len(out))
		return nil
	})
	return out, err
}

// Update changes a record's attributes over a span of valid time. The rows
// the span touches are superseded (kept for reads of earlier knowledge) and
// replaced: the parts outside the span keep their attributes, the part
// inside gets the change. A change that changes nothing writes nothing.
func (s *Store) Update(ctx context.Context, a tenant.Actor, tenantID, register, id string, ch Change) (Record, error) {
	var rec Record
	name := "update"
	if ch.Correction {
		name = "correct"
	}
	err := s.run(ctx, a, tenantID, register, tenant.OpWrite, id, func(o *op) error {
		o.action = name
		if r, ok, err := s.replay(ctx, o, ch.Idempotency, name); ok || err != nil {
			rec = r
			return err
		}
		if errs := o.schema.check(ch.Attributes); len(errs) > 0 {
			return &Error{Kind: KindInvalid, Detail: "the attributes are not valid for register " + register, Fields: errs}
		}
		h, err := s.head(ctx, o, id, true)
		if err != nil {
			return err
		}
		if err := h.visible(id, Temporal{}); err != nil {
			return err
		}
		if ch.IfRevision != 0 && ch.IfRevision != h.revision {
			return refuse(KindStale, "record %s is at revision %d, not %d: read it again", id, h.revision, ch.IfRevision)
		}
		current, err := s.rows(ctx, o, id, time.Time{}, "")
		if err != nil {
			return err
		}
		if len(current) == 0 {
			return refuse(KindGone, "record %s has no current versions", id)
		}
		from, to := ch.ValidFrom, ch.ValidTo
		switch {
		case from == "" && ch.Correction:
			from = current[0].from
		case from == "":
			from = s.today()
		case !validDate(from):
			return refuse(KindInvalid, "validFrom %q is not a date (YYYY-MM-DD)", from)
		}
		if to == "" {
			to = ending
		} else if !validDate(to) {
			return refuse(KindInvalid, "validTo %q is not a date (YYYY-MM-DD)", to)
		}
		if cmpDay(from, to) >= 0 {
			return refuse(KindInvalid, "validFrom %s is not before validTo %s", from, to)
		}
		if cmpDay(from, current[0].from) < 0 {
			return refuse(KindInvalid, "record %s is valid only from %s, not from %s", id, current[0].from, from)
		}
		revision := h.revision + 1
		added, superseded, err := respan(current, from, to, ch.Attributes, o.schema)
		if err != nil {
			return err
		}
		for i, r := range added {
			r.seq, r.revision = h.maxSeq+1+i, revision
		}
		o.detail = fmt.Sprintf("%s from %s to %s: %d versions replaced", name, day(from), day(to), len(superseded))
		b := &pgx.Batch{}
		if len(superseded) > 0 {
			b.Queue(`UPDATE register_version SET superseded_at = now()
				WHERE tenant_id = $1 AND record_id = $2 AND seq = ANY($3) AND superseded_at = 'infinity'`, tenantID, id, superseded)
			if err := s.queueRows(ctx, o, b, id, added...); err != nil {
				return err
			}
			b.Queue(`UPDATE register_record SET revision = $3, updated_at = now() WHERE tenant_id = $1 AND id = $2`, tenantID, id, revision)
			current = replaceRows(current, superseded, added)
			if err := s.queueIndex(ctx, o, b, id, true, current[0].subject, current); err != nil {
				return err
			}
		} else {
			revision = h.revision
		}
		s.queueRemember(b, o, ch.Idempotency, name, id, revision)
		if err := o.tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("register: update record %s: %w", id, err)
		}
		rec = s.view(o, id, revision, current, from)
		return nil
	})
	return rec, err
}

// replaceRows is current without the superseded versions and with the
// added ones, ordered by valid time.
func replaceRows(current []*row, superseded []int, added []*row) []*row {
	out := make([]*row, 0, len(current)+len(added))
	for _, r := range current {
		if !slices.Contains(superseded, r.seq) {
			out = append(out, r)
		}
	}
	out = append(out, added...)
	slices.SortFunc(out, func(a, b *row) int { return cmpDay(a.from, b.from) })
	return out
}

// respan applies changes to the current versions over [from, to): the
// versions the span touches are split at its ends and the part inside gets
// the changes, and neighbours left with equal attributes are joined. It
// returns the new versions (without seq) and the seqs they supersede;
// none when nothing changes.
func respan(current []*row, from, to string, changes Attributes, sc schema) (added []*row, superseded []int, err error) {
	type span struct {
		*row
		fresh bool // not stored yet
	}
	var spans []span
	changed := false
	for _, r := range current {
		next := merge(r.attrs, changes)
		if cmpDay(r.to, from) <= 0 || cmpDay(r.from, to) >= 0 || equalJSON(next, r.attrs) {
			spans = append(spans, span{r, false})
			continue
		}
		if errs := sc.complete(next); len(errs) > 0 {
			return nil, nil, &Error{Kind: KindInvalid, Detail: "the change would leave the record without required attributes", Fields: errs}
		}
		changed = true
		superseded = append(superseded, r.seq)
		piece := func(f, t string, attrs Attributes) {
			spans = append(spans, span{&row{from: f, to: t, subject: r.subject, attrs: attrs, sources: r.sources}, true})
		}
		if cmpDay(r.from, from) < 0 {
			piece(r.from, from, r.attrs)
		}
		piece(maxDay(r.from, from), minDay(r.to, to), next)
		if cmpDay(to, r.to) < 0 {
			piece(to, r.to, r.attrs)
		}
	}
	if !changed {
		return nil, nil, nil
	}
	// Join runs of adjacent spans with equal attributes, at least one of
	// them new, into one new version.
	for i := 0; i < len(spans); {
		j, fresh := i+1, spans[i].fresh
		for j < len(spans) && spans[j].from == spans[j-1].to && equalJSON(spans[j].attrs, spans[i].attrs) {
			fresh = fresh || spans[j].fresh
			j++
		}
		if !fresh {
			i = j
			continue
		}
		for _, sp := range spans[i:j] {
			if !sp.fresh {
				superseded = append(superseded, sp.seq)
			}
		}
		added = append(added, &row{from: spans[i].from, to: spans[j-1].to, subject: spans[i].subject, attrs: spans[i].attrs, sources: spans[i].sources})
		i = j
	}
	return added, superseded, nil
}

// view is the record valid today, or on the fallback day when nothing is
// valid today.
func (s *Store) view(o *op, id string, revision int, current []*row, fallback string) Record {
	pick := func(d string) *row {
		for _, r := range current {
			if cmpDay(r.from, d) <= 0 && cmpDay(d, r.to) < 0 {
				return r
			}
		}
		return nil
	}
	r := pick(s.today())
	if r == nil {
		r = pick(fallback)
	}
	if r == nil {
		r = current[len(current)-1]
	}
	o.disclose(id, r.attrs)
	return r.record(id, o.register.Name, revision)
}

// Delete ends a record: it no longer appears in reads and searches of the
// present, while reads of what was known before the deletion still see it.
func (s *Store) Delete(ctx context.Context, a tenant.Actor, tenantID, register, id string, ifRevision int, idem Idempotency) error {
	return s.run(ctx, a, tenantID, register, tenant.OpWrite, id, func(o *op) error {
		o.action = "delete"
		if _, ok, err := s.replay(ctx, o, idem, "delete"); ok || err != nil {
			return err
		}
		h, err := s.head(ctx, o, id, true)
		if err != nil {
			return err
		}
		if err := h.visible(id, Temporal{}); err != nil {
			return err
		}
		if ifRevision != 0 && ifRevision != h.revision {
			return refuse(KindStale, "record %s is at revision %d, not %d: read it again", id, h.revision, ifRevision)
		}
		b := &pgx.Batch{}
		b.Queue(`UPDATE register_version SET superseded_at = now() WHERE tenant_id = $1 AND record_id = $2 AND superseded_at = 'infinity'`, tenantID, id)
		b.Queue(`UPDATE register_record SET deleted_at = now(), updated_at = now(), revision = revision + 1 WHERE tenant_id = $1 AND id = $2`, tenantID, id)
		b.Queue(`DELETE FROM register_index WHERE tenant_id = $1 AND record_id = $2`, tenantID, id)
		s.queueRemember(b, o, idem, "delete", id, h.revision+1)
		if err := o.tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("register: delete record: %w", err)
		}
		o.detail = "deleted"
		return nil
	})
}

// maxResults bounds a search's answer: a lookup finds a subject, it does
// not list the register.
const maxResults = 50

// Search finds records by blind index and returns each as valid today.
func (s *Store) Search(ctx context.Context, a tenant.Actor, tenantID, register string, q Query) ([]Record, error) {
	var out []Record
	err := s.run(ctx, a, tenantID, register, tenant.OpSearch, "", func(o *op) error {
		kind, value, err := q.key(o.register.Type)
		if err != nil {
			return err
		}
		index, err := s.sealer.blind(ctx, o.tx, tenantID, register, kind, value)
		if err != nil {
			return err
		}
		rows, err := o.tx.Query(ctx, `SELECT DISTINCT i.record_id::text FROM register_index i
			JOIN register_record r ON r.tenant_id = i.tenant_id AND r.id = i.record_id AND r.deleted_at IS NULL
			WHERE i.tenant_id = $1 AND i.register = $2 AND i.kind = $3 AND i.value = $4
			ORDER BY 1 LIMIT $5`, tenantID, register, kind, index, maxResults+1)
		if err != nil {
			return fmt.Errorf("register: search: %w", err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("register: search: %w", err)
		}
		if len(ids) > maxResults {
			return refuse(KindInvalid, "more than %d records match: narrow the search", maxResults)
		}
		for _, id := range ids {
			h, err := s.head(ctx, o, id, false)
			if err != nil {
				return err
			}
			current, err := s.rows(ctx, o, id, time.Time{}, "")
			if err != nil {
				return err
			}
			out = append(out, s.view(o, id, h.revision, current, s.today()))
		}
		o.detail = fmt.Sprintf("search by %s: %d records", kind, len(ids))
		if len(ids) > 0 {
			o.detail += ": " + strings.Join(ids, ", ")
		}
		return nil
	})
	return out, err
}

// key returns the blind-index kind and normalized value a query looks up.
func (q Query) key(registerType string) (kind, value string, err error) {
	set := 0
	for _, v := range []string{q.IDNr, q.Familienname + q.Vornamen + q.Geburtsdatum, q.Name, q.SubjectKey} {
		if v != "" {
			set++
		}
	}
	if set != 1 {
		return "", "", refuse(KindInvalid, "search by exactly one of: idnr; familienname, vornamen and geburtsdatum; name; subjectKey")
	}
	switch {
	case q.SubjectKey != "":
		return "subject", q.SubjectKey, nil
	case q.IDNr != "" && registerType == TypePerson:
		if !ValidIDNr(q.IDNr) {
			return "", "", refuse(KindInvalid, "the idnr searched for is not a valid Identifikationsnummer (11 digits, check digit per § 139b AO)")
		}
		return "idnr", q.IDNr, nil
	case q.Name != "" && registerType == TypeBusiness:
		return "name", normalize(q.Name), nil
	case registerType == TypePerson && q.Name == "" && q.IDNr == "":
		if q.Familienname == "" || q.Vornamen == "" || q.Geburtsdatum == "" {
			return "", "", refuse(KindInvalid, "a search by name needs familienname, vornamen and geburtsdatum")
		}
		if !ValidPartialDate(q.Geburtsdatum) {
			return "", "", refuse(KindInvalid, "the geburtsdatum searched for is not a date (YYYY-MM-DD, YYYY-MM or YYYY)")
		}
		return "name", personName(q.Familienname, q.Vornamen, q.Geburtsdatum), nil
	}
	return "", "", refuse(KindInvalid, "this search is not available in a %s register", registerType)
}

func personName(familienname, vornamen, geburtsdatum string) string {
	return normalize(familienname) + "\x1f" + normalize(vornamen) + "\x1f" + geburtsdatum
}

// indexKey is one blind-index lookup a record answers: a kind and the
// plaintext value indexed.
type indexKey struct{ kind, value string }

// indexKeys are the blind-index lookups a version's attributes answer: the
// searches (idnr, name) and what identification compares (ordnungsmerkmal,
// geburtsort, anschrift).
func indexKeys(registerType string, attrs Attributes) []indexKey {
	var out []indexKey
	text := func(m map[string]any, n string) string { s, _ := m[n].(string); return s }
	add := func(kind, value string) {
		if value != "" {
			out = append(out, indexKey{kind, value})
		}
	}
	switch registerType {
	case TypePerson:
		add("idnr", text(attrs, "idnr"))
		if f, v, g := text(attrs, "familienname"), text(attrs, "vornamen"), text(attrs, "geburtsdatum"); f != "" && v != "" && g != "" {
			add("name", personName(f, v, g))
		}
		add("ordnungsmerkmal", strings.TrimSpace(text(attrs, "ordnungsmerkmal")))
		add("geburtsort", normalize(text(attrs, "geburtsort")))
		address := func(v any) {
			if m, ok := v.(map[string]any); ok {
				add("anschrift", addressKey(text(m, "postleitzahl"), text(m, "strasse"), text(m, "hausnummer")))
			}
		}
		address(attrs["hauptwohnung"])
		address(attrs["vorherigeHauptwohnung"])
		if list, ok := attrs["nebenwohnungen"].([]any); ok {
			for _, v := range list {
				address(v)
			}
		}
	case TypeBusiness:
		add("name", normalize(text(attrs, "name")))
	}
	return out
}

// queueIndex queues the record's blind indexes of its current versions,
// replacing those it had (existed) or new.
func (s *Store) queueIndex(ctx context.Context, o *op, b *pgx.Batch, id string, existed bool, subjectKey string, current []*row) error {
	entries, err := s.indexEntries(ctx, o, id, subjectKey, current)
	if err != nil {
		return err
	}
	var replaced []string
	if existed {
		replaced = []string{id}
	}
	queueIndexes(b, o, replaced, entries)
	return nil
}

// indexEntry is one blind-index row of a record.
type indexEntry struct {
	recordID, kind string
	value          []byte
}

// indexEntries are a record's blind indexes, each once: of its subject key,
// of what its versions' attributes answer and of the lookups its facts
// identified the person by.
func (s *Store) indexEntries(ctx context.Context, o *op, id, subjectKey string, current []*row, identities ...indexKey) ([]indexEntry, error) {
	seen := map[string]bool{}
	var entries []indexEntry
	add := func(kind, value string) error {
		if seen[kind+"\x00"+value] {
			return nil
		}
		seen[kind+"\x00"+value] = true
		b, err := s.sealer.blind(ctx, o.tx, o.tenant, o.register.Name, kind, value)
		entries = append(entries, indexEntry{id, kind, b})
		return err
	}
	if err := add("subject", subjectKey); err != nil {
		return nil, err
	}
	keys := identities
	for _, r := range current {
		keys = append(keys, indexKeys(o.register.Type, r.attrs)...)
	}
	for _, k := range keys {
		if err := add(k.kind, k.value); err != nil {
			return nil, err
		}
	}
	return entries, nil
}

// queueIndexes queues the blind-index entries of records, replacing those
// of the records that had some (replaced; new records have none), in at
// most two statements however many records there are.
func queueIndexes(b *pgx.Batch, o *op, replaced []string, entries []indexEntry) {
	if len(replaced) > 0 {
		b.Queue(`DELETE FROM register_index WHERE tenant_id = $1 AND record_id = ANY($2)`, o.tenant, replaced)
	}
	if len(entries) == 0 {
		return
	}
	kinds, values, records := make([]string, len(entries)), make([][]byte, len(entries)), make([]string, len(entries))
	for i, e := range entries {
		kinds[i], values[i], records[i] = e.kind, e.value, e.recordID
	}
	b.Queue(`INSERT INTO register_index (tenant_id, register, kind, value, record_id)
		SELECT $1, $2, e.kind, e.value, e.record_id FROM unnest($3::text[], $4::bytea[], $5::uuid[]) AS e(kind, value, record_id)`,
		o.tenant, o.register.Name, kinds, values, records)
}

// head is a record's own row.
type head struct {
	revision   int
	maxSeq     int
	deleted    *time.Time
	mergedInto *string
}

// visible refuses a deleted record, unless the read is of what was known
// before the deletion. A merged record names the record it was merged into.
func (h head) visible(id string, at Temporal) error {
	if h.deleted != nil && (at.KnownAt.IsZero() || !at.KnownAt.Before(*h.deleted)) {
		if h.mergedInto != nil {
			return &Error{Kind: KindGone, Detail: fmt.Sprintf("record %s was merged into record %s on %s: the same person", id, *h.mergedInto, h.deleted.Format(time.RFC3339)),
				MergedInto: *h.mergedInto}
		}
		return refuse(KindGone, "record %s was deleted on %s", id, h.deleted.Format(time.RFC3339))
	}
	return nil
}

// head reads the record's row (locked, with its last seq, for a write),
// refusing a record of another register.
func (s *Store) head(ctx context.Context, o *op, id string, lock bool) (head, error) {
	if !validID(id) {
		return head{}, refuse(KindNotFound, "the record id is not a UUID")
	}
	// A write locks the row and needs the last seq to number its versions;
	// a read needs neither.
	last := `0`
	if lock {
		last = `(SELECT coalesce(max(seq), 0) FROM register_version v WHERE v.tenant_id = r.tenant_id AND v.record_id = r.id)`
	}
	q := `SELECT r.revision, r.deleted_at, r.merged_into::text, ` + last + ` FROM register_record r WHERE r.tenant_id = $1 AND r.register = $2 AND r.id = $3`
	if lock {
		q += ` FOR UPDATE OF r`
	}
	var h head
	err := o.tx.QueryRow(ctx, q, o.tenant, o.register.Name, id).Scan(&h.revision, &h.deleted, &h.mergedInto, &h.maxSeq)
	if errors.Is(err, pgx.ErrNoRows) {
		return head{}, refuse(KindNotFound, "register %s has no record %s", o.register.Name, id)
	}
	if err != nil {
		return head{}, fmt.Errorf("register: read record %s: %w", id, err)
	}
	return h, nil
}

// row is one decrypted register_version row.
type row struct {
	seq, revision int
	from, to      string
	recordedAt    time.Time
	supersededAt  time.Time // zero while current
	subject       string
	attrs         Attributes
	// sources are the mapping specs (id@version) whose facts made a
	// version derived from facts.
	sources []string
}

// record is the version as the record it shows.
func (r *row) record(id, register string, revision int) Record {
	return Record{ID: id, Register: register, SubjectKey: r.subject, Revision: revision, ValidFrom: day(r.from), ValidTo: day(r.to),
		RecordedAt: r.recordedAt, Attributes: r.attrs, Sources: r.sources}
}

// payload is what a version row encrypts.
type payload struct {
	SubjectKey string     `json:"s"`
	Attributes Attributes `json:"a"`
	Sources    []string   `json:"src,omitempty"`
}

// aad binds a version row's ciphertext to its tenant, register, record and
// seq.
func aad(tenantID, register, id string, seq int) []byte {
	return []byte("parzelle/register/v1\x00" + tenantID + "\x00" + register + "\x00" + id + "\x00" + strconv.Itoa(seq))
}

// rows reads and decrypts the record's versions as known at knownAt (zero:
// the current ones, whatever the clocks of node and database say), ordered
// by valid time; with validAt only the one valid that day.
func (s *Store) rows(ctx context.Context, o *op, id string, knownAt time.Time, validAt string) ([]*row, error) {
	q := `SELECT ` + versionColumns + ` FROM register_version WHERE tenant_id = $1 AND record_id = $2`
	args := []any{o.tenant, id}
	if knownAt.IsZero() {
		q += ` AND superseded_at = 'infinity'`
	} else {
		q += ` AND recorded_at <= $3 AND superseded_at > $3`
		args = append(args, knownAt)
	}
	if validAt != "" {
		q += fmt.Sprintf(` AND valid_from <= $%d::date AND valid_to > $%[1]d::date`, len(args)+1)
		args = append(args, validAt)
	}
	q += ` ORDER BY valid_from`
	dbRows, err := o.tx.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("register: read versions of %s: %w", id, err)
	}
	sealed, err := collectVersions(dbRows)
	if err != nil {
		return nil, fmt.Errorf("register: read versions of %s: %w", id, err)
	}
	return s.openVersions(ctx, o, sealed)
}

// versionColumns are the columns of register_version that collectVersions
// reads.
const versionColumns = `record_id::text, seq, revision, valid_from::text, valid_to::text, recorded_at, nullif(superseded_at, 'infinity'), key_version, payload`

// sealedVersion is a register_version row as read, its payload still
// encrypted.
type sealedVersion struct {
	recordID   string
	row        row
	keyVersion int
	payload    []byte
}

// collectVersions reads the versionColumns of every row and closes rows.
func collectVersions(rows pgx.Rows) ([]sealedVersion, error) {
	defer rows.Close()
	var out []sealedVersion
	for rows.Next() {
		var v sealedVersion
		var superseded *time.Time
		if err := rows.Scan(&v.recordID, &v.row.seq, &v.row.revision, &v.row.from, &v.row.to, &v.row.recordedAt, &superseded, &v.keyVersion, &v.payload); err != nil {
			return nil, err
		}
		if superseded != nil {
			v.row.supersededAt = *superseded
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// openVersions decrypts version rows (after their rows are read: opening
// may load a key in the same transaction).
func (s *Store) openVersions(ctx context.Context, o *op, sealed []sealedVersion) ([]*row, error) {
	out := make([]*row, len(sealed))
	for i := range sealed {
		v := &sealed[i]
		pt, err := s.sealer.open(ctx, o.tx, o.tenant, v.keyVersion, aad(o.tenant, o.register.Name, v.recordID, v.row.seq), v.payload)
		if err != nil {
			return nil, fmt.Errorf("register: version %d of record %s: %w", v.row.seq, v.recordID, err)
		}
		var p payload
		if err := json.Unmarshal(pt, &p); err != nil {
			return nil, fmt.Errorf("register: version %d of record %s: %w", v.row.seq, v.recordID, err)
		}
		r := v.row
		r.subject, r.attrs, r.sources = p.SubjectKey, p.Attributes, p.Sources
		out[i] = &r
	}
	return out, nil
}

// version is a new version row of a record.
type version struct {
	recordID string
	*row
}

// queueRows encrypts new version rows of the record and queues their
// insert (queueVersions).
func (s *Store) queueRows(ctx context.Context, o *op, b *pgx.Batch, id string, rows ...*row) error {
	vs := make([]version, len(rows))
	for i, r := range rows {
		vs[i] = version{id, r}
	}
	return s.queueVersions(ctx, o, b, vs)
}

// queueVersions encrypts new version rows, of one record or many, and
// queues one insert of them all (recorded now; their recordedAt is set
// when the batch runs).
func (s *Store) queueVersions(ctx context.Context, o *op, b *pgx.Batch, vs []version) error {
	if len(vs) == 0 {
		return nil
	}
	n := len(vs)
	ids, seqs, revisions := make([]string, n), make([]int, n), make([]int, n)
	froms, tos, kvs, cts := make([]string, n), make([]string, n), make([]int, n), make([][]byte, n)
	byKey := map[string]*row{}
	for i, v := range vs {
		pt, err := json.Marshal(payload{v.subject, v.attrs, v.sources})
		if err != nil {
			return fmt.Errorf("register: encode version: %w", err)
		}
		kv, ct, err := s.sealer.seal(ctx, o.tx, o.tenant, aad(o.tenant, o.register.Name, v.recordID, v.seq), pt)
		if err != nil {
			return err
		}
		ids[i], seqs[i], revisions[i], froms[i], tos[i], kvs[i], cts[i] = v.recordID, v.seq, v.revision, v.from, v.to, kv, ct
		byKey[v.recordID+"/"+strconv.Itoa(v.seq)] = v.row
	}
	b.Queue(`INSERT INTO register_version (tenant_id, record_id, seq, revision, valid_from, valid_to, recorded_at, key_version, payload)
		SELECT $1, v.record_id, v.seq, v.revision, v.valid_from, v.valid_to, now(), v.key_version, v.payload
		FROM unnest($2::uuid[], $3::int[], $4::int[], $5::date[], $6::date[], $7::int[], $8::bytea[])
			AS v(record_id, seq, revision, valid_from, valid_to, key_version, payload)
		RETURNING record_id::text, seq, recorded_at`, o.tenant, ids, seqs, revisions, froms, tos, kvs, cts).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var id string
			var seq int
			var at time.Time
			if err := rows.Scan(&id, &seq, &at); err != nil {
				return err
			}
			byKey[id+"/"+strconv.Itoa(seq)].recordedAt = at
		}
		return rows.Err()
	})
	return nil
}

// disclose notes that the operation disclosed the record's attributes, for
// the access log when they carry an IDNr.
func (o *op) disclose(id string, attrs Attributes) {
	idnr, _ := attrs["idnr"].(string)
	if idnr == "" {
		return
	}
	for _, d := range o.disclosed {
		if d.recordID == id && d.idnr == idnr {
			return
		}
	}
	o.disclosed = append(o.disclosed, disclosure{id, idnr})
}

// day is a stored day as the API shows it: empty for the open ends.
func day(d string) string {
	if d == beginning || d == ending {
		return ""
	}
	return d
}

func minDay(a, b string) string {
	if cmpDay(a, b) <= 0 {
		return a
	}
	return b
}

func maxDay(a, b string) string {
	if cmpDay(a, b) >= 0 {
		return a
	}
	return b
}

func equalJSON(a, b Attributes) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

func checkSubjectKey(k string) error {
	if strings.TrimSpace(k) == "" {
		return &Error{Kind: KindInvalid, Detail: "a record needs a subject key", Fields: []FieldError{{"subjectKey", "is required"}}}
	}
	if len(k) > 200 || strings.ContainsFunc(k, func(r rune) bool { return r < ' ' }) {
		return &Error{Kind: KindInvalid, Detail: "the subject key is not valid", Fields: []FieldError{{"subjectKey", "must be at most 200 bytes without control characters"}}}
	}
	return nil
}

// newID returns a random (version 4) UUID.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func validID(id string) bool {
	if len(id) != 36 {
		return false
	}
	for i, c := range id {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case !strings.ContainsRune("0123456789abcdef", c):
			return false
		}
	}
	return true
}
