package osci_test

import (
	"bytes"
	"crypto/x509"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/osci"
	"github.com/parzelle/parzelle/osci/oscitest"
	"github.com/parzelle/parzelle/xmldsig"
	"github.com/parzelle/parzelle/xmlsafe"
)

// managerOptions decrypt with the intermediary's cipher key of the demo PKI.
func managerOptions(t testing.TB) osci.Options {
	return osci.Options{Keys: []*keys.KeyPair{oscitest.Key(t, "osci_manager_cipher_4096")}}
}

// TestParseSamples parses every request the Governikus library made, plain
// and transport-encrypted: the order, its place, the dialog control, the
// certificates and the client signature (by alice, bob for the fetch)
// covering every header block, the body and every attachment; the
// content containers' own signatures verify too.
func TestParseSamples(t *testing.T) {
	for _, c := range []struct {
		prefix       string
		order        osci.Order
		seq          int
		conversation string
		response     bool
		signer       string
		metadata     bool
	}{
		{"01-InitDialog", osci.OrderInitDialog, -1, "", false, "alice", false},
		{"02-GetMessageId", osci.OrderGetMessageID, 0, "", false, "alice", false},
		{"03-StoreDelivery", osci.OrderStoreDelivery, 0, "", false, "alice", false},
		{"04-FetchDelivery", osci.OrderFetchDelivery, 2, "4711", true, "bob", false},
		{"05-FetchProcessCard", osci.OrderFetchProcessCard, 2, "4711", true, "alice", false},
		{"06-ForwardDelivery", osci.OrderForwardDelivery, 0, "", false, "alice", false},
		{"07-ExitDialog", osci.OrderExitDialog, 2, "4711", true, "alice", false},
		{"08-StoreDelivery-XTA-MessageMetaData", osci.OrderStoreDelivery, 0, "", false, "alice", true},
	} {
		files, _ := filepath.Glob(filepath.Join(oscitest.Samples, c.prefix+".*mime"))
		if len(files) == 0 {
			t.Fatalf("no sample %s", c.prefix)
		}
		for _, file := range files {
			name := filepath.Base(file)
			t.Run(name, func(t *testing.T) {
				r, err := osci.ParseRequest(oscitest.Sample(t, name), managerOptions(t))
				if err != nil {
					t.Fatal(err)
				}
				encrypted := strings.Contains(name, ".transport-encrypted.mime")
				if r.Order != c.order || r.Order.InBody() != (r.OrderElement.Parent == r.Body) || (r.Transport != nil) != encrypted {
					t.Errorf("order %s in %s, transport %+v", r.Order, r.OrderElement.Parent.Name.Local, r.Transport)
				}
				if encrypted && r.Transport.Algorithm != "http://www.w3.org/2009/xmlenc11#aes256-gcm" {
					t.Errorf("transport algorithm %s", r.Transport.Algorithm)
				}
				ctl := r.Control
				if ctl.SequenceNumber != c.seq || ctl.ConversationID != c.conversation || ctl.Challenge == "" || (ctl.Response != "") != c.response {
					t.Errorf("control block %+v", ctl)
				}
				if !r.Signer().Equal(oscitest.Certificate(t, c.signer+"_signature_4096")) {
					t.Errorf("signed by %v", r.Signer().Subject)
				}
				if got := r.Certificates["SignatureCertificateOriginator"]; len(got) != 1 || !got[0].Equal(r.Signer()) {
					t.Errorf("originator's signature certificate %v", got)
				}
				if (r.MetaData != nil) != c.metadata || len(r.Languages) == 0 {
					t.Errorf("metadata %v, languages %v", r.MetaData != nil, r.Languages)
				}
				// The content containers' signatures (alice's, in document
				// context, base64 transform and cid: parts).
				v := &xmldsig.Verifier{Trust: keys.NewTrustStore([]*x509.Certificate{oscitest.Certificate(t, "alice_signature_4096")}),
					At: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC), Resolve: r.MIME.Resolve}
				for _, sig := range r.Envelope.Root.FindAll(xmldsig.Namespace, "Signature") {
					if sig.Parent.Name.Local == "ClientSignature" {
						continue
					}
					if _, err := v.Verify(r.Envelope, sig); err != nil {
						t.Errorf("content container signature at line %d: %v", sig.Line, err)
					}
				}
			})
		}
	}
}

// code returns the feedback code of a refusal, "" for none.
func code(err error) osci.Code {
	var e *osci.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// TestTamperedSignedParts changes one byte in each part the client
// signature covers — every header block, the body, every attachment — and
// in the signature's SignedInfo: each is refused with 9601. A header
// block or an attachment the signature does not cover is refused with
// 9602.
func TestTamperedSignedParts(t *testing.T) {
	data := oscitest.Sample(t, "03-StoreDelivery.plain.mime")
	r, err := osci.ParseRequest(data, osci.Options{})
	if err != nil {
		t.Fatal(err)
	}
	root := r.MIME.Root()
	// A space after an element's start tag changes its canonical form.
	insertAfterStartTag := func(el *xmlsafe.Element) []byte {
		at := root.Offset + el.Inner
		return append(append(append([]byte{}, data[:at]...), ' '), data[at:]...)
	}
	type target struct {
		name string
		data []byte
	}
	var targets []target
	for _, h := range r.Headers {
		if h.Name.Local == "ClientSignature" {
			si := h.FindAll(xmldsig.Namespace, "SignedInfo")[0]
			targets = append(targets, target{"SignedInfo", insertAfterStartTag(si)})
			continue
		}
		targets = append(targets, target{h.Name.Local, insertAfterStartTag(h)})
	}
	targets = append(targets, target{"Body", insertAfterStartTag(r.Body)})
	for _, p := range r.MIME.Parts {
		if p == root {
			continue
		}
		flipped := bytes.Clone(data)
		flipped[p.Offset] ^= 0x20
		targets = append(targets, target{"cid:" + p.ContentID, flipped})
	}
	if len(targets) < 10 {
		t.Fatalf("only %d signed parts found", len(targets))
	}
	for _, tg := range targets {
		if _, err := osci.ParseRequest(tg.data, osci.Options{}); code(err) != osci.CodeSignatureInvalid {
			t.Errorf("%s changed: %v, want 9601", tg.name, err)
		}
	}

	// Unsigned additions: a header block, an attachment.
	extraHeader := bytes.Replace(data, []byte("</soap:Header>"), []byte(`<x:Zusatz xmlns:x="urn:parzelle:test" Id="zusatz">unsigniert</x:Zusatz></soap:Header>`), 1)
	boundary := "--" + r.MIME.Params["boundary"]
	last := bytes.LastIndex(data, []byte(boundary+"--"))
	extraPart := append(append([]byte{}, data[:last]...), []byte(boundary+"\r\nContent-Type: text/plain\r\nContent-ID: <extra.txt>\r\n\r\nnicht signiert\r\n")...)
	extraPart = append(extraPart, data[last:]...)
	for name, d := range map[string][]byte{"an unsigned header block": extraHeader, "an unsigned attachment": extraPart} {
		if _, err := osci.ParseRequest(d, osci.Options{}); code(err) != osci.CodeNotAllSigned {
			t.Errorf("%s: %v, want 9602", name, err)
		}
	}
}

// TestParseRequestRefusals: each malformed or unreadable request is
// refused with the code the specification assigns.
func TestParseRequestRefusals(t *testing.T) {
	plain := oscitest.Sample(t, "02-GetMessageId.plain.mime")
	encrypted := oscitest.Sample(t, "02-GetMessageId.transport-encrypted.mime")
	msg, err := osci.ParseMIME(encrypted)
	if err != nil {
		t.Fatal(err)
	}
	cipherPart := msg.Part("osci_enc")
	if cipherPart == nil {
		t.Fatal("no osci_enc part")
	}
	brokenCipher := bytes.Clone(encrypted)
	brokenCipher[cipherPart.Offset+40] ^= 1
	replace := func(old, new string) []byte {
		out := bytes.Replace(plain, []byte(old), []byte(new), 1)
		if bytes.Equal(out, plain) {
			t.Fatalf("%q is not in the sample", old)
		}
		return out
	}
	for _, c := range []struct {
		name string
		data []byte
		opt  osci.Options
		want osci.Code
	}{
		{"no MIME", []byte("<soap:Envelope/>"), osci.Options{}, osci.CodeNoOSCIMessage},
		{"an unclosed MIME message", plain[:len(plain)/2], osci.Options{}, osci.CodeNoOSCIMessage},
		{"a DTD with an external entity", replace(`<?xml version="1.0" encoding="UTF-8"?>`, `<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>`), osci.Options{}, osci.CodeNoOSCIMessage},
		{"not SOAP 1.1", replace(`xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"`, `xmlns:soap="http://www.w3.org/2003/05/soap-envelope"`), osci.Options{}, osci.CodeNoOSCIMessage},
		{"transport-encrypted, no key", encrypted, osci.Options{}, osci.CodeNoDecryptionKey},
		{"transport-encrypted to another", encrypted, osci.Options{Keys: []*keys.KeyPair{oscitest.Key(t, "bob_cipher_4096")}}, osci.CodeNoDecryptionKey},
		{"a changed ciphertext", brokenCipher, managerOptions(t), osci.CodeUndecryptable},
		{"no order", replace(`<osci:getMessageId></osci:getMessageId>`, ``), osci.Options{}, osci.CodeNoValidRequest},
		{"two orders", replace(`<osci:getMessageId></osci:getMessageId>`, `<osci:getMessageId></osci:getMessageId><osci:exitDialog></osci:exitDialog>`), osci.Options{}, osci.CodeNoValidRequest},
		{"a body order in the header", replace(`</soap:Header>`, `<osci:initDialog/></soap:Header>`), osci.Options{}, osci.CodeNoValidRequest},
		{"a bad SequenceNumber", replace(`SequenceNumber="0"`, `SequenceNumber="-3"`), osci.Options{}, osci.CodeWrongDialog},
		{"oversize", plain, osci.Options{MaxBytes: 1000}, osci.CodeMessageTooLarge},
	} {
		_, err := osci.ParseRequest(c.data, c.opt)
		if code(err) != c.want {
			t.Errorf("%s: %v, want %s", c.name, err, c.want)
		}
	}
}

// TestCodes: message-level codes are faults, 3xxx warnings, and every
// code has a text in both languages.
func TestCodes(t *testing.T) {
	for _, c := range []struct {
		code           osci.Code
		fault, warning bool
	}{
		{osci.CodeNoOSCIMessage, true, false}, {osci.CodeWrongDialog, true, false}, {osci.CodeClientCipherRevoked, true, false},
		{osci.CodeSignatureInvalid, false, false}, {osci.CodeMoreDeliveries, false, true}, {osci.CodeDoneDialogOpen, false, false},
	} {
		if c.code.Fault() != c.fault || c.code.Warning() != c.warning {
			t.Errorf("%s: fault %v, warning %v", c.code, c.code.Fault(), c.code.Warning())
		}
		if de, en := c.code.Text("de"), c.code.Text("en"); de == en || de == string(c.code) {
			t.Errorf("%s: texts %q, %q", c.code, de, en)
		}
	}
}
