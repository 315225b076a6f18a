package main

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parzelle/parzelle/xmlenc"
)

// writeRSARecipient writes an RSA key and its self-signed certificate as PEM.
func writeRSARecipient(t *testing.T, dir, name string, usage x509.KeyUsage) (keyFile, certFile string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     usage,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	keyFile, certFile = filepath.Join(dir, name+".key.pem"), filepath.Join(dir, name+".cert.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return keyFile, certFile
}

// TestXMLEncryptDecrypt drives `parzelle xml encrypt` and `xml decrypt`
// over files: element and content encryption, PEM and PKCS#12 keys (the
// Governikus demo PKI), binary EncryptedData, and the refusals.
func TestXMLEncryptDecrypt(t *testing.T) {
	dir := t.TempDir()
	key, cert := writeRSARecipient(t, dir, "empfaenger", x509.KeyUsageKeyEncipherment)
	otherKey, _ := writeRSARecipient(t, dir, "fremder", x509.KeyUsageKeyEncipherment)
	_, signingCert := writeRSARecipient(t, dir, "unterzeichner", x509.KeyUsageDigitalSignature)
	plain := []byte(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<Antrag xmlns="urn:example:antrag"><Kopf>offen</Kopf><Person Id="p1"><Name>Müller</Name></Person></Antrag>` + "\n")
	in := filepath.Join(dir, "antrag.xml")
	if err := os.WriteFile(in, plain, 0o644); err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}

	for _, c := range []struct {
		name string
		args []string
		// exact: the decrypted bytes equal the input; otherwise the element
		// comes back with the default namespace declared on it as well.
		exact bool
		kind  string
		// hidden is text the encrypted document must not show.
		hidden string
	}{
		{"content", []string{"--cert", cert, in}, true, xmlenc.TypeContent, "Müller"},
		{"element by Id", []string{"--cert", cert, "--element", "p1", in}, false, xmlenc.TypeElement, "Müller"},
		{"element by name, CBC for xmlsec1", []string{"--cert", cert, "--element", "Kopf", "--algorithm", "aes128-cbc", "--key-transport", "rsa-oaep-mgf1p", in}, false, xmlenc.TypeElement, "offen"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var enc bytes.Buffer
			if err := xmlEncrypt(c.args, &enc); err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(enc.Bytes(), []byte(`Type="`+c.kind+`"`)) || bytes.Contains(enc.Bytes(), []byte(c.hidden)) {
				t.Fatalf("encrypted output:\n%s", enc.Bytes())
			}
			encFile := write(strings.ReplaceAll(c.name, " ", "_")+".xml", enc.Bytes())
			var dec bytes.Buffer
			if err := xmlDecrypt([]string{"--key", key, encFile}, &dec); err != nil {
				t.Fatal(err)
			}
			got := dec.Bytes()
			if !c.exact {
				got = bytes.Replace(got, []byte(` xmlns="urn:example:antrag"`), nil, 2)
				got = bytes.Replace(got, []byte(`<Antrag>`), []byte(`<Antrag xmlns="urn:example:antrag">`), 1)
			}
			if !bytes.Equal(got, plain) {
				t.Errorf("decrypted:\n%s\nwant\n%s", dec.Bytes(), plain)
			}
			// Someone else's key: no key for this recipient.
			err := xmlDecrypt([]string{"--key", otherKey, encFile}, &bytes.Buffer{})
			if !errors.Is(err, xmlenc.ErrNoKey) {
				t.Errorf("other key: want ErrNoKey, got %v", err)
			}
		})
	}

	t.Run("PKCS#12 of the OSCI demo PKI", func(t *testing.T) {
		certs := "../../../shared/specs/osci/testcerts/"
		var enc bytes.Buffer
		if err := xmlEncrypt([]string{"--cert", certs + "osci_manager_cipher_4096.cer", "--element", "Name", in}, &enc); err != nil {
			t.Fatal(err)
		}
		encFile := write("p12.xml", enc.Bytes())
		t.Setenv("TEST_OSCI_PIN", "123456")
		var dec bytes.Buffer
		if err := xmlDecrypt([]string{"--p12", certs + "osci_manager_cipher_4096.p12", "--pin-env", "TEST_OSCI_PIN", encFile}, &dec); err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(dec.Bytes(), []byte(`<Name xmlns="urn:example:antrag">Müller</Name>`)) {
			t.Errorf("decrypted:\n%s", dec.Bytes())
		}
		err := xmlDecrypt([]string{"--p12", certs + "osci_manager_cipher_4096.p12", "--pin-env", "TEST_UNSET_PIN_VARIABLE", encFile}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "TEST_UNSET_PIN_VARIABLE") {
			t.Errorf("unset PIN variable: %v", err)
		}
	})

	t.Run("binary EncryptedData", func(t *testing.T) {
		certs, err := os.ReadFile(cert)
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(certs)
		c, _ := x509.ParseCertificate(block.Bytes)
		enc, err := xmlenc.Encrypt([]byte("%PDF-1.7 \x00\x01"), []*x509.Certificate{c}, xmlenc.EncryptOptions{MimeType: "application/pdf"})
		if err != nil {
			t.Fatal(err)
		}
		var dec bytes.Buffer
		if err := xmlDecrypt([]string{"--key", key, "--cert", cert, write("bin.xml", enc.XML)}, &dec); err != nil {
			t.Fatal(err)
		}
		if dec.String() != "%PDF-1.7 \x00\x01" {
			t.Errorf("plaintext %q", dec.Bytes())
		}
	})

	for _, c := range []struct {
		name    string
		encrypt bool
		args    []string
		want    string
	}{
		{"encrypt without --cert", true, []string{in}, "at least one --cert"},
		{"encrypt unknown element", true, []string{"--cert", cert, "--element", "Fehlt", in}, `no element with Id or local name "Fehlt"`},
		{"encrypt unknown algorithm", true, []string{"--cert", cert, "--algorithm", "des-cbc", in}, `content encryption "des-cbc"`},
		{"encrypt for a key that cannot decrypt", true, []string{"--cert", signingCert, in}, "key encipherment"},
		{"decrypt without key", false, []string{in}, "--key KEY.pem or --p12"},
		{"decrypt a plain document", false, []string{"--key", key, in}, "no xenc:EncryptedData"},
		{"decrypt with a .p12 as --key", false, []string{"--key", "x.p12", in}, "use --p12"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var err error
			if c.encrypt {
				err = xmlEncrypt(c.args, &bytes.Buffer{})
			} else {
				err = xmlDecrypt(c.args, &bytes.Buffer{})
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want an error mentioning %q, got %v", c.want, err)
			}
		})
	}
}
