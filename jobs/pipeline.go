package jobs

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/mapping"
	"github.com/parzelle/parzelle/msgbox"
	"github.com/parzelle/parzelle/register"
	"github.com/parzelle/parzelle/sealing"
	"github.com/parzelle/parzelle/tenant"
	"github.com/parzelle/parzelle/xmldsig"
	"github.com/parzelle/parzelle/xmlschema"
)

// The pipeline's steps, as dead letters name them.
const (
	StepAuthorize = "authorize"
	StepValidate  = "validate"
	StepMap       = "map"
	StepApply     = "apply"
	// StepForward is an OSCI intermediary's push of a delivery to its
	// passive recipient (package osci).
	StepForward = "forward"
	// StepSend is an OSCI delivery of a message whose reader lives behind
	// another intermediary, in the author's tenant (package osci): its
	// intermediary refused it, or could not be reached or placed.
	StepSend = "send"
	// StepCollect is a delivery collected from the postbox of a tenant's
	// identity at another intermediary that cannot be opened (package
	// osci).
	StepCollect = "collect"
)

// PipelineArgs is the River job that applies messages of a tenant's
// register inboxes, those accepted together, to the tenant's registers.
type PipelineArgs struct {
	Tenant   string            `json:"tenant"`
	Messages []PipelineMessage `json:"messages"`
	// Inbox and Validated are the one message of a job a node enqueued
	// before jobs carried several: read so that an upgrade leaves none of
	// them behind, never written.
	Inbox     int64 `json:"inbox,omitempty"`
	Validated bool  `json:"validated,omitempty"`
}

// messages are the job's messages, the one of an older job included.
func (a PipelineArgs) messages() []PipelineMessage {
	if a.Inbox == 0 {
		return a.Messages
	}
	return append(slices.Clip(a.Messages), PipelineMessage{Inbox: a.Inbox, Validated: a.Validated})
}

// PipelineMessage is one message of a pipeline job.
type PipelineMessage struct {
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

// PipelineWorkersPerTenant is how many of a tenant's pipeline jobs run at
// once; each applies the messages accepted together.
const PipelineWorkersPerTenant = 4

// Pipeline takes over the messages of register inboxes and applies them:
// authorize the author, validate the schema, map, apply, settle the
// transport report; a message that cannot succeed becomes a dead letter.
type Pipeline struct {
	Pool *pgxpool.Pool
	// Box holds the inboxes' messages.
	Box     *msgbox.Store
	Store   *register.Store
	Tenants func() *tenant.Set
	Schemas *xmlschema.Registry
	// Keys supplies the trust anchors for signed messages.
	Keys keys.Provider
	// Keyring seals dead letters.
	Keyring *sealing.Keyring
	Log     *slog.Logger
	Metrics *PipelineMetrics

	client *river.Client[pgx.Tx]
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

// Consume takes over messages for register inboxes: it enqueues, in the
// transaction that stores them, one job per tenant for its messages.
func (p *Pipeline) Consume(ctx context.Context, tx pgx.Tx, ds []msgbox.Delivery) error {
	byTenant := map[string]*PipelineArgs{}
	var jobs []river.InsertManyParams
	for _, d := range ds {
		a := byTenant[d.ReaderTenant]
		if a == nil {
			if err := p.ensureQueue(d.ReaderTenant); err != nil {
				return err
			}
			a = &PipelineArgs{Tenant: d.ReaderTenant}
			byTenant[d.ReaderTenant] = a
			jobs = append(jobs, river.InsertManyParams{Args: a})
		}
		a.Messages = append(a.Messages, PipelineMessage{Inbox: d.Inbox, Validated: d.Validated})
	}
	if _, err := p.client.InsertManyTx(ctx, tx, jobs); err != nil {
		return fmt.Errorf("jobs: enqueue the register pipeline: %w", err)
	}
	return nil
}

// AddWorkers registers the pipeline's worker.
func (p *Pipeline) AddWorkers(w *river.Workers) { river.AddWorker(w, &PipelineWorker{Pipeline: p}) }

// PipelineWorker runs PipelineArgs jobs.
type PipelineWorker struct {
	river.WorkerDefaults[PipelineArgs]
	Pipeline *Pipeline
}

// Work applies the job's messages. Every step is idempotent: a settled
// message is left alone, facts the register holds are skipped. Messages
// that cannot succeed become dead letters; when some failed for a reason
// that may pass (the database, a conflicting write), the job fails and
// River tries again later with those that are still open, until the last
// attempt makes them dead letters too.
func (w *PipelineWorker) Work(ctx context.Context, job *river.Job[PipelineArgs]) error {
	p, a := w.Pipeline, job.Args
	msgs, err := p.load(ctx, a)
	if err != nil || len(msgs) == 0 {
		return err
	}
	for _, m := range msgs {
		m.failure = p.process(ctx, m)
	}
	p.applyAll(ctx, msgs, job.Attempt)
	last := job.Attempt >= job.MaxAttempts
	var retry []*message
	for _, m := range msgs {
		if f := m.failure; f != nil && !f.permanent && !last {
			retry = append(retry, m)
		} else if f != nil {
			f.attempts = job.Attempt
		}
	}
	if err := p.settle(ctx, a.Tenant, msgs); err != nil {
		return err
	}
	for _, m := range msgs {
		log := p.Log.With("tenant", m.tenant, "message", m.messageID, "type", m.messageType)
		switch f := m.failure; {
		case f == nil:
			p.Metrics.done(m, "applied")
			p.Metrics.applied(m)
			log.Info("message applied to the register", "register", m.register, "records", m.records)
		case f.attempts > 0:
			p.Metrics.done(m, "dead_letter")
			log.Warn("message is a dead letter", "step", f.step, "reason", f.reason, "attempts", f.attempts)
		default:
			log.Info("message not applied yet; will retry", "step", f.step, "reason", f.reason, "attempt", job.Attempt)
		}
	}
	if len(retry) > 0 {
		f := retry[0].failure
		return fmt.Errorf("%d of %d messages not applied yet, e.g. %s: %s: %s", len(retry), len(msgs), retry[0].messageID, f.step, f.reason)
	}
	return nil
}

// message is a consumed message as the pipeline works on it.
type message struct {
	tenant                                 string
	inbox                                  int64
	messageID, author, reader, messageType string
	sentAt                                 time.Time
	validated                              bool
	content                                []byte
	// inboxOf is the register inbox the message was sent to, once
	// authorized, and facts what its mapping produced.
	inboxOf tenant.Inbox
	facts   []register.Fact
	// register, records and summary say where it was applied.
	register string
	records  int
	summary  string
	// failure is why it was not applied, if it was not.
	failure *failure
}

// failure is why a message did not apply.
type failure struct {
	// cause is one of the Cause codes.
	step, cause, reason string
	problems            []string
	// permanent failures cannot succeed by retrying.
	permanent bool
	// attempts is set once the failure makes the message a dead letter.
	attempts int
}

// load reads the job's messages that are still open.
func (p *Pipeline) load(ctx context.Context, a PipelineArgs) ([]*message, error) {
	pms := a.messages()
	ids := make([]int64, len(pms))
	validated := map[int64]bool{}
	for i, pm := range pms {
		ids[i], validated[pm.Inbox] = pm.Inbox, pm.Validated
	}
	var out []*message
	err := db.InTenant(ctx, p.Pool, a.Tenant, func(tx pgx.Tx) error {
		in, err := p.Box.Load(ctx, tx, a.Tenant, ids)
		for _, im := range in {
			if !im.Settled {
				out = append(out, &message{tenant: a.Tenant, inbox: im.Inbox, validated: validated[im.Inbox], messageID: im.MessageID, author: im.Author,
					reader: im.Reader, messageType: im.MessageType, sentAt: im.SentAt, content: im.Content})
			}
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: load the messages of %s: %w", a.Tenant, err)
	}
	return out, nil
}

// process runs the steps up to the mapping; nil means the message's facts
// are ready to apply.
func (p *Pipeline) process(ctx context.Context, m *message) *failure {
	cfg := p.Tenants().Tenant(m.tenant)
	if cfg == nil {
		return &failure{step: StepAuthorize, cause: CauseTenantGone, reason: "the tenant is no longer configured"}
	}
	inbox, ok := cfg.Inbox(m.reader)
	if !ok {
		return &failure{step: StepAuthorize, cause: CauseNotInbox, reason: fmt.Sprintf("%s is no longer a register inbox of the tenant", m.reader), permanent: true}
	}
	m.inboxOf, m.register = inbox, inbox.Register
	if !inbox.MayWrite(m.author) {
		return &failure{step: StepAuthorize, cause: CauseNotWriter, reason: fmt.Sprintf("%s may not write to the register inbox %s (writers: %s)", m.author, m.reader, strings.Join(inbox.Writers, ", ")), permanent: true}
	}
	if !m.validated {
		if f := p.validate(cfg, m); f != nil {
			return f
		}
	}
	if f := p.verify(ctx, m); f != nil {
		return f
	}
	specs, err := mapping.ForInbox(cfg, inbox)
	if err != nil {
		return &failure{step: StepMap, cause: CauseSpecBroken, reason: "the tenant's mapping specs do not compile: " + err.Error(), permanent: true}
	}
	spec, facts, err := specs.MapXML(m.content)
	if err != nil {
		return mappingFailure(err, m.content)
	}
	if spec.Register != inbox.Register {
		return &failure{step: StepMap, cause: CauseSpecBroken, reason: fmt.Sprintf("mapping spec %s writes register %s, but inbox %s feeds register %s", spec.Source(), spec.Register, m.reader, inbox.Register), permanent: true}
	}
	for i := range facts {
		if facts[i].MessageID == "" {
			facts[i].MessageID = m.messageID
		}
		facts[i].Transport = m.messageID
	}
	m.facts = facts
	return nil
}

// validate applies the schema policy (msgbox.CheckSchema, as the
// transport does on acceptance) to a message the transport did not
// validate.
func (p *Pipeline) validate(cfg *tenant.Config, m *message) *failure {
	check, err := msgbox.CheckSchema(p.Schemas, cfg.Schemas, m.content)
	switch {
	case err != nil:
		return &failure{step: StepValidate, cause: CauseSchemaError, reason: "the schema could not be applied: " + err.Error()}
	case !check.XML:
		return &failure{step: StepValidate, cause: CauseNotXML, reason: "the content is not an XML document", permanent: true}
	case check.Refused:
		return &failure{step: StepValidate, cause: CauseNoSchema, reason: fmt.Sprintf("no schema is installed for namespace %s, and the tenant's policy refuses such messages", check.Namespace), permanent: true}
	case check.Invalid != nil:
		f := &failure{step: StepValidate, cause: CauseSchemaInvalid, reason: fmt.Sprintf("the message does not match the schema %s: %s", check.Set, check.Invalid.Summary(3)), permanent: true}
		for _, pr := range check.Invalid.Problems {
			f.problems = append(f.problems, fmt.Sprintf("line %d, column %d: %s", pr.Line, pr.Column, pr.Message))
		}
		return f
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
		return &failure{step: StepValidate, cause: CauseNotXML, reason: "the message is not well-formed XML: " + err.Error(), permanent: true}
	}
	if len(doc.Root.ChildrenNamed(xmldsig.Namespace, "Signature")) == 0 {
		return nil
	}
	trust, err := p.Keys.Trust(ctx, m.tenant, m.author)
	if err != nil {
		return &failure{step: StepValidate, cause: CauseSignature, reason: "no trust anchors for signed messages: " + err.Error(), permanent: true}
	}
	v := &xmldsig.Verifier{Trust: trust}
	if _, err := v.VerifyEnvelopedDocument(doc); err != nil {
		return &failure{step: StepValidate, cause: CauseSignature, reason: "the message's signature is not valid: " + err.Error(), permanent: true}
	}
	return nil
}

// settle ends the messages that were applied or became dead letters, in one
// transaction of the tenant: the applied ones resolve their open dead
// letters, the others get one.
func (p *Pipeline) settle(ctx context.Context, tenantID string, msgs []*message) error {
	var sts []msgbox.Settlement
	var applied []int64
	b := &pgx.Batch{}
	var key *sealing.DataKey
	for _, m := range msgs {
		switch f := m.failure; {
		case f == nil:
			applied = append(applied, m.inbox)
			sts = append(sts, msgbox.Settlement{Inbox: m.inbox, Applied: true, Code: msgbox.RecordApplied, Reason: m.summary})
		case f.attempts > 0:
			if key == nil {
				var err error
				if key, err = p.Keyring.Current(ctx, p.Pool, tenantID); err != nil {
					return err
				}
			}
			reason, problems, err := sealDeadLetter(key, m.messageID, f.reason, f.problems)
			if err != nil {
				return err
			}
			b.Queue(recordDeadLetter, m.tenant, m.inbox, m.messageID, m.author, m.reader, m.messageType, f.step, reason, problems, key.Version, f.attempts, f.cause)
			sts = append(sts, msgbox.Settlement{Inbox: m.inbox, Code: msgbox.RecordDeadLetter, Reason: fmt.Sprintf("Nicht eingearbeitet (Schritt %s): %s", f.step, f.reason)})
		}
	}
	if len(sts) == 0 {
		return nil
	}
	if len(applied) > 0 {
		b.Queue(`UPDATE pipeline_dead_letter SET resolved_at = now(), resolution = 'applied'
			WHERE tenant_id = $1 AND inbox = ANY($2) AND resolved_at IS NULL`, tenantID, applied)
	}
	err := db.InTenant(ctx, p.Pool, tenantID, func(tx pgx.Tx) error {
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		_, err := p.Box.Settle(ctx, tx, tenantID, sts...)
		return err
	})
	if err != nil {
		return fmt.Errorf("jobs: settle %d messages of %s: %w", len(sts), tenantID, err)
	}
	return nil
}
