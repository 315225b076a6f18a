package xmldsig

import (
	"bytes"
	"crypto/x509"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/parzelle/parzelle/c14n"
	"github.com/parzelle/parzelle/xmlsafe"
)

// The attack corpus on an enveloped signature: every manipulation of a
// signed document is refused, each with its own reason.
func TestEnvelopedAttacks(t *testing.T) {
	p := newTestPKI(t)
	doc, err := os.ReadFile("testdata/meldung.xml")
	if err != nil {
		t.Fatal(err)
	}
	signed, err := p.rsa.signer().SignEnveloped(doc)
	if err != nil {
		t.Fatal(err)
	}
	sigStart := bytes.Index(signed, []byte("<ds:Signature"))
	sigEnd := bytes.Index(signed, []byte("</ds:Signature>")) + len("</ds:Signature>")
	signature := string(signed[sigStart:sigEnd])
	unsigned := string(signed[:sigStart]) + string(signed[sigEnd:])
	rootEnd := strings.Index(unsigned, `version="1.0">`) + len(`version="1.0">`)
	untrustedSigned, err := p.untrusted.signer().SignEnveloped(doc)
	if err != nil {
		t.Fatal(err)
	}
	replace := func(old, new string) func(string) string {
		return func(s string) string {
			if !strings.Contains(s, old) {
				t.Fatalf("corpus: %q not in the document", old)
			}
			return strings.Replace(s, old, new, 1)
		}
	}
	cases := []struct {
		name   string
		mutate func(string) string
		want   string
	}{
		{"XSW1 signed root wrapped in a new root", func(s string) string {
			return `<pz:Meldung xmlns:pz="urn:parzelle:test"><pz:Evil/><pz:Wrapper>` + s[strings.Index(s, "<pz:Meldung"):] + `</pz:Wrapper></pz:Meldung>`
		}, "root element carries no ds:Signature"},
		{"XSW2 evil root holding the signature and the signed content in an Object", func(s string) string {
			return `<pz:Meldung xmlns:pz="urn:parzelle:test" Id="meldung-1">` + strings.Replace(signature, `</ds:Signature>`, `<ds:Object>`+unsigned[strings.Index(unsigned, "<pz:Meldung"):]+`</ds:Object></ds:Signature>`, 1) + `<pz:Evil/></pz:Meldung>`
		}, "used twice"},
		{"XSW3 signature moved into a child element", func(s string) string {
			u := strings.Replace(unsigned, "<pz:Kopf>", "<pz:Kopf>"+signature, 1)
			return u
		}, "root element carries no ds:Signature"},
		{"XSW4 second signature beside the first", func(s string) string {
			return s[:rootEnd] + signature + s[rootEnd:]
		}, "2 ds:Signature"},
		{"XSW5 evil content appended to the signed root", replace("</pz:Meldung>", "<pz:Person>Evil</pz:Person></pz:Meldung>"), "digest does not match"},
		{"XSW6 duplicate Id on an injected element", replace("<pz:Kopf>", `<pz:Kopf><pz:X Id="meldung-1"/>`), "used twice"},
		{"XSW7 reference switched to another element's Id", func(s string) string {
			return strings.Replace(s, `URI=""`, `URI="#other"`, 1)
		}, "does not verify"},
		{"XSW8 signed content changed in text", replace("Anna &amp; Bernd", "Anna &amp; Mallory"), "digest does not match"},
		{"comment injection that changes the text", replace(">Müller<", ">Mül<!--x-->ler2<"), "digest does not match"},
		{"attribute changed", replace(`hausnummer="1"`, `hausnummer="13"`), "digest does not match"},
		{"namespace rebound", replace(`xmlns:pz="urn:parzelle:test"`, `xmlns:pz="urn:evil"`), "digest does not match"},
		{"KeyInfo swapped to an untrusted certificate", func(s string) string {
			return strings.Replace(s, certB64(s), certB64(string(untrustedSigned)), 1)
		}, "certificate not trusted"},
		{"re-signed with an untrusted key", func(string) string { return string(untrustedSigned) }, "certificate not trusted"},
		{"signature value altered", func(s string) string {
			return regexp.MustCompile(`<ds:SignatureValue>[A-Za-z0-9+/]{8}`).ReplaceAllString(s, "<ds:SignatureValue>AAAAAAAA")
		}, "does not verify"},
		{"SHA-1 digest", replace(SHA256, "http://www.w3.org/2000/09/xmldsig#sha1"), "SHA-1 digests are not accepted"},
		{"XPath transform", replace(`<ds:Transform Algorithm="`+EnvelopedSignature+`"/>`, `<ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116"><ds:XPath>not(ancestor-or-self::pz:Person)</ds:XPath></ds:Transform>`), "unsupported transform"},
		{"XPointer reference", replace(`URI=""`, `URI="#xpointer(/)"`), "does not verify"},
		{"DTD with an entity", func(s string) string {
			return strings.Replace(s, "<!-- test", `<!DOCTYPE x [<!ENTITY e "Müller">]><!-- test`, 1)
		}, "DOCTYPE"},
		{"no KeyInfo", func(s string) string {
			return regexp.MustCompile(`<ds:KeyInfo>.*</ds:KeyInfo>`).ReplaceAllString(s, "")
		}, "no KeyInfo"},
	}
	v := &Verifier{Trust: p.trust}
	if _, _, err := v.VerifyEnveloped(signed); err != nil {
		t.Fatalf("the untouched document: %v", err)
	}
	seen := map[string]bool{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			attacked := tc.mutate(string(signed))
			if attacked == string(signed) {
				t.Fatal("the mutation changed nothing")
			}
			_, _, err := v.VerifyEnveloped([]byte(attacked))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("refused for the wrong reason: %v (want %q)", err, tc.want)
			}
			seen[err.Error()] = true
		})
	}
}

func certB64(s string) string {
	m := regexp.MustCompile(`<ds:X509Certificate>([^<]+)<`).FindStringSubmatch(s)
	return m[1]
}

// Equivalent serializations verify: what changes no canonical byte is not
// a change (and the consumer reads the canonical content).
func TestEquivalentSerializations(t *testing.T) {
	p := newTestPKI(t)
	doc, err := os.ReadFile("testdata/meldung.xml")
	if err != nil {
		t.Fatal(err)
	}
	signed, err := p.ec.signer().SignEnveloped(doc)
	if err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(string) string{
		"comment splitting a text":   func(s string) string { return strings.Replace(s, ">Müller<", ">Mül<!-- -->ler<", 1) },
		"CDATA instead of an entity": func(s string) string { return strings.Replace(s, "Anna &amp; Bernd", "Anna <![CDATA[&]]> Bernd", 1) },
		"redundant namespace declaration": func(s string) string {
			return strings.Replace(s, "<pz:Kopf>", `<pz:Kopf xmlns:pz="urn:parzelle:test">`, 1)
		},
		"attribute order and quotes": func(s string) string {
			return strings.Replace(s, `strasse="Königsallee" hausnummer="1"`, `hausnummer='1'  strasse="Königsallee"`, 1)
		},
	} {
		t.Run(name, func(t *testing.T) {
			changed := mutate(string(signed))
			if changed == string(signed) {
				t.Fatal("the mutation changed nothing")
			}
			d, _, err := (&Verifier{Trust: p.trust}).VerifyEnveloped([]byte(changed))
			if err != nil {
				t.Fatal(err)
			}
			if got := d.Root.Child("urn:parzelle:test", "Person").Child("urn:parzelle:test", "Familienname").Text; got != "Müller" {
				t.Errorf("the consumer reads %q, not the signed text", got)
			}
		})
	}
}

const soapNS = "http://schemas.xmlsoap.org/soap/envelope/"

// Wrapping attacks on a detached signature over a SOAP body: the verifier
// reports what it digested, and the consumer's check with Result.Signed
// refuses a body that is not the signed one.
func TestDetachedWrapping(t *testing.T) {
	p := newTestPKI(t)
	doc := []byte(`<soap:Envelope xmlns:soap="` + soapNS + `"><soap:Header><pz:Sec xmlns:pz="urn:parzelle:test" Id="sec"></pz:Sec></soap:Header>` +
		`<soap:Body Id="body"><pz:Auftrag xmlns:pz="urn:parzelle:test">Zahle 10 EUR</pz:Auftrag></soap:Body></soap:Envelope>`)
	signed, err := p.rsa.signer().SignDetached(doc, "sec", []string{"body"}, nil, c14n.Method{})
	if err != nil {
		t.Fatal(err)
	}
	body := string(signed[bytes.Index(signed, []byte("<soap:Body")):bytes.Index(signed, []byte("</soap:Envelope>"))])
	evil := `<soap:Body><pz:Auftrag xmlns:pz="urn:parzelle:test">Zahle 10000 EUR</pz:Auftrag></soap:Body>`
	consume := func(raw string) error {
		d, err := ParseDocument(strings.NewReader(raw))
		if err != nil {
			return err
		}
		var sig *xmlsafe.Element
		for _, s := range d.Root.FindAll(Namespace, "Signature") {
			sig = s
		}
		res, err := (&Verifier{Trust: p.trust}).Verify(d, sig)
		if err != nil {
			return err
		}
		return res.Signed(d.Root.Child(soapNS, "Body"))
	}
	if err := consume(string(signed)); err != nil {
		t.Fatalf("the untouched message: %v", err)
	}
	for name, tc := range map[string]struct{ attacked, want string }{
		"signed body moved into the header, evil body in its place": {
			strings.Replace(strings.Replace(string(signed), body, evil, 1), "</soap:Header>", "<soap:Wrapper>"+body+"</soap:Wrapper></soap:Header>", 1),
			"not covered by the signature"},
		"evil body with the signed body's Id, original kept": {
			strings.Replace(strings.Replace(string(signed), body, strings.Replace(evil, "<soap:Body>", `<soap:Body Id="body">`, 1), 1), "</soap:Header>", body+"</soap:Header>", 1),
			"used twice"},
		"evil body takes the Id, original removed": {
			strings.Replace(string(signed), body, strings.Replace(evil, "<soap:Body>", `<soap:Body Id="body">`, 1), 1),
			"digest does not match"},
	} {
		t.Run(name, func(t *testing.T) {
			err := consume(tc.attacked)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// RSA-PSS has no support in xmlsec1 1.2; Parzelle signs and verifies it,
// and a PSS signature is not mistaken for PKCS#1 v1.5.
func TestRSAPSS(t *testing.T) {
	p := newTestPKI(t)
	doc, _ := os.ReadFile("testdata/meldung.xml")
	s := &Signer{Key: p.rsa.key, Certificates: []*x509.Certificate{p.rsa.cert}, Method: RSAPSSSHA256}
	signed, err := s.SignEnveloped(doc)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := (&Verifier{Trust: p.trust}).VerifyEnveloped(signed); err != nil {
		t.Fatal(err)
	}
	relabelled := bytes.Replace(signed, []byte(RSAPSSSHA256), []byte(RSASHA256), 1)
	if _, _, err := (&Verifier{Trust: p.trust}).VerifyEnveloped(relabelled); err == nil {
		t.Fatal("a PSS signature verified as PKCS#1 v1.5")
	}
	if _, err := (&Signer{Key: p.ec.key, Method: RSAPSSSHA256}).SignEnveloped(doc); err == nil {
		t.Fatal("an ECDSA key signed with RSA-PSS")
	}
}
