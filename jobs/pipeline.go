package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/mapping"
	"github.com/parzelle/parzelle/register"
	"github.com/parzelle/parzelle/tenant"
	"github.com/parzelle/parzelle/xmldsig"
	"github.com/parzelle/parzelle/xmlschema"
	"github.com/parzelle/parzelle/xta"
)

// The pipeline's steps, as dead letters name them.
const (
	StepAuthorize = "authorize"
	StepValidate  = "validate"
	StepMap       = "map"
	StepApply     = "apply"
)

// PipelineArgs is the River job that applies one message of a register
// inbox to the inbox tenant's register.
type PipelineArgs struct {
	Tenant string `json:"tenant"`
	// Inbox is the message's row in the tenant's message box.
	Inbox int64 `json:"inbox"`
	// Validated is true when the transport validated the content against
	// its schema on acceptance; the pipeline then does not again.
	Validated bool `json:"validated,omitempty"`
}

// Kind is the job kind.
func (PipelineArgs) Kind() string { return "register_pipeline" }

// InsertOpts puts the job in its tenant's queue, so that one tenant's
// flood waits in its own queue while other tenants' messages go on.
func (a PipelineArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: TenantQueue(a.Tenant), MaxAttempts: pipelineAttempts}
}

// pipelineAttempts is how often a message is tried before it becomes a
// dead letter: River's backoff spreads them over about an hour and a half,
// long enough for a message that overtook the one it depends on.
const pipelineAttempts = 8

// TenantQueue is the River queue of a tenant's pipeline jobs.
func TenantQueue(tenantID string) string { return "pipeline_" + strings.ReplaceAll(tenantID, "-", "_") }

// PipelineWorkersPerTenant is how many of a tenant's messages are applied
// at once.
const PipelineWorkersPerTenant = 16

// Pipeline takes over the messages of register inboxes and applies them:
// authorize the author, validate the schema, map, apply, settle the
// transport report; a message that cannot succeed becomes a dead letter.
type Pipeline struct {
	Pool    *pgxpool.Pool
	Store   *register.Store
	Tenants func() *tenant.Set
	Schemas *xmlschema.Registry
	// Keys supplies the trust anchors for signed messages.
	Keys    keys.Provider
	Log     *slog.Logger
	Metrics *PipelineMetrics

	client *river.Client[pgx.Tx]
	groups groups
}

// SetClient gives the pipeline the River client its jobs run on (made after
// the workers, which include the pipeline's) and adds each tenant's queue.
func (p *Pipeline) SetClient(c *river.Client[pgx.Tx]) error {
	p.client = c
	for _, t := range p.Tenants().Tenants() {
		if err := p.ensureQueue(t.ID); err != nil {
			return err
		}
	}
	return nil
}

// ensureQueue adds the tenant's queue to the client unless it has it.
func (p *Pipeline) ensureQueue(tenantID string) error {
	err := p.client.Queues().Add(TenantQueue(tenantID), river.QueueConfig{MaxWorkers: PipelineWorkersPerTenant})
	if err != nil && !strings.Contains(err.Error(), "already") {
		return fmt.Errorf("jobs: queue of tenant %s: %w", tenantID, err)
	}
	return nil
}

// Claims reports whether the reader is one of the tenant's register
// inboxes.
func (p *Pipeline) Claims(readerTenant, reader string) bool {
	cfg := p.Tenants().Tenant(readerTenant)
	if cfg == nil {
		return false
	}
	_, ok := cfg.Inbox(reader)
	return ok
}

// Consume takes over messages for register inboxes: it enqueues their jobs
// in the transaction that stores them.
func (p *Pipeline) Consume(ctx context.Context, tx pgx.Tx, ds []xta.Delivery) error {
	jobs := make([]river.InsertManyParams, 0, len(ds))
	for _, d := range ds {
		if err := p.ensureQueue(d.ReaderTenant); err != nil {
			return err
		}
		jobs = append(jobs, river.InsertManyParams{Args: PipelineArgs{Tenant: d.ReaderTenant, Inbox: d.Inbox, Validated: d.Validated}})
	}
	if _, err := p.client.InsertManyTx(ctx, tx, jobs); err != nil {
		return fmt.Errorf("jobs: enqueue the register pipeline: %w", err)
	}
	return nil
}

// PipelineWorker runs PipelineArgs jobs.
type PipelineWorker struct {
	river.WorkerDefaults[PipelineArgs]
	Pipeline *Pipeline
}

// Work applies the message. Every step is idempotent: a settled message is
// left alone, facts the register holds are skipped.
func (w *PipelineWorker) Work(ctx context.Context, job *river.Job[PipelineArgs]) error {
	p, a := w.Pipeline, job.Args
	m, err := p.load(ctx, a)
	if errors.Is(err, errSettled) {
		return nil
	}
	if err != nil {
		return err
	}
	log := p.Log.With("tenant", a.Tenant, "message", m.messageID, "type", m.messageType)
	f := p.process(ctx, m)
	switch {
	case f == nil:
		if err := p.settle(ctx, m, xta.Settlement{Applied: true, Code: xta.RecordApplied, Reason: m.summary}); err != nil {
			return err
		}
		p.Metrics.done(m, "applied")
		log.Info("message applied to the register", "register", m.register, "records", m.records)
		return nil
	case f.permanent || job.Attempt >= job.MaxAttempts:
		f.attempts = job.Attempt
		if err := p.deadLetter(ctx, m, f); err != nil {
			return err
		}
		p.Metrics.done(m, "dead_letter")
		log.Warn("message is a dead letter", "step", f.step, "reason", f.reason, "attempts", job.Attempt)
		return river.JobCancel(fmt.Errorf("%s: %s", f.step, f.reason))
	default:
		log.Info("message not applied yet; will retry", "step", f.step, "reason", f.reason, "attempt", job.Attempt)
		return fmt.Errorf("%s: %s", f.step, f.reason)
	}
}

// message is a consumed message as the pipeline works on it.
type message struct {
	tenant, register                       string
	inbox                                  int64
	messageID, author, reader, messageType string
	sentAt                                 time.Time
	validated                              bool
	content                                []byte
	records                                int
	summary                                string
}

// failure is why a message did not apply.
type failure struct {
	step, reason string
	problems     []string
	// permanent failures cannot succeed by retrying.
	permanent bool
	attempts  int
}

var errSettled = errors.New("jobs: message settled")

// load reads the message's box row and content.
func (p *Pipeline) load(ctx context.Context, a PipelineArgs) (*message, error) {
	m := &message{tenant: a.Tenant, inbox: a.Inbox, validated: a.Validated}
	err := db.InTenant(ctx, p.Pool, a.Tenant, func(tx pgx.Tx) error {
		in, err := xta.LoadInbox(ctx, tx, a.Inbox)
		if err != nil {
			return err
		}
		if in.Settled {
			return errSettled
		}
		m.messageID, m.author, m.reader, m.messageType, m.sentAt, m.content = in.MessageID, in.Author, in.Reader, in.MessageType, in.SentAt, in.Content
		return nil
	})
	if errors.Is(err, errSettled) || errors.Is(err, xta.ErrContentGone) {
		return nil, errSettled
	}
	if err != nil {
		return nil, fmt.Errorf("jobs: load message %d of %s: %w", a.Inbox, a.Tenant, err)
	}
	return m, nil
}

// process runs the steps; nil means applied.
func (p *Pipeline) process(ctx context.Context, m *message) *failure {
	cfg := p.Tenants().Tenant(m.tenant)
	if cfg == nil {
		return &failure{step: StepAuthorize, reason: "the tenant is no longer configured"}
	}
	inbox, ok := cfg.Inbox(m.reader)
	if !ok {
		return &failure{step: StepAuthorize, reason: fmt.Sprintf("%s is no longer a register inbox of the tenant", m.reader), permanent: true}
	}
	m.register = inbox.Register
	if !inbox.MayWrite(m.author) {
		return &failure{step: StepAuthorize, reason: fmt.Sprintf("%s may not write to the register inbox %s (writers: %s)", m.author, m.reader, strings.Join(inbox.Writers, ", ")), permanent: true}
	}
	if !m.validated {
		if f := p.validate(cfg, m); f != nil {
			return f
		}
	}
	if f := p.verify(ctx, m); f != nil {
		return f
	}
	specs, err := mapping.ForTenant(cfg)
	if err != nil {
		return &failure{step: StepMap, reason: "the tenant's mapping specs do not compile: " + err.Error(), permanent: true}
	}
	spec, facts, err := specs.MapXML(m.content)
	if err != nil {
		return &failure{step: StepMap, reason: err.Error(), permanent: true}
	}
	if spec.Register != inbox.Register {
		return &failure{step: StepMap, reason: fmt.Sprintf("mapping spec %s writes register %s, but inbox %s feeds register %s", spec.Source(), spec.Register, m.reader, inbox.Register), permanent: true}
	}
	for i := range facts {
		if facts[i].MessageID == "" {
			facts[i].MessageID = m.messageID
		}
	}
	applied, err := p.apply(ctx, m, inbox, facts)
	if err != nil {
		var re *register.Error
		if errors.As(err, &re) {
			f := &failure{step: StepApply, reason: re.Detail, permanent: re.Kind != register.KindNotFound && re.Kind != register.KindConflict}
			for _, fe := range re.Fields {
				f.problems = append(f.problems, fe.Attribute+": "+fe.Detail)
			}
			return f
		}
		return &failure{step: StepApply, reason: "the register could not apply the message: " + err.Error()}
	}
	m.records = applied
	m.summary = fmt.Sprintf("In das %s eingearbeitet: %d Datensätze", inbox.Register, applied)
	return nil
}

// validate checks the message against its installed schema, or applies the
// tenant's policy for messages without one.
func (p *Pipeline) validate(cfg *tenant.Config, m *message) *failure {
	ns, ok := xmlschema.RootNamespace(m.content)
	if !ok {
		return &failure{step: StepValidate, reason: "the content is not an XML document", permanent: true}
	}
	set, installed := p.Schemas.ForNamespace(ns)
	if !installed {
		if cfg.Schemas.RefusesMissing() {
			return &failure{step: StepValidate, reason: fmt.Sprintf("no schema is installed for namespace %s, and the tenant's policy refuses such messages", ns), permanent: true}
		}
		return nil
	}
	err := p.Schemas.Validate(set, m.content)
	var verr *xmlschema.ValidationError
	if errors.As(err, &verr) {
		f := &failure{step: StepValidate, reason: fmt.Sprintf("the message does not match the schema %s: %s", set, verr.Summary(3)), permanent: true}
		for _, pr := range verr.Problems {
			f.problems = append(f.problems, fmt.Sprintf("line %d, column %d: %s", pr.Line, pr.Column, pr.Message))
		}
		return f
	}
	if err != nil {
		return &failure{step: StepValidate, reason: "the schema could not be applied: " + err.Error()}
	}
	return nil
}

// verify checks the enveloped XML signature of a signed message (one whose
// root element carries a ds:Signature): it must cover the whole document
// and come from a certificate the tenant trusts for the author. Unsigned
// messages pass; the transport authenticated their sender.
func (p *Pipeline) verify(ctx context.Context, m *message) *failure {
	// Most messages are not signed: without the namespace's name in it, a
	// message has no signature worth checking (one hidden behind character
	// references gains its sender nothing over sending none).
	if !bytes.Contains(m.content, []byte(xmldsig.Namespace)) {
		return nil
	}
	doc, err := xmldsig.ParseDocument(bytes.NewReader(m.content))
	if err != nil {
		return &failure{step: StepValidate, reason: "the message is not well-formed XML: " + err.Error(), permanent: true}
	}
	if len(doc.Root.ChildrenNamed(xmldsig.Namespace, "Signature")) == 0 {
		return nil
	}
	trust, err := p.Keys.Trust(ctx, m.tenant, m.author)
	if err != nil {
		return &failure{step: StepValidate, reason: "no trust anchors for signed messages: " + err.Error(), permanent: true}
	}
	v := &xmldsig.Verifier{Trust: trust}
	if _, err := v.VerifyEnvelopedDocument(doc); err != nil {
		return &failure{step: StepValidate, reason: "the message's signature is not valid: " + err.Error(), permanent: true}
	}
	return nil
}

// settle ends the message and resolves its open dead letter, if any.
func (p *Pipeline) settle(ctx context.Context, m *message, st xta.Settlement) error {
	err := db.InTenant(ctx, p.Pool, m.tenant, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE pipeline_dead_letter SET resolved_at = now(), resolution = 'applied'
			WHERE tenant_id = $1 AND inbox = $2 AND resolved_at IS NULL`, m.tenant, m.inbox); err != nil {
			return err
		}
		_, err := xta.Settle(ctx, tx, m.tenant, m.inbox, st)
		return err
	})
	if err != nil {
		return fmt.Errorf("jobs: settle message %s of %s: %w", m.messageID, m.tenant, err)
	}
	if st.Applied {
		p.Metrics.applied(m)
	}
	return nil
}

// deadLetter records the failure and settles the message as refused.
func (p *Pipeline) deadLetter(ctx context.Context, m *message, f *failure) error {
	problems, err := json.Marshal(append([]string{}, f.problems...))
	if err != nil {
		return err
	}
	err = db.InTenant(ctx, p.Pool, m.tenant, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO pipeline_dead_letter (tenant_id, inbox, message_id, author, reader, message_type, step, reason, problems, attempts)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (tenant_id, inbox) WHERE resolved_at IS NULL
			DO UPDATE SET step = $7, reason = $8, problems = $9, attempts = pipeline_dead_letter.attempts + $10`,
			m.tenant, m.inbox, m.messageID, m.author, m.reader, m.messageType, f.step, f.reason, problems, f.attempts); err != nil {
			return err
		}
		reason := fmt.Sprintf("Nicht eingearbeitet (Schritt %s): %s", f.step, f.reason)
		_, err := xta.Settle(ctx, tx, m.tenant, m.inbox, xta.Settlement{Code: xta.RecordDeadLetter, Reason: reason})
		return err
	})
	if err != nil {
		return fmt.Errorf("jobs: dead letter for message %s of %s: %w", m.messageID, m.tenant, err)
	}
	return nil
}
