package osci

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

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
func (c *Collector) AddWorkers(w *river.Workers) { river.AddWorker(w, &CollectWorker{Collector: c}) }

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

// Timeout bounds one collection.
func (w *CollectWorker) Timeout(*river.Job[CollectArgs]) time.Duration { return 10 * time.Minute }

// Work collects the postbox. A delivery that cannot be opened (not
// encrypted to the tenant, an author's signature that fails) stops the
// collection before the dialog confirms it: it is fetched again next
// time, and the error says why.
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
	sess, err := client.Open(ctx)
	if err != nil {
		return err
	}
	t := s.Tenants().Tenant(a.Tenant)
	stored, seen := 0, 0
	for {
		ans, more, err := sess.Fetch(ctx, "")
		if err != nil {
			return err
		}
		if ans == nil {
			break
		}
		seen++
		m, err := collected(ans, a, t.DecryptionKeys(), t.SignerTrust, client.URL, s.Box.Now())
		if err != nil {
			// Not confirmed: no further request in this dialog.
			return fmt.Errorf("osci: collect %s: %w", a.Identity, err)
		}
		var be *msgbox.Error
		switch err := s.Box.Accept(ctx, m); {
		case errors.As(err, &be) && be.Kind == msgbox.KindMessageIDUsed:
			// Stored by an earlier collection that did not confirm it.
		case err != nil:
			return err
		default:
			stored++
		}
		if !more {
			break
		}
	}
	if err := sess.Close(ctx); err != nil {
		return err
	}
	if seen > 0 {
		s.log().Info("osci postbox collected", "tenant", a.Tenant, "identity", a.Identity, "intermediary", client.URL, "fetched", seen, "stored", stored)
	}
	return nil
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
