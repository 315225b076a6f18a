package xmldsig

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

// BenchmarkEnveloped measures, with one RSA-2048 key, enveloped signing and
// verification of a 4.5 KB and a 1 MB / 40k-element document in Parzelle,
// raw RSA signing of a SHA-256 digest with crypto alone, and xmlsec1
// --sign/--verify --repeat on the same files. Each reports ops/s; `make
// bench-xml` prints them side by side.
func BenchmarkEnveloped(b *testing.B) {
	p := newTestPKI(b)
	small, err := os.ReadFile("testdata/meldung.xml")
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	for _, doc := range []struct {
		name string
		data []byte
	}{{"4.5KB", small}, {"1MB", bigDocument()}} {
		signer := p.rsa.signer()
		signed, err := signer.SignEnveloped(doc.data)
		if err != nil {
			b.Fatal(err)
		}
		tmplFile := filepath.Join(dir, doc.name+"-template.xml")
		signedFile := filepath.Join(dir, doc.name+"-signed.xml")
		if err := os.WriteFile(tmplFile, template(b, doc.data, "rsa"), 0o600); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(signedFile, signed, 0o600); err != nil {
			b.Fatal(err)
		}
		v := &Verifier{Trust: p.trust}

		b.Run(doc.name+"/sign/parzelle", func(b *testing.B) {
			b.SetBytes(int64(len(doc.data)))
			for b.Loop() {
				if _, err := signer.SignEnveloped(doc.data); err != nil {
					b.Fatal(err)
				}
			}
			opsPerSec(b)
		})
		b.Run(doc.name+"/sign/raw-crypto", func(b *testing.B) {
			digest := sha256.Sum256(doc.data[:64])
			for b.Loop() {
				if _, err := p.rsa.key.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
					b.Fatal(err)
				}
			}
			opsPerSec(b)
		})
		b.Run(doc.name+"/sign/xmlsec1", func(b *testing.B) {
			xmlsec1Repeat(b, "--sign", "--privkey-pem", p.rsa.keyFile+","+p.rsa.crtFile, "--output", filepath.Join(dir, "out.xml"), tmplFile)
		})
		b.Run(doc.name+"/verify/parzelle", func(b *testing.B) {
			b.SetBytes(int64(len(signed)))
			for b.Loop() {
				if _, _, err := v.VerifyEnveloped(signed); err != nil {
					b.Fatal(err)
				}
			}
			opsPerSec(b)
		})
		b.Run(doc.name+"/verify/xmlsec1", func(b *testing.B) {
			xmlsec1Repeat(b, "--verify", "--trusted-pem", p.caFile, signedFile)
		})
	}
}

func opsPerSec(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

var executed = regexp.MustCompile(`Executed (\d+) tests in ([0-9.]+) msec`)

// xmlsec1Repeat runs xmlsec1 with --repeat b.N and reports its own timing
// (process start-up and key loading excluded, as xmlsec1 measures).
func xmlsec1Repeat(b *testing.B, args ...string) {
	out, err := xmlsec1(b, append([]string{args[0], "--repeat", strconv.Itoa(max(b.N, 2))}, args[1:]...)...)
	if err != nil {
		b.Fatalf("xmlsec1: %v\n%s", err, out)
	}
	m := executed.FindStringSubmatch(out)
	if m == nil {
		b.Fatalf("xmlsec1 printed no timing:\n%s", out)
	}
	n, _ := strconv.Atoi(m[1])
	msec, _ := strconv.ParseFloat(m[2], 64)
	b.ReportMetric(float64(n)/(msec/1000), "ops/s")
	b.ReportMetric(0, "ns/op")
}
