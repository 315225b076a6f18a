package register

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/parzelle/parzelle/problem"
	"github.com/parzelle/parzelle/tenant"
)

// OpenAPI is the API's description (OpenAPI 3.1), served at
// /api/v1/openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte

// The problem kinds of the register API.
var (
	problemForbidden   = problem.Kind{Slug: "forbidden", Title: "Access denied", Status: http.StatusForbidden}
	problemNotFound    = problem.NotFound
	problemGone        = problem.Kind{Slug: "gone", Title: "Record deleted", Status: http.StatusGone}
	problemInvalid     = problem.Kind{Slug: "invalid-record", Title: "Invalid register data", Status: http.StatusUnprocessableEntity}
	problemConflict    = problem.Kind{Slug: "conflict", Title: "Conflict", Status: http.StatusConflict}
	problemStale       = problem.Kind{Slug: "stale-revision", Title: "Record changed", Status: http.StatusPreconditionFailed}
	problemBadRequest  = problem.Kind{Slug: "bad-request", Title: "Malformed request", Status: http.StatusBadRequest}
	problemMediaType   = problem.Kind{Slug: "unsupported-media-type", Title: "Unsupported media type", Status: http.StatusUnsupportedMediaType}
	problemTooLarge    = problem.Kind{Slug: "too-large", Title: "Request too large", Status: http.StatusRequestEntityTooLarge}
	problemUnavailable = problem.Kind{Slug: "unavailable", Title: "Register unavailable", Status: http.StatusServiceUnavailable}
	problemBadToken    = problem.Kind{Slug: "bad-token", Title: "Token not accepted", Status: http.StatusUnauthorized}
	problemAmbiguous   = problem.Kind{Slug: "ambiguous-subject", Title: "Person not identified", Status: http.StatusConflict}
)

// maxBody bounds a request body: a record is names and addresses.
const maxBody = 1 << 20

// PurposeHeader carries the purpose of a certificate client's request; a
// person's token carries it as its purpose claim.
const PurposeHeader = "Parzelle-Purpose"

// API serves the register to Fachverfahren over HTTPS.
type API struct {
	store *Store
	// principal returns the authenticated client certificate of a request
	// (nil when no tenant lists it).
	principal func(context.Context) *tenant.Principal
}

// NewAPI returns the HTTP API of the store; principal finds a request's
// authenticated client certificate.
func NewAPI(s *Store, principal func(context.Context) *tenant.Principal) *API {
	return &API{store: s, principal: principal}
}

const base = "/api/v1/tenants/{tenant}/registers/{register}"

// Mount adds the API's routes with handle (the node's HandleTransport).
func (api *API) Mount(handle func(pattern string, h http.Handler)) {
	handle("GET /api/v1/openapi.yaml", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(OpenAPI)
	}))
	handle("POST "+base+"/records", api.handler(api.create))
	handle("GET "+base+"/records", api.handler(api.search))
	handle("GET "+base+"/records/{id}", api.handler(api.get))
	handle("PATCH "+base+"/records/{id}", api.handler(api.update))
	handle("DELETE "+base+"/records/{id}", api.handler(api.delete))
	handle("GET "+base+"/records/{id}/history", api.handler(api.history))
	handle("POST "+base+"/records/{id}/erasure", api.handler(api.erase))
	handle("POST "+base+"/records/{id}/merge", api.handler(api.merge))
	handle("GET "+base+"/records/{id}/merges", api.handler(api.merges))
	handle("POST "+base+"/merges/{merge}/undo", api.handler(api.unmerge))
	handle("GET "+base+"/access-log", api.handler(api.accessLog))
}

// call is one API request with its actor.
type call struct {
	w                http.ResponseWriter
	r                *http.Request
	actor            tenant.Actor
	tenant, register string
}

// handler authenticates the actor of a request and runs h, turning its
// error into a problem.
func (api *API) handler(h func(c *call) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &call{w: w, r: r, tenant: r.PathValue("tenant"), register: r.PathValue("register")}
		err := api.authenticate(c)
		if err == nil {
			err = h(c)
		}
		if err != nil {
			api.fail(w, r, err)
		}
	})
}

// badRequest is a request the API cannot read.
type badRequest struct {
	kind   problem.Kind
	detail string
}

func (e *badRequest) Error() string { return e.detail }

// authenticate finds who acts: the person of a Bearer token, else the
// client certificate in its role for the addressed tenant (or, when it has
// none there, for its own tenant, which the policy then refuses).
func (api *API) authenticate(c *call) error {
	p := api.principal(c.r.Context())
	if p == nil {
		return &badRequest{problem.UnknownClient, "the client certificate is not assigned to any tenant of this node"}
	}
	purpose := c.r.Header.Get(PurposeHeader)
	if auth := c.r.Header.Get("Authorization"); auth != "" {
		raw, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok {
			return &badRequest{problemBadToken, "the Authorization header must be a Bearer token"}
		}
		a, err := api.store.tenants().AuthenticateToken(strings.TrimSpace(raw), api.store.now())
		if err != nil {
			return &badRequest{problemBadToken, err.Error()}
		}
		switch {
		case a.Tenant == c.tenant && !mayCarry(p, a.Tenant):
			// A token is not a pass for any certificate: the client that
			// carries it must itself be a client of the token's tenant.
			// Otherwise the certificate acts on its own, which that
			// tenant's policy refuses (and audits).
			return api.certificateActor(c, p, purpose)
		case a.Purpose == "":
			a.Purpose = purpose
		case purpose != "" && purpose != a.Purpose:
			return &badRequest{problemBadToken, fmt.Sprintf("the %s header %q contradicts the token's purpose %q", PurposeHeader, purpose, a.Purpose)}
		}
		c.actor = a
		return nil
	}
	return api.certificateActor(c, p, purpose)
}

// certificateActor makes the client certificate the actor: in its role for
// the addressed tenant, or, when it has none there, for its own tenant.
func (api *API) certificateActor(c *call, p *tenant.Principal, purpose string) error {
	if a, ok := p.Actor(c.tenant, purpose); ok {
		c.actor = a
		return nil
	}
	if len(p.Grants) > 0 {
		c.actor, _ = p.Actor(p.Grants[0].Tenant, purpose)
	}
	return nil
}

// mayCarry reports whether the certificate is a client of the tenant.
func mayCarry(p *tenant.Principal, tenantID string) bool {
	_, ok := p.Actor(tenantID, "")
	return ok
}

func (api *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	var bad *badRequest
	if errors.As(err, &bad) {
		if bad.kind.Status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		}
		problem.Write(w, r, bad.kind, bad.detail)
		return
	}
	var e *Error
	if !errors.As(err, &e) {
		api.store.log.Error("register API", "method", r.Method, "path", r.URL.Path, "error", err)
		problem.Write(w, r, problemUnavailable, "the register could not complete the request; it changed nothing, try again later")
		return
	}
	kind := map[ErrorKind]problem.Kind{KindDenied: problemForbidden, KindNotFound: problemNotFound, KindGone: problemGone,
		KindInvalid: problemInvalid, KindConflict: problemConflict, KindStale: problemStale, KindAmbiguous: problemAmbiguous, KindBlocked: problemNotFound}[e.Kind]
	if e.MergedInto != "" {
		// The record is now the one it was merged into.
		w.Header().Set("Link", fmt.Sprintf(`<%s/%s>; rel="successor-version"`, r.URL.Path[:strings.Index(r.URL.Path, "/records/")+len("/records")], e.MergedInto))
	}
	if e.Fields != nil {
		problem.WriteErrors(w, r, kind, e.Detail, e.Fields)
		return
	}
	problem.Write(w, r, kind, e.Detail)
}

// decode reads a JSON body into v, refusing unknown fields.
func (c *call) decode(v any) ([]byte, error) {
	if mt, _, err := mime.ParseMediaType(c.r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, &badRequest{problemMediaType, "send the body as application/json"}
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, maxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, &badRequest{problemTooLarge, fmt.Sprintf("the body is larger than %d bytes", maxBody)}
		}
		return nil, &badRequest{problemBadRequest, "reading the body: " + err.Error()}
	}
	if at := badUnicode(body); at >= 0 {
		field := jsonPath(body, at)
		if field == "" {
			field = "the top level"
		}
		return nil, &badRequest{problemBadRequest, fmt.Sprintf("the body is not valid UTF-8 at byte %d, in %s: send text as UTF-8 (JSON \\u escapes must not be lone surrogates); nothing was stored", at, field)}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return nil, &badRequest{problemBadRequest, "the body is not the expected JSON: " + err.Error()}
	}
	if dec.More() {
		return nil, &badRequest{problemBadRequest, "the body has more than one JSON value"}
	}
	return body, nil
}

// idempotency is the request's Idempotency-Key with a hash of what it asks.
func (c *call) idempotency(body []byte) Idempotency {
	key := c.r.Header.Get("Idempotency-Key")
	if key == "" {
		return Idempotency{}
	}
	h := sha256.New()
	h.Write([]byte(c.r.Method + " " + c.r.URL.Path + "\x00" + c.r.Header.Get("If-Match") + "\x00"))
	h.Write(body)
	return Idempotency{Key: key, RequestHash: h.Sum(nil)}
}

// ifRevision reads If-Match: a record's revision as its ETag gives it.
func (c *call) ifRevision() (int, error) {
	v := c.r.Header.Get("If-Match")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(strings.Trim(v, `"`))
	if err != nil || n < 1 {
		return 0, &badRequest{problemBadRequest, fmt.Sprintf("If-Match %q is not a record revision such as \"3\"", v)}
	}
	return n, nil
}

// temporal reads validAt and knownAt from the query.
func (c *call) temporal() (Temporal, error) {
	q := c.r.URL.Query()
	t := Temporal{ValidAt: q.Get("validAt")}
	if v := q.Get("knownAt"); v != "" {
		at, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return t, &badRequest{problemBadRequest, fmt.Sprintf("knownAt %q is not a time such as 2024-04-01T12:00:00Z", v)}
		}
		t.KnownAt = at
	}
	return t, nil
}

func (c *call) reply(status int, rec *Record, v any) error {
	h := c.w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	if rec != nil {
		h.Set("ETag", strconv.Quote(strconv.Itoa(rec.Revision)))
		if rec.Replayed {
			h.Set("Idempotent-Replayed", "true")
		}
	}
	c.w.WriteHeader(status)
	return json.NewEncoder(c.w).Encode(v)
}

// createBody is a new record as a Fachverfahren sends it.
type createBody struct {
	SubjectKey string     `json:"subjectKey"`
	ValidFrom  string     `json:"validFrom"`
	Attributes Attributes `json:"attributes"`
}

func (api *API) create(c *call) error {
	var in createBody
	body, err := c.decode(&in)
	if err != nil {
		return err
	}
	rec, err := api.store.Create(c.r.Context(), c.actor, c.tenant, c.register,
		Create{SubjectKey: in.SubjectKey, Attributes: in.Attributes, ValidFrom: in.ValidFrom, Idempotency: c.idempotency(body)})
	if err != nil {
		return err
	}
	c.w.Header().Set("Location", c.r.URL.Path+"/"+rec.ID)
	return c.reply(http.StatusCreated, &rec, rec)
}

func (api *API) get(c *call) error {
	at, err := c.temporal()
	if err != nil {
		return err
	}
	rec, err := api.store.Get(c.r.Context(), c.actor, c.tenant, c.register, c.r.PathValue("id"), at)
	if err != nil {
		return err
	}
	return c.reply(http.StatusOK, &rec, rec)
}

// changeBody is an update as a Fachverfahren sends it.
type changeBody struct {
	Attributes Attributes `json:"attributes"`
	ValidFrom  string     `json:"validFrom"`
	ValidTo    string     `json:"validTo"`
	Correction bool       `json:"correction"`
}

func (api *API) update(c *call) error {
	var in changeBody
	body, err := c.decode(&in)
	if err != nil {
		return err
	}
	rev, err := c.ifRevision()
	if err != nil {
		return err
	}
	rec, err := api.store.Update(c.r.Context(), c.actor, c.tenant, c.register, c.r.PathValue("id"), Change{
		Attributes: in.Attributes, ValidFrom: in.ValidFrom, ValidTo: in.ValidTo, Correction: in.Correction,
		IfRevision: rev, Idempotency: c.idempotency(body)})
	if err != nil {
		return err
	}
	return c.reply(http.StatusOK, &rec, rec)
}

func (api *API) delete(c *call) error {
	rev, err := c.ifRevision()
	if err != nil {
		return err
	}
	if err := api.store.Delete(c.r.Context(), c.actor, c.tenant, c.register, c.r.PathValue("id"), rev, c.idempotency(nil)); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

func (api *API) search(c *call) error {
	q := c.r.URL.Query()
	for name := range q {
		switch name {
		case "idnr", "familienname", "vornamen", "geburtsdatum", "name", "subjectKey":
		default:
			return &badRequest{problemBadRequest, fmt.Sprintf("unknown search parameter %q (idnr; familienname, vornamen, geburtsdatum; name; subjectKey)", name)}
		}
	}
	recs, err := api.store.Search(c.r.Context(), c.actor, c.tenant, c.register, Query{
		IDNr: q.Get("idnr"), Familienname: q.Get("familienname"), Vornamen: q.Get("vornamen"),
		Geburtsdatum: q.Get("geburtsdatum"), Name: q.Get("name"), SubjectKey: q.Get("subjectKey")})
	if err != nil {
		return err
	}
	if recs == nil {
		recs = []Record{}
	}
	return c.reply(http.StatusOK, nil, map[string]any{"records": recs})
}

func (api *API) history(c *call) error {
	at, err := c.temporal()
	if err != nil {
		return err
	}
	id := c.r.PathValue("id")
	versions, err := api.store.History(c.r.Context(), c.actor, c.tenant, c.register, id, at)
	if err != nil {
		return err
	}
	return c.reply(http.StatusOK, nil, map[string]any{"id": id, "versions": versions})
}

func (api *API) accessLog(c *call) error {
	q := c.r.URL.Query()
	f := AccessFilter{IDNr: q.Get("idnr")}
	for name, t := range map[string]*time.Time{"from": &f.From, "to": &f.To} {
		if v := q.Get(name); v != "" {
			at, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return &badRequest{problemBadRequest, fmt.Sprintf("%s %q is not a time such as 2024-04-01T00:00:00Z", name, v)}
			}
			*t = at
		}
	}
	// The export is buffered so that a failure midway is a problem, not a
	// truncated 200.
	var buf bytes.Buffer
	if _, err := api.store.ExportAccessLog(c.r.Context(), c.actor, c.tenant, c.register, f, &buf); err != nil {
		return err
	}
	c.w.Header().Set("Content-Type", "application/jsonl")
	c.w.Header().Set("Cache-Control", "no-store")
	_, err := c.w.Write(buf.Bytes())
	return err
}

// mergeBody asks to merge a duplicate record into the addressed one.
type mergeBody struct {
	Duplicate string `json:"duplicate"`
	Reason    string `json:"reason"`
}

func (api *API) erase(c *call) error {
	var in struct {
		Order string `json:"order"`
	}
	if _, err := c.decode(&in); err != nil {
		return err
	}
	e, err := api.store.Erase(c.r.Context(), c.actor, c.tenant, c.register, c.r.PathValue("id"), in.Order)
	if err != nil {
		return err
	}
	return c.reply(http.StatusOK, nil, e)
}

func (api *API) merge(c *call) error {
	var in mergeBody
	if _, err := c.decode(&in); err != nil {
		return err
	}
	m, err := api.store.MergeRecords(c.r.Context(), c.actor, c.tenant, c.register, c.r.PathValue("id"), in.Duplicate, in.Reason)
	if err != nil {
		return err
	}
	return c.reply(http.StatusOK, nil, m)
}

func (api *API) merges(c *call) error {
	ms, err := api.store.Merges(c.r.Context(), c.actor, c.tenant, c.register, c.r.PathValue("id"))
	if err != nil {
		return err
	}
	if ms == nil {
		ms = []Merge{}
	}
	return c.reply(http.StatusOK, nil, map[string]any{"merges": ms})
}

func (api *API) unmerge(c *call) error {
	id, err := strconv.ParseInt(c.r.PathValue("merge"), 10, 64)
	if err != nil || id < 1 {
		return &badRequest{problemNotFound, fmt.Sprintf("%q is not a merge id", c.r.PathValue("merge"))}
	}
	var in struct {
		Reason string `json:"reason"`
	}
	if _, err := c.decode(&in); err != nil {
		return err
	}
	m, err := api.store.Unmerge(c.r.Context(), c.actor, c.tenant, c.register, id, in.Reason)
	if err != nil {
		return err
	}
	return c.reply(http.StatusOK, nil, m)
}
