package xta_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parzelle/parzelle/osci/oscitest"
	"github.com/parzelle/parzelle/tenant"
	"github.com/parzelle/parzelle/xta"
)

// TestStaticDirectory: an entry of the directory file names the reader's
// OSCI intermediary, its certificates (the demo PKI's DER .cer files) and
// the delivery mode; an edit applies at the next lookup; a bad mode is an
// error naming the reader.
func TestStaticDirectory(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "directory.yaml")
	write := func(mode string) {
		body := `entries:
  - reader: dvdv:09162000-0001
    intermediary: https://osci.example.invalid/osci
    cipherCertificate: ` + filepath.Join(oscitest.Certs, "bob_cipher_4096.cer") + `
    intermediaryCipherCertificate: ` + filepath.Join(oscitest.Certs, "osci_manager_cipher_4096.cer") + `
    intermediarySignatureCertificate: ` + filepath.Join(oscitest.Certs, "osci_manager_signature_4096.cer") + `
    mode: ` + mode + "\n"
		if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d := &xta.StaticDirectory{Tenants: func() *tenant.Set { return tenant.NewSet() }, File: file}
	write("postbox")
	e, err := d.Lookup(t.Context(), "dvdv:09162000-0001", "urn:any")
	if err != nil {
		t.Fatal(err)
	}
	if !e.Known || !e.Available || e.Passive || e.Intermediary != "https://osci.example.invalid/osci" ||
		!bytes.Equal(e.CipherCertificate, oscitest.Certificate(t, "bob_cipher_4096").Raw) ||
		!bytes.Equal(e.IntermediaryCipher, oscitest.Certificate(t, "osci_manager_cipher_4096").Raw) ||
		!bytes.Equal(e.IntermediarySignature, oscitest.Certificate(t, "osci_manager_signature_4096").Raw) {
		t.Errorf("entry %+v", e)
	}
	write("passive")
	if e, err := d.Lookup(t.Context(), "dvdv:09162000-0001", "urn:any"); err != nil || !e.Passive {
		t.Errorf("after the edit: %+v %v", e, err)
	}
	write("push")
	if _, err := d.Lookup(t.Context(), "dvdv:09162000-0001", "urn:any"); err == nil || !strings.Contains(err.Error(), "dvdv:09162000-0001") {
		t.Errorf("a bad mode: %v", err)
	}
	if e, err := d.Lookup(t.Context(), "dvdv:unbekannt", "urn:any"); err != nil || e.Known {
		t.Errorf("an unknown reader: %+v %v", e, err)
	}
}
