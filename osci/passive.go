package osci

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/parzelle/parzelle/c14n"
	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/jobs"
	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/msgbox"
	"github.com/parzelle/parzelle/tenant"
	"github.com/parzelle/parzelle/xmldsig"
	"github.com/parzelle/parzelle/xmlsafe"
)

// Record codes of a delivery pushed to a passive recipient.
const (
	// RecordReception: the passive recipient accepted the delivery (its
	// time is the process card's Reception).
	RecordReception = "OSCI_RECEPTION"
	// RecordNotAccepted: the recipient refused it, or could not be reached
	// in all attempts.
	RecordNotAccepted = "OSCI_NOT_ACCEPTED"
)

// Recipients pushes the deliveries for passive recipients (postboxes with
// osci.passive) to them as acceptDelivery, one River job per delivery,
// enqueued in the transaction that stores it (a msgbox.Consumer): the
// job retries while the recipient cannot be reached and settles the
// author's report green (with the Reception) when it accepts, red with
// the feedback code when it refuses or stays out of reach.
type Recipients struct {
	Intermediary *Intermediary

	client *river.Client[pgx.Tx]
}

// AddWorkers registers the recipients' worker.
func (r *Recipients) AddWorkers(w *river.Workers) { river.AddWorker(w, &AcceptWorker{Recipients: r}) }

// SetClient gives the recipients the River client their jobs run on.
func (r *Recipients) SetClient(c *river.Client[pgx.Tx]) { r.client = c }

// Claims implements msgbox.Consumer: postboxes of passive recipients.
func (r *Recipients) Claims(readerTenant, reader string) bool {
	t := r.Intermediary.Tenants().Tenant(readerTenant)
	if t == nil {
		return false
	}
	for _, id := range t.Identities {
		if id.ID == reader {
			url, _ := id.OSCI.PassiveRecipient()
			return url != ""
		}
	}
	return false
}

// Consume implements msgbox.Consumer: one job per delivery.
func (r *Recipients) Consume(ctx context.Context, tx pgx.Tx, ds []msgbox.Delivery) error {
	jobs := make([]river.InsertManyParams, len(ds))
	for i, d := range ds {
		jobs[i] = river.InsertManyParams{Args: AcceptArgs{Tenant: d.ReaderTenant, Reader: d.Reader, Inbox: d.Inbox, MessageID: d.MessageID}}
	}
	if _, err := r.client.InsertManyTx(ctx, tx, jobs); err != nil {
		return fmt.Errorf("osci: enqueue deliveries to passive recipients: %w", err)
	}
	return nil
}

// AcceptArgs is the River job that pushes one delivery to its passive
// recipient.
type AcceptArgs struct {
	Tenant    string `json:"tenant"`
	Reader    string `json:"reader"`
	Inbox     int64  `json:"inbox"`
	MessageID string `json:"messageId"`
}

// Kind is the job kind.
func (AcceptArgs) Kind() string { return "osci_accept_delivery" }

// InsertOpts: a recipient out of reach is tried for about a day (River's
// backoff: attempt n waits n⁴ seconds).
func (AcceptArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 12} }

// AcceptWorker runs AcceptArgs jobs.
type AcceptWorker struct {
	river.WorkerDefaults[AcceptArgs]
	Recipients *Recipients
}

// permanent is a refusal the recipient (or the delivery) made for good:
// retrying would not change it.
type permanent struct {
	code   Code
	detail string
}

func (p *permanent) Error() string { return string(p.code) + " " + p.detail }

// Work pushes the delivery and settles it: accepted (green, Reception),
// refused for good (red, the recipient's code), or, after the last
// attempt, not reached (red, 9809). A delivery settled before is left
// alone.
func (w *AcceptWorker) Work(ctx context.Context, job *river.Job[AcceptArgs]) error {
	in := w.Recipients.Intermediary
	a := job.Args
	t := in.Tenants().Tenant(a.Tenant)
	if t == nil {
		return river.JobCancel(fmt.Errorf("osci: tenant %s is gone", a.Tenant))
	}
	var box tenant.Postbox
	for i := range t.Identities {
		if t.Identities[i].ID == a.Reader {
			box = tenant.Postbox{Tenant: t, Identity: &t.Identities[i]}
		}
	}
	if box.Identity == nil {
		return river.JobCancel(fmt.Errorf("osci: postbox %s of %s is gone", a.Reader, a.Tenant))
	}
	url, roots := box.Identity.OSCI.PassiveRecipient()
	d, card, _, err := in.fetchOne(ctx, box, msgbox.Selector{IDs: []string{a.MessageID}}, nil, true)
	var oe *Error
	switch {
	case errors.As(err, &oe) && oe.Code == CodeNoDelivery:
		return nil // settled before
	case err != nil:
		return err
	}
	code, err := w.push(ctx, box, url, roots, d, card)
	var p *permanent
	outcome := "retry"
	switch {
	case err == nil:
		outcome = "accepted"
	case errors.As(err, &p):
		outcome = "refused"
	case job.Attempt >= job.MaxAttempts:
		outcome = "unreachable"
	}
	in.Metrics.pushed(a.Tenant, OrderAcceptDelivery, outcome)
	switch {
	case err == nil:
		return w.settle(ctx, a, msgbox.Settlement{Inbox: a.Inbox, Applied: true, Code: RecordReception,
			Reason: fmt.Sprintf("Zustellung vom passiven Empfänger %s angenommen (%s, acceptDelivery an %s)", a.Reader, code, url)})
	case errors.As(err, &p):
		in.Log.Warn("osci: the passive recipient refused a delivery", "tenant", a.Tenant, "reader", a.Reader, "message_id", a.MessageID, "code", string(p.code), "detail", p.detail)
		reason := fmt.Sprintf("%s %s: %s", p.code, p.code.Text("de"), p.detail)
		if err := w.fail(ctx, a, d, job.Attempt, jobs.CauseNotAccepted, reason); err != nil {
			return err
		}
		return river.JobCancel(err)
	case job.Attempt >= job.MaxAttempts:
		in.Log.Error("osci: a passive recipient stayed out of reach", "tenant", a.Tenant, "reader", a.Reader, "message_id", a.MessageID, "attempts", job.Attempt, "error", err)
		reason := fmt.Sprintf("%s %s: nach %d Versuchen: %v", CodeForwardNotReached, CodeForwardNotReached.Text("de"), job.Attempt, err)
		if err := w.fail(ctx, a, d, job.Attempt, jobs.CauseUnreachable, reason); err != nil {
			return err
		}
		return err
	default:
		in.Log.Warn("osci: a passive recipient is out of reach; will retry", "tenant", a.Tenant, "reader", a.Reader, "message_id", a.MessageID, "attempt", job.Attempt, "error", err)
		return err
	}
}

// settle ends the delivery in the author's report.
func (w *AcceptWorker) settle(ctx context.Context, a AcceptArgs, st msgbox.Settlement) error {
	return db.InTenant(ctx, w.Recipients.Intermediary.Pool, a.Tenant, func(tx pgx.Tx) error {
		_, err := w.Recipients.Intermediary.Box.Settle(ctx, tx, a.Tenant, st)
		return err
	})
}

// fail makes the delivery a dead letter of the intermediary tenant (step
// forward), which an operator retries or discards in the console, and
// turns the author's report red with the reason, in one transaction; the
// delivery's content stays for the retry.
func (w *AcceptWorker) fail(ctx context.Context, a AcceptArgs, d *Delivery, attempts int, cause, reason string) error {
	in := w.Recipients.Intermediary
	key, err := in.Keyring.Current(ctx, in.Pool, a.Tenant)
	if err != nil {
		return err
	}
	return db.InTenant(ctx, in.Pool, a.Tenant, func(tx pgx.Tx) error {
		err := jobs.RecordDeadLetter(ctx, tx, key, a.Tenant, jobs.Failure{Inbox: a.Inbox, MessageID: a.MessageID, Author: d.Author, Reader: a.Reader,
			MessageType: "osci:delivery", Step: jobs.StepForward, Cause: cause, Reason: reason, Attempts: attempts})
		if err != nil {
			return err
		}
		_, err = in.Box.Settle(ctx, tx, a.Tenant, msgbox.Settlement{Inbox: a.Inbox, Code: RecordNotAccepted, Reason: reason})
		return err
	})
}

// Retry enqueues the push of a delivery an operator retries from its
// dead letter (jobs.DeadLetters.Retriers, step forward), in tx.
func (r *Recipients) Retry(ctx context.Context, tx pgx.Tx, tenantID string, d jobs.DeadLetter) error {
	_, err := r.client.InsertTx(ctx, tx, AcceptArgs{Tenant: tenantID, Reader: d.Reader, Inbox: d.Inbox, MessageID: d.MessageID}, nil)
	return err
}

// push sends one acceptDelivery and reads the recipient's answer: its
// feedback code, or a *permanent refusal, or an error worth a retry.
func (w *AcceptWorker) push(ctx context.Context, box tenant.Postbox, url string, roots *x509.CertPool, d *Delivery, card ProcessCard) (Code, error) {
	a, err := w.Recipients.Intermediary.post(ctx, recipientClient(roots), box, url, OrderAcceptDelivery, d, card, "")
	if err != nil {
		return "", err
	}
	return a.code, nil
}

// recipientClient is the default HTTP client for passive recipients: TLS
// to the roots (nil: the system's), a minute per exchange.
func recipientClient(roots *x509.CertPool) *http.Client {
	return &http.Client{Timeout: time.Minute, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
}

// recipientAnswer is a passive recipient's answer: its first feedback
// code, and the message (a processDelivery's reply).
type recipientAnswer struct {
	code     Code
	msg      *MIMEMessage
	env      *xmlsafe.Document
	response *xmlsafe.Element
}

// post sends an order to a passive recipient — acceptDelivery, or
// processDelivery with the MessageId of the reply — signed by the
// intermediary tenant and encrypted to the postbox's cipher certificate,
// and reads the answer.
func (in *Intermediary) post(ctx context.Context, client *http.Client, box tenant.Postbox, url string, order Order, d *Delivery, card ProcessCard, replyID string) (*recipientAnswer, error) {
	t := box.Tenant
	signing := t.SigningKey()
	if signing == nil {
		return nil, &permanent{CodeOrderInternal, "the intermediary tenant has no signing key"}
	}
	var cipher *x509.Certificate
	if pairs := t.DecryptionKeys(); len(pairs) > 0 {
		cipher = pairs[0].Certificate()
	}
	challenge := newToken(12)
	req, err := recipientRequest(order, d, card, replyID, signing, cipher, challenge)
	if err != nil {
		return nil, err
	}
	if req, err = EncryptTransport(req, box.Identity.OSCI.Cipher()); err != nil {
		return nil, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(req))
	if err != nil {
		return nil, &permanent{CodeForwardNotReached, err.Error()}
	}
	hreq.Header.Set("Content-Type", "Multipart/Related")
	resp, err := client.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("osci: %s to %s: %w", order, url, err)
	}
	defer resp.Body.Close()
	limit := int64(1 << 20)
	if order == OrderProcessDelivery {
		limit = maxMessageDefault // the reply travels in it
	}
	out, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("osci: answer of %s: %w", url, err)
	}
	if int64(len(out)) > limit {
		return nil, &permanent{CodeRecipientInternal, fmt.Sprintf("the answer is larger than %d bytes", limit)}
	}
	return readRecipientAnswer(order, resp.StatusCode, out, t.DecryptionKeys(), box.Identity.OSCI.Signature(), challenge)
}

// recipientRequest builds the order (acceptDelivery or processDelivery)
// for a delivery: the reply's MessageId (processDelivery), the process
// card so far, the intermediary's certificates, the author's header
// blocks and content as received, signed by the intermediary.
func recipientRequest(order Order, d *Delivery, card ProcessCard, replyID string, signing *keys.KeyPair, cipher *x509.Certificate, challenge string) ([]byte, error) {
	var x xmlWriter
	x.raw(`<soap:Envelope xmlns:soap="` + SOAPNamespace + `" xmlns:osci="` + Namespace + `" xmlns:ds="` + xmldsig.Namespace +
		`" xmlns:xenc="http://www.w3.org/2001/04/xmlenc#" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soap:Header>`)
	x.raw(`<osci:ControlBlock Id="controlblock" soap:actor="` + soapActorNext + `" soap:mustUnderstand="1">`)
	x.element("osci:Challenge", challenge)
	x.raw(`</osci:ControlBlock><osci:ClientSignature Id="clientsignature" soap:actor="` + soapActorNext + `" soap:mustUnderstand="1"></osci:ClientSignature>`)
	x.raw(`<osci:DesiredLanguages Id="desiredlanguages" LanguagesList="de" soap:actor="` + soapActorNext + `" soap:mustUnderstand="1"></osci:DesiredLanguages>`)
	x.raw(`<osci:` + string(order) + ` Id="` + strings.ToLower(string(order)) + `" soap:actor="` + soapActorNext + `" soap:mustUnderstand="1">`)
	if order == OrderProcessDelivery {
		x.element("osci:MessageIdResponse", base64.StdEncoding.EncodeToString([]byte(replyID)))
	}
	writeCard(&x, card, "osci:ProcessCardBundle", true, false)
	x.raw(`</osci:` + string(order) + `>`)
	ids := []string{"controlblock", "desiredlanguages", strings.ToLower(string(order)), "intermediarycertificates"}
	x.raw(`<osci:IntermediaryCertificates Id="intermediarycertificates" soap:actor="http://www.w3.org/2001/12/soap-envelope/actor/none" soap:mustUnderstand="1">`)
	if cipher != nil {
		x.raw(`<osci:CipherCertificateIntermediary Id="intermediary_cipher_` + fingerprint(cipher) + `"><ds:X509Data>`)
		x.element("ds:X509Certificate", base64.StdEncoding.EncodeToString(cipher.Raw))
		x.raw(`</ds:X509Data></osci:CipherCertificateIntermediary>`)
	}
	x.raw(`<osci:SignatureCertificateIntermediary Id="intermediary_signature_` + fingerprint(signing.Certificate()) + `"><ds:X509Data>`)
	x.element("ds:X509Certificate", base64.StdEncoding.EncodeToString(signing.Certificate().Raw))
	x.raw(`</ds:X509Data></osci:SignatureCertificateIntermediary></osci:IntermediaryCertificates>`)
	for _, h := range d.Headers {
		ids = append(ids, h.ID)
		x.Write(h.XML)
	}
	x.raw(`</soap:Header><soap:Body Id="body">`)
	x.Write(d.Content)
	x.raw(`</soap:Body></soap:Envelope>`)
	ids = append(ids, "body")
	var external []xmldsig.External
	for _, a := range d.Attachments {
		external = append(external, xmldsig.External{URI: "cid:" + a.ContentID, Data: a.Data})
	}
	signer := &xmldsig.Signer{Key: signing.Key, Certificates: signing.Chain[:min(1, len(signing.Chain))]}
	envelope, err := signer.SignDetached(x.Bytes(), "clientsignature", ids, external, c14n.Method{})
	if err != nil {
		return nil, fmt.Errorf("osci: sign %s: %w", order, err)
	}
	return packMIME(envelope, d.Attachments...), nil
}

// readRecipientAnswer reads a passive recipient's answer to the order:
// transport-decrypted with the intermediary's keys, signed by the
// recipient's signature certificate, answering the challenge; its first
// feedback code 0xxx is acceptance, 9xxx a refusal. A SOAP fault with an
// OSCI code is a refusal too; other failures (HTTP errors, no OSCI
// answer) are worth a retry.
func readRecipientAnswer(order Order, status int, out []byte, pairs []*keys.KeyPair, recipient *x509.Certificate, challenge string) (*recipientAnswer, error) {
	plain, _, err := DecryptTransport(out, pairs)
	var msg *MIMEMessage
	var env *xmlsafe.Document
	if err == nil {
		msg, env, err = parseEnvelope(plain)
	}
	if err != nil {
		return nil, fmt.Errorf("osci: the passive recipient answered HTTP %d, no OSCI message (%v): %q", status, err, truncate(out))
	}
	if fault := env.Root.Child(SOAPNamespace, "Body").Child(SOAPNamespace, "Fault"); fault != nil {
		var code Code
		for _, c := range fault.FindAll(Namespace, "Code") {
			code = Code(c.TrimmedText())
		}
		text := ""
		if s := fault.Child("", "faultstring"); s != nil {
			text = s.TrimmedText()
		}
		if code == "" || code == CodeInternal {
			return nil, fmt.Errorf("osci: the passive recipient answered a SOAP fault (HTTP %d): %s", status, text)
		}
		return nil, &permanent{CodeNotAccepted, fmt.Sprintf("fault %s: %s", code, text)}
	}
	response := env.Root.FindAll(Namespace, order.ResponseElement())
	if len(response) != 1 {
		return nil, fmt.Errorf("osci: the passive recipient's answer (HTTP %d) holds no %s", status, order.ResponseElement())
	}
	var supplier *xmlsafe.Element
	for _, sig := range env.Root.FindAll(xmldsig.Namespace, "Signature") {
		if sig.Parent != nil && sig.Parent.Name.Local == "SupplierSignature" {
			supplier = sig
		}
	}
	if supplier == nil {
		return nil, &permanent{CodeRecipientSigInvalid, "the answer is not signed"}
	}
	v := &xmldsig.Verifier{Trust: keys.NewTrustStore([]*x509.Certificate{recipient}), Resolve: msg.Resolve}
	res, err := v.Verify(env, supplier)
	if err != nil {
		return nil, &permanent{CodeRecipientSigInvalid, err.Error()}
	}
	if !covers(res, env.Root.Child(SOAPNamespace, "Body")) || !covers(res, response[0]) {
		return nil, &permanent{CodeRecipientSigInvalid, "the recipient's signature leaves out its answer or the body"}
	}
	if r := env.Root.FindAll(Namespace, "Response"); len(r) != 1 || r[0].TrimmedText() != challenge {
		return nil, &permanent{CodeRecipientSigInvalid, "the answer does not answer this request's challenge"}
	}
	codes := response[0].FindAll(Namespace, "Code")
	if len(codes) == 0 {
		return nil, &permanent{CodeNotAccepted, "the answer carries no feedback"}
	}
	code := Code(codes[0].TrimmedText())
	if !strings.HasPrefix(string(code), "0") {
		return nil, &permanent{CodeNotAccepted, fmt.Sprintf("the recipient answered %s", code)}
	}
	return &recipientAnswer{code: code, msg: msg, env: env, response: response[0]}, nil
}

// mediate carries out a mediateDelivery: the request goes to the passive
// recipient at once as processDelivery, and its reply comes back in the
// response — content, attachments and the recipient's certificates as
// the recipient sent them, end-to-end encrypted to the client — with the
// process cards of request and reply. Nothing is stored: request and
// reply only pass through. A recipient out of reach is 9809, a refusal
// 9805, a bad signature 9807, an answer without reply 9806.
func (in *Intermediary) mediate(ctx context.Context, x *exchange) ([]Code, error) {
	req := x.req
	box, err := x.addressee()
	if err != nil {
		return nil, err
	}
	url, err := passiveAddress(req, box)
	if err != nil {
		return nil, err
	}
	d, err := DeliveryOf(req)
	if err != nil {
		return nil, err
	}
	if d.MessageID == "" {
		d.MessageID = newMessageID()
	}
	now := in.Box.Now()
	inspections, warnings := inspect(req, x.tenant.SignerTrust(""), now)
	card := ProcessCard{MessageID: d.MessageID, RecentModification: now, Creation: now, Forwarding: &now, Subject: d.Subject, Inspections: inspections}
	replyID := newMessageID()
	_, roots := box.Identity.OSCI.PassiveRecipient()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	a, err := in.post(ctx, recipientClient(roots), box, url, OrderProcessDelivery, d, card, replyID)
	var p *permanent
	switch {
	case errors.As(err, &p):
		in.Metrics.pushed(x.tenant.ID, OrderProcessDelivery, "refused")
		return nil, refuse(p.code, "%s", p.detail)
	case err != nil:
		in.Metrics.pushed(x.tenant.ID, OrderProcessDelivery, "unreachable")
		return nil, refuse(CodeForwardNotReached, "the passive recipient %s: %v", box.Identity.ID, err)
	}
	in.Metrics.pushed(x.tenant.ID, OrderProcessDelivery, "accepted")
	reply, err := replyOf(a, replyID)
	if err != nil {
		return nil, err
	}
	received := in.Box.Now()
	card.Reception, card.RecentModification = &received, received
	x.resp.ProcessCards = []ProcessCard{card}
	x.resp.ReplyCard = &ProcessCard{MessageID: replyID, RecentModification: received, Creation: received, Forwarding: &received, Subject: reply.Subject}
	x.resp.Delivery = reply
	in.Log.Info("osci delivery mediated", "tenant", x.tenant.ID, "reader", box.Identity.ID, "message_id", d.MessageID, "reply_id", replyID, "code", string(a.code))
	return warnings, nil
}

// replyOf reads the reply a passive recipient's responseToProcessDelivery
// carries, as it came: its certificates header, content package and
// attachments.
func replyOf(a *recipientAnswer, replyID string) (*Delivery, error) {
	body := a.env.Root.Child(SOAPNamespace, "Body")
	pkg := body.Child(Namespace, "ContentPackage")
	if pkg == nil {
		return nil, refuse(CodeAcceptedWithoutReply, "the passive recipient's answer holds no content for the client")
	}
	reply := &Delivery{MessageID: replyID, Content: canonical(pkg)}
	if s := a.response.Child(Namespace, "Subject"); s != nil {
		reply.Subject = s.Text
	}
	if h := a.env.Root.Child(SOAPNamespace, "Header"); h != nil {
		if nic := h.Child(Namespace, "NonIntermediaryCertificates"); nic != nil {
			id, _ := nic.Attribute("Id")
			reply.Headers = []Header{{ID: id, XML: canonical(nic)}}
		}
	}
	for _, p := range a.msg.Parts {
		if p != a.msg.Root() {
			reply.Attachments = append(reply.Attachments, Attachment{ContentID: p.ContentID, ContentType: cmp.Or(p.Header.Get("Content-Type"), "application/octet-stream"), Data: p.Body, Size: int64(len(p.Body))})
		}
	}
	return reply, nil
}
