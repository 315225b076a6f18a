package osci

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parzelle/parzelle/db"
)

// Explicit reports whether the order may only be sent in an explicit
// dialog (opened by initDialog): collecting deliveries and process cards
// proves the addressee by the dialog's challenge and response, and
// exitDialog ends one, and mediateDelivery's schemas want one (else 9802).
func (o Order) Explicit() bool {
	switch o {
	case OrderFetchDelivery, OrderFetchProcessCard, OrderPartialFetchDelivery, OrderMediateDelivery, OrderExitDialog:
		return true
	}
	return false
}

// Dialogs keeps the intermediary's explicit dialogs in PostgreSQL, per
// tenant, so that any node of a cluster can answer a dialog's next
// request.
type Dialogs struct {
	Pool *pgxpool.Pool
	// IdleTimeout ends a dialog without a request for this long (default
	// 15 minutes).
	IdleTimeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (d *Dialogs) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

func (d *Dialogs) idle() time.Duration {
	if d.IdleTimeout > 0 {
		return d.IdleTimeout
	}
	return 15 * time.Minute
}

// Dialog is where a request stands in its dialog: the ControlBlock of the
// response, and the cipher certificate the dialog's opener presented in
// initDialog (DER; nil outside an explicit dialog), whose postbox the
// dialog's fetch orders collect and to which encrypted answers go.
type Dialog struct {
	Control ControlBlock
	Cipher  []byte
	// Received is the MessageId of the delivery the dialog fetched last,
	// which this request confirms as received ("" for none).
	Received string
}

// Step applies the dialog rules to a request in tenantID's transaction tx
// and returns the dialog with the ControlBlock of the response:
//   - initDialog opens a dialog: it must name no conversation; the answer
//     has a new ConversationId (a number, as the schemas want), SequenceNumber 0, the client's Challenge
//     as Response and a new Challenge;
//   - a request without ConversationId is an implicit dialog of its own:
//     SequenceNumber 0, and not an order that needs an explicit dialog;
//     the answer names a new ConversationId nothing continues;
//   - a request in an explicit dialog must come from the client that
//     opened it (the same signature certificate), with the next
//     SequenceNumber and the intermediary's last Challenge as Response;
//     exitDialog ends the dialog.
//
// Every request must carry a Challenge. A request that breaks a rule is
// refused with 9400 (9802 for an explicit order outside a dialog) and
// leaves the dialog as it was, as long as tx is rolled back.
func (d *Dialogs) Step(ctx context.Context, tx pgx.Tx, tenantID string, r *Request) (Dialog, error) {
	c := r.Control
	if c.Challenge == "" {
		return Dialog{}, refuse(CodeWrongDialog, "the ControlBlock carries no Challenge")
	}
	client := clientOf(r)
	switch {
	case r.Order == OrderInitDialog:
		if c.ConversationID != "" || c.Response != "" {
			return Dialog{}, refuse(CodeWrongDialog, "initDialog opens a dialog: it names no ConversationId and answers no Challenge")
		}
		id, challenge := newConversationID(), newToken(12)
		var cipher []byte
		if certs := r.Certificates["CipherCertificateOriginator"]; len(certs) == 1 {
			cipher = certs[0].Raw
		}
		if _, err := tx.Exec(ctx, `INSERT INTO osci_dialog (tenant_id, conversation_id, sequence_number, challenge, client, cipher, opened_at, last_at)
			VALUES ($1, $2, 0, $3, $4, $5, $6, $6)`, tenantID, id, challenge, client, cipher, d.now()); err != nil {
			return Dialog{}, fmt.Errorf("osci: open dialog: %w", err)
		}
		return Dialog{Control: ControlBlock{ConversationID: id, SequenceNumber: 0, Response: c.Challenge, Challenge: challenge}, Cipher: cipher}, nil
	case c.ConversationID == "":
		if r.Order.Explicit() {
			return Dialog{}, refuse(CodeExplicitDialogRequired, "%s needs an explicit dialog: open one with initDialog", r.Order)
		}
		if c.SequenceNumber != 0 || c.Response != "" {
			return Dialog{}, refuse(CodeWrongDialog, "a request without ConversationId is an implicit dialog: SequenceNumber 0 and no Response")
		}
		// The response still names a conversation (the schemas require
		// one); nothing continues it.
		return Dialog{Control: ControlBlock{ConversationID: newConversationID(), SequenceNumber: 0, Response: c.Challenge}}, nil
	}
	var seq int
	var challenge string
	var opener, cipher []byte
	var last time.Time
	var received *string
	err := tx.QueryRow(ctx, `SELECT sequence_number, challenge, client, cipher, fetched, last_at FROM osci_dialog
		WHERE tenant_id = $1 AND conversation_id = $2 AND closed_at IS NULL FOR UPDATE`, tenantID, c.ConversationID).Scan(&seq, &challenge, &opener, &cipher, &received, &last)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Dialog{}, refuse(CodeWrongDialog, "there is no open dialog %q", c.ConversationID)
	case err != nil:
		return Dialog{}, fmt.Errorf("osci: read dialog: %w", err)
	case d.now().Sub(last) > d.idle():
		return Dialog{}, refuse(CodeWrongDialog, "dialog %q ended after %s without a request: open a new one", c.ConversationID, d.idle())
	case opener != nil && subtle.ConstantTimeCompare(opener, client) != 1:
		return Dialog{}, refuse(CodeWrongDialog, "dialog %q was opened by another client", c.ConversationID)
	case c.SequenceNumber != seq+1:
		return Dialog{}, refuse(CodeWrongDialog, "dialog %q expects SequenceNumber %d, not %d", c.ConversationID, seq+1, c.SequenceNumber)
	case subtle.ConstantTimeCompare([]byte(c.Response), []byte(challenge)) != 1:
		return Dialog{}, refuse(CodeWrongDialog, "the Response does not answer the intermediary's last Challenge in dialog %q", c.ConversationID)
	}
	next := newToken(12)
	closed := map[bool]string{true: ", closed_at = $5"}[r.Order == OrderExitDialog]
	if _, err := tx.Exec(ctx, `UPDATE osci_dialog SET sequence_number = $3, challenge = $4, last_at = $5, fetched = NULL`+closed+`
		WHERE tenant_id = $1 AND conversation_id = $2`, tenantID, c.ConversationID, c.SequenceNumber, next, d.now()); err != nil {
		return Dialog{}, fmt.Errorf("osci: advance dialog: %w", err)
	}
	dl := Dialog{Control: ControlBlock{ConversationID: c.ConversationID, SequenceNumber: c.SequenceNumber, Response: c.Challenge, Challenge: next}, Cipher: cipher}
	if received != nil {
		dl.Received = *received
	}
	return dl, nil
}

// Fetched records in tx that the dialog handed out the delivery with the
// MessageId: the dialog's next request confirms its reception.
func (d *Dialogs) Fetched(ctx context.Context, tx pgx.Tx, tenantID, conversationID, messageID string) error {
	if _, err := tx.Exec(ctx, `UPDATE osci_dialog SET fetched = $3 WHERE tenant_id = $1 AND conversation_id = $2`, tenantID, conversationID, messageID); err != nil {
		return fmt.Errorf("osci: record the fetched delivery: %w", err)
	}
	return nil
}

// Cipher returns the cipher certificate that opened an open dialog (nil
// for none), without moving the dialog on: the one a refusal of a
// request in it is encrypted to.
func (d *Dialogs) Cipher(ctx context.Context, tx pgx.Tx, tenantID, conversationID string) ([]byte, error) {
	var cipher []byte
	err := tx.QueryRow(ctx, `SELECT cipher FROM osci_dialog WHERE tenant_id = $1 AND conversation_id = $2 AND closed_at IS NULL`, tenantID, conversationID).Scan(&cipher)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("osci: read dialog: %w", err)
	}
	return cipher, nil
}

// Expire deletes the tenants' dialogs closed or idle longer than the idle
// timeout, and returns how many.
func (d *Dialogs) Expire(ctx context.Context, tenantIDs []string) (int64, error) {
	var total int64
	for _, t := range tenantIDs {
		err := db.InTenant(ctx, d.Pool, t, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, `DELETE FROM osci_dialog WHERE tenant_id = $1 AND (closed_at IS NOT NULL OR last_at < $2)`, t, d.now().Add(-d.idle()))
			total += tag.RowsAffected()
			return err
		})
		if err != nil {
			return total, fmt.Errorf("osci: expire dialogs of %s: %w", t, err)
		}
	}
	return total, nil
}

// clientOf identifies a request's client for its dialog: the SHA-256 of
// its signature certificate, nil when the request is unsigned.
func clientOf(r *Request) []byte {
	if s := r.Signer(); s != nil {
		h := sha256.Sum256(s.Raw)
		return h[:]
	}
	return nil
}

// newConversationID returns a random ConversationId: a number, as the
// schemas require, of 18 digits.
func newConversationID() string {
	n, _ := rand.Int(rand.Reader, big.NewInt(9e17))
	return n.Add(n, big.NewInt(1e17)).String()
}

// newToken returns n random bytes, base64 encoded: conversation ids and
// challenges nobody can guess.
func newToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}
