package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/parzelle/parzelle/register"
	"github.com/parzelle/parzelle/tenant"
)

// The pipeline applies the facts of messages that are ready at the same
// time in one register transaction (group commit): a tenant's register
// serializes its writes on the tenant's audit chain, so one transaction
// for many messages is what lets a busy inbox go faster than one
// transaction per message allows. A group that the register refuses is
// applied again message by message, so that one bad message cannot take
// the others with it.

// maxGroup bounds the messages applied in one transaction.
const maxGroup = 64

// appliersPerInbox is how many groups of one inbox are applied at once:
// subjects are applied one after the other within a group, so a few groups
// in parallel keep the database busy; they meet only briefly at the end
// of each transaction, on the tenant's audit chain.
const appliersPerInbox = 4

// applyRequest is one message's facts waiting to be applied.
type applyRequest struct {
	ctx   context.Context
	m     *message
	facts []register.Fact
	done  chan applyResult
}

type applyResult struct {
	records int
	err     error
}

// groupKey names a group applier: one per tenant, register and purpose.
type groupKey struct{ tenant, register, purpose, reader string }

// groups are the running group appliers.
type groups struct {
	mu    sync.Mutex
	byKey map[groupKey]chan *applyRequest
}

// apply applies a message's facts, together with other messages' that are
// ready at the same time, and returns how many records it touched.
func (p *Pipeline) apply(ctx context.Context, m *message, inbox tenant.Inbox, facts []register.Fact) (int, error) {
	req := &applyRequest{ctx: ctx, m: m, facts: facts, done: make(chan applyResult, 1)}
	key := groupKey{m.tenant, inbox.Register, inbox.Purpose, inbox.Identity}
	p.groups.mu.Lock()
	if p.groups.byKey == nil {
		p.groups.byKey = map[groupKey]chan *applyRequest{}
	}
	ch, ok := p.groups.byKey[key]
	if !ok {
		ch = make(chan *applyRequest, maxGroup)
		p.groups.byKey[key] = ch
		for range appliersPerInbox {
			go p.applyGroups(key, ch)
		}
	}
	p.groups.mu.Unlock()
	select {
	case ch <- req:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	select {
	case r := <-req.done:
		return r.records, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// applyGroups applies what arrives on ch in groups, for the life of the
// process (there is one channel per inbox the node has seen).
func (p *Pipeline) applyGroups(key groupKey, ch chan *applyRequest) {
	for req := range ch {
		group := []*applyRequest{req}
	drain:
		for len(group) < maxGroup {
			select {
			case req := <-ch:
				group = append(group, req)
			default:
				break drain
			}
		}
		p.applyGroup(key, group)
	}
}

// applyGroup applies a group in one transaction, or, when the register
// refuses the group, each message on its own.
func (p *Pipeline) applyGroup(key groupKey, group []*applyRequest) {
	if len(group) == 1 {
		r := group[0]
		n, err := p.applyFacts(r.ctx, key, []*message{r.m}, r.facts)
		r.done <- applyResult{n, err}
		return
	}
	var facts []register.Fact
	var msgs []*message
	for _, r := range group {
		facts = append(facts, r.facts...)
		msgs = append(msgs, r.m)
	}
	// The group works for as long as its first request's job may.
	_, err := p.applyFacts(group[0].ctx, key, msgs, facts)
	var refusal *register.Error
	if err != nil && errors.As(err, &refusal) {
		for _, r := range group {
			n, err := p.applyFacts(r.ctx, key, []*message{r.m}, r.facts)
			r.done <- applyResult{n, err}
		}
		return
	}
	for _, r := range group {
		r.done <- applyResult{countSubjects(r.facts), err}
	}
}

// applyFacts applies the facts of the messages as the pipeline of the
// inbox.
func (p *Pipeline) applyFacts(ctx context.Context, key groupKey, msgs []*message, facts []register.Fact) (int, error) {
	// Who wrote: the authors, through the inbox; the audit entry's detail
	// names the messages.
	var authors []string
	for _, m := range msgs {
		if !slices.Contains(authors, m.author) {
			authors = append(authors, m.author)
		}
	}
	actor := tenant.Actor{Tenant: key.tenant, Kind: "pipeline", Subject: fmt.Sprintf("%s via %s", strings.Join(authors, ", "), key.reader),
		Role: tenant.InboxRole, Purpose: key.purpose}
	applied, err := p.Store.Apply(ctx, actor, key.tenant, key.register, facts)
	return len(applied), err
}

// countSubjects counts the subjects facts speak about.
func countSubjects(facts []register.Fact) int {
	seen := map[string]bool{}
	for _, f := range facts {
		seen[f.SubjectKey] = true
	}
	return len(seen)
}
