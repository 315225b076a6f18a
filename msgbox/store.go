// Package msgbox is the transport-neutral message boxes of every tenant:
// it accepts messages (concurrent small ones grouped into one transaction,
// handed over to a consumer such as the register pipeline in that same
// transaction), lists and fetches a reader's box (content streamed chunk by
// chunk), closes, settles, reopens and discards messages, and keeps each
// message's transport report. Content and report texts are sealed at rest
// under the owning tenant's data key; routing metadata stays queryable.
//
// The transports are protocols over it: xta/ speaks XTA 2 (SOAP, MTOM,
// faults) and OSCI will be the second user. The tables keep the names they
// had when XTA owned them (xta_message, xta_part, xta_chunk,
// xta_report_record).
package msgbox

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/parzelle/parzelle/sealing"
	"github.com/parzelle/parzelle/tenant"
)

// Transport report status values.
const (
	StatusOpen   = 0
	StatusGreen  = 1
	StatusYellow = 2
	StatusRed    = 3
)

// Report record codes (the node's own code list: XTA leaves record types to
// the operator's code list).
const (
	RecordListURI     = "urn:parzelle:codeliste:xta-record-type"
	RecordListVersion = "1"

	RecordAccepted   = "ACCEPTED"
	RecordValidated  = "VALIDATED"
	RecordDelivered  = "DELIVERED"
	RecordForwarding = "FORWARDING_PENDING"
	RecordFetched    = "FETCHED"
	RecordClosed     = "CLOSED"
	RecordCancelled  = "CANCELLED"
	RecordFailed     = "FAILED"
	// Records of messages a consumer takes over.
	RecordApplied    = "APPLIED"
	RecordDeadLetter = "DEAD_LETTER"
	RecordRetried    = "RETRIED"
	RecordDiscarded  = "DISCARDED"
	// RecordAnswered: the node answered the message (an evidence
	// request) with a message of its own.
	RecordAnswered = "ANSWERED"
	// RecordSchemaMissing warns that the content's schema is not installed
	// and the author tenant's policy accepted it unvalidated.
	RecordSchemaMissing = "SCHEMA_MISSING"
)

// Record is one record of a message's transport report. Its reason is
// sealed at rest: it may quote the content.
type Record struct {
	At     time.Time
	Level  string // info, warning, error
	Code   string
	Reason string
}

// ChunkSize is the size of the stored content chunks.
const ChunkSize = 1 << 20

// Store is the message boxes.
type Store struct {
	pool      *pgxpool.Pool
	tenants   func() *tenant.Set
	keyring   *sealing.Keyring
	consumer  Consumer
	forwarder Forwarder
	river     *river.Client[pgx.Tx]
	log       *slog.Logger
	now       func() time.Time
	// commits groups the transactions of small messages (commit.go).
	commits committer
}

// Config is what a Store needs.
type Config struct {
	Pool    *pgxpool.Pool
	Tenants func() *tenant.Set
	// Keyring seals content and report texts under the tenants' data
	// keys.
	Keyring *sealing.Keyring
	// Consumer, if set, takes over messages delivered to some readers
	// (register inboxes, evidence identities).
	Consumer Consumer
	// Forwarder, if set, takes over messages whose reader is hosted
	// elsewhere (OSCI).
	Forwarder Forwarder
	Log       *slog.Logger
}

// New returns the message boxes.
func New(c Config) *Store {
	s := &Store{pool: c.Pool, tenants: c.Tenants, keyring: c.Keyring, consumer: c.Consumer, forwarder: c.Forwarder, log: c.Log, now: time.Now}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

// SetJobClient gives the store the River client its delivery jobs go to.
func (s *Store) SetJobClient(c *river.Client[pgx.Tx]) { s.river = c }

// AddWorkers registers the store's workers (delivery).
func (s *Store) AddWorkers(w *river.Workers) { river.AddWorker(w, &DeliverWorker{Store: s}) }

// Now is the store's clock.
func (s *Store) Now() time.Time { return s.now() }

// Kind tells the box errors a transport answers in its own terms apart.
type Kind int

// The kinds of box errors.
const (
	// KindNoMessage: no such (open) message for the account.
	KindNoMessage Kind = iota + 1
	// KindMessageIDUsed: the MessageID was used before.
	KindMessageIDUsed
	// KindNotBeforeUnset: a cancel of a message sent without NotBefore.
	KindNotBeforeUnset
	// KindNotBeforePassed: a cancel of a message whose NotBefore passed.
	KindNotBeforePassed
)

// Error is a refusal of a box operation, with a detail for the caller.
type Error struct {
	Kind   Kind
	Detail string
}

func (e *Error) Error() string { return "msgbox: " + e.Detail }

func refuse(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Detail: fmt.Sprintf(format, args...)}
}

// keysFor returns the current data keys of the tenants, loaded before a
// transaction that seals for them.
func (s *Store) keysFor(ctx context.Context, tenants ...string) (map[string]*sealing.DataKey, error) {
	out := make(map[string]*sealing.DataKey, len(tenants))
	for _, t := range tenants {
		if t == "" || out[t] != nil {
			continue
		}
		k, err := s.keyring.Current(ctx, s.pool, t)
		if err != nil {
			return nil, fmt.Errorf("msgbox: data key of %s: %w", t, err)
		}
		out[t] = k
	}
	return out, nil
}
