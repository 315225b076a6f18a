package osci

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/msgbox"
	"github.com/parzelle/parzelle/sealing"
	"github.com/parzelle/parzelle/tenant"
	"github.com/parzelle/parzelle/xmldsig"
	"github.com/parzelle/parzelle/xmlenc"
	"github.com/parzelle/parzelle/xmlsafe"
	"github.com/parzelle/parzelle/xmlschema"
	"github.com/parzelle/parzelle/xta"
)

// Path is where the intermediary listens on the transport listener: POST
// Path for transport-encrypted requests (the tenant whose cipher
// certificate the request is encrypted to answers), POST Path/{tenant}
// for a tenant's intermediary identity, plain or encrypted.
const Path = "/osci"

// TransportName is the msgbox transport name of OSCI postboxes.
const TransportName = "osci"

// Record codes of an OSCI delivery's report (its process card).
const (
	// RecordProcessCard holds the delivery's subject and the inspections
	// of its certificates (sealed, JSON).
	RecordProcessCard = "OSCI_PROCESS_CARD"
)

// Intermediary is the OSCI-Transport 1.2 intermediary role: postboxes for
// the tenants' OSCI identities, addressed by their cipher certificates,
// kept as msgbox boxes; each tenant answers as its own intermediary
// identity, with its decryption keys (transport layer) and its signing key
// (SupplierSignature), which rotate with its tenant file.
type Intermediary struct {
	Pool    *pgxpool.Pool
	Box     *msgbox.Store
	Tenants func() *tenant.Set
	Dialogs *Dialogs
	Log     *slog.Logger
	Metrics *Metrics
	// Schemas, when they hold the OSCI 1.2 schemas, check every request
	// (decrypted) against its order's envelope schema: a delivery that is
	// not valid is refused (9300) rather than passed on to its addressee.
	Schemas *xmlschema.Registry
	// MaxBytes bounds a request (default 64 MiB).
	MaxBytes int64
	// MaxPartialKB bounds a message sent in chunks (partialStoreDelivery;
	// default DefaultMaxPartialKB).
	MaxPartialKB int64
	// Keyring seals the chunks of partial deliveries at rest.
	Keyring *sealing.Keyring
}

// Metrics are the intermediary's requests per tenant, order and feedback
// code, and their durations.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	pushes   *prometheus.CounterVec
}

// NewMetrics registers the intermediary's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parzelle_osci_requests_total",
			Help: "OSCI requests answered, by intermediary tenant, order and the outcome's feedback code."}, []string{"tenant", "order", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "parzelle_osci_request_seconds",
			Help: "Time to answer an OSCI request, by order.", Buckets: prometheus.ExponentialBuckets(0.002, 2, 14)}, []string{"order"}),
	}
	m.pushes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parzelle_osci_passive_total",
		Help: "Orders to passive recipients (acceptDelivery, processDelivery), by intermediary tenant, order and outcome: accepted, refused, retry, unreachable."}, []string{"tenant", "order", "outcome"})
	reg.MustRegister(m.requests, m.duration, m.pushes)
	return m
}

// pushed counts an order to a passive recipient.
func (m *Metrics) pushed(tenantID string, order Order, outcome string) {
	if m != nil {
		m.pushes.WithLabelValues(tenantID, string(order), outcome).Inc()
	}
}

// Mount serves the intermediary through handle (node.HandleTransport).
func (in *Intermediary) Mount(handle func(string, http.Handler)) {
	handle("POST "+Path, in)
	handle("POST "+Path+"/{tenant}", in)
}

// exchange is one request on its way through the intermediary.
type exchange struct {
	tenant  *tenant.Config
	req     *Request
	dialog  Dialog
	resp    *Response
	set     *tenant.Set
	started time.Time
	// signing is the tenant's key for the SupplierSignature.
	signing *keys.KeyPair
}

// signer signs the exchange's responses.
func (x *exchange) signer() *xmldsig.Signer {
	return &xmldsig.Signer{Key: x.signing.Key, Certificates: x.signing.Chain}
}

// ServeHTTP answers one OSCI request: a signed response with the order's
// feedback, or a SOAP fault (HTTP 500) for the codes 9000–9503.
func (in *Intermediary) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x := &exchange{set: in.Tenants(), started: time.Now()}
	out, err := in.serve(r, x)
	order, tenantID := "unknown", ""
	if x.req != nil {
		order = string(x.req.Order)
	}
	if x.tenant != nil {
		tenantID = x.tenant.ID
	}
	code := CodeInternal
	if err != nil {
		var oe *Error
		if !errors.As(err, &oe) {
			in.Log.Error("osci request failed", "tenant", tenantID, "order", order, "error", err)
			oe = &Error{Code: CodeInternal}
		} else {
			in.Log.Warn("osci request refused", "tenant", tenantID, "order", order, "code", string(oe.Code), "detail", oe.Detail, "cause", oe.Err, "remote", r.RemoteAddr)
		}
		code = oe.Code
		w.Header().Set("Content-Type", "text/xml; charset=UTF-8")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write(faultMessage(oe))
	} else {
		code = x.resp.Feedback[0]
		w.Header().Set("Content-Type", "text/xml; charset=UTF-8")
		_, _ = w.Write(out)
		in.Log.Info("osci request answered", "tenant", tenantID, "order", order, "code", string(code),
			"conversation_id", x.resp.Control.ConversationID, "message_id", x.messageID(), "seconds", time.Since(x.started).Seconds())
	}
	if in.Metrics != nil && tenantID != "" {
		in.Metrics.requests.WithLabelValues(tenantID, order, string(code)).Inc()
		in.Metrics.duration.WithLabelValues(order).Observe(time.Since(x.started).Seconds())
	}
}

// messageID is the MessageId the exchange handed out or carried, for logs.
func (x *exchange) messageID() string {
	switch {
	case x.resp.MessageID != "":
		return x.resp.MessageID
	case x.resp.Delivery != nil:
		return x.resp.Delivery.MessageID
	case len(x.resp.ProcessCards) > 0:
		return x.resp.ProcessCards[0].MessageID
	}
	return ""
}

// serve reads, checks and answers the request; an *Error whose code is a
// fault code is refused as a SOAP fault, the others are feedback.
func (in *Intermediary) serve(r *http.Request, x *exchange) ([]byte, error) {
	limit := in.MaxBytes
	if limit == 0 {
		limit = maxMessageDefault
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, limit))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, refuse(CodeMessageTooLarge, "the message is larger than the %d bytes this intermediary takes", limit)
	case err != nil:
		return nil, refuse(CodeNoOSCIMessage, "reading the request: %v", err)
	}
	var pairs []*keys.KeyPair
	owner := map[*keys.KeyPair]*tenant.Config{}
	if name := r.PathValue("tenant"); name != "" {
		if x.tenant = x.set.Tenant(name); x.tenant == nil {
			return nil, refuse(CodeNoDecryptionKey, "this node has no intermediary identity %q", name)
		}
		pairs = x.tenant.DecryptionKeys()
	} else {
		for _, t := range x.set.Tenants() {
			for _, kp := range t.DecryptionKeys() {
				pairs = append(pairs, kp)
				owner[kp] = t
			}
		}
	}
	x.req, err = ParseRequest(body, Options{Keys: pairs, MaxBytes: limit})
	refused := err
	if err != nil {
		var oe *Error
		if !errors.As(err, &oe) || oe.Code.Fault() {
			return nil, err
		}
		// A signature that fails is feedback, not a fault: answer the
		// request as read without its signature, refusing it.
		if x.req, _ = ParseRequest(body, Options{Keys: pairs, MaxBytes: limit, SkipSignature: true}); x.req == nil {
			return nil, err
		}
	}
	if refused == nil && x.req.Signature == nil && slices.Contains(signedOrders, x.req.Order) {
		refused = refuse(CodeUnsigned, "%s must carry a ClientSignature", x.req.Order)
	}
	if refused == nil && in.Schemas != nil {
		set := xmlschema.OSCI12(x.req.Order.schemaName())
		if in.Schemas.Has(set) {
			if err := in.Schemas.Validate(set, x.req.MIME.Root().Body); err != nil {
				return nil, refuse(CodeNoValidRequest, "the %s request does not match the OSCI 1.2 schema: %v", x.req.Order, err)
			}
		}
	}
	if x.tenant == nil {
		if x.req.Transport == nil {
			return nil, refuse(CodeNoDecryptionKey, "a plain request names its intermediary in the URL: POST %s/{tenant}", Path)
		}
		x.tenant = owner[x.req.Transport.Recipient]
	}
	if x.signing = x.tenant.SigningKey(); x.signing == nil {
		return nil, fmt.Errorf("osci: tenant %s has no signing key for its SupplierSignature", x.tenant.ID)
	}
	if err = refused; err == nil {
		err = in.answer(r.Context(), x)
	}
	var oe *Error
	switch {
	case errors.As(err, &oe) && !oe.Code.Fault() && x.resp == nil:
		// Refused before the dialog moved on (a missing signature, an
		// explicit order outside a dialog): feedback, not a fault, in a
		// response that names the request's conversation.
		in.Log.Warn("osci order refused", "tenant", x.tenant.ID, "order", string(x.req.Order), "code", string(oe.Code), "detail", oe.Detail)
		c := x.req.Control
		if c.ConversationID == "" {
			c.ConversationID = newConversationID()
		}
		x.resp = &Response{Order: x.req.Order, Control: ControlBlock{ConversationID: c.ConversationID, SequenceNumber: c.SequenceNumber, Response: c.Challenge},
			Feedback: []Code{oe.Code}, Language: language(x.req.Languages)}
		if x.req.Transport != nil && c.ConversationID != "" {
			// The encrypted answer goes to the dialog's cipher
			// certificate; the dialog itself does not move on.
			err := db.InTenant(r.Context(), in.Pool, x.tenant.ID, func(tx pgx.Tx) error {
				x.dialog.Cipher, err = in.Dialogs.Cipher(r.Context(), tx, x.tenant.ID, c.ConversationID)
				return err
			})
			if err != nil {
				return nil, err
			}
		}
	case err != nil:
		return nil, err
	}
	if x.resp.Order.partial() && x.resp.Chunk == nil {
		x.resp.Chunk = echoChunk(x.req.OrderElement)
	}
	x.resp.Certificate = x.signing.Certificate()
	out, err := x.resp.Build(x.signer())
	if err != nil || x.req.Transport == nil {
		return out, err
	}
	to, err := x.clientCipher()
	if err != nil {
		return nil, err
	}
	return EncryptTransport(out, to)
}

// clientCipher is the certificate an answer to a transport-encrypted
// request is encrypted to: the client's CipherCertificateOriginator in the
// request, else the one that opened the dialog (9500 when there is none).
func (x *exchange) clientCipher() (*x509.Certificate, error) {
	if certs := x.req.Certificates["CipherCertificateOriginator"]; len(certs) > 0 {
		return certs[0], nil
	}
	if x.dialog.Cipher != nil {
		return x509.ParseCertificate(x.dialog.Cipher)
	}
	return nil, refuse(CodeNoClientCipherCert, "a transport-encrypted request names the client's CipherCertificateOriginator (in it, or in its dialog's initDialog) for the encrypted answer")
}

// signedOrders must be signed by the client: they store, collect or
// inspect deliveries.
var signedOrders = []Order{OrderStoreDelivery, OrderForwardDelivery, OrderFetchDelivery, OrderFetchProcessCard, OrderPartialStoreDelivery, OrderPartialFetchDelivery}

// answer applies the dialog rules and carries out the order, leaving the
// response in x.resp. Refusals of the request itself (before the dialog
// step) are errors; an order that fails after it is feedback in a response
// that carries the dialog on.
func (in *Intermediary) answer(ctx context.Context, x *exchange) error {
	req := x.req
	err := db.InTenant(ctx, in.Pool, x.tenant.ID, func(tx pgx.Tx) (err error) {
		x.dialog, err = in.Dialogs.Step(ctx, tx, x.tenant.ID, req)
		return err
	})
	if err != nil {
		return err
	}
	x.resp = &Response{Order: req.Order, Control: x.dialog.Control, Language: language(req.Languages)}
	if req.Transport != nil {
		if _, err := x.clientCipher(); err != nil {
			return err
		}
	}
	done := CodeDoneDialogOpen
	if req.Order == OrderExitDialog || req.Control.ConversationID == "" && req.Order != OrderInitDialog {
		done = CodeDoneDialogClosed
	}
	if x.dialog.Received != "" && req.Order != OrderFetchDelivery {
		in.confirm(ctx, x)
	}
	var warnings []Code
	switch req.Order {
	case OrderInitDialog, OrderExitDialog:
	case OrderGetMessageID:
		err = in.issueMessageID(ctx, x)
	case OrderStoreDelivery, OrderForwardDelivery:
		warnings, err = in.store(ctx, x)
	case OrderFetchDelivery:
		warnings, err = in.fetch(ctx, x)
	case OrderFetchProcessCard:
		err = in.processCards(ctx, x)
	case OrderMediateDelivery:
		warnings, err = in.mediate(ctx, x)
	case OrderPartialStoreDelivery:
		warnings, err = in.storeChunk(ctx, x)
	case OrderPartialFetchDelivery:
		warnings, err = in.fetchChunk(ctx, x)
	default:
		err = refuse(CodeOrderInternal, "this intermediary does not carry out %s yet", req.Order)
	}
	var oe *Error
	switch {
	case errors.As(err, &oe) && oe.Code.Fault():
		return err
	case errors.As(err, &oe):
		in.Log.Warn("osci order refused", "tenant", x.tenant.ID, "order", string(req.Order), "code", string(oe.Code), "detail", oe.Detail,
			"conversation_id", x.dialog.Control.ConversationID)
		x.resp.Feedback = []Code{oe.Code}
	case err != nil:
		return err
	default:
		x.resp.Feedback = append([]Code{done}, warnings...)
	}
	return nil
}

// language is the client's first desired language the intermediary
// speaks, German by default.
func language(desired []string) string {
	for _, l := range desired {
		if l == "de" || l == "en" {
			return l
		}
	}
	return "de"
}

// authorOf names an OSCI author in the message boxes: its signature
// certificate's SHA-256, so that its process cards are found by the same
// certificate.
func authorOf(cert *x509.Certificate) string {
	h := sha256.Sum256(cert.Raw)
	return "osci:" + hex.EncodeToString(h[:])
}

// newMessageID is a new MessageId of this intermediary.
func newMessageID() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return "parzelle-" + base64.RawURLEncoding.EncodeToString(b[:])
}

// issueMessageID hands out a new MessageId and remembers it for the
// storeDelivery that uses it.
func (in *Intermediary) issueMessageID(ctx context.Context, x *exchange) error {
	id := newMessageID()
	err := db.InTenant(ctx, in.Pool, x.tenant.ID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO osci_message_id (tenant_id, message_id) VALUES ($1, $2)`, x.tenant.ID, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("osci: remember MessageId: %w", err)
	}
	x.resp.MessageID = id
	return nil
}

// cardNote is what a delivery's report keeps for its process card.
type cardNote struct {
	Subject     string       `json:"subject,omitempty"`
	Inspections []Inspection `json:"inspections"`
}

// store puts a storeDelivery's delivery into the addressee's postbox, as
// received, and answers with its process card.
func (in *Intermediary) store(ctx context.Context, x *exchange) ([]Code, error) {
	req := x.req
	d, err := DeliveryOf(req)
	if err != nil {
		return nil, err
	}
	box, err := x.addressee()
	if err != nil {
		return nil, err
	}
	if req.Order == OrderForwardDelivery {
		if _, err := passiveAddress(req, box); err != nil {
			return nil, err
		}
	}
	var issued bool
	err = db.InTenant(ctx, in.Pool, x.tenant.ID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM osci_message_id WHERE tenant_id = $1 AND message_id = $2 AND stored_as IS NULL)`, x.tenant.ID, d.MessageID).Scan(&issued)
	})
	if err != nil {
		return nil, fmt.Errorf("osci: look up MessageId: %w", err)
	}
	if !issued {
		return nil, refuse(CodeIllegalMessageID, "the MessageId %q was not handed out by this intermediary, or was used already", d.MessageID)
	}
	now := in.Box.Now()
	inspections, warnings := inspect(req, x.tenant.SignerTrust(""), now)
	note := cardNote{Subject: d.Subject, Inspections: inspections}
	noteJSON, _ := json.Marshal(note)
	m := &msgbox.Message{AuthorTenant: x.tenant.ID, MessageID: d.MessageID, Author: authorOf(req.Signer()), Reader: box.Identity.ID, Transport: TransportName,
		Service: "urn:parzelle:osci:storeDelivery", MessageType: "osci:delivery", SentAt: now,
		Records: []msgbox.Record{
			{At: now, Level: "info", Code: msgbox.RecordAccepted, Reason: "OSCI-Zustellung vom Intermediär angenommen"},
			{At: now, Level: "info", Code: RecordProcessCard, Reason: string(noteJSON)},
		}}
	if req.MetaData != nil {
		m.Metadata = string(canonical(req.MetaData))
	}
	if xtaBound(box) {
		if err := forRegister(req, box, m, in.Schemas, now); err != nil {
			return nil, err
		}
	} else {
		first := d.Marshal()
		m.Parts = append(m.Parts, msgbox.Part{ContentType: DeliveryContentType, Data: first, Size: int64(len(first))})
		for _, a := range d.Attachments {
			m.Parts = append(m.Parts, msgbox.Part{Attachment: true, ContentType: a.ContentType, Ref: a.ContentID, Data: a.Data, Open: a.Open, Size: a.Size})
		}
	}
	var be *msgbox.Error
	if err := in.Box.Accept(ctx, m); errors.As(err, &be) && be.Kind == msgbox.KindMessageIDUsed {
		return nil, refuse(CodeIllegalMessageID, "the MessageId %q was used already", d.MessageID)
	} else if err != nil {
		return nil, fmt.Errorf("osci: store delivery %s: %w", d.MessageID, err)
	}
	err = db.InTenant(ctx, in.Pool, x.tenant.ID, func(tx pgx.Tx) error {
		if m.MessageID != d.MessageID {
			// Stored under its XTA MessageID: the MessageId stays to find it.
			_, err := tx.Exec(ctx, `UPDATE osci_message_id SET stored_as = $3, issued_at = now() WHERE tenant_id = $1 AND message_id = $2`, x.tenant.ID, d.MessageID, m.MessageID)
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM osci_message_id WHERE tenant_id = $1 AND message_id = $2`, x.tenant.ID, d.MessageID)
		return err
	})
	if err != nil {
		// The delivery is stored; the MessageId's uniqueness in the boxes
		// refuses a second use all the same.
		in.Log.Warn("osci: forget used MessageId", "tenant", x.tenant.ID, "message_id", d.MessageID, "error", err)
	}
	x.resp.ProcessCards = []ProcessCard{{MessageID: d.MessageID, RecentModification: now, Creation: now, Subject: d.Subject, Inspections: note.Inspections}}
	return warnings, nil
}

// addressee is the postbox a delivery is addressed to by its
// CipherCertificateAddressee.
func (x *exchange) addressee() (tenant.Postbox, error) {
	addressee := x.req.Certificates["CipherCertificateAddressee"]
	if len(addressee) != 1 {
		return tenant.Postbox{}, refuse(CodeNoValidRequest, "a %s names one CipherCertificateAddressee, not %d", x.req.Order, len(addressee))
	}
	box, ok := x.set.Postbox(addressee[0].Raw)
	if !ok {
		return box, refuse(CodeNoValidRequest, "no postbox of this intermediary has the addressee's cipher certificate %q", addressee[0].Subject)
	}
	return box, nil
}

// passiveAddress is the address of the passive recipient a forwardDelivery
// or mediateDelivery goes to: the one configured for the addressee's
// postbox, which the order's ContentReceiver must name — the intermediary
// never posts to an address a client chose.
func passiveAddress(req *Request, box tenant.Postbox) (string, error) {
	url, _ := box.Identity.OSCI.PassiveRecipient()
	var receiver string
	if cr := req.OrderElement.Child(Namespace, "ContentReceiver"); cr != nil {
		receiver, _ = cr.Attribute("URI")
	}
	switch {
	case url == "":
		return "", refuse(CodeForwardNotReached, "the addressee %s is no passive recipient: its deliveries are stored for collection (storeDelivery)", box.Identity.ID)
	case receiver != url:
		return "", refuse(CodeForwardNotReached, "the ContentReceiver %q is not the address of the passive recipient %s this intermediary knows", receiver, box.Identity.ID)
	}
	return url, nil
}

// xtaBound reports whether deliveries to the postbox become XTA
// messages of its identity: a register inbox, or an XTA account reachable
// over OSCI too, whose cipher certificate is one of the tenant's
// decryption keys (the node reads what comes to it; else the identity's
// owner collects the deliveries over OSCI with its own key).
func xtaBound(box tenant.Postbox) bool {
	if _, ok := box.Tenant.Inbox(box.Identity.ID); ok {
		return true
	}
	if !slices.Contains(box.Identity.Transports, "xta") {
		return false
	}
	for _, kp := range box.Tenant.DecryptionKeys() {
		if c := box.Identity.OSCI.Cipher(); c != nil && bytes.Equal(kp.Certificate().Raw, c.Raw) {
			return true
		}
	}
	return false
}

// forRegister makes a delivery to a register inbox (or an XTA account,
// xtaBound) the message the register pipeline applies (or the account
// fetches over XTA), as if it had come over XTA: the XTA
// MessageMetaData header names its author (whom the signer must be
// trusted for, through the tenant's keys.trust), reader, service and
// message type; the content, encrypted to the tenant's decryption key,
// is decrypted, its author's signature (if any) verified, and its first
// content is the process message, checked against its installed schema
// as the tenant's schema policy says (as XTA does: refused with 9300 and
// the problems when invalid) and sealed at rest like any other. The
// signer keeps the report (its process cards).
func forRegister(req *Request, box tenant.Postbox, m *msgbox.Message, schemas *xmlschema.Registry, now time.Time) error {
	if req.MetaData == nil {
		return refuse(CodeNoValidRequest, "a delivery to the register inbox %s names its author, service and message type in the XTA MessageMetaData header (Id=\"MetaData\")", box.Identity.ID)
	}
	meta, err := xta.ReadMetaData(req.MetaData)
	if err != nil {
		return refuse(CodeNoValidRequest, "the XTA MessageMetaData: %v", err)
	}
	if meta.Reader != box.Identity.ID {
		return refuse(CodeNoValidRequest, "the MessageMetaData names the reader %s, the delivery is addressed to the postbox of %s", meta.Reader, box.Identity.ID)
	}
	trust := box.Tenant.SignerTrust(meta.Author)
	if _, err := trust.Verify(req.Signer(), nil, now); err != nil {
		return refuse(CodeClientSignerBad, "the client's signature certificate %q is not trusted for the author %s here: %v", req.Signer().Subject, meta.Author, err)
	}
	doc, attachments, err := registerContent(req, box.Tenant.DecryptionKeys(), trust, now)
	if err != nil {
		return err
	}
	m.Account, m.Author = m.Author, meta.Author
	m.Service, m.BusinessScenario, m.MessageType = meta.Service, meta.BusinessScenario, meta.MessageType
	if _, register := box.Tenant.Inbox(box.Identity.ID); !register && meta.MessageID != "" {
		// An XTA account knows the message by its XTA MessageID (fetch,
		// close, report); the same message sent twice is refused (9801).
		m.MessageID = meta.MessageID
	}
	m.Records = append(m.Records, msgbox.Record{At: now, Level: "info", Code: msgbox.RecordAccepted,
		Reason: fmt.Sprintf("Inhalt für den Registerposteingang entschlüsselt; Autor %s (Signatur des OSCI-Clients vertrauenswürdig)", meta.Author)})
	check, err := msgbox.CheckSchema(schemas, box.Tenant.Schemas, doc)
	if err != nil {
		return fmt.Errorf("osci: schema check: %w", err)
	}
	switch {
	case !check.XML:
		return refuse(CodeNoValidRequest, "the process message for the register inbox %s is no XML", box.Identity.ID)
	case check.Refused:
		return refuse(CodeNoValidRequest, "no schema is installed on this node for the namespace %q of the process message, and the policy of tenant %s refuses such messages", check.Namespace, box.Tenant.ID)
	case check.Missing:
		m.Records = append(m.Records, msgbox.Record{At: now, Level: "warning", Code: msgbox.RecordSchemaMissing,
			Reason: fmt.Sprintf("Kein Schema für den Namensraum %s installiert: Nachricht ungeprüft angenommen (Richtlinie des Mandanten: warnen)", check.Namespace)})
	case check.Invalid != nil:
		return refuse(CodeNoValidRequest, "the process message is not valid against %s: %s", check.Set, check.Invalid.Summary(10))
	default:
		m.Validated = true
		m.Records = append(m.Records, msgbox.Record{At: now, Level: "info", Code: msgbox.RecordValidated, Reason: fmt.Sprintf("Inhalt gegen das Schema %s geprüft", check.Set)})
	}
	m.Parts = append([]msgbox.Part{{ContentType: "text/xml", Data: doc, Size: int64(len(doc))}}, attachments...)
	return nil
}

// registerContent reads the process message from a delivery's content
// package: one ContentContainer, plain or encrypted to one of the keys,
// whose signatures must verify against the author's trust.
func registerContent(req *Request, pairs []*keys.KeyPair, trust *keys.TrustStore, now time.Time) ([]byte, []msgbox.Part, error) {
	pkg := req.Body.Child(Namespace, "ContentPackage")
	if len(pkg.Children) != 1 {
		return nil, nil, refuse(CodeNoValidRequest, "a delivery to a register inbox holds one content container, not %d", len(pkg.Children))
	}
	container, doc := pkg.Children[0], req.Envelope
	if container.Name.Space == xmlenc.Namespace && container.Name.Local == "EncryptedData" {
		res, err := xmlenc.Decrypt(container, xmlenc.DecryptOptions{Keys: pairs, Resolve: req.MIME.Resolve})
		if err != nil {
			return nil, nil, refuse(CodeNoValidRequest, "the content is not encrypted to the register inbox's cipher certificate, or does not decrypt: %v", err)
		}
		if doc, err = xmldsig.ParseDocument(bytes.NewReader(res.Plaintext)); err != nil {
			return nil, nil, refuse(CodeNoValidRequest, "the decrypted content is no XML a hardened parser takes: %v", err)
		}
		container = doc.Root
	}
	if container.Name.Space != Namespace || container.Name.Local != "ContentContainer" {
		return nil, nil, refuse(CodeNoValidRequest, "the content package holds <%s>, not a ContentContainer", container.Name.Local)
	}
	for _, sig := range container.ChildrenNamed(xmldsig.Namespace, "Signature") {
		v := &xmldsig.Verifier{Trust: trust, At: now, Resolve: req.MIME.Resolve}
		if _, err := v.Verify(doc, sig); err != nil {
			return nil, nil, refuse(CodeSignatureInvalid, "the author's signature over the content container: %v", err)
		}
	}
	var b64 *xmlsafe.Element
	if c := container.Child(Namespace, "Content"); c != nil {
		b64 = c.Child(Namespace, "Base64Content")
	}
	if b64 == nil {
		return nil, nil, refuse(CodeNoValidRequest, "the content container's first Content holds no Base64Content (the process message)")
	}
	data, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(b64.Text), ""))
	if err != nil || len(data) == 0 {
		return nil, nil, refuse(CodeNoValidRequest, "the Base64Content is no base64 or empty")
	}
	// The other contents that name an attachment (href="cid:…") are the
	// message's attachments, as received.
	var parts []msgbox.Part
	for _, c := range container.ChildrenNamed(Namespace, "Content")[1:] {
		href, _ := c.Attribute("href")
		if !strings.HasPrefix(href, "cid:") {
			continue
		}
		p, err := req.MIME.partOf(href)
		if err != nil {
			return nil, nil, refuse(CodeNoValidRequest, "the content names %s, which the message does not carry", href)
		}
		part := msgbox.Part{Attachment: true, ContentType: cmp.Or(p.Header.Get("Content-Type"), "application/octet-stream"), Filename: p.ContentID, Ref: p.ContentID,
			Data: p.Body, Size: int64(len(p.Body))}
		if p.streamed {
			part.Data, part.Size, part.Open = nil, p.Size, func() (io.Reader, error) { return req.MIME.Open(p) }
		}
		parts = append(parts, part)
	}
	return data, parts, nil
}

// expiredCodes are the 37xx warnings for a delivery's certificates
// outside their validity, by the certificate's role.
var expiredCodes = map[string]Code{"SignatureCertificateOriginator": CodeAuthorSignerExpired, "CipherCertificateOriginator": CodeAuthorCipherExpired,
	"CipherCertificateAddressee": CodeRecipientCipherExpired, "CipherCertificateOtherReader": CodeReaderCipherExpired}

// inspect checks the certificates a delivery carries against the
// intermediary tenant's trusted signers (keys.trust.signers: OSCI CAs as
// anchors, or certificates pinned), for the process card, and returns the
// warnings: 37xx for a certificate outside its validity, 3707 when a
// certificate could not be checked (no anchor here for it).
func inspect(req *Request, trust *keys.TrustStore, at time.Time) ([]Inspection, []Code) {
	var out []Inspection
	var warnings []Code
	warn := func(c Code) {
		if !slices.Contains(warnings, c) {
			warnings = append(warnings, c)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(req.Certificates)) {
		for _, c := range req.Certificates[name] {
			in := Inspection{At: at, Subject: c.Subject.String(), Issuer: c.Issuer.String(), Serial: c.SerialNumber.String(), Math: "indeterminate", Offline: "indeterminate"}
			switch _, err := trust.Verify(c, nil, at); {
			case err == nil:
				in.Math, in.Offline = "ok", "valid"
			case at.Before(c.NotBefore) || at.After(c.NotAfter):
				in.Offline = "invalid"
				if code, ok := expiredCodes[name]; ok {
					warn(code)
				}
			default:
				warn(CodeCertCheckIncomplete)
			}
			out = append(out, in)
		}
	}
	slices.Sort(warnings)
	return out, warnings
}

// postbox is the postbox of the dialog's opener, which its signed fetch
// orders collect; a signer other than the postbox's owner finds nothing.
func (in *Intermediary) postbox(x *exchange, none Code) (tenant.Postbox, error) {
	if x.dialog.Cipher == nil {
		return tenant.Postbox{}, refuse(CodeNoClientCipherCert, "the dialog's initDialog carried no CipherCertificateOriginator, so it has no postbox to collect")
	}
	box, ok := x.set.Postbox(x.dialog.Cipher)
	if !ok {
		return box, refuse(none, "no postbox of this intermediary has the dialog's cipher certificate")
	}
	if owner, signer := box.Identity.OSCI.Signature(), x.req.Signer(); owner == nil || signer == nil || !bytes.Equal(owner.Raw, signer.Raw) {
		in.Log.Warn("osci: a client that does not own the postbox tried to collect from it", "tenant", box.Tenant.ID, "identity", box.Identity.ID,
			"signed", signer != nil)
		return box, refuse(none, "the request is not signed by the postbox's signature certificate")
	}
	return box, nil
}

// confirm closes the delivery the dialog fetched last: the client's next
// request shows that the response reached it.
func (in *Intermediary) confirm(ctx context.Context, x *exchange) {
	box, err := in.postbox(x, CodeNoDelivery)
	if err == nil {
		err = in.Box.Close(ctx, box.Tenant.ID, box.Identity.ID, []string{x.dialog.Received})
	}
	if err == nil {
		err = db.InTenant(ctx, in.Pool, x.tenant.ID, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `DELETE FROM osci_fetch_assembly WHERE tenant_id = $1 AND conversation_id = $2`, x.tenant.ID, x.dialog.Control.ConversationID)
			return err
		})
	}
	var be *msgbox.Error
	if err != nil && !(errors.As(err, &be) && be.Kind == msgbox.KindNoMessage) {
		in.Log.Warn("osci: confirm reception", "tenant", x.tenant.ID, "message_id", x.dialog.Received, "error", err)
	}
}

// selection reads a fetch order's SelectionRule: a MessageId, or
// deliveries received since a time; and echoes the order's children.
func (in *Intermediary) selection(x *exchange) (msgbox.Selector, error) {
	var sel msgbox.Selector
	for _, ch := range x.req.OrderElement.Children {
		if ch.Name.Space != Namespace2017 { // a partial order's ChunkInformation is not echoed
			x.resp.Selection = append(x.resp.Selection, canonical(ch)...)
		}
	}
	id, err := messageIDOf(x.req.OrderElement)
	if err != nil {
		return sel, err
	}
	if id != "" {
		sel.IDs = []string{id}
	}
	if rule := x.req.OrderElement.Child(Namespace, "SelectionRule"); rule != nil {
		if since := rule.Child(Namespace, "ReceptionOfDelivery"); since != nil {
			t, err := time.Parse(time.RFC3339Nano, since.TrimmedText())
			if err != nil {
				return sel, refuse(CodeNoValidRequest, "ReceptionOfDelivery %q is no xsd:dateTime", since.TrimmedText())
			}
			sel.From = &t
		}
	}
	return sel, nil
}

// fetch hands the next delivery of the dialog's postbox (or the one
// selected) to its addressee, with 3800 while more wait. The delivery
// counts as received with the dialog's next request.
func (in *Intermediary) fetch(ctx context.Context, x *exchange) ([]Code, error) {
	box, err := in.postbox(x, CodeNoDelivery)
	if err != nil {
		return nil, err
	}
	sel, err := in.selection(x)
	if err != nil {
		return nil, err
	}
	var received []string
	if x.dialog.Received != "" {
		received = []string{x.dialog.Received}
	}
	d, card, pending, err := in.fetchOne(ctx, box, sel, received, true)
	if err != nil {
		return nil, err
	}
	x.resp.Delivery, x.resp.ProcessCards = d, []ProcessCard{card}
	err = db.InTenant(ctx, in.Pool, x.tenant.ID, func(tx pgx.Tx) error {
		return in.Dialogs.Fetched(ctx, tx, x.tenant.ID, x.dialog.Control.ConversationID, x.resp.Delivery.MessageID)
	})
	if err != nil {
		return nil, err
	}
	if pending > 0 {
		return []Code{CodeMoreDeliveries}, nil
	}
	return nil, nil
}

// fetchOne hands out the first delivery of the postbox the selection
// finds (marked fetched; received are closed first): with its
// attachments' bytes when load is true, else their sizes; its process
// card with the forwarding now; how many more wait. None is 9803.
func (in *Intermediary) fetchOne(ctx context.Context, box tenant.Postbox, sel msgbox.Selector, received []string, load bool) (*Delivery, ProcessCard, int64, error) {
	var d *Delivery
	var card ProcessCard
	var pending int64
	err := in.Box.Fetch(ctx, box.Tenant.ID, box.Identity.ID, sel, 0, received, func(f msgbox.Fetched) error {
		var err error
		if d, err = deliveryFrom(f, load); err != nil {
			return err
		}
		now := in.Box.Now()
		card = ProcessCard{MessageID: d.MessageID, RecentModification: now, Creation: f.Entry.Sent, Forwarding: &now, Subject: d.Subject}
		pending = f.Pending
		return nil
	})
	var be *msgbox.Error
	switch {
	case errors.As(err, &be) && be.Kind == msgbox.KindNoMessage:
		return nil, card, 0, refuse(CodeNoDelivery, "%s", be.Detail)
	case err != nil:
		return nil, card, 0, fmt.Errorf("osci: fetch from %s: %w", box.Identity.ID, err)
	}
	return d, card, pending, nil
}

// deliveryFrom reads a fetched delivery: the first part, and its
// attachments' bytes when load is true, else their sizes.
func deliveryFrom(f msgbox.Fetched, load bool) (*Delivery, error) {
	var first bytes.Buffer
	if err := f.Content(0, &first); err != nil {
		return nil, err
	}
	d, err := UnmarshalDelivery(first.Bytes())
	if err != nil {
		return nil, err
	}
	d.Author = f.Entry.Author
	for i, p := range f.Parts[1:] {
		a := Attachment{ContentID: p.Ref, ContentType: p.ContentType, Size: p.Size}
		if load {
			var b bytes.Buffer
			if err := f.Content(i+1, &b); err != nil {
				return nil, err
			}
			a.Data = b.Bytes()
		}
		d.Attachments = append(d.Attachments, a)
	}
	return d, nil
}

// receptionRecords are the records of a report whose time is the
// reception on a delivery's process card, besides its closing by the
// addressee: a passive recipient's acceptance, the register's applying
// of a process message, the evidence provider's answer.
var receptionRecords = []string{RecordReception, msgbox.RecordApplied, msgbox.RecordAnswered}

// processCards answers fetchProcessCard with the process card of the
// delivery the SelectionRule's MessageId names, if the client signed it.
func (in *Intermediary) processCards(ctx context.Context, x *exchange) error {
	sel, err := in.selection(x)
	if err != nil {
		return err
	}
	if len(sel.IDs) == 0 {
		return refuse(CodeNoProcessCard, "this intermediary selects process cards by MessageId only")
	}
	out, err := in.Box.Report(ctx, x.tenant.ID, authorOf(x.req.Signer()), sel.IDs[0])
	var be *msgbox.Error
	if errors.As(err, &be) && be.Kind == msgbox.KindNoMessage {
		// A delivery an XTA account received is stored under its XTA
		// MessageID.
		var storedAs string
		if db.InTenant(ctx, in.Pool, x.tenant.ID, func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, `SELECT stored_as FROM osci_message_id WHERE tenant_id = $1 AND message_id = $2 AND stored_as IS NOT NULL`, x.tenant.ID, sel.IDs[0]).Scan(&storedAs)
		}) == nil {
			out, err = in.Box.Report(ctx, x.tenant.ID, authorOf(x.req.Signer()), storedAs)
		}
	}
	switch {
	case errors.As(err, &be) && be.Kind == msgbox.KindNoMessage:
		return refuse(CodeNoProcessCard, "no delivery %q of this client", sel.IDs[0])
	case err != nil:
		return fmt.Errorf("osci: process card of %s: %w", sel.IDs[0], err)
	}
	card := ProcessCard{MessageID: sel.IDs[0], Creation: out.Sent, Forwarding: out.Fetched, Reception: out.Closed, RecentModification: out.Sent}
	for _, r := range out.Records {
		if slices.Contains(receptionRecords, r.Code) && card.Reception == nil {
			card.Reception = &r.At
		}
		if r.Code == RecordProcessCard {
			var note cardNote
			if err := json.Unmarshal([]byte(r.Reason), &note); err == nil {
				card.Subject, card.Inspections = note.Subject, note.Inspections
			}
		}
	}
	for _, t := range []*time.Time{out.Fetched, card.Reception} {
		if t != nil && t.After(card.RecentModification) {
			card.RecentModification = *t
		}
	}
	x.resp.ProcessCards = []ProcessCard{card}
	return nil
}

// cardDays is how long the MessageId of a delivery stored under its XTA
// MessageID finds its process card.
const cardDays = 30

// Expire deletes the tenants' ended dialogs, and the MessageIds handed
// out, the chunks of partial deliveries received and the responses kept
// for fetching in chunks more than a day ago.
func (in *Intermediary) Expire(ctx context.Context, tenantIDs []string) error {
	if _, err := in.Dialogs.Expire(ctx, tenantIDs); err != nil {
		return err
	}
	for _, t := range tenantIDs {
		err := db.InTenant(ctx, in.Pool, t, func(tx pgx.Tx) error {
			day := in.Dialogs.now().Add(-24 * time.Hour)
			_, err := tx.Exec(ctx, `DELETE FROM osci_message_id WHERE tenant_id = $1 AND (stored_as IS NULL AND issued_at < $2 OR issued_at < $3)`,
				t, day, in.Dialogs.now().Add(-cardDays*24*time.Hour))
			if err == nil {
				_, err = tx.Exec(ctx, `DELETE FROM osci_chunk WHERE tenant_id = $1 AND received_at < $2`, t, day)
			}
			if err == nil {
				_, err = tx.Exec(ctx, `DELETE FROM osci_fetch_assembly WHERE tenant_id = $1 AND created_at < $2`, t, day)
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("osci: expire MessageIds of %s: %w", t, err)
		}
	}
	return nil
}

// faultMessage is the SOAP 1.1 fault for a refused request: faultcode
// soap:Client for what the client sent (soap:Server for 9000 and 9503),
// the OSCI code, its text and what was wrong in faultstring, the code in
// detail.
func faultMessage(e *Error) []byte {
	var x xmlWriter
	side := "soap:Client"
	if e.Code == CodeInternal || e.Code == CodeClientCipherCheck {
		side = "soap:Server"
	}
	x.raw(`<soap:Envelope xmlns:soap="` + SOAPNamespace + `" xmlns:osci="` + Namespace + `"><soap:Body><soap:Fault>`)
	x.element("faultcode", side)
	text := string(e.Code) + " " + e.Code.Text("en")
	if e.Detail != "" && e.Code != CodeInternal {
		text += ": " + e.Detail // what the client sent; an internal error's cause stays in the log
	}
	x.element("faultstring", text)
	x.raw("<detail>")
	x.element("osci:Code", string(e.Code))
	x.raw("</detail></soap:Fault></soap:Body></soap:Envelope>")
	return packMIME(x.Bytes())
}
