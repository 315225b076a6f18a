package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/jobs"
	"github.com/parzelle/parzelle/register"

	"github.com/jackc/pgx/v5"
)

// pageSize is how many dead letters a list page shows.
const pageSize = 50

// letterFilter reads the list's filter from the query.
func letterFilter(q url.Values) (jobs.DeadLetterFilter, error) {
	f := jobs.DeadLetterFilter{Inbox: q.Get("inbox"), MessageType: q.Get("type"), Step: q.Get("step"), Cause: q.Get("cause"), Resolved: q.Get("resolved") == "1"}
	var err error
	for _, b := range []struct {
		name string
		t    *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := q.Get(b.name); v != "" {
			if *b.t, err = time.ParseInLocation("2006-01-02T15:04", v, time.Local); err != nil {
				if *b.t, err = time.ParseInLocation(time.DateOnly, v, time.Local); err != nil {
					return f, fmt.Errorf("%s: want a date (2026-12-06) or a time (2026-12-06T08:30), got %q", b.name, v)
				}
			}
		}
	}
	return f, nil
}

func (c *Console) deadLetters(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	tenantID := c.tenantParam(r, s)
	if !c.allow(w, r, s, tenantID) {
		return
	}
	f, err := letterFilter(q)
	if err != nil {
		c.fail(w, r, s, http.StatusBadRequest, err.Error())
		return
	}
	pageNo, _ := strconv.Atoi(q.Get("page"))
	pageNo = max(pageNo, 1)
	letters, total, err := c.Letters.Find(r.Context(), tenantID, f, (pageNo-1)*pageSize, pageSize)
	if err != nil {
		c.internal(w, r, s, err)
		return
	}
	unfiltered := jobs.DeadLetterFilter{Resolved: f.Resolved}
	counts, err := c.Letters.CountByCause(r.Context(), tenantID, unfiltered)
	if err != nil {
		c.internal(w, r, s, err)
		return
	}
	type causeCount struct {
		Cause string
		N     int
	}
	var byCause []causeCount
	for _, cause := range jobs.Causes {
		if counts[cause] > 0 {
			byCause = append(byCause, causeCount{cause, counts[cause]})
		}
	}
	if counts["unknown"] > 0 {
		byCause = append(byCause, causeCount{"unknown", counts["unknown"]})
	}
	pageURL := func(n int) string {
		v := url.Values{}
		for k, vs := range q {
			v[k] = vs
		}
		v.Set("tenant", tenantID)
		v.Set("page", strconv.Itoa(n))
		return Prefix + "dead-letters?" + v.Encode()
	}
	pages := (total + pageSize - 1) / pageSize
	data := map[string]any{
		"Tenant": tenantID, "Tenants": c.visibleTenants(s), "Letters": letters, "Total": total, "Page": pageNo, "Pages": max(pages, 1),
		"Q": q, "ByCause": byCause, "Causes": jobs.Causes, "Steps": []string{jobs.StepAuthorize, jobs.StepValidate, jobs.StepMap, jobs.StepApply, jobs.StepForward, jobs.StepSend, jobs.StepCollect},
		"Prev": "", "Next": "",
	}
	if pageNo > 1 {
		data["Prev"] = pageURL(pageNo - 1)
	}
	if pageNo < pages {
		data["Next"] = pageURL(pageNo + 1)
	}
	c.render(w, r, s, http.StatusOK, "deadletters", "Dead Letters", data)
}

// letterParams reads the tenant and dead letter id of the path, and checks
// the session may see them.
func (c *Console) letterParams(w http.ResponseWriter, r *http.Request, s *session) (string, int64, bool) {
	tenantID := r.PathValue("tenant")
	if !c.allow(w, r, s, tenantID) {
		return "", 0, false
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		c.fail(w, r, s, http.StatusNotFound, fmt.Sprintf("%q is not a dead letter number", r.PathValue("id")))
		return "", 0, false
	}
	return tenantID, id, true
}

func (c *Console) deadLetter(w http.ResponseWriter, r *http.Request, s *session) {
	tenantID, id, ok := c.letterParams(w, r, s)
	if !ok {
		return
	}
	d, err := c.Letters.Show(r.Context(), tenantID, id)
	if errors.Is(err, jobs.ErrNoDeadLetter) {
		c.fail(w, r, s, http.StatusNotFound, fmt.Sprintf("Tenant %s has no dead letter %d.", tenantID, id))
		return
	}
	if err != nil {
		c.internal(w, r, s, err)
		return
	}
	// Only a tenant administrator sees content, and only when asking for
	// it; every such view is audited.
	reveal := r.URL.Query().Get("reveal") == "1" && !s.operator()
	content, err := c.content(r.Context(), tenantID, d.Inbox)
	if err != nil {
		c.internal(w, r, s, err)
		return
	}
	if reveal {
		c.audit(r, s, tenantID, "dead-letter content viewed", register.OutcomeGranted, fmt.Sprintf("dead letter %d (message %s)", d.ID, d.MessageID))
	}
	var marks []string
	for _, a := range d.History {
		marks = append(marks, a.Problems...)
	}
	marks = append(marks, d.Problems...)
	lines, viewErr := []xmlLine(nil), ""
	if content != nil {
		if lines, err = viewXML(content, reveal, problemLines(marks)); err != nil {
			viewErr = err.Error()
		}
	}
	type position struct {
		Line int
		Text string
	}
	var positions []position
	for l := range problemLines(marks) {
		positions = append(positions, position{Line: l})
	}
	if !reveal {
		// The texts quote the message: the masked view keeps their
		// positions only.
		d.Reason = ""
		d.Problems = nil
		for i := range d.History {
			d.History[i].Reason, d.History[i].Problems = "", nil
		}
	}
	c.render(w, r, s, http.StatusOK, "deadletter", fmt.Sprintf("Dead Letter %d", d.ID), map[string]any{
		"Tenant": tenantID, "D": d, "Lines": lines, "ViewError": viewErr, "Stored": content != nil, "Reveal": reveal,
		"CanReveal": !s.operator(), "Positions": positions,
	})
}

// content is the dead letter's message content, nil once it is no longer
// stored.
func (c *Console) content(ctx context.Context, tenantID string, inbox int64) ([]byte, error) {
	if inbox == 0 {
		return nil, nil
	}
	var content []byte
	err := db.InTenant(ctx, c.Pool, tenantID, func(tx pgx.Tx) error {
		var err error
		content, err = c.Box.ReadContent(ctx, tx, tenantID, inbox)
		return err
	})
	return content, err
}

func (c *Console) retry(w http.ResponseWriter, r *http.Request, s *session) {
	tenantID, id, ok := c.letterParams(w, r, s)
	if !ok {
		return
	}
	if err := c.Letters.Retry(r.Context(), actor(s, tenantID), tenantID, id); err != nil {
		c.actionFailed(w, r, s, err)
		return
	}
	c.done(w, r, tenantID, fmt.Sprintf("Dead letter %d goes through the pipeline again.", id))
}

func (c *Console) discard(w http.ResponseWriter, r *http.Request, s *session) {
	tenantID, id, ok := c.letterParams(w, r, s)
	if !ok {
		return
	}
	reason := r.PostFormValue("reason")
	if reason == "" {
		c.fail(w, r, s, http.StatusBadRequest, "Say why the message is discarded: the reason goes to the author's transport report and the audit log.")
		return
	}
	if err := c.Letters.Discard(r.Context(), actor(s, tenantID), tenantID, id, reason); err != nil {
		c.actionFailed(w, r, s, err)
		return
	}
	c.done(w, r, tenantID, fmt.Sprintf("Dead letter %d discarded.", id))
}

// done goes back to the tenant's list with a note.
func (c *Console) done(w http.ResponseWriter, r *http.Request, tenantID, note string) {
	http.Redirect(w, r, Prefix+"dead-letters?"+url.Values{"tenant": {tenantID}, "flash": {note}}.Encode(), http.StatusSeeOther)
}

func (c *Console) actionFailed(w http.ResponseWriter, r *http.Request, s *session, err error) {
	if errors.Is(err, jobs.ErrNoDeadLetter) {
		c.fail(w, r, s, http.StatusConflict, "The dead letter is no longer open: someone retried or discarded it meanwhile.")
		return
	}
	c.internal(w, r, s, err)
}

// internal logs an error and shows a page that says where to look.
func (c *Console) internal(w http.ResponseWriter, r *http.Request, s *session, err error) {
	c.Log.Error("console", "path", r.URL.Path, "error", err)
	c.fail(w, r, s, http.StatusInternalServerError, "Something went wrong on the node; the node's log has the details (search for \"console\").")
}
