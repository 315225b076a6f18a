package osci_test

import (
	"bytes"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/osci"
	"github.com/parzelle/parzelle/osci/oscitest"
	"github.com/parzelle/parzelle/xmldsig"
	"github.com/parzelle/parzelle/xmlschema"
)

var (
	schemasOnce sync.Once
	schemas     *xmlschema.Registry
	schemasErr  error
)

// osciSchemas are the official OSCI 1.2 schemas beside the checkout.
func osciSchemas(t testing.TB) *xmlschema.Registry {
	t.Helper()
	schemasOnce.Do(func() { schemas, schemasErr = xmlschema.Load([]string{filepath.Dir(oscitest.Samples)}, nil) })
	if schemasErr != nil {
		t.Fatal(schemasErr)
	}
	return schemas
}

// TestResponses builds the responses to initDialog, getMessageId,
// storeDelivery, forwardDelivery and exitDialog with the demo intermediary's signature key:
// each validates against its official response schema, its
// SupplierSignature verifies and covers every header block and the body,
// and its feedback is the code given, in the language asked for.
func TestResponses(t *testing.T) {
	manager := oscitest.Key(t, "osci_manager_signature_4096")
	signer := &xmldsig.Signer{Key: manager.Key, Certificates: manager.Chain}
	for _, r := range []osci.Response{
		{Order: osci.OrderInitDialog, Control: osci.ControlBlock{ConversationID: "123456789012345678", Response: "Y2xpZW50", Challenge: "aW50ZXI="}, Feedback: []osci.Code{osci.CodeDoneDialogOpen}, Language: "de"},
		{Order: osci.OrderGetMessageID, Control: osci.ControlBlock{ConversationID: "123456789012345678", SequenceNumber: 1, Response: "Y2xpZW50", Challenge: "aW50ZXI="},
			Feedback: []osci.Code{osci.CodeDoneDialogOpen}, MessageID: "parzelle-0001", Language: "en", Certificate: manager.Certificate()},
		{Order: osci.OrderStoreDelivery, Control: osci.ControlBlock{ConversationID: "123456789012345679", Response: "Y2xpZW50"}, Feedback: []osci.Code{osci.CodeDoneDialogClosed}},
		{Order: osci.OrderForwardDelivery, Control: osci.ControlBlock{ConversationID: "123456789012345680", Response: "Y2xpZW50"}, Feedback: []osci.Code{osci.CodeDoneDialogClosed, osci.CodeRecipientSigMissing}},
		{Order: osci.OrderExitDialog, Control: osci.ControlBlock{ConversationID: "123456789012345678", SequenceNumber: 2, Response: "Y2xpZW50"}, Feedback: []osci.Code{osci.CodeDoneDialogClosed}},
	} {
		t.Run(string(r.Order), func(t *testing.T) {
			out, err := r.Build(signer)
			if err != nil {
				t.Fatal(err)
			}
			msg, err := osci.ParseMIME(out)
			if err != nil {
				t.Fatal(err)
			}
			set := xmlschema.OSCI12("ResponseTo" + strings.ToUpper(string(r.Order[:1])) + string(r.Order[1:]))
			if err := osciSchemas(t).Validate(set, msg.Root().Body); err != nil {
				t.Errorf("%s: %v", set, err)
			}
			env, err := xmldsig.ParseDocument(bytes.NewReader(msg.Root().Body))
			if err != nil {
				t.Fatal(err)
			}
			sigs := env.Root.FindAll(xmldsig.Namespace, "Signature")
			if len(sigs) != 1 || sigs[0].Parent.Name.Local != "SupplierSignature" {
				t.Fatalf("%d signatures", len(sigs))
			}
			v := &xmldsig.Verifier{Trust: keys.NewTrustStore(manager.Chain[:1])}
			res, err := v.Verify(env, sigs[0])
			if err != nil {
				t.Fatal(err)
			}
			signed := map[string]bool{}
			for _, ref := range res.References {
				signed[ref.Element.Name.Local] = true
			}
			for _, h := range env.Root.Children[0].Children {
				if h.Name.Local != "SupplierSignature" && !signed[h.Name.Local] {
					t.Errorf("header block %s is not signed", h.Name.Local)
				}
			}
			if !signed["Body"] {
				t.Error("the body is not signed")
			}
			text := r.Feedback[0].Text(r.Language)
			if !bytes.Contains(out, []byte("<osci:Code>"+string(r.Feedback[0])+"</osci:Code>")) || !bytes.Contains(out, []byte(text)) {
				t.Errorf("feedback %s %q missing", r.Feedback[0], text)
			}
			if _, err := (&osci.Response{Order: osci.Order("deliverEverything"), Control: r.Control, Feedback: r.Feedback}).Build(signer); err == nil {
				t.Error("a response to an order OSCI does not have was built")
			}
			// A changed response fails its signature.
			tampered := bytes.Replace(msg.Root().Body, []byte("<osci:Code>08"), []byte("<osci:Code>98"), 1)
			if env2, err := xmldsig.ParseDocument(bytes.NewReader(tampered)); err != nil {
				t.Fatal(err)
			} else if _, err := v.Verify(env2, env2.Root.FindAll(xmldsig.Namespace, "Signature")[0]); err == nil {
				t.Error("a changed feedback code still verifies")
			}
		})
	}
}
