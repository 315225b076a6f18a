package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const osciSpecs = "../../../shared/specs/osci"

// TestOSCIInspect: `parzelle osci inspect` shows a transport-encrypted
// Governikus storeDelivery decrypted with the intermediary's and the
// reader's demo keys, with both signatures' verdicts; a request whose body
// was changed is shown with both signatures refused and exits 1 naming
// 9601.
func TestOSCIInspect(t *testing.T) {
	t.Setenv("OSCI_PIN", "123456")
	keysArgs := []string{"--key", filepath.Join(osciSpecs, "testcerts/osci_manager_cipher_4096.p12"),
		"--key", filepath.Join(osciSpecs, "testcerts/dave_cipher_4096.p12"), "--pin-env", "OSCI_PIN"}
	var out bytes.Buffer
	err := osciInspect(append(keysArgs, filepath.Join(osciSpecs, "samples/03-StoreDelivery.transport-encrypted.mime")), &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, &out)
	}
	for _, want := range []string{
		"order:        storeDelivery (in the header)",
		"transport:    encrypted, http://www.w3.org/2009/xmlenc11#aes256-gcm, decrypted with the key of CN=OSCI-Manager Cipher 4096",
		"control:      ConversationId -, SequenceNumber 0, Challenge ",
		"certificate:  CipherCertificateOtherReader: CN=Dave Cipher 4096",
		"signature:    verifies, by CN=Alice Signature 4096",
		"#body",
		"attachment:   cid:test.txt, application/octet-stream, 32 bytes",
		"decrypted with the key of CN=Dave Cipher 4096",
		`Content: "Any encrypted content data."`,
		`encrypted attachment: "Any encrypted attachment data."`,
		"content signature: verifies, by CN=Alice Signature 4096",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, &out)
		}
	}

	plain, err := os.ReadFile(filepath.Join(osciSpecs, "samples/03-StoreDelivery.plain.mime"))
	if err != nil {
		t.Fatal(err)
	}
	// "Any content data." → "Any content data," in the signed container.
	tampered := bytes.Replace(plain, []byte("QW55IGNvbnRlbnQgZGF0YS4="), []byte("QW55IGNvbnRlbnQgZGF0YSw="), 1)
	if bytes.Equal(tampered, plain) {
		t.Fatal("the content is not in the sample")
	}
	file := filepath.Join(t.TempDir(), "tampered.mime")
	if err := os.WriteFile(file, tampered, 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err = osciInspect([]string{file}, &out)
	if err == nil || !strings.Contains(err.Error(), "would be refused with 9601") {
		t.Errorf("tampered request: %v", err)
	}
	for _, want := range []string{"signature:    REFUSED 9601", "content signature: REFUSED", `Content: "Any content data,"`, "content:      encrypted, not decrypted"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output for the tampered request lacks %q:\n%s", want, &out)
		}
	}
}
