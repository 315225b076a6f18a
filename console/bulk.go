package console

import (
	"context"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// maxBulk bounds how many dead letters one bulk action works through.
const maxBulk = 10000

// bulkJob is a bulk retry or discard running in the background.
type bulkJob struct {
	ID, Tenant, User, Action string
	Filter                   string // the list's query, to go back to it
	Started                  time.Time

	mu                  sync.Mutex
	Total, Done, Failed int
	Finished            bool
	LastError           string
}

// Progress is the job's state, for the progress page.
func (b *bulkJob) Progress() map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	pct := 100
	if b.Total > 0 {
		pct = 100 * (b.Done + b.Failed) / b.Total
	}
	return map[string]any{"ID": b.ID, "Tenant": b.Tenant, "Action": b.Action, "Total": b.Total, "Done": b.Done, "Failed": b.Failed,
		"Finished": b.Finished, "Percent": pct, "LastError": b.LastError, "Filter": b.Filter}
}

// bulk retries or discards every open dead letter of the tenant that
// matches the list's filter, in the background, each one audited.
func (c *Console) bulk(w http.ResponseWriter, r *http.Request, s *session) {
	tenantID := r.PostFormValue("tenant")
	if !c.allow(w, r, s, tenantID) {
		return
	}
	action, reason := r.PostFormValue("action"), r.PostFormValue("reason")
	if action != "retry" && action != "discard" {
		c.fail(w, r, s, http.StatusBadRequest, "Choose retry or discard.")
		return
	}
	if action == "discard" && reason == "" {
		c.fail(w, r, s, http.StatusBadRequest, "Say why the messages are discarded: the reason goes to each author's transport report and the audit log.")
		return
	}
	q := url.Values{}
	for _, k := range []string{"inbox", "type", "step", "cause", "since", "until"} {
		if v := r.PostFormValue(k); v != "" {
			q.Set(k, v)
		}
	}
	f, err := letterFilter(q)
	if err != nil {
		c.fail(w, r, s, http.StatusBadRequest, err.Error())
		return
	}
	f.Resolved = false
	ids, err := c.Letters.IDs(r.Context(), tenantID, f, maxBulk)
	if err != nil {
		c.internal(w, r, s, err)
		return
	}
	q.Set("tenant", tenantID)
	job := &bulkJob{ID: randomToken(), Tenant: tenantID, User: s.User, Action: action, Filter: q.Encode(), Started: c.Now(), Total: len(ids)}
	c.mu.Lock()
	c.bulks[job.ID] = job
	c.mu.Unlock()
	a := actor(s, tenantID)
	c.Log.Info("console: bulk action started", "user", s.User, "tenant", tenantID, "action", action, "dead_letters", len(ids))
	go func() {
		ctx := context.WithoutCancel(r.Context())
		for _, id := range ids {
			var err error
			if action == "retry" {
				err = c.Letters.Retry(ctx, a, tenantID, id)
			} else {
				err = c.Letters.Discard(ctx, a, tenantID, id, reason)
			}
			job.mu.Lock()
			if err != nil {
				job.Failed++
				job.LastError = err.Error()
			} else {
				job.Done++
			}
			job.mu.Unlock()
		}
		job.mu.Lock()
		job.Finished = true
		job.mu.Unlock()
		c.Log.Info("console: bulk action finished", "user", s.User, "tenant", tenantID, "action", action, "done", job.Done, "failed", job.Failed)
	}()
	http.Redirect(w, r, Prefix+"bulk/"+job.ID, http.StatusSeeOther)
}

func (c *Console) bulkProgress(w http.ResponseWriter, r *http.Request, s *session) {
	c.mu.Lock()
	job := c.bulks[r.PathValue("id")]
	c.mu.Unlock()
	if job == nil || job.User != s.User {
		c.fail(w, r, s, http.StatusNotFound, "No such bulk action of yours (the node may have restarted).")
		return
	}
	p := job.Progress()
	if !p["Finished"].(bool) {
		w.Header().Set("Refresh", "1")
	}
	c.render(w, r, s, http.StatusOK, "bulk", "Bulk", p)
}
