package xnachweis

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/msgbox"
	"github.com/parzelle/parzelle/xta"
)

// XTA metadata of the answers sent as messages.
const (
	xtaService          = "urn:xoev-de:bva:standard:xnachweis"
	xtaBusinessScenario = "XNACHWEIS_DATA"
)

// XTAInbox takes evidence requests that arrive as XTA messages to a
// tenant's evidence identity (evidence.identity) and answers each, through
// the Service, with an XTA message from that identity back to the
// request's author; the author's transport report of the request turns
// green with a record naming the answer.
type XTAInbox struct {
	Service *Service
	// XTA names the answers; Box stores them.
	XTA *xta.Server
	Box *msgbox.Store

	client *river.Client[pgx.Tx]
}

// AddWorkers registers the inbox's worker.
func (i *XTAInbox) AddWorkers(w *river.Workers) { river.AddWorker(w, &RequestWorker{Inbox: i}) }

// SetClient gives the inbox the River client its jobs run on.
func (i *XTAInbox) SetClient(c *river.Client[pgx.Tx]) { i.client = c }

// Claims implements msgbox.Consumer: the tenant's evidence identity.
func (i *XTAInbox) Claims(readerTenant, reader string) bool {
	t := i.Service.Tenants().Tenant(readerTenant)
	if t == nil {
		return false
	}
	e := t.EvidenceProvider()
	return e != nil && e.Identity != "" && e.Identity == reader
}

// Consume implements msgbox.Consumer: one job per request, enqueued in
// the transaction that stores it.
func (i *XTAInbox) Consume(ctx context.Context, tx pgx.Tx, ds []msgbox.Delivery) error {
	jobs := make([]river.InsertManyParams, len(ds))
	for k, d := range ds {
		jobs[k] = river.InsertManyParams{Args: RequestArgs{Tenant: d.ReaderTenant, Inbox: d.Inbox}}
	}
	if _, err := i.client.InsertManyTx(ctx, tx, jobs); err != nil {
		return fmt.Errorf("xnachweis: enqueue evidence requests: %w", err)
	}
	return nil
}

// RequestArgs is the River job that answers an evidence request sent as an
// XTA message.
type RequestArgs struct {
	Tenant string `json:"tenant"`
	Inbox  int64  `json:"inbox"`
}

// Kind is the job kind.
func (RequestArgs) Kind() string { return "xnachweis_request" }

// InsertOpts: an answer is due soon, or never.
func (RequestArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 5} }

// RequestWorker runs RequestArgs jobs.
type RequestWorker struct {
	river.WorkerDefaults[RequestArgs]
	Inbox *XTAInbox
}

// Work answers the request and, in one transaction, posts the answer and
// settles the request: a crash before the commit answers again (the
// answer's MessageID is derived from the request's, the token's second
// use from the same message is no replay); after it, the settled request
// is left alone.
func (w *RequestWorker) Work(ctx context.Context, job *river.Job[RequestArgs]) error {
	in, s := w.Inbox, w.Inbox.Service
	var msgs []msgbox.InboxMessage
	err := db.InTenant(ctx, s.Pool, job.Args.Tenant, func(tx pgx.Tx) error {
		var err error
		msgs, err = in.Box.Load(ctx, tx, job.Args.Tenant, []int64{job.Args.Inbox})
		return err
	})
	if err != nil {
		return err
	}
	if len(msgs) == 0 || msgs[0].Settled {
		return nil
	}
	m := msgs[0]
	a := s.Answer(ctx, Caller{Account: m.Author, Tenant: job.Args.Tenant, Via: "xta", Source: fmt.Sprintf("xta:%d", m.Inbox)}, m.Content)
	if a.Body == nil {
		return river.JobCancel(errors.New("xnachweis: no tenant answers this request"))
	}
	messageType := answerTypes[RequestNational]
	if a.Request != nil {
		messageType = answerTypes[a.Request.Type]
	}
	typ := messageType[0]
	if a.Failure != nil {
		typ = messageType[1]
	}
	answerID := in.XTA.AnswerID(m.MessageID)
	return pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		now := in.Box.Now()
		if _, err := in.Box.Post(ctx, tx, &msgbox.Message{
			AuthorTenant: job.Args.Tenant, MessageID: answerID, Author: m.Reader, Reader: m.Author, Transport: "xta",
			Service: xtaService, BusinessScenario: xtaBusinessScenario, MessageType: typ, SentAt: now,
			Metadata: xta.Metadata(answerID, m.Reader, m.Author, xtaService, xtaBusinessScenario, typ, NSDE, now),
			Records:  []msgbox.Record{{At: now, Level: "info", Code: msgbox.RecordAccepted, Reason: "Nachricht vom Knoten erzeugt (Antwort)"}},
			Parts:    []msgbox.Part{{ContentType: "application/xml", Encoding: "UTF-8", Filename: typ + ".xml", Size: int64(len(a.Body)), Data: a.Body}},
		}); err != nil {
			return err
		}
		if err := db.EnterTenant(ctx, tx, job.Args.Tenant); err != nil {
			return err
		}
		outcome := "Nachweis geliefert"
		if a.Failure != nil {
			outcome = "Fehlernachricht " + a.Failure.Code.Value
		}
		_, err := in.Box.Settle(ctx, tx, job.Args.Tenant, msgbox.Settlement{Inbox: m.Inbox, Applied: true, Code: msgbox.RecordAnswered,
			Reason: fmt.Sprintf("Nachweisanfrage beantwortet (%s): %s als Nachricht %s an %s", outcome, typ, answerID, strings.TrimSpace(m.Author))})
		return err
	})
}
