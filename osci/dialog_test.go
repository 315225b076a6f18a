package osci_test

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"regexp"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parzelle/parzelle/db"
	"github.com/parzelle/parzelle/db/dbtest"
	"github.com/parzelle/parzelle/osci"
	"github.com/parzelle/parzelle/osci/oscitest"
	"github.com/parzelle/parzelle/xmldsig"
)

// dialogDB is a fresh database with the tenants duesseldorf and koeln.
func dialogDB(t *testing.T) *pgxpool.Pool {
	pool := dbtest.New(t)
	for _, id := range []string{"duesseldorf", "koeln"} {
		if _, err := pool.Exec(t.Context(), `INSERT INTO tenant (tenant_id, name, config_version) VALUES ($1, $1, 1)`, id); err != nil {
			t.Fatal(err)
		}
	}
	return pool
}

// step runs one dialog step in the tenant's transaction.
func step(t *testing.T, d *osci.Dialogs, tenantID string, r *osci.Request) (osci.ControlBlock, error) {
	t.Helper()
	var cb osci.ControlBlock
	err := db.InTenant(t.Context(), d.Pool, tenantID, func(tx pgx.Tx) (err error) {
		var dl osci.Dialog
		dl, err = d.Step(t.Context(), tx, tenantID, r)
		cb = dl.Control
		return err
	})
	return cb, err
}

func signedBy(cert *x509.Certificate) *xmldsig.Result { return &xmldsig.Result{Certificate: cert} }

// TestDialogRules walks an explicit dialog from initDialog (the
// Governikus sample) to exitDialog and refuses every request that breaks
// a rule with 9400 (9802 for a fetch outside a dialog), leaving the
// dialog as it was; implicit dialogs and another tenant's conversation
// ids are checked too.
func TestDialogRules(t *testing.T) {
	clock := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	d := &osci.Dialogs{Pool: dialogDB(t), Now: func() time.Time { return clock }}
	alice, bob := oscitest.Certificate(t, "alice_signature_4096"), oscitest.Certificate(t, "bob_signature_4096")

	init, err := osci.ParseRequest(oscitest.Sample(t, "01-InitDialog.plain.mime"), osci.Options{})
	if err != nil {
		t.Fatal(err)
	}
	opened, err := step(t, d, "duesseldorf", init)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[1-9][0-9]{17}$`).MatchString(opened.ConversationID) || opened.SequenceNumber != 0 || opened.Response != init.Control.Challenge || opened.Challenge == "" {
		t.Fatalf("initDialog answered with %+v", opened)
	}
	conv := opened.ConversationID
	in := func(order osci.Order, seq int, response string, signer *x509.Certificate) *osci.Request {
		r := &osci.Request{Order: order, Control: osci.ControlBlock{ConversationID: conv, SequenceNumber: seq, Challenge: "Y2xpZW50", Response: response}}
		if signer != nil {
			r.Signature = signedBy(signer)
		}
		return r
	}
	next, err := step(t, d, "duesseldorf", in(osci.OrderFetchDelivery, 1, opened.Challenge, alice))
	if err != nil || next.ConversationID != conv || next.SequenceNumber != 1 || next.Response != "Y2xpZW50" || next.Challenge == opened.Challenge {
		t.Fatalf("second request: %+v %v", next, err)
	}
	implicit := &osci.Request{Order: osci.OrderGetMessageID, Control: osci.ControlBlock{SequenceNumber: 0, Challenge: "aW1wbGl6aXQ="}}
	if cb, err := step(t, d, "duesseldorf", implicit); err != nil || cb.ConversationID == "" || cb.ConversationID == conv || cb.Response != "aW1wbGl6aXQ=" {
		t.Errorf("an implicit dialog: %+v %v", cb, err)
	}

	for _, c := range []struct {
		name   string
		tenant string
		r      *osci.Request
		want   osci.Code
	}{
		{"the same request again", "duesseldorf", in(osci.OrderFetchDelivery, 1, opened.Challenge, alice), osci.CodeWrongDialog},
		{"a SequenceNumber skipped", "duesseldorf", in(osci.OrderFetchDelivery, 3, next.Challenge, alice), osci.CodeWrongDialog},
		{"an old Response", "duesseldorf", in(osci.OrderFetchDelivery, 2, opened.Challenge, alice), osci.CodeWrongDialog},
		{"another client", "duesseldorf", in(osci.OrderFetchDelivery, 2, next.Challenge, bob), osci.CodeWrongDialog},
		{"an unsigned request", "duesseldorf", in(osci.OrderFetchDelivery, 2, next.Challenge, nil), osci.CodeWrongDialog},
		{"another tenant's conversation", "koeln", in(osci.OrderFetchDelivery, 2, next.Challenge, alice), osci.CodeWrongDialog},
		{"an unknown conversation", "duesseldorf", &osci.Request{Order: osci.OrderFetchDelivery, Control: osci.ControlBlock{ConversationID: "4711", SequenceNumber: 2, Challenge: "eA==", Response: "eA=="}}, osci.CodeWrongDialog},
		{"no Challenge", "duesseldorf", &osci.Request{Order: osci.OrderFetchDelivery, Control: osci.ControlBlock{ConversationID: conv, SequenceNumber: 2, Response: next.Challenge}, Signature: signedBy(alice)}, osci.CodeWrongDialog},
		{"initDialog inside a dialog", "duesseldorf", in(osci.OrderInitDialog, 2, next.Challenge, alice), osci.CodeWrongDialog},
		{"a fetch outside a dialog", "duesseldorf", &osci.Request{Order: osci.OrderFetchDelivery, Control: osci.ControlBlock{SequenceNumber: 0, Challenge: "eA=="}}, osci.CodeExplicitDialogRequired},
		{"an implicit dialog's second request", "duesseldorf", &osci.Request{Order: osci.OrderStoreDelivery, Control: osci.ControlBlock{SequenceNumber: 1, Challenge: "eA=="}}, osci.CodeWrongDialog},
	} {
		if _, err := step(t, d, c.tenant, c.r); code(err) != c.want {
			t.Errorf("%s: %v, want %s", c.name, err, c.want)
		}
	}
	// None of them moved the dialog on; after 16 idle minutes it is over.
	if cb, err := step(t, d, "duesseldorf", in(osci.OrderFetchProcessCard, 2, next.Challenge, alice)); err != nil || cb.SequenceNumber != 2 {
		t.Fatalf("the dialog after the refusals: %+v %v", cb, err)
	} else {
		next = cb
	}
	clock = clock.Add(16 * time.Minute)
	if _, err := step(t, d, "duesseldorf", in(osci.OrderExitDialog, 3, next.Challenge, alice)); code(err) != osci.CodeWrongDialog {
		t.Errorf("after 16 idle minutes: %v", err)
	}
	if n, err := d.Expire(t.Context(), []string{"duesseldorf", "koeln"}); err != nil || n != 1 {
		t.Errorf("expired %d dialogs (%v), want 1", n, err)
	}

	// A dialog that ends with exitDialog takes no further request.
	clock = clock.Add(time.Minute)
	second, err := step(t, d, "duesseldorf", init)
	if err != nil {
		t.Fatal(err)
	}
	conv = second.ConversationID
	if _, err := step(t, d, "duesseldorf", in(osci.OrderExitDialog, 1, second.Challenge, alice)); err != nil {
		t.Fatal(err)
	}
	if _, err := step(t, d, "duesseldorf", in(osci.OrderFetchDelivery, 2, second.Challenge, alice)); code(err) != osci.CodeWrongDialog {
		t.Errorf("a request after exitDialog: %v", err)
	}
}

// TestDialogSamples: the Governikus samples that continue a dialog
// (conversation 4711, SequenceNumber 2, Response
// "PrevChallengeFromIntermediary") are taken once the dialog is prepared
// as the intermediary would have left it.
func TestDialogSamples(t *testing.T) {
	d := &osci.Dialogs{Pool: dialogDB(t)}
	for _, c := range []struct {
		file, signer string
	}{
		{"04-FetchDelivery.plain.mime", "bob"},
		{"05-FetchProcessCard.transport-encrypted.mime", "alice"},
		{"07-ExitDialog.plain.mime", "alice"},
	} {
		r, err := osci.ParseRequest(oscitest.Sample(t, c.file), managerOptions(t))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := step(t, d, "duesseldorf", r); code(err) != osci.CodeWrongDialog {
			t.Errorf("%s without a dialog: %v", c.file, err)
		}
		client := sha256.Sum256(oscitest.Certificate(t, c.signer+"_signature_4096").Raw)
		err = db.InTenant(context.Background(), d.Pool, "duesseldorf", func(tx pgx.Tx) error {
			_, err := tx.Exec(t.Context(), `DELETE FROM osci_dialog WHERE tenant_id = 'duesseldorf'`)
			if err == nil {
				_, err = tx.Exec(t.Context(), `INSERT INTO osci_dialog (tenant_id, conversation_id, sequence_number, challenge, client)
					VALUES ('duesseldorf', '4711', 1, 'PrevChallengeFromIntermediary', $1)`, client[:])
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		cb, err := step(t, d, "duesseldorf", r)
		if err != nil || cb.ConversationID != "4711" || cb.SequenceNumber != 2 || cb.Response != r.Control.Challenge {
			t.Errorf("%s: %+v %v", c.file, cb, err)
		}
	}
}
