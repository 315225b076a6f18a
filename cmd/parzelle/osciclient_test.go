package main

import (
	"bytes"
	"crypto/x509/pkix"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/parzelle/parzelle/node/nodetest"
	"github.com/parzelle/parzelle/osci/oscitest"
	"github.com/parzelle/parzelle/pki"
)

// TestOSCIClientCommands: an operator tests a connection to an OSCI
// intermediary (a node running the demo PKI's OSCI-Manager) with the
// commands: alice sends a document with an attachment to bob's postbox,
// bob fetches it (alice's signature verified, written to a file), and
// alice's process card shows its reception.
func TestOSCIClientCommands(t *testing.T) {
	certs := oscitest.Certs
	tenantFile := fmt.Sprintf(`id: bremen
name: OSCI-Intermediär
identities:
  - id: osci:bob
    type: osci
    category: Postfach
    transports: [osci]
    osci: {cipherCertificate: %[1]s/bob_cipher_4096.cer, signatureCertificate: %[1]s/bob_signature_4096.cer}
trust:
  clientCAs: ["{{CA}}"]
keys:
  trust:
    signers: [%[1]s/alice_signature_4096.cer, %[1]s/alice_cipher_4096.cer, %[1]s/bob_cipher_4096.cer]
  signing: [{pkcs12: %[1]s/osci_manager_signature_4096.p12, passwordFile: "{{DIR}}/pin"}]
  decryption: [{pkcs12: %[1]s/osci_manager_cipher_4096.p12, passwordFile: "{{DIR}}/pin"}]
`, certs)
	n := nodetest.Start(t, nodetest.Options{Tenants: map[string]string{"bremen": tenantFile}, Files: map[string][]byte{"pin": []byte("123456\n")}})
	dir := t.TempDir()
	now := time.Now()
	tlsCert, tlsKey, err := n.CA.Issue(pki.Template{Subject: pkix.Name{CommonName: "fachverfahren"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), Client: true}, pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFiles(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), tlsCert, tlsKey); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OSCI_PIN", "123456")
	common := func(who string) []string {
		return []string{"--url", n.Base + "/osci", "--ca", n.CAFile, "--tls-cert", filepath.Join(dir, "tls.crt"), "--tls-key", filepath.Join(dir, "tls.key"),
			"--intermediary-cipher", filepath.Join(certs, "osci_manager_cipher_4096.cer"), "--intermediary-signature", filepath.Join(certs, "osci_manager_signature_4096.cer"),
			"--signer", filepath.Join(certs, who+"_signature_4096.p12"), "--cipher", filepath.Join(certs, who+"_cipher_4096.p12"), "--pin-env", "OSCI_PIN"}
	}
	doc, attachment := filepath.Join(dir, "meldung.xml"), filepath.Join(dir, "anlage.pdf")
	if err := os.WriteFile(doc, []byte("<meldung>über OSCI</meldung>"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(attachment, []byte("%PDF"), 0o644); err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	if err := osciClient("send", append(common("alice"), "--to", filepath.Join(certs, "bob_cipher_4096.cer"), "--subject", "Test", "--attach", attachment, doc), &out); err != nil {
		t.Fatalf("%v\n%s", err, &out)
	}
	m := regexp.MustCompile(`MessageId (\S+)`).FindStringSubmatch(out.String())
	if m == nil || !strings.Contains(out.String(), "feedback  0801") || !strings.Contains(out.String(), `subject "Test"`) {
		t.Fatalf("send printed:\n%s", &out)
	}
	id := m[1]

	out.Reset()
	inbox := t.TempDir()
	if err := osciClient("fetch", append(common("bob"), "--out", inbox, "--trust", filepath.Join(certs, "alice_signature_4096.cer")), &out); err != nil {
		t.Fatalf("%v\n%s", err, &out)
	}
	got, err := os.ReadFile(filepath.Join(inbox, id+".xml"))
	if err != nil || string(got) != "<meldung>über OSCI</meldung>" || !strings.Contains(out.String(), "signed by CN=Alice Signature 4096") || !strings.Contains(out.String(), "1 fetched") {
		t.Fatalf("fetch printed (%v):\n%s", err, &out)
	}

	out.Reset()
	if err := osciClient("cards", append(common("alice"), id), &out); err != nil {
		t.Fatalf("%v\n%s", err, &out)
	}
	if strings.Contains(out.String(), "received -") || !strings.Contains(out.String(), id) {
		t.Errorf("cards printed:\n%s", &out)
	}
}
