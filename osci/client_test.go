package osci_test

import (
	"crypto/x509"
	"errors"
	"strings"
	"testing"

	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/node/nodetest"
	"github.com/parzelle/parzelle/osci"
	"github.com/parzelle/parzelle/osci/oscitest"
)

// client is the OSCI client role of who (the demo PKI's alice or bob)
// towards the intermediary of node n (the osci-client TLS certificate).
func client(t testing.TB, n *nodetest.Node, who string) *osci.Client {
	return &osci.Client{URL: n.Base + "/osci", HTTP: n.HTTP("osci-client"),
		IntermediaryCipher: oscitest.Certificate(t, "osci_manager_cipher_4096"), IntermediarySignature: oscitest.Certificate(t, "osci_manager_signature_4096"),
		Signer: oscitest.Key(t, who+"_signature_4096"), Cipher: oscitest.Key(t, who+"_cipher_4096")}
}

// TestClient runs the client role against the intermediary: alice stores
// a sealed delivery for bob (transport-encrypted dialog), bob collects it
// in a plain dialog and opens it (alice's signature verified), alice's
// process card shows the reception. Every answer is checked by the
// client: encrypted to it, signed by the intermediary, answering its
// challenge; an answer signed by someone else, and a refusal, are errors.
func TestClient(t *testing.T) {
	ctx := t.Context()
	ix := startIntermediary(t)
	bobCipher := oscitest.Certificate(t, "bob_cipher_4096")

	alice := client(t, ix.Node, "alice")
	s, err := alice.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.MessageID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	content, atts, err := osci.SealContent([]byte("<meldung>Inhalt</meldung>"), []osci.Attachment{{ContentID: "anlage", ContentType: "application/pdf", Data: []byte("%PDF Anlage")}},
		alice.Signer, []*x509.Certificate{bobCipher})
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Store(ctx, osci.Outgoing{MessageID: id, Subject: "Über den Client", Reader: bobCipher, Content: content, Attachments: atts})
	if err != nil {
		t.Fatal(err)
	}
	if !a.OK() || len(a.ProcessCards) != 1 || a.ProcessCards[0].Subject != "Über den Client" {
		t.Fatalf("storeDelivery: feedback %v, cards %+v", a.Feedback, a.ProcessCards)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}

	bob := client(t, ix.Node, "bob")
	bob.URL, bob.Plain = ix.Base+"/osci/bremen", true
	s, err = bob.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, more, err := s.Fetch(ctx, "")
	if err != nil || got == nil || more {
		t.Fatalf("fetch: %v, more %v, %v", got, more, err)
	}
	opened, err := osci.OpenContent(got, []*keys.KeyPair{bob.Cipher}, keys.NewTrustStore([]*x509.Certificate{alice.Signer.Certificate()}))
	if err != nil {
		t.Fatal(err)
	}
	if string(opened.Document) != "<meldung>Inhalt</meldung>" || opened.Author.Subject.CommonName != alice.Signer.Certificate().Subject.CommonName {
		t.Errorf("bob opened %q by %v", opened.Document, opened.Author.Subject)
	}
	if _, err := osci.OpenContent(got, []*keys.KeyPair{bob.Cipher}, keys.NewTrustStore([]*x509.Certificate{bob.Signer.Certificate()})); err == nil {
		t.Error("the content opened with bob trusted as its author")
	}
	if next, _, err := s.Fetch(ctx, ""); err != nil || next != nil {
		t.Errorf("a second fetch: %v, %v", next, err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}

	s, err = alice.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	card, err := s.ProcessCard(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if card.Forwarding == nil || card.Reception == nil || card.Subject != "Über den Client" {
		t.Errorf("process card %+v", card)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// An answer not signed by the intermediary the client expects.
	wrong := client(t, ix.Node, "alice")
	wrong.IntermediarySignature = bob.Signer.Certificate()
	if _, err := wrong.Open(ctx); err == nil || !strings.Contains(err.Error(), "intermediary's signature") {
		t.Errorf("an answer signed by another: %v", err)
	}
	// A refusal is an *osci.Error with its code.
	nobody := client(t, ix.Node, "alice")
	nobody.URL, nobody.Plain = ix.Base+"/osci/nobody", true
	var oe *osci.Error
	if _, err := nobody.Open(ctx); !errors.As(err, &oe) || oe.Code != osci.CodeNoDecryptionKey {
		t.Errorf("a plain dialog with an intermediary this node does not run: %v", err)
	}
}
