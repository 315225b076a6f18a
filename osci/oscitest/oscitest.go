// Package oscitest loads, for tests, the Governikus OSCI 1.2 material that
// lies beside the checkout in ../shared/specs/osci: the sample requests and
// the demo PKI (PIN 123456). CI always has it there, so its absence fails
// a test rather than skipping it.
package oscitest

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/parzelle/parzelle/keys"
)

// Samples and Certs are the directories of the sample requests and of the
// demo PKI, absolute.
var Samples, Certs = func() (string, string) {
	_, file, _, _ := runtime.Caller(0)
	specs := filepath.Join(filepath.Dir(file), "..", "..", "..", "shared", "specs", "osci")
	return filepath.Join(specs, "samples"), filepath.Join(specs, "testcerts")
}()

// keyCache keeps decoded key pairs: a PKCS#12 key derivation costs
// tens of milliseconds, and tests ask for the same keys again and again.
var keyCache sync.Map // name → *keys.KeyPair

// Key loads a key pair of the demo PKI by name ("bob_cipher_4096").
func Key(t testing.TB, name string) *keys.KeyPair {
	t.Helper()
	if kp, ok := keyCache.Load(name); ok {
		return kp.(*keys.KeyPair)
	}
	kp, err := keys.LoadPKCS12(filepath.Join(Certs, name+".p12"), "123456")
	if err != nil {
		t.Fatalf("demo key %s (the specs must be at %s): %v", name, Certs, err)
	}
	kp2, _ := keyCache.LoadOrStore(name, kp)
	return kp2.(*keys.KeyPair)
}

// Certificate loads a certificate of the demo PKI by name
// ("alice_signature_4096").
func Certificate(t testing.TB, name string) *x509.Certificate {
	t.Helper()
	certs, err := keys.LoadCertificates(filepath.Join(Certs, name+".cer"))
	if err != nil {
		t.Fatalf("demo certificate %s (the specs must be at %s): %v", name, Certs, err)
	}
	return certs[0]
}

// Sample reads a sample request by file name.
func Sample(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(Samples, name))
	if err != nil {
		t.Fatalf("OSCI sample (the specs must be at %s): %v", Samples, err)
	}
	return data
}
