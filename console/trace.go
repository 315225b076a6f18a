package console

import (
	"net/http"
	"sort"
	"time"

	"github.com/parzelle/parzelle/jobs"
	"github.com/parzelle/parzelle/msgbox"
	"github.com/parzelle/parzelle/register"
)

// traceStep is one step of a message's timeline.
type traceStep struct {
	At     time.Time
	Code   string
	Where  string
	Record string // a register record, for a tenant administrator
	Since  string // time since the step before
}

// trace shows a message's whole timeline in the tenant: the transport's
// report records, dead letters and their attempts, and the register
// records it changed.
func (c *Console) trace(w http.ResponseWriter, r *http.Request, s *session) {
	tenantID, messageID := c.tenantParam(r, s), r.URL.Query().Get("message")
	data := map[string]any{"Tenant": tenantID, "Tenants": c.visibleTenants(s), "Message": messageID}
	if messageID == "" {
		c.render(w, r, s, http.StatusOK, "trace", "Nachrichtenverlauf", data)
		return
	}
	if !c.allow(w, r, s, tenantID) {
		return
	}
	ctx := r.Context()
	boxes, err := c.Box.Trace(ctx, tenantID, messageID)
	if err != nil {
		c.internal(w, r, s, err)
		return
	}
	letters, _, err := c.Letters.Find(ctx, tenantID, jobs.DeadLetterFilter{MessageID: messageID, Resolved: true}, 0, 100)
	if err != nil {
		c.internal(w, r, s, err)
		return
	}
	var steps []traceStep
	for _, b := range boxes {
		where := b.Box + " " + b.Account
		for _, rec := range b.Records {
			steps = append(steps, traceStep{At: rec.At, Code: rec.Code, Where: where})
		}
		if b.Box == "inbox" && b.Fetched != nil {
			steps = append(steps, traceStep{At: *b.Fetched, Code: msgbox.RecordFetched, Where: where})
		}
	}
	for _, d := range letters {
		full, err := c.Letters.Show(ctx, tenantID, d.ID)
		if err != nil {
			c.internal(w, r, s, err)
			return
		}
		for _, a := range full.History {
			steps = append(steps, traceStep{At: a.At, Code: "DEAD_LETTER " + a.Step + " (" + a.Cause + ")", Where: "dead letter " + itoa(d.ID)})
		}
	}
	var touched []register.Touch
	if !s.operator() {
		if touched, err = c.Store.Touched(ctx, actor(s, tenantID), tenantID, messageID); err != nil {
			c.internal(w, r, s, err)
			return
		}
		for _, t := range touched {
			steps = append(steps, traceStep{At: t.AppliedAt, Code: "REGISTER", Where: t.Register, Record: t.RecordID})
		}
	}
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].At.Before(steps[j].At) })
	for i := 1; i < len(steps); i++ {
		steps[i].Since = "+" + seconds(steps[i].At.Sub(steps[i-1].At).Seconds())
	}
	data["Boxes"], data["Steps"], data["Letters"] = boxes, steps, letters
	if len(boxes) == 0 && len(letters) == 0 && len(touched) == 0 {
		data["NotFound"] = true
	}
	c.render(w, r, s, http.StatusOK, "trace", "Nachrichtenverlauf", data)
}
