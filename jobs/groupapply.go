package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/parzelle/parzelle/register"
	"github.com/parzelle/parzelle/tenant"
)

// A pipeline job applies the facts of its messages that go to the same
// register through the same inbox in one register transaction (group
// commit): a tenant's register serializes its writes on the tenant's audit
// chain, so one transaction for the messages accepted together is what
// lets a busy inbox go faster than one transaction per message allows. A
// group that the register refuses is applied again message by message, so
// that one bad message cannot take the others with it.

// groupKey names the messages applied together.
type groupKey struct{ register, purpose, reader string }

// applyAll applies the messages whose facts are ready, in groups, and sets
// each one's outcome: records and summary, or failure.
func (p *Pipeline) applyAll(ctx context.Context, msgs []*message, attempt int) {
	groups := map[groupKey][]*message{}
	var keys []groupKey
	for _, m := range msgs {
		if m.failure != nil {
			continue
		}
		k := groupKey{m.inboxOf.Register, m.inboxOf.Purpose, m.inboxOf.Identity}
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], m)
	}
	for _, k := range keys {
		group := groups[k]
		err := p.applyGroup(ctx, k, group, attempt)
		var refusal *register.Error
		if len(group) > 1 && errors.As(err, &refusal) {
			for _, m := range group {
				p.setOutcome(m, p.applyGroup(ctx, k, []*message{m}, attempt))
			}
			continue
		}
		for _, m := range group {
			p.setOutcome(m, err)
		}
	}
}

// knownGrace is the attempt from which facts about persons the register
// does not keep are left out (identify known: only): the first attempts
// refuse them, so that a message that overtook the one registering such a
// person waits for it (River tries again after about 1 and 16 seconds).
const knownGrace = 3

// applyGroup applies the facts of the messages as the pipeline of the inbox,
// on the job's attempt.
func (p *Pipeline) applyGroup(ctx context.Context, k groupKey, msgs []*message, attempt int) error {
	// Who wrote: the authors, through the inbox; the audit entry's detail
	// names the messages.
	var authors []string
	var facts []register.Fact
	for _, m := range msgs {
		if !slices.Contains(authors, m.author) {
			authors = append(authors, m.author)
		}
		facts = append(facts, m.facts...)
	}
	tenantID := msgs[0].tenant
	actor := tenant.Actor{Tenant: tenantID, Kind: "pipeline", Subject: fmt.Sprintf("%s via %s", strings.Join(authors, ", "), k.reader),
		Role: tenant.InboxRole, Purpose: k.purpose}
	_, err := p.Store.ApplyWith(ctx, actor, tenantID, k.register, facts, register.ApplyOptions{WaitForKnown: attempt < knownGrace})
	return err
}

// setOutcome records how applying the message went.
func (p *Pipeline) setOutcome(m *message, err error) {
	if err == nil {
		m.records = countSubjects(m.facts)
		m.summary = fmt.Sprintf("In das %s eingearbeitet: %d Datensätze", m.register, m.records)
		return
	}
	var re *register.Error
	if errors.As(err, &re) {
		f := &failure{step: StepApply, cause: CauseApplyRefused, reason: re.Detail, permanent: re.Kind != register.KindNotFound && re.Kind != register.KindConflict}
		for _, fe := range re.Fields {
			f.problems = append(f.problems, fe.Attribute+": "+fe.Detail)
		}
		m.failure = f
		return
	}
	m.failure = &failure{step: StepApply, cause: CauseApplyError, reason: "the register could not apply the message: " + err.Error()}
}

// countSubjects counts the subjects facts speak about.
func countSubjects(facts []register.Fact) int {
	seen := map[string]bool{}
	for _, f := range facts {
		seen[f.SubjectKey] = true
	}
	return len(seen)
}
