package register

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parzelle/parzelle/tenant"
)

// EvidenceQuery is the subject of an evidence request (XNachweis) and what
// the access log records about the request.
//
// A person is found by IDNr where the request has one: the record that
// carries it, if its birth date agrees with the request's. Without an IDNr,
// or when no record carries it, by the Basisdaten: the records known by the
// family name, given names and birth date (every name and birth date a
// record was ever known by; names compared case- and space-insensitively,
// in Unicode NFC), less those with another IDNr and, when the request gives
// a birth place, those born elsewhere. A business is found by its name. One
// record is the subject; none is KindNotFound, several KindAmbiguous:
// never a guess.
type EvidenceQuery struct {
	IDNr, Familienname, Vornamen, Geburtsdatum, Geburtsort string
	// Name is a business's name.
	Name string
	// ValidAt is the day the evidence speaks of (YYYY-MM-DD).
	ValidAt string
	// DiscloseBlocked answers for a person whose record carries an
	// Auskunftssperre on ValidAt; without it such a person is refused
	// (KindBlocked).
	DiscloseBlocked bool
	Accounting      EvidenceAccounting
	// Admit, if set, runs first in the operation's transaction (spending
	// the request's token, say); a *Refusal it returns refuses the request
	// with its code. When the request fails it runs again in the
	// transaction that audits the failure, whose refusal then counts no
	// more: what it records is recorded with the audit entry, whatever
	// became of the request.
	Admit func(ctx context.Context, tx pgx.Tx) error
	// Answer, if set, is called with the record inside the operation's
	// transaction, before it commits: an error (say, the evidence could
	// not be signed) fails the operation, so that the access log records
	// as answered only what was.
	Answer func(Record) error
}

// Refusal refuses an evidence request for a reason of the caller's (see
// EvidenceQuery.Admit); the access log records Code as the result.
type Refusal struct{ Code, Reason string }

func (r *Refusal) Error() string { return r.Code + ": " + r.Reason }

// EvidenceAccounting is what the audit entry and the access log record of
// an evidence request besides the actor: the request's id, the
// IssuedToken's id and the evidence type.
type EvidenceAccounting struct {
	Request, TokenID, EvidenceType string
}

// Evidence results as the access log records them.
const (
	EvidenceAnswered  = "answered"
	EvidenceNoMatch   = "no-match"
	EvidenceAmbiguous = "ambiguous"
	EvidenceBlocked   = "auskunftssperre"
	EvidenceDenied    = "denied"
	EvidenceError     = "error"
)

// evidenceAccess is an operation's evidence request: its accounting, the
// IDNr it asked for and how it ended.
type evidenceAccess struct {
	EvidenceAccounting
	idnr, result string
	admit        func(ctx context.Context, tx pgx.Tx) error
}

// Evidence finds the subject of an evidence request and returns its record
// as valid on q.ValidAt. The actor is an evidence requester
// (tenant.ActorEvidence); the read is authorized by the tenant's evidence
// grants, audited, and — answered or refused — entered in the access log
// with the request's IDNr or the record's, the token id, the evidence type
// and the result.
func (s *Store) Evidence(ctx context.Context, a tenant.Actor, tenantID, register string, q EvidenceQuery) (Record, error) {
	var rec Record
	ev := &evidenceAccess{EvidenceAccounting: q.Accounting, idnr: q.IDNr, admit: q.Admit}
	err := s.runEvidence(ctx, a, tenantID, register, ev, func(o *op) error {
		if q.Admit != nil {
			var rf *Refusal
			if err := q.Admit(ctx, o.tx); errors.As(err, &rf) {
				ev.result = rf.Code
				return &Error{Kind: KindDenied, Detail: rf.Code + ": " + rf.Reason, cause: rf}
			} else if err != nil {
				return err
			}
		}
		if !validDate(q.ValidAt) {
			return refuse(KindInvalid, "the evidence's day %q is not a date (YYYY-MM-DD)", q.ValidAt)
		}
		id, rows, err := s.evidenceSubject(ctx, o, q, ev)
		if err != nil {
			return err
		}
		o.recordID = id
		r := validOn(rows, q.ValidAt, false)
		if r == nil {
			ev.result = EvidenceNoMatch
			return refuse(KindNotFound, "record %s has no attributes valid on %s", id, q.ValidAt)
		}
		rec = r.record(id, o.register.Name, r.revision)
		if blockedOn(rec.Attributes, q.ValidAt) && !q.DiscloseBlocked {
			ev.result = EvidenceBlocked
			return refuse(KindBlocked, "record %s carries an Auskunftssperre on %s", id, q.ValidAt)
		}
		if q.Answer != nil {
			if err := q.Answer(rec); err != nil {
				return err
			}
		}
		o.disclose(id, rec.Attributes)
		o.detail = fmt.Sprintf("%s: answered with record %s valid on %s", ev.describe(), id, q.ValidAt)
		return nil
	})
	return rec, err
}

// RefuseEvidence records an evidence request refused before the register
// was asked (its token, its requester, its quota …): an audit entry denied
// for the reason, and, for a request by IDNr, an access-log entry without a
// record, whose result is the code given.
func (s *Store) RefuseEvidence(ctx context.Context, a tenant.Actor, tenantID, register string, q EvidenceQuery, code, reason string) error {
	ev := &evidenceAccess{EvidenceAccounting: q.Accounting, idnr: q.IDNr, result: code, admit: q.Admit}
	if !ValidIDNr(ev.idnr) {
		ev.idnr = ""
	}
	o := &op{tenant: tenantID, actor: a, name: tenant.OpRead, action: "evidence", evidence: ev,
		decision: tenant.Decision{Reason: reason}, detail: ev.describe() + ": refused (" + code + "): " + reason}
	if cfg := s.tenants().Tenant(tenantID); cfg != nil {
		o.register, _ = cfg.Register(register)
		o.schema = schemas[o.register.Type]
	}
	if ev.idnr != "" {
		if err := s.sealer.ensure(ctx, s.pool, tenantID); err != nil {
			return err
		}
	}
	return s.audit(ctx, o, OutcomeDenied)
}

// runEvidence runs an evidence operation: run with the access recorded.
func (s *Store) runEvidence(ctx context.Context, a tenant.Actor, tenantID, register string, ev *evidenceAccess, fn func(o *op) error) error {
	return s.run(ctx, a, tenantID, register, tenant.OpRead, "", fn, func(o *op) { o.action, o.evidence = "evidence", ev })
}

// describe names the request in an audit entry: no personal data.
func (ev *evidenceAccess) describe() string {
	by := "Basisdaten"
	if ev.idnr != "" {
		by = "IDNr"
	}
	return fmt.Sprintf("evidence request %s (token %s, evidence type %s, by %s)", orDash(ev.Request), orDash(ev.TokenID), orDash(ev.EvidenceType), by)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// evidenceSubject finds the one record the request is about and returns
// its current versions.
func (s *Store) evidenceSubject(ctx context.Context, o *op, q EvidenceQuery, ev *evidenceAccess) (string, []*row, error) {
	if o.register.Type == TypeBusiness {
		if strings.TrimSpace(q.Name) == "" {
			return "", nil, refuse(KindInvalid, "an evidence request to a business register names the business")
		}
		ids, err := s.indexed(ctx, o, "name", normalize(q.Name))
		if err != nil {
			return "", nil, err
		}
		return s.evidenceOne(ctx, o, ev, q.ValidAt, ids, nil)
	}
	if q.Familienname == "" || q.Vornamen == "" || !validDate(q.Geburtsdatum) {
		return "", nil, refuse(KindInvalid, "an evidence request names the person's family name, given names and birth date (YYYY-MM-DD)")
	}
	if q.IDNr != "" {
		if !ValidIDNr(q.IDNr) {
			ev.result = EvidenceNoMatch
			return "", nil, refuse(KindNotFound, "the IDNr is not a valid Identifikationsnummer")
		}
		ids, err := s.indexed(ctx, o, "idnr", q.IDNr)
		if err != nil {
			return "", nil, err
		}
		if len(ids) > 0 {
			// The IDNr is authoritative, but the birth date must agree: a
			// mistyped IDNr must not disclose somebody else.
			return s.evidenceOne(ctx, o, ev, q.ValidAt, ids, func(a Attributes) bool { return sameBirth(a, q.Geburtsdatum) })
		}
	}
	ids, err := s.indexed(ctx, o, "name", personName(q.Familienname, q.Vornamen, q.Geburtsdatum))
	if err != nil {
		return "", nil, err
	}
	return s.evidenceOne(ctx, o, ev, q.ValidAt, ids, func(a Attributes) bool {
		idnr, _ := a["idnr"].(string)
		if q.IDNr != "" && idnr != "" && idnr != q.IDNr {
			return false
		}
		place, _ := a["geburtsort"].(string)
		return q.Geburtsort == "" || place == "" || normalize(place) == normalize(q.Geburtsort)
	})
}

// evidenceOne returns the one of the records whose attributes (those valid
// on the day, else the latest) fit, and its current versions.
func (s *Store) evidenceOne(ctx context.Context, o *op, ev *evidenceAccess, day string, ids []string, fits func(Attributes) bool) (string, []*row, error) {
	var found []string
	var versions []*row
	for _, id := range ids {
		current, err := s.rows(ctx, o, id, time.Time{}, "")
		if err != nil {
			return "", nil, err
		}
		if r := validOn(current, day, true); r == nil || (fits != nil && !fits(r.attrs)) {
			continue
		}
		found, versions = append(found, id), current
	}
	switch len(found) {
	case 0:
		ev.result = EvidenceNoMatch
		return "", nil, refuse(KindNotFound, "no record matches the request's subject")
	case 1:
		return found[0], versions, nil
	}
	ev.result = EvidenceAmbiguous
	return "", nil, refuse(KindAmbiguous, "%d records match the request's subject: %s", len(found), strings.Join(found, ", "))
}

// validOn returns the row valid on the day; else, with latest, the
// latest; nil for none.
func validOn(rows []*row, day string, latest bool) *row {
	for _, r := range rows {
		if cmpDay(r.from, day) <= 0 && cmpDay(day, r.to) < 0 {
			return r
		}
	}
	if len(rows) == 0 || !latest {
		return nil
	}
	return rows[len(rows)-1]
}

// indexed returns the live records of the register whose blind index of
// the kind holds the value.
func (s *Store) indexed(ctx context.Context, o *op, kind, value string) ([]string, error) {
	index, err := s.sealer.blind(ctx, o.tx, o.tenant, o.register.Name, kind, value)
	if err != nil {
		return nil, err
	}
	rows, err := o.tx.Query(ctx, `SELECT DISTINCT i.record_id::text FROM register_index i
		JOIN register_record r ON r.tenant_id = i.tenant_id AND r.id = i.record_id AND r.deleted_at IS NULL AND r.merged_into IS NULL
		WHERE i.tenant_id = $1 AND i.register = $2 AND i.kind = $3 AND i.value = $4
		ORDER BY 1 LIMIT $5`, o.tenant, o.register.Name, kind, index, maxResults+1)
	if err != nil {
		return nil, fmt.Errorf("register: find the subject: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("register: find the subject: %w", err)
	}
	return ids, nil
}

// sameBirth reports whether a record's birth date agrees with a full date:
// equal, or a partly known date the day falls in.
func sameBirth(a Attributes, day string) bool {
	b, _ := a["geburtsdatum"].(string)
	return b != "" && strings.HasPrefix(day, b)
}

// blockedOn reports whether a person's record carries an Auskunftssperre on
// the day: the flag, or a typed entry whose ab and bis (partly known dates
// cover their whole period) include the day.
func blockedOn(a Attributes, day string) bool {
	if b, _ := a["auskunftssperre"].(bool); b {
		return true
	}
	list, _ := a["auskunftssperren"].([]any)
	for _, item := range list {
		m, _ := item.(map[string]any)
		from, _ := m["ab"].(string)
		until, _ := m["bis"].(string)
		if (from == "" || day[:min(len(from), len(day))] >= from) && (until == "" || day[:min(len(until), len(day))] <= until) {
			return true
		}
	}
	return false
}
