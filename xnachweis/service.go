package xnachweis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/register"
	"github.com/parzelle/parzelle/tenant"
	"github.com/parzelle/parzelle/xmldsig"
	"github.com/parzelle/parzelle/xmlschema"
)

// SchemaSet is the schema set requests are validated against.
const SchemaSet = "xnachweis-1.2.0"

var uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// Service answers evidence requests from the register: one code path for
// every way a request arrives (HTTPS, XTA).
type Service struct {
	Pool    *pgxpool.Pool
	Store   *register.Store
	Tenants func() *tenant.Set
	Keys    keys.Provider
	Schemas *xmlschema.Registry
	// Tokens verifies IssuedTokens (JWSTokens when nil).
	Tokens  TokenVerifier
	Log     *slog.Logger
	Metrics *Metrics
	// MaxRequest bounds a request's size (DefaultMaxRequest when 0).
	MaxRequest int64
	// Now is the clock (time.Now when nil).
	Now func() time.Time

	buckets sync.Map // rate buckets by tenant and requester
}

// Caller is who presents a request: a transport client (its principal)
// or, for a request that came as an XTA message, the author's account and
// the tenant whose evidence identity it was sent to.
type Caller struct {
	Principal *tenant.Principal
	Account   string
	Tenant    string
	// Via is "https" or "xta", for the log.
	Via string
	// Source names the stored message a request came in ("" for a
	// synchronous request): answering the same message again is no replay
	// of its token.
	Source string
}

// Answer is the answer to one request.
type Answer struct {
	// Body is the response or error response (XML); nil when the caller
	// may ask no tenant of this node (the transport refuses it its own
	// way).
	Body []byte
	// Tenant is the tenant that answered (signs the transport), nil when
	// none could.
	Tenant *tenant.Config
	// Failure is why the answer is an error response, nil for evidence.
	Failure *Failure
	Request *Request
}

// Status is the HTTP status the synchronous path answers with.
func (a *Answer) Status() int {
	if a.Failure == nil {
		return 200
	}
	return a.Failure.Code.Status
}

// Outcome is "answered" or the failure's code.
func (a *Answer) Outcome() string {
	if a.Failure == nil {
		return register.EvidenceAnswered
	}
	return a.Failure.Code.Value
}

// exchange is one request on its way to an answer.
type exchange struct {
	caller   Caller
	tenant   *tenant.Config
	evidence *tenant.Evidence
	req      *Request
	// valid is set once the request passed the schema: only then do the
	// answers repeat its values.
	valid     bool
	requester *tenant.EvidenceRequester
	typ       *tenant.EvidenceType
	grant     *tenant.EvidenceGrant
	claims    *TokenClaims
	// verified is set once the token proved sealed and for this request:
	// only such a token is spent.
	verified bool
	now      time.Time
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Callers returns the tenants whose evidence requests the caller may
// present.
func (s *Service) Callers(c Caller) []*tenant.Config {
	var out []*tenant.Config
	set := s.Tenants()
	for _, t := range set.Tenants() {
		e := t.EvidenceProvider()
		if e == nil {
			continue
		}
		ok := false
		if c.Principal != nil {
			for _, g := range c.Principal.Grants {
				ok = ok || (g.Tenant == t.ID && e.Caller(g.Client, ""))
			}
		}
		if c.Account != "" && c.Tenant == t.ID {
			ok = ok || e.Caller("", c.Account)
		}
		if ok {
			out = append(out, t)
		}
	}
	return out
}

// Answer answers one request: parse (hardened) and validate it, find the
// tenant it asks, check the requester, the evidence type, the IssuedToken
// and the quotas, find the subject in the register and build the signed
// evidence — or the error response saying what stopped it. Every request
// that reaches a tenant is audited in the tenant's audit log and, when it
// names an IDNr, in its access log.
func (s *Service) Answer(ctx context.Context, c Caller, body []byte) Answer {
	start := s.now()
	x := &exchange{caller: c, now: start}
	callers := s.Callers(c)
	if len(callers) == 0 && c.Tenant != "" {
		// An XTA author who may not ask: answered by the tenant it wrote to.
		if t := s.Tenants().Tenant(c.Tenant); t != nil && t.EvidenceProvider() != nil {
			x.tenant, x.evidence = t, t.EvidenceProvider()
		}
	} else if len(callers) > 0 {
		x.tenant, x.evidence = callers[0], callers[0].EvidenceProvider()
	}
	if x.tenant == nil {
		s.log().Warn("evidence request from a caller no tenant lets ask", "via", c.Via, "account", c.Account, "subject", subjectOf(c))
		return Answer{}
	}
	var body2 []byte
	var f *Failure
	if len(callers) == 0 {
		f = fail(CodeRequester, "account %s may present no evidence requests to tenant %s", c.Account, x.tenant.ID)
	} else {
		body2, f = s.answer(ctx, x, callers, body)
	}
	if f != nil {
		body2 = answerFor(x.trusted(), x.evidence.Provider, x.fallbackRequester(), true, s.now()).errorResponse(f)
	}
	a := Answer{Body: body2, Tenant: x.tenant, Failure: f, Request: x.req}
	s.Metrics.observe(x, a.Outcome(), s.now().Sub(start))
	log := s.log().With("tenant", x.tenant.ID, "via", c.Via, "outcome", a.Outcome(), "duration", s.now().Sub(start))
	if x.req != nil {
		log = log.With("request", x.req.ID, "type", x.req.Type)
	}
	if x.requester != nil {
		log = log.With("requester", x.requester.Agent().String())
	}
	if x.typ != nil {
		log = log.With("evidence_type", x.typ.ID)
	}
	if f != nil {
		log.Info("evidence request refused", "cause", f.Cause)
	} else {
		log.Info("evidence request answered")
	}
	return a
}

// answer does the work of Answer once the tenant is known: the evidence
// response, or the failure.
func (s *Service) answer(ctx context.Context, x *exchange, callers []*tenant.Config, body []byte) ([]byte, *Failure) {
	r, err := ParseRequest(body, s.MaxRequest)
	if err != nil {
		var f *Failure
		errors.As(err, &f)
		return nil, s.refuse(ctx, x, f)
	}
	x.req = r
	if f := s.validate(body); f != nil {
		return nil, s.refuse(ctx, x, f)
	}
	x.valid = true
	// The tenant the request asks, among those the caller may ask.
	x.tenant, x.evidence = nil, nil
	for _, t := range callers {
		if t.EvidenceProvider().Provider.Is(r.Provider.Scheme, r.Provider.ID) {
			x.tenant, x.evidence = t, t.EvidenceProvider()
		}
	}
	if x.tenant == nil {
		x.tenant, x.evidence = callers[0], callers[0].EvidenceProvider()
		for _, t := range s.Tenants().Tenants() {
			if e := t.EvidenceProvider(); e != nil && e.Provider.Is(r.Provider.Scheme, r.Provider.ID) {
				return nil, s.refuse(ctx, x, fail(CodeRequester, "the caller may not ask tenant %s", t.ID))
			}
		}
		return nil, s.refuse(ctx, x, fail(CodeProviderUnknown, "no tenant provides evidence as %s:%s", r.Provider.Scheme, r.Provider.ID))
	}
	e := x.evidence
	for _, q := range r.Requesters {
		if rq := e.Requester(q.Scheme, q.ID); rq != nil && x.speaksFor(rq) {
			x.requester = rq
			break
		}
	}
	if x.requester == nil {
		return nil, s.refuse(ctx, x, fail(CodeRequester, "no requester the request names is one the caller may speak for"))
	}
	if x.typ = e.Type(r.Evidence.Classification, r.Evidence.Identifier); x.typ == nil {
		return nil, s.refuse(ctx, x, fail(CodeTypeNotOffered, "evidence type %q (identifier %q) is not offered", r.Evidence.Classification, r.Evidence.Identifier))
	}
	if r.Evidence.Format != "" && !x.typ.Offers(r.Evidence.Format) {
		return nil, s.refuse(ctx, x, fail(CodeFormat, "format %q is not offered for evidence type %s", r.Evidence.Format, x.typ.ID))
	}
	if x.grant = x.requester.Grant(x.typ.ID); x.grant == nil {
		return nil, s.refuse(ctx, x, fail(CodeRequester, "requester %s holds no grant for evidence type %s", x.requester.Agent(), x.typ.ID))
	}
	person := tenant.EvidenceDocuments[x.typ.Document].RegisterType == tenant.RegisterPerson
	if (person && r.Person == nil) || (!person && r.Business == nil) {
		return nil, s.refuse(ctx, x, fail(CodeTypeNotOffered, "evidence type %s is about a %s, the request names another kind of subject", x.typ.ID,
			map[bool]string{true: "natural person", false: "legal person"}[person]))
	}
	if f := s.checkToken(ctx, x); f != nil {
		return nil, s.refuse(ctx, x, f)
	}
	if f := s.checkQuota(ctx, x); f != nil {
		return nil, s.refuse(ctx, x, f)
	}
	return s.evidence(ctx, x)
}

// speaksFor reports whether the exchange's caller may present the
// requester's requests.
func (x *exchange) speaksFor(r *tenant.EvidenceRequester) bool {
	if x.caller.Principal != nil {
		for _, g := range x.caller.Principal.Grants {
			if g.Tenant == x.tenant.ID && x.evidence.SpeaksFor(r, g.Client, "") {
				return true
			}
		}
	}
	return x.caller.Account != "" && x.caller.Tenant == x.tenant.ID && x.evidence.SpeaksFor(r, "", x.caller.Account)
}

// trusted is the request as far as its answer may repeat it: whole once it
// passed the schema, else only its type and id (its other values may be
// what made it invalid).
func (x *exchange) trusted() *Request {
	if x.req == nil || x.valid {
		return x.req
	}
	return &Request{Type: x.req.Type, ID: x.req.ID, Test: x.req.Test}
}

// fallbackRequester is the requester an error response names when the
// request names none the node knows.
func (x *exchange) fallbackRequester() Agent {
	if x.requester != nil {
		a := x.requester.Agent()
		return Agent{Scheme: a.Scheme, ID: a.ID, Name: a.Name}
	}
	if x.req != nil && x.valid {
		for _, q := range x.req.Requesters {
			if easScheme(q.Scheme) && q.ID != "" {
				return q
			}
		}
	}
	for i := range x.evidence.Requesters {
		if r := &x.evidence.Requesters[i]; x.speaksFor(r) {
			a := r.Agent()
			return Agent{Scheme: a.Scheme, ID: a.ID, Name: a.Name}
		}
	}
	return Agent{Scheme: "urn:cef.eu:names:identifier:EAS:0000", ID: "unbekannt", Name: "unbekannt"}
}

func easScheme(s string) bool { return strings.HasPrefix(s, "urn:cef.eu:names:identifier:EAS:") }

// validate checks the request against the XNachweis 1.2.0 schemas.
func (s *Service) validate(body []byte) *Failure {
	if s.Schemas == nil || !s.Schemas.Has(SchemaSet) {
		return fail(CodeInternal, "the XNachweis 1.2.0 schemas are not installed (paths.schemas): requests cannot be validated")
	}
	err := s.Schemas.Validate(SchemaSet, body)
	var ve *xmlschema.ValidationError
	if errors.As(err, &ve) {
		f := fail(CodeSchemaInvalid, "%s", ve.Summary(5))
		f.Extra = problems(ve)
		return f
	}
	if err != nil {
		return fail(CodeInternal, "schema validation: %v", err)
	}
	return nil
}

// problems says what is wrong with an invalid request, for its requester:
// the first three problems with line and column, without the patterns
// libxml2 quotes whole (a DIN 91379 pattern runs to a thousand characters).
func problems(ve *xmlschema.ValidationError) string {
	var out []string
	for i, p := range ve.Problems {
		if i == 3 {
			break
		}
		msg := p.Message
		if i := strings.Index(msg, " by the pattern '"); i >= 0 {
			msg = msg[:i] + " by the pattern of its type (DIN 91379 characters, say)."
		}
		if len(msg) > 300 {
			msg = msg[:300] + " …"
		}
		p.Message = msg
		out = append(out, p.String())
	}
	if ve.Total > len(out) {
		out = append(out, fmt.Sprintf("%d more", ve.Total-len(out)))
	}
	return strings.Join(out, "; ")
}

// checkToken verifies the IssuedToken (unless the tenant is in insecure
// test mode) and records its id, refusing a replay; the token's purpose
// must be one the requester's grant covers.
func (s *Service) checkToken(ctx context.Context, x *exchange) *Failure {
	if x.evidence.InsecureTestMode {
		x.claims = &TokenClaims{Purpose: x.grant.Purposes[0]}
		return nil
	}
	v := s.Tokens
	if v == nil {
		v = JWSTokens{}
	}
	claims, err := v.Verify(x.evidence, x.req, x.now)
	if claims != nil {
		x.claims = claims
	}
	x.verified = err == nil
	if err != nil {
		var f *Failure
		if !errors.As(err, &f) {
			f = fail(CodeTokenInvalid, "%v", err)
		}
		return f
	}
	if !slices.Contains(x.grant.Purposes, claims.Purpose) {
		return fail(CodeRequester, "requester %s may not ask for evidence type %s for purpose %q", x.requester.Agent(), x.typ.ID, claims.Purpose)
	}
	return nil
}

// spendToken records the token's id in the transaction that answers (or
// audits) the request, refusing it when it was spent before: a token
// seen before is a replay, unless it came from the same stored message
// both times (an XTA request answered again after a crash).
func (x *exchange) spendToken(ctx context.Context, tx pgx.Tx) error {
	tag, err := tx.Exec(ctx, `INSERT INTO xnachweis_token (tenant_id, token_id, expires_at, source) VALUES ($1, $2, $3, $4)
		ON CONFLICT (tenant_id, token_id) DO UPDATE SET seen_at = now()
		WHERE xnachweis_token.source <> '' AND xnachweis_token.source = EXCLUDED.source`,
		x.tenant.ID, x.claims.ID, x.claims.NotAfter.Add(tokenLeeway), x.caller.Source)
	switch {
	case err != nil:
		return fmt.Errorf("xnachweis: record the token: %w", err)
	case tag.RowsAffected() == 0:
		return &register.Refusal{Code: CodeTokenReplayed.Value, Reason: "token " + x.claims.ID + " was presented before"}
	}
	return nil
}

// checkQuota takes one request from the requester's rate (on this node)
// and daily volume (across the cluster).
func (s *Service) checkQuota(ctx context.Context, x *exchange) *Failure {
	q := x.requester.Quota
	key := x.tenant.ID + "\x00" + x.requester.Agent().String()
	if q.PerMinute > 0 {
		b, _ := s.buckets.LoadOrStore(key, &bucket{})
		if !b.(*bucket).take(float64(q.PerMinute)/60, float64(q.Burst), x.now) {
			return fail(CodeQuota, "requester %s asked more than %d times a minute", x.requester.Agent(), q.PerMinute)
		}
	}
	if q.PerDay == 0 {
		return nil
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO xnachweis_quota (tenant_id, requester, day, requests) VALUES ($1, $2, $3, 1)
		ON CONFLICT (tenant_id, requester, day) DO UPDATE SET requests = xnachweis_quota.requests + 1 RETURNING requests`,
		x.tenant.ID, x.requester.Agent().String(), x.now.In(berlin).Format(time.DateOnly))
	var n int
	res, err := db.SendInTenant(ctx, s.Pool, x.tenant.ID, b)
	if err == nil {
		err = res.QueryRow().Scan(&n)
		if cerr := res.Close(); err == nil {
			err = cerr
		}
	}
	switch {
	case err != nil:
		return fail(CodeInternal, "count the request: %v", err)
	case n > q.PerDay:
		return fail(CodeQuota, "requester %s asked %d times today, more than its %d", x.requester.Agent(), n, q.PerDay)
	}
	return nil
}

// bucket is a token bucket.
type bucket struct {
	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func (b *bucket) take(rate, burst float64, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last.IsZero() {
		b.tokens = burst
	} else if d := now.Sub(b.last).Seconds(); d > 0 {
		b.tokens = min(burst, b.tokens+d*rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// actor is the requester as the register sees it.
func (x *exchange) actor() tenant.Actor {
	a := tenant.Actor{Tenant: x.tenant.ID, Kind: tenant.ActorEvidence, Subject: "-"}
	if x.requester != nil {
		a.Subject = x.requester.Agent().String()
	} else if x.req != nil && len(x.req.Requesters) > 0 {
		a.Subject = "unknown " + x.req.Requesters[0].Scheme + ":" + x.req.Requesters[0].ID
	}
	if x.typ != nil {
		a.Role = x.typ.ID
	}
	if x.claims != nil {
		a.Purpose = x.claims.Purpose
	}
	return a
}

// query is the register query of the request.
func (x *exchange) query() register.EvidenceQuery {
	q := register.EvidenceQuery{ValidAt: x.day()}
	if r := x.req; r != nil {
		q.Accounting.Request = r.ID
		if p := r.Person; p != nil {
			q.IDNr, q.Familienname, q.Vornamen, q.Geburtsdatum, q.Geburtsort = p.IDNr, p.FamilyName, p.GivenName, p.DateOfBirth, p.PlaceOfBirth
		}
		if b := r.Business; b != nil {
			q.Name = b.LegalName
		}
	}
	if x.claims != nil {
		q.Accounting.TokenID = x.claims.ID
	}
	if x.verified {
		q.Admit = x.spendToken
	}
	if x.typ != nil {
		q.Accounting.EvidenceType = x.typ.ID
	}
	return q
}

// day is the day the evidence speaks of: the request's issue day in
// Germany, today when the request has none.
func (x *exchange) day() string {
	t := x.now
	if x.req != nil && !x.req.IssueDateTime.IsZero() {
		t = x.req.IssueDateTime
	}
	return t.In(berlin).Format(time.DateOnly)
}

// register is the register the request is accounted in: the evidence
// type's, else the tenant's first person register.
func (x *exchange) register() string {
	if x.typ != nil {
		return x.typ.Register
	}
	for _, r := range x.tenant.Registers() {
		if r.Type == tenant.RegisterPerson {
			return r.Name
		}
	}
	if regs := x.tenant.Registers(); len(regs) > 0 {
		return regs[0].Name
	}
	return "-"
}

// refuse accounts for a request refused before the register was asked and
// returns the failure.
func (s *Service) refuse(ctx context.Context, x *exchange, f *Failure) *Failure {
	if err := s.Store.RefuseEvidence(ctx, x.actor(), x.tenant.ID, x.register(), x.query(), f.Code.Value, f.Cause); err != nil {
		s.log().Error("audit a refused evidence request", "tenant", x.tenant.ID, "error", err)
		return fail(CodeInternal, "audit the refusal (%s): %v", f.Code.Value, err)
	}
	return f
}

// evidence asks the register for the subject and builds the signed
// evidence inside its transaction, so that the access log says answered
// only of evidence that was made.
func (s *Service) evidence(ctx context.Context, x *exchange) ([]byte, *Failure) {
	q := x.query()
	q.DiscloseBlocked = x.typ.Discloses(x.grant.LegalBasis)
	var doc []byte
	q.Answer = func(rec register.Record) error {
		kp, err := s.Keys.SigningKey(ctx, x.tenant.ID)
		if err != nil {
			return fmt.Errorf("xnachweis: signing key of %s: %w", x.tenant.ID, err)
		}
		unsigned := issue{typ: x.typ, provider: x.evidence.Provider, requestID: x.req.ID, legalBasis: x.grant.LegalBasis,
			day: q.ValidAt, now: x.now, attrs: rec.Attributes}.document()
		signer := &xmldsig.Signer{Key: kp.Key, Certificates: kp.Chain}
		doc, err = signer.SignEnveloped(unsigned)
		return err
	}
	_, err := s.Store.Evidence(ctx, x.actor(), x.tenant.ID, x.typ.Register, q)
	if rf := (*register.Refusal)(nil); errors.As(err, &rf) {
		return nil, fail(codeOf(rf.Code), "%s", rf.Reason)
	}
	switch register.KindOf(err) {
	case 0:
		if err != nil {
			return nil, fail(CodeInternal, "%v", err)
		}
	case register.KindNotFound, register.KindInvalid:
		return nil, fail(CodeNoMatch, "%v", err)
	case register.KindBlocked:
		// Answered as if there were no such person: a requester that may
		// not learn of the block may not learn of the person either.
		return nil, fail(CodeNoMatch, "%v", err)
	case register.KindAmbiguous:
		return nil, fail(CodeAmbiguous, "%v", err)
	case register.KindDenied:
		return nil, fail(CodeRequester, "%v", err)
	default:
		return nil, fail(CodeInternal, "%v", err)
	}
	return answerFor(x.req, x.evidence.Provider, x.fallbackRequester(), false, x.now).response(x.req, evidence{typ: x.typ, document: doc, issued: x.now}), nil
}

// Expire deletes, for every tenant, the ids of tokens that expired (a
// replay of them fails on expiry anyway) and the daily counts of days
// before yesterday.
func (s *Service) Expire(ctx context.Context) error {
	for _, t := range s.Tenants().Tenants() {
		err := db.InTenant(ctx, s.Pool, t.ID, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `DELETE FROM xnachweis_token WHERE tenant_id = $1 AND expires_at < now()`, t.ID); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `DELETE FROM xnachweis_quota WHERE tenant_id = $1 AND day < current_date - 1`, t.ID)
			return err
		})
		if err != nil {
			return fmt.Errorf("xnachweis: expire tokens of %s: %w", t.ID, err)
		}
	}
	return nil
}

func (s *Service) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

func subjectOf(c Caller) string {
	if c.Principal == nil {
		return ""
	}
	return c.Principal.Subject
}
