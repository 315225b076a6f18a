package osci

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/jobs"
	"github.com/parzelle/parzelle/msgbox"
	"github.com/parzelle/parzelle/sealing"
	"github.com/parzelle/parzelle/tenant"
	"github.com/parzelle/parzelle/xta"
)

// Record codes of a message forwarded over OSCI.
const (
	// RecordOSCIMessageID names the MessageId the reader's intermediary
	// handed out for the delivery (before it is stored, so that a retry
	// stores it under the same one, never twice).
	RecordOSCIMessageID = "OSCI_MESSAGE_ID"
)

// Sender is the client role for XTA messages whose reader lives behind
// another OSCI intermediary (a msgbox.Forwarder): each becomes an
// osci_forward River job in the author tenant's transaction that stores
// it. The job looks the reader up in the directory (its intermediary, the
// intermediary's certificates, the reader's cipher certificate), and
// stores the message in the reader's postbox there: the XTA
// MessageMetaData as the signed custom header Id="MetaData", the content
// signed by the author tenant's key and encrypted to the reader, the
// request transport-encrypted to the intermediary. The author's report
// turns green with the delivery, red with the feedback of a refusal (and
// the message becomes a dead letter of the author's tenant, step send, for
// an operator to retry or discard); an intermediary out of reach is
// retried.
type Sender struct {
	Pool *pgxpool.Pool
	Box  *msgbox.Store
	// Keyring seals the reasons of dead letters.
	Keyring   *sealing.Keyring
	Tenants   func() *tenant.Set
	Directory xta.Directory
	// HTTP reaches the intermediaries (default: the system's roots, no
	// client certificate).
	HTTP *http.Client
	Log  *slog.Logger
	// CardInterval is how often the process card of a delivered message
	// is asked for until it shows the reception (default a minute,
	// doubling up to an hour; for a week at most).
	CardInterval time.Duration

	client  *river.Client[pgx.Tx]
	dialogs dialogPool
}

// AddWorkers registers the sender's worker.
func (s *Sender) AddWorkers(w *river.Workers) {
	river.AddWorker(w, &ForwardWorker{Sender: s})
	river.AddWorker(w, &CardsWorker{Sender: s})
}

// SetClient gives the sender the River client its jobs run on.
func (s *Sender) SetClient(c *river.Client[pgx.Tx]) { s.client = c }

// Forward implements msgbox.Forwarder: one job per message, scheduled for
// its NotBefore.
func (s *Sender) Forward(ctx context.Context, tx pgx.Tx, fs []msgbox.Forwarding) error {
	jobs := make([]river.InsertManyParams, len(fs))
	for i, f := range fs {
		jobs[i] = river.InsertManyParams{Args: ForwardArgs{Tenant: f.AuthorTenant, Outbox: f.Outbox, MessageID: f.MessageID, Reader: f.Reader}}
		if f.NotBefore != nil {
			jobs[i].InsertOpts = &river.InsertOpts{ScheduledAt: *f.NotBefore}
		}
	}
	if _, err := s.client.InsertManyTx(ctx, tx, jobs); err != nil {
		return fmt.Errorf("osci: enqueue forwarding: %w", err)
	}
	return nil
}

// ForwardArgs is the River job that delivers one message over OSCI.
type ForwardArgs struct {
	Tenant    string `json:"tenant"`
	Outbox    int64  `json:"outbox"`
	MessageID string `json:"messageId"`
	Reader    string `json:"reader"`
}

// Kind is the job kind.
func (ForwardArgs) Kind() string { return "osci_forward" }

// InsertOpts: an intermediary out of reach is tried for about a day.
func (ForwardArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 12} }

// ForwardWorker runs ForwardArgs jobs.
type ForwardWorker struct {
	river.WorkerDefaults[ForwardArgs]
	Sender *Sender
}

// outgoing is a message to forward, read from the author's outbox.
type outgoing struct {
	msgbox.Outgoing
	document    []byte
	attachments []Attachment
	osciID      string // a MessageId recorded by an earlier attempt
}

// Work delivers the message: the report turns green when the reader's
// intermediary stored it, red when it refused it (or the directory does
// not know how to reach the reader); other failures are retried, and
// after the last attempt the report turns red with 9809.
func (w *ForwardWorker) Work(ctx context.Context, job *river.Job[ForwardArgs]) error {
	s, a := w.Sender, job.Args
	m, err := s.load(ctx, a)
	var be *msgbox.Error
	var p *permanent
	switch {
	case errors.As(err, &be) && be.Kind == msgbox.KindNoMessage:
		return river.JobCancel(err)
	case err != nil:
		return err
	case m.Status != msgbox.StatusOpen:
		// Settled before: cancelled, or delivered by an earlier run (a
		// job rescued after its node died, which had committed; its
		// content is gone then).
		return nil
	case len(m.document) == 0:
		err = &permanent{CodeNoValidRequest, "the message has no content to deliver"}
	}
	// One attempt is bounded by the node's job timeout (jobs.JobTimeout):
	// a job running longer would be taken for one whose node died.
	var detail string
	if err == nil {
		detail, err = s.deliver(ctx, a, m)
	}
	switch {
	case err == nil:
		now := s.Box.Now()
		green := msgbox.StatusGreen
		if err := s.Box.Forwarded(ctx, a.Tenant, a.Outbox, msgbox.Progress{Status: &green, Delivered: &now,
			Record: msgbox.Record{At: now, Level: "info", Code: msgbox.RecordDelivered, Reason: detail}}); err != nil {
			return err
		}
		// Its process card tells when the reader fetched and received it.
		if _, err := s.client.Insert(ctx, CardsArgs{ForwardArgs: a, OSCIMessageID: m.osciID},
			&river.InsertOpts{ScheduledAt: now.Add(s.cardInterval(0))}); err != nil {
			s.log().Warn("osci: the process card of a delivered message will not be asked for", "tenant", a.Tenant, "message_id", a.MessageID, "error", err)
		}
		return nil
	case errors.As(err, &p), job.Attempt >= job.MaxAttempts:
		cause := jobs.CauseNoRoute
		var there *refusedThere
		switch {
		case p == nil:
			p, cause = &permanent{CodeForwardNotReached, fmt.Sprintf("after %d attempts: %v", job.Attempt, err)}, jobs.CauseUnreachable
		case errors.As(err, &there):
			cause = jobs.CauseNotAccepted
		}
		s.log().Warn("osci: forwarding failed", "tenant", a.Tenant, "message_id", a.MessageID, "reader", a.Reader, "code", string(p.code), "cause", cause, "detail", p.detail)
		if err := s.fail(ctx, a, m, job.Attempt, cause, fmt.Sprintf("OSCI %s %s: %s", p.code, p.code.Text("de"), p.detail)); err != nil {
			return err
		}
		return river.JobCancel(err)
	default:
		s.log().Warn("osci: forwarding will be retried", "tenant", a.Tenant, "message_id", a.MessageID, "reader", a.Reader, "attempt", job.Attempt, "error", err)
		return err
	}
}

// fail turns the author's report red with the reason and makes the
// message a dead letter of the author's tenant (step send), in one
// transaction; its content stays for an operator's retry.
func (s *Sender) fail(ctx context.Context, a ForwardArgs, m *outgoing, attempts int, cause, reason string) error {
	key, err := s.Keyring.Current(ctx, s.Pool, a.Tenant)
	if err != nil {
		return err
	}
	f := jobs.Failure{Inbox: a.Outbox, MessageID: a.MessageID, Reader: a.Reader, MessageType: "xta", Step: jobs.StepSend, Cause: cause, Reason: reason, Attempts: attempts}
	if m != nil {
		f.Author, f.MessageType = m.Author, m.MessageType
	}
	red := msgbox.StatusRed
	return db.InTenant(ctx, s.Pool, a.Tenant, func(tx pgx.Tx) error {
		if err := jobs.RecordDeadLetter(ctx, tx, key, a.Tenant, f); err != nil {
			return err
		}
		return s.Box.ForwardedTx(ctx, tx, a.Tenant, a.Outbox, msgbox.Progress{Status: &red,
			Record: msgbox.Record{At: s.Box.Now(), Level: "error", Code: msgbox.RecordFailed, Reason: reason}})
	})
}

// Retry enqueues the delivery of a message an operator retries from its
// dead letter (jobs.DeadLetters.Retriers, step send), in tx; the MessageId
// recorded by the failed attempts is used again.
func (s *Sender) Retry(ctx context.Context, tx pgx.Tx, tenantID string, d jobs.DeadLetter) error {
	_, err := s.client.InsertTx(ctx, tx, ForwardArgs{Tenant: tenantID, Outbox: d.Inbox, MessageID: d.MessageID, Reader: d.Reader}, nil)
	return err
}

func (s *Sender) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}

// load reads the message from the author's outbox: the first part is the
// document, the others its attachments.
func (s *Sender) load(ctx context.Context, a ForwardArgs) (*outgoing, error) {
	var m *outgoing
	err := s.Box.ReadOutgoing(ctx, a.Tenant, a.Outbox, func(o *msgbox.Outgoing) error {
		m = &outgoing{Outgoing: *o}
		for i, p := range o.Parts {
			var b bytes.Buffer
			if err := o.Content(i, &b); err != nil {
				return err
			}
			if i == 0 {
				m.document = b.Bytes()
				continue
			}
			id := p.Ref
			if id == "" {
				id = p.Filename
			}
			if id == "" {
				id = fmt.Sprintf("part%d", i)
			}
			m.attachments = append(m.attachments, Attachment{ContentID: id, ContentType: p.ContentType, Data: b.Bytes(), Size: int64(len(b.Bytes()))})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out, err := s.Box.Report(ctx, a.Tenant, m.Author, m.MessageID)
	if err != nil {
		return nil, err
	}
	for _, r := range out.Records {
		if r.Code == RecordOSCIMessageID {
			m.osciID = r.Reason
		}
	}
	return m, nil
}

// deliver stores the message at the reader's intermediary and returns the
// report's text; a refusal is a *permanent with the feedback code.
func (s *Sender) deliver(ctx context.Context, a ForwardArgs, m *outgoing) (string, error) {
	c, reader, e, err := s.clientFor(ctx, a.Tenant, m.Reader, m.Service)
	if err != nil {
		return "", err
	}
	content, atts, err := SealContent(m.document, m.attachments, c.Signer, []*x509.Certificate{reader})
	if err != nil {
		return "", &permanent{CodeOrderInternal, err.Error()}
	}
	o := Outgoing{Subject: m.MessageID, Reader: reader, CustomHeaders: []string{metaDataHeader(m.Metadata)}, Content: content, Attachments: atts}
	if e.Passive {
		o.ContentReceiver = e.ContentReceiver
	}
	var detail string
	err = s.inDialog(ctx, c, func(sess *Session) error {
		var err error
		detail, err = s.store(ctx, a, m, sess, o)
		return err
	})
	if err != nil {
		return "", clientFailure(err)
	}
	if e.Passive {
		return fmt.Sprintf("Über OSCI an %s zur Weiterleitung an den passiven Empfänger %s übergeben (%s)", c.URL, m.Reader, detail), nil
	}
	return fmt.Sprintf("Über OSCI an %s in das Postfach von %s zugestellt (%s)", c.URL, m.Reader, detail), nil
}

// store stores the message in the dialog under the MessageId an earlier
// attempt recorded, or a new one it records first, and returns the
// report's detail; a refusal in the answer is a *refusedThere.
func (s *Sender) store(ctx context.Context, a ForwardArgs, m *outgoing, sess *Session, o Outgoing) (string, error) {
	reused := m.osciID != ""
	for {
		if m.osciID == "" {
			id, err := sess.MessageID(ctx)
			if err != nil {
				return "", err
			}
			// Recorded before the delivery: a retry after a crash stores it
			// under the same MessageId, which the intermediary refuses the
			// second time (9801), so it is never stored twice.
			if err := s.Box.Forwarded(ctx, a.Tenant, a.Outbox, msgbox.Progress{Record: msgbox.Record{At: s.Box.Now(), Level: "info", Code: RecordOSCIMessageID, Reason: id}}); err != nil {
				return "", err
			}
			m.osciID = id
		}
		o.MessageID = m.osciID
		ans, err := sess.Store(ctx, o)
		switch {
		case err != nil:
			return "", err
		case reused && ans.Has(CodeIllegalMessageID):
			// Used by an earlier attempt whose answer was lost, or
			// forgotten by the intermediary (handed out too long ago, say
			// before an operator's retry): only a process card tells.
			if _, err := sess.ProcessCard(ctx, o.MessageID); err == nil {
				return fmt.Sprintf("MessageId %s, bei einem früheren Versuch", o.MessageID), nil
			}
			m.osciID, reused = "", false
			continue
		case !ans.OK():
			return "", &refusedThere{&permanent{ans.Feedback[0], ans.describe()}}
		}
		return fmt.Sprintf("MessageId %s, %s", o.MessageID, ans.describe()), nil
	}
}

// inDialog runs fn in a dialog with the client's intermediary: a pooled
// one (or, when the intermediary ended that, a new one), else a new one.
// The dialog goes back to the pool when fn went through, and is closed
// otherwise (its state may be out of step).
func (s *Sender) inDialog(ctx context.Context, c *Client, fn func(*Session) error) error {
	sess, pooled, err := s.dialogs.open(ctx, c)
	if err != nil {
		return err
	}
	err = fn(sess)
	var oe *Error
	if pooled && errors.As(err, &oe) && oe.Code == CodeWrongDialog {
		if sess, err = c.Open(ctx); err != nil {
			return err
		}
		err = fn(sess)
	}
	if err != nil {
		_ = sess.Close(ctx)
		return err
	}
	s.dialogs.put(ctx, sess)
	return nil
}

// clientFor is the author tenant's client towards the reader's
// intermediary, as the directory names it, the reader's cipher
// certificate and the directory entry; what the directory cannot give is a *permanent 9809, a
// directory that cannot be read an error worth a retry.
func (s *Sender) clientFor(ctx context.Context, tenantID, reader, service string) (*Client, *x509.Certificate, xta.Entry, error) {
	e, err := s.Directory.Lookup(ctx, reader, service)
	if err != nil {
		return nil, nil, e, err
	}
	c, cert, err := s.clientOf(e, tenantID, reader)
	return c, cert, e, err
}

// clientOf is clientFor with the directory entry given.
func (s *Sender) clientOf(e xta.Entry, tenantID, reader string) (*Client, *x509.Certificate, error) {
	var err error
	if !e.Known || e.Intermediary == "" || len(e.CipherCertificate) == 0 || len(e.IntermediaryCipher) == 0 || len(e.IntermediarySignature) == 0 {
		return nil, nil, &permanent{CodeForwardNotReached, fmt.Sprintf("the directory names no OSCI intermediary with its certificates and no cipher certificate for the reader %s", reader)}
	}
	if e.Passive && e.ContentReceiver == "" {
		return nil, nil, &permanent{CodeForwardNotReached, fmt.Sprintf("the directory names the reader %s a passive recipient without its contentReceiver address", reader)}
	}
	t := s.Tenants().Tenant(tenantID)
	if t == nil || t.SigningKey() == nil || len(t.DecryptionKeys()) == 0 {
		return nil, nil, &permanent{CodeOrderInternal, fmt.Sprintf("tenant %s needs a signing and a decryption key (keys.signing, keys.decryption) to send over OSCI", tenantID)}
	}
	var certs [3]*x509.Certificate
	for i, der := range [][]byte{e.CipherCertificate, e.IntermediaryCipher, e.IntermediarySignature} {
		if certs[i], err = x509.ParseCertificate(der); err != nil {
			return nil, nil, &permanent{CodeForwardNotReached, fmt.Sprintf("a certificate of the directory entry for %s: %v", reader, err)}
		}
	}
	// Nothing goes out to a reader whose cipher certificate cannot take
	// it: the content would be encrypted to a key it may not use.
	now := time.Now()
	switch rc := certs[0]; {
	case now.After(rc.NotAfter) || now.Before(rc.NotBefore):
		return nil, nil, &permanent{CodeRecipientCipherExpired, fmt.Sprintf("the cipher certificate of %s (%q, the directory's) is valid from %s to %s, not now",
			reader, rc.Subject, rc.NotBefore.UTC().Format(time.DateOnly), rc.NotAfter.UTC().Format(time.DateOnly))}
	case rc.KeyUsage != 0 && rc.KeyUsage&(x509.KeyUsageKeyEncipherment|x509.KeyUsageDataEncipherment) == 0:
		return nil, nil, &permanent{CodeRecipientCipherBad, fmt.Sprintf("the cipher certificate of %s (%q) does not allow encryption", reader, rc.Subject)}
	}
	if _, ok := certs[0].PublicKey.(*rsa.PublicKey); !ok {
		return nil, nil, &permanent{CodeRecipientCipherBad, fmt.Sprintf("the cipher certificate of %s (%q) has no RSA key, which OSCI encrypts to", reader, certs[0].Subject)}
	}
	return &Client{URL: e.Intermediary, HTTP: s.HTTP, IntermediaryCipher: certs[1], IntermediarySignature: certs[2], Signer: t.SigningKey(), Cipher: t.DecryptionKeys()[0]}, certs[0], nil
}

// clientFailure sorts a client error: a refusal the intermediary answered
// with an OSCI code is permanent, the rest (no connection, no OSCI
// answer) worth a retry.
func clientFailure(err error) error {
	var oe *Error
	if errors.As(err, &oe) && oe.Code != CodeInternal {
		return &refusedThere{&permanent{oe.Code, oe.Detail}}
	}
	return err
}

// refusedThere is a permanent refusal the reader's intermediary answered,
// as opposed to one this node made before sending.
type refusedThere struct{ *permanent }

func (r *refusedThere) Unwrap() error { return r.permanent }

// metaDataHeader is the XTA MessageMetaData as OSCI's custom header: the
// stored element with Id="MetaData".
func metaDataHeader(metadata string) string {
	start := strings.IndexByte(metadata, '<')
	end := strings.IndexByte(metadata, '>')
	if start < 0 || end < start {
		return metadata
	}
	tag := metadata[start:end]
	if strings.Contains(tag, ` Id="`) {
		return metadata
	}
	name := strings.IndexAny(tag, " \t\r\n/")
	if name < 0 {
		name = len(tag)
	}
	at := start + name
	return metadata[:at] + ` Id="MetaData"` + metadata[at:]
}

// CardsArgs is the River job that asks for a delivered message's process
// card until it shows the reception.
type CardsArgs struct {
	ForwardArgs
	OSCIMessageID string `json:"osciMessageId"`
}

// Kind is the job kind.
func (CardsArgs) Kind() string { return "osci_process_card" }

// CardsWorker runs CardsArgs jobs.
type CardsWorker struct {
	river.WorkerDefaults[CardsArgs]
	Sender *Sender
}

// cardDuration is how long a delivered message's reception is waited for.
const cardDuration = 7 * 24 * time.Hour

func (s *Sender) cardInterval(attempt int) time.Duration {
	d := s.CardInterval
	if d == 0 {
		d = time.Minute
	}
	for range min(attempt, 6) {
		d *= 2
	}
	return min(d, time.Hour)
}

// Work asks for the process card and records in the author's report when
// the reader fetched the message and when it received it; until the
// reception it asks again later (snoozed), for a week at most.
func (w *CardsWorker) Work(ctx context.Context, job *river.Job[CardsArgs]) error {
	s, a := w.Sender, job.Args
	out, err := s.outbox(ctx, a.ForwardArgs)
	var be *msgbox.Error
	switch {
	case errors.As(err, &be) && be.Kind == msgbox.KindNoMessage:
		return river.JobCancel(err)
	case err != nil:
		return err
	}
	if out.Closed != nil {
		return nil
	}
	c, _, _, err := s.clientFor(ctx, a.Tenant, a.Reader, out.service)
	var p *permanent
	if errors.As(err, &p) {
		return river.JobCancel(err)
	}
	if err != nil {
		return err
	}
	var card ProcessCard
	if err := s.inDialog(ctx, c, func(sess *Session) error {
		var err error
		card, err = sess.ProcessCard(ctx, a.OSCIMessageID)
		return err
	}); err != nil {
		return err
	}
	now := s.Box.Now()
	if card.Forwarding != nil && out.Fetched == nil {
		if err := s.Box.Forwarded(ctx, a.Tenant, a.Outbox, msgbox.Progress{Fetched: card.Forwarding,
			Record: msgbox.Record{At: now, Level: "info", Code: msgbox.RecordFetched, Reason: fmt.Sprintf("Laut Laufzettel von %s am %s abgeholt", a.Reader, card.Forwarding.UTC().Format(time.RFC3339))}}); err != nil {
			return err
		}
	}
	if card.Reception != nil {
		return s.Box.Forwarded(ctx, a.Tenant, a.Outbox, msgbox.Progress{Closed: card.Reception,
			Record: msgbox.Record{At: now, Level: "info", Code: msgbox.RecordClosed, Reason: fmt.Sprintf("Laut Laufzettel von %s am %s empfangen", a.Reader, card.Reception.UTC().Format(time.RFC3339))}})
	}
	if time.Since(job.CreatedAt) > cardDuration {
		return s.Box.Forwarded(ctx, a.Tenant, a.Outbox, msgbox.Progress{
			Record: msgbox.Record{At: now, Level: "warning", Code: msgbox.RecordDelivered, Reason: "Der Laufzettel zeigt nach einer Woche keinen Empfang; er wird nicht weiter abgefragt"}})
	}
	return river.JobSnooze(s.cardInterval(job.Attempt))
}

// outboxState is what the process card job needs of the author's report.
type outboxState struct {
	service         string
	Fetched, Closed *time.Time
}

// outbox reads the message's service and its report's fetched and closed
// times.
func (s *Sender) outbox(ctx context.Context, a ForwardArgs) (*outboxState, error) {
	var author string
	st := &outboxState{}
	err := s.Box.ReadOutgoing(ctx, a.Tenant, a.Outbox, func(o *msgbox.Outgoing) error {
		author, st.service = o.Author, o.Service
		return nil
	})
	if err != nil {
		return nil, err
	}
	r, err := s.Box.Report(ctx, a.Tenant, author, a.MessageID)
	if err != nil {
		return nil, err
	}
	st.Fetched, st.Closed = r.Fetched, r.Closed
	return st, nil
}
