package osci

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/jobs"
	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/msgbox"
	"github.com/parzelle/parzelle/xta"
)

// RemoteDirectory names where an identity's own postbox is (the
// directory file's entry for it).
type RemoteDirectory interface {
	Remote(ctx context.Context, identity string) (xta.Entry, error)
}

// Collector collects the postboxes the tenants' identities have at other
// intermediaries (identities with collect: true): Enqueue makes one
// osci_collect job per identity (one at a time in a cluster), which opens
// a dialog with the tenant's keys, fetches every delivery (3800 while
// more wait) and stores each in the identity's XTA box or register inbox
// before it asks for the next: the intermediary counts a delivery as
// received with the dialog's next request, so a crash before that
// fetches it again, and a delivery stored before (its MessageID) is not
// stored twice.
type Collector struct {
	Sender    *Sender
	Directory RemoteDirectory

	client *river.Client[pgx.Tx]
}

// AddWorkers registers the collector's worker.
func (c *Collector) AddWorkers(w *river.Workers) {
	river.AddWorker(w, &CollectWorker{Collector: c})
	river.AddWorker(w, &OpenHeldWorker{Collector: c})
}

// SetClient gives the collector the River client its jobs run on.
func (c *Collector) SetClient(rc *river.Client[pgx.Tx]) { c.client = rc }

// CollectArgs is the River job that collects one identity's postbox.
type CollectArgs struct {
	Tenant   string `json:"tenant"`
	Identity string `json:"identity"`
}

// Kind is the job kind.
func (CollectArgs) Kind() string { return "osci_collect" }

// InsertOpts: one job per identity waiting or running at a time.
func (CollectArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: 3, UniqueOpts: river.UniqueOpts{ByArgs: true,
		ByState: []rivertype.JobState{rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRunning, rivertype.JobStateRetryable, rivertype.JobStateScheduled}}}
}

// Enqueue makes a collect job for every identity with collect: true.
func (c *Collector) Enqueue(ctx context.Context) error {
	var jobs []river.InsertManyParams
	for _, t := range c.Sender.Tenants().Tenants() {
		for _, id := range t.Identities {
			if id.Collect {
				jobs = append(jobs, river.InsertManyParams{Args: CollectArgs{Tenant: t.ID, Identity: id.ID}})
			}
		}
	}
	if len(jobs) == 0 {
		return nil
	}
	_, err := c.client.InsertMany(ctx, jobs)
	return err
}

// CollectWorker runs CollectArgs jobs.
type CollectWorker struct {
	river.WorkerDefaults[CollectArgs]
	Collector *Collector
}

// collectSlice is how long one run of a collection fetches before it
// ends its dialog and goes on in the next run: River takes a job running
// longer than its timeout for one whose node died (jobs.RescueAfter).
const collectSlice = 5 * time.Second

// Work collects the postbox. A delivery that cannot be opened (not
// encrypted to the tenant, an author's signature that fails or is not
// trusted) is kept as a dead letter of the tenant (step collect) and
// taken off the postbox like any other, so that it does not hold up those
// behind it; an operator retries it (after fixing the trust) or discards
// it in the console.
func (w *CollectWorker) Work(ctx context.Context, job *river.Job[CollectArgs]) error {
	c, s, a := w.Collector, w.Collector.Sender, job.Args
	e, err := c.Directory.Remote(ctx, a.Identity)
	if err != nil {
		return err
	}
	client, _, err := s.clientOf(e, a.Tenant, a.Identity)
	var p *permanent
	if errors.As(err, &p) {
		return river.JobCancel(fmt.Errorf("osci: collect %s: %w", a.Identity, err))
	}
	if err != nil {
		return err
	}
	began := time.Now()
	sess, err := client.Open(ctx)
	if err != nil {
		return err
	}
	t := s.Tenants().Tenant(a.Tenant)
	stored, held, seen, more := 0, 0, 0, false
	for {
		var ans *Answer
		ans, more, err = sess.Fetch(ctx, "")
		if err != nil {
			return err
		}
		if ans == nil {
			break
		}
		seen++
		m, err := collected(ans, a, t.DecryptionKeys(), t.SignerTrust, client.URL, s.Box.Now())
		if err != nil {
			if err := c.hold(ctx, a, ans, client.URL, err); err != nil {
				return err
			}
			held++
		} else {
			var be *msgbox.Error
			switch err := s.Box.Accept(ctx, m); {
			case errors.As(err, &be) && be.Kind == msgbox.KindMessageIDUsed:
				// Stored by an earlier collection that did not confirm it.
			case err != nil:
				return err
			default:
				stored++
			}
		}
		if !more || time.Since(began) > collectSlice {
			break
		}
	}
	// exitDialog confirms the last delivery fetched.
	if err := sess.Close(ctx); err != nil {
		return err
	}
	if seen > 0 {
		s.log().Info("osci postbox collected", "tenant", a.Tenant, "identity", a.Identity, "intermediary", client.URL, "fetched", seen, "stored", stored, "held", held, "more", more)
	}
	if more {
		return river.JobSnooze(time.Second)
	}
	return nil
}

// hold keeps a fetched delivery that cannot be opened as a dead letter of
// the tenant (step collect, cause signature or unreadable): the answer as
// it came, its transport encryption undone (its content still encrypted
// to the reader), sealed in the identity's box, where the reader never
// sees it. A delivery held by an earlier collection is not held twice.
func (c *Collector) hold(ctx context.Context, a CollectArgs, ans *Answer, from string, failure error) error {
	s := c.Sender
	id := ""
	if len(ans.ProcessCards) > 0 {
		id = ans.ProcessCards[0].MessageID
	}
	if id == "" {
		id = fmt.Sprintf("%x", sha256.Sum256(ans.Plain))
	}
	id = "osci-unopened:" + id
	cause := unopenedCause(failure)
	key, err := s.Keyring.Current(ctx, s.Pool, a.Tenant)
	if err != nil {
		return err
	}
	now := s.Box.Now()
	reason := fmt.Sprintf("Über OSCI bei %s abgeholt, kann nicht geöffnet werden: %v", from, failure)
	m := &msgbox.Message{AuthorTenant: a.Tenant, MessageID: id, Author: "osci:" + from, Reader: a.Identity, Transport: "xta", Service: "urn:parzelle:osci:collected",
		MessageType: "osci:delivery", SentAt: now, Records: []msgbox.Record{{At: now, Level: "info", Code: msgbox.RecordAccepted, Reason: fmt.Sprintf("Über OSCI bei %s abgeholt", from)}},
		Parts: []msgbox.Part{{ContentType: "multipart/related", Data: ans.Plain, Size: int64(len(ans.Plain))}}}
	err = s.Box.Hold(ctx, m, reason, func(tx pgx.Tx, inbox int64) error {
		return jobs.RecordDeadLetter(ctx, tx, key, a.Tenant, jobs.Failure{Inbox: inbox, MessageID: id, Author: m.Author, Reader: a.Identity,
			MessageType: m.MessageType, Step: jobs.StepCollect, Cause: cause, Reason: failure.Error(), Attempts: 1})
	})
	var be *msgbox.Error
	if errors.As(err, &be) && be.Kind == msgbox.KindMessageIDUsed {
		return nil
	}
	if err != nil {
		return fmt.Errorf("osci: hold a delivery of %s that cannot be opened: %w", a.Identity, err)
	}
	s.log().Warn("osci: a collected delivery cannot be opened; it is a dead letter", "tenant", a.Tenant, "identity", a.Identity, "message_id", id, "cause", cause, "error", failure)
	return nil
}

// unopenedCause is the dead letter's cause of a delivery that cannot be
// opened.
func unopenedCause(failure error) string {
	if errors.Is(failure, ErrAuthorSignature) {
		return jobs.CauseSignature
	}
	return jobs.CauseUnreadable
}

// Retry enqueues the opening of a held delivery an operator retries from
// its dead letter (jobs.DeadLetters.Retriers, step collect), in tx.
func (c *Collector) Retry(ctx context.Context, tx pgx.Tx, tenantID string, d jobs.DeadLetter) error {
	_, err := c.client.InsertTx(ctx, tx, OpenHeldArgs{Tenant: tenantID, Identity: d.Reader, Inbox: d.Inbox, MessageID: d.MessageID}, nil)
	return err
}

// OpenHeldArgs is the River job that opens a held delivery again, with the
// tenant's keys and trust as they are now.
type OpenHeldArgs struct {
	Tenant    string `json:"tenant"`
	Identity  string `json:"identity"`
	Inbox     int64  `json:"inbox"`
	MessageID string `json:"messageId"`
}

// Kind is the job kind.
func (OpenHeldArgs) Kind() string { return "osci_open_held" }

// OpenHeldWorker runs OpenHeldArgs jobs.
type OpenHeldWorker struct {
	river.WorkerDefaults[OpenHeldArgs]
	Collector *Collector
}

// Work opens the held delivery: once it opens, it is stored in the
// identity's box like any collected delivery and the held one settled;
// when it still cannot be opened, its dead letter is open again with the
// new reason.
func (w *OpenHeldWorker) Work(ctx context.Context, job *river.Job[OpenHeldArgs]) error {
	s, a := w.Collector.Sender, job.Args
	var plain []byte
	err := db.InTenant(ctx, s.Pool, a.Tenant, func(tx pgx.Tx) error {
		var err error
		plain, err = s.Box.ReadContent(ctx, tx, a.Tenant, a.Inbox)
		return err
	})
	if errors.Is(err, msgbox.ErrContentGone) {
		return river.JobCancel(err)
	}
	if err != nil {
		return err
	}
	t := s.Tenants().Tenant(a.Tenant)
	if t == nil {
		return river.JobCancel(fmt.Errorf("osci: tenant %s is gone", a.Tenant))
	}
	ans, failure := ReadAnswer(plain)
	var m *msgbox.Message
	if failure == nil {
		m, failure = collected(ans, CollectArgs{Tenant: a.Tenant, Identity: a.Identity}, t.DecryptionKeys(), t.SignerTrust, "einem früheren Abholen", s.Box.Now())
	}
	if failure != nil {
		cause := unopenedCause(failure)
		key, err := s.Keyring.Current(ctx, s.Pool, a.Tenant)
		if err != nil {
			return err
		}
		return db.InTenant(ctx, s.Pool, a.Tenant, func(tx pgx.Tx) error {
			if err := jobs.RecordDeadLetter(ctx, tx, key, a.Tenant, jobs.Failure{Inbox: a.Inbox, MessageID: a.MessageID, Reader: a.Identity,
				MessageType: "osci:delivery", Step: jobs.StepCollect, Cause: cause, Reason: failure.Error(), Attempts: 1}); err != nil {
				return err
			}
			_, err := s.Box.Settle(ctx, tx, a.Tenant, msgbox.Settlement{Inbox: a.Inbox, Code: msgbox.RecordDeadLetter, Reason: "Weiterhin nicht zu öffnen: " + failure.Error()})
			return err
		})
	}
	var be *msgbox.Error
	if err := s.Box.Accept(ctx, m); err != nil && !(errors.As(err, &be) && be.Kind == msgbox.KindMessageIDUsed) {
		return err
	}
	return db.InTenant(ctx, s.Pool, a.Tenant, func(tx pgx.Tx) error {
		_, err := s.Box.Settle(ctx, tx, a.Tenant, msgbox.Settlement{Inbox: a.Inbox, Applied: true, Code: msgbox.RecordApplied,
			Reason: fmt.Sprintf("Geöffnet und als Nachricht %s an %s zugestellt", m.MessageID, a.Identity)})
		return err
	})
}

// collected is a fetched delivery as a message for the identity's box:
// under the XTA MessageID and with the author, service and type its
// MessageMetaData names (when it has one; else the OSCI MessageId and
// the signer), the content decrypted with the tenant's keys and its
// author's signature verified against the tenant's trust for the author.
func collected(a *Answer, args CollectArgs, pairs []*keys.KeyPair, trustFor func(string) *keys.TrustStore, from string, now time.Time) (*msgbox.Message, error) {
	id := ""
	if len(a.ProcessCards) > 0 {
		id = a.ProcessCards[0].MessageID
	}
	m := &msgbox.Message{AuthorTenant: args.Tenant, MessageID: id, Reader: args.Identity, Transport: "xta", Service: "urn:parzelle:osci:collected",
		MessageType: "osci:delivery", SentAt: now}
	author := ""
	if meta := a.Envelope.Root.FindAll(XTAMetaNamespace, "MessageMetaData"); len(meta) == 1 {
		md, err := xta.ReadMetaData(meta[0])
		if err != nil {
			return nil, fmt.Errorf("the delivery %s: its MessageMetaData: %w", id, err)
		}
		if md.Reader != args.Identity {
			return nil, fmt.Errorf("the delivery %s names the reader %s, not %s", id, md.Reader, args.Identity)
		}
		author = md.Author
		m.Author, m.Service, m.BusinessScenario, m.MessageType, m.Metadata = md.Author, md.Service, md.BusinessScenario, md.MessageType, string(canonical(meta[0]))
		if md.MessageID != "" {
			m.MessageID = md.MessageID
		}
	}
	content, err := OpenContent(a, pairs, trustFor(author))
	if err != nil {
		return nil, fmt.Errorf("the delivery %s: %w", id, err)
	}
	if m.Author == "" {
		m.Author = authorOf(content.Author)
	}
	m.Records = []msgbox.Record{{At: now, Level: "info", Code: msgbox.RecordAccepted,
		Reason: fmt.Sprintf("Über OSCI bei %s abgeholt (MessageId %s), Signatur des Autors geprüft", from, id)}}
	m.Parts = []msgbox.Part{{ContentType: "text/xml", Data: content.Document, Size: int64(len(content.Document))}}
	for _, att := range content.Attachments {
		m.Parts = append(m.Parts, msgbox.Part{Attachment: true, ContentType: att.ContentType, Filename: att.ContentID, Ref: att.ContentID, Data: att.Data, Size: att.Size})
	}
	return m, nil
}
