package xta_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/parzelle/parzelle/msgbox"
	"github.com/parzelle/parzelle/xta"
)

// waitStatus polls the transport report until it reaches want.
func waitStatus(t testing.TB, c *xta.Client, id string, want int) *xta.Report {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		r, err := c.TransportReport(context.Background(), id)
		if err != nil {
			t.Fatalf("getTransportReport: %v", err)
		}
		if r.Status == want {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("report status %d, want %d: %+v", r.Status, want, r.Records)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func outgoing(id string, payload, attachment []byte) *xta.OutgoingMessage {
	return &xta.OutgoingMessage{
		MessageID: id, Author: xta.Party{ID: author, Category: "Meldebehörde"}, Reader: xta.Party{ID: reader},
		Service: xmeldScope, BusinessScenario: "XMELD_DATA", MessageType: "datenabruf.freieSuche.suchanfrage.1332", MessageTypeSchema: "http://www.osci.de/xmeld33",
		Message:     xta.OutgoingContent{ContentType: "text/xml", Encoding: "UTF-8", Filename: "nachricht.xml", Data: bytes.NewReader(payload), Size: int64(len(payload))},
		Attachments: []xta.OutgoingContent{{ContentType: "application/pdf", Filename: "anlage.pdf", Data: bytes.NewReader(attachment)}},
	}
}

// TestRoundTrip sends a message from one tenant's account to another's,
// fetches and closes it, with inline base64 and with MTOM, and follows the
// transport report from open to yellow (the payload has no installed
// schema; schemapolicy_test.go covers the green and refused cases).
func TestRoundTrip(t *testing.T) {
	h := startHarness(t)
	ctx := context.Background()
	for _, mtom := range []bool{false, true} {
		sender := h.client("muenchen", author, mtom)
		box := h.client("koeln", reader, mtom)
		if err := sender.CheckAccountActive(ctx); err != nil {
			t.Fatalf("checkAccountActive: %v", err)
		}
		id, err := sender.CreateMessageID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		payload := []byte(`<?xml version="1.0" encoding="UTF-8"?><nachricht>Grüße &amp; mehr</nachricht>`)
		attachment := make([]byte, 3<<20+17) // more than one chunk and one spool buffer
		rand.Read(attachment)
		if err := sender.Send(ctx, outgoing(id, payload, attachment)); err != nil {
			t.Fatalf("sendMessage (mtom=%v): %v", mtom, err)
		}
		// The payload (<nachricht>, no namespace) has no installed
		// schema: München's policy accepts it with a warning (yellow).
		waitStatus(t, sender, id, msgbox.StatusYellow)

		list, err := box.StatusList(ctx, xta.ListOptions{NewOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Entries) != 1 || list.Entries[0].MessageID != id {
			t.Fatalf("status list: %+v", list)
		}
		msg, err := box.GetMessage(ctx, id)
		if err != nil {
			t.Fatalf("getMessage: %v", err)
		}
		if len(msg.Contents) != 2 || !bytes.Equal(msg.Contents[0].Data, payload) || !bytes.Equal(msg.Contents[1].Data, attachment) {
			t.Fatalf("content differs (mtom=%v): %d parts", mtom, len(msg.Contents))
		}
		if msg.Contents[1].Filename != "anlage.pdf" || !msg.Contents[1].Attachment {
			t.Errorf("attachment attributes lost: %+v", msg.Contents[1].Filename)
		}
		// The author may not read the reader's box.
		if _, err := h.client("muenchen", reader, mtom).GetMessage(ctx, id); !isCode(err, "9014") {
			t.Errorf("author reading the reader's box: %v, want 9014", err)
		}
		if err := box.Close(ctx, id); err != nil {
			t.Fatalf("close: %v", err)
		}
		r := waitStatus(t, sender, id, msgbox.StatusYellow)
		var codes []string
		for _, rec := range r.Records {
			codes = append(codes, rec.Code)
		}
		// Warnings come first in the report (WarnList before InfoList).
		want := []string{msgbox.RecordSchemaMissing, msgbox.RecordAccepted, msgbox.RecordValidated, msgbox.RecordDelivered, msgbox.RecordFetched, msgbox.RecordClosed}
		if len(codes) != len(want) {
			t.Fatalf("report records %v, want %v", codes, want)
		}
		for i := range want {
			if codes[i] != want[i] {
				t.Fatalf("report records %v, want %v", codes, want)
			}
		}
		if _, err := box.GetMessage(ctx, id); !isCode(err, "9070") {
			t.Errorf("getMessage after close: %v, want 9070", err)
		}
		if err := sender.Send(ctx, outgoing(id, payload, nil)); !isCode(err, "9024") {
			t.Errorf("resend with the same MessageID: %v, want 9024", err)
		}
	}
}

func isCode(err error, code string) bool {
	var f *xta.Fault
	return errors.As(err, &f) && f.Code.Number == code
}
