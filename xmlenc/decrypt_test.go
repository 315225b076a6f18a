package xmlenc_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/osci"
	"github.com/parzelle/parzelle/xmlenc"
)

// TestRoundTrip encrypts and decrypts with every content algorithm and every
// key transport variant, inline, by CipherReference and with MgmtData.
func TestRoundTrip(t *testing.T) {
	r := newRecipient(t, "roundtrip")
	other := newRecipient(t, "other")
	plain := []byte("<Geheim>Inhalt, der genau 16 Byte</Geheim>")
	transports := []struct {
		name string
		opt  xmlenc.EncryptOptions
	}{
		{"rsa-oaep-sha256-mgf1sha256 (default)", xmlenc.EncryptOptions{}},
		{"rsa-oaep-sha512-mgf1sha1", xmlenc.EncryptOptions{Digest: xmlenc.SHA512, MGF: xmlenc.MGF1SHA1}},
		{"rsa-oaep-mgf1p-sha1", xmlenc.EncryptOptions{KeyTransport: xmlenc.RSAOAEPMGF1P}},
		{"rsa-oaep-mgf1p-sha256", xmlenc.EncryptOptions{KeyTransport: xmlenc.RSAOAEPMGF1P, Digest: xmlenc.SHA256}},
		{"mgmtdata", xmlenc.EncryptOptions{MgmtData: true}},
	}
	for _, alg := range []string{xmlenc.AES128GCM, xmlenc.AES192GCM, xmlenc.AES256GCM, xmlenc.AES128CBC, xmlenc.AES192CBC, xmlenc.AES256CBC} {
		for _, tr := range transports {
			for _, ref := range []bool{false, true} {
				name := fmt.Sprintf("%s/%s/reference=%v", alg[strings.LastIndex(alg, "#")+1:], tr.name, ref)
				t.Run(name, func(t *testing.T) {
					opt := tr.opt
					opt.Algorithm, opt.MimeType, opt.ID = alg, "text/xml", "ed1"
					if ref {
						opt.CipherReference = "cid:part%201"
					}
					enc, err := xmlenc.Encrypt(plain, recipientsOf(other, r), opt)
					if err != nil {
						t.Fatal(err)
					}
					if ref != (enc.Cipher != nil) {
						t.Fatalf("Cipher returned: %v", enc.Cipher != nil)
					}
					resolve := func(uri string) ([]byte, error) {
						if uri != "cid:part%201" {
							return nil, fmt.Errorf("no part %s", uri)
						}
						return enc.Cipher, nil
					}
					res, err := xmlenc.Decrypt(mustParse(t, enc.XML), xmlenc.DecryptOptions{Keys: []*keys.KeyPair{r.pair}, Resolve: resolve})
					if err != nil {
						t.Fatalf("%v\n%s", err, enc.XML)
					}
					if !bytes.Equal(res.Plaintext, plain) || res.MimeType != "text/xml" || res.ID != "ed1" || res.Algorithm != alg || !bytes.Equal(res.Key, enc.Key) {
						t.Errorf("got %q %q %q %q", res.Plaintext, res.MimeType, res.ID, res.Algorithm)
					}
					if tr.opt.MgmtData == (res.Recipient != nil) {
						t.Errorf("recipient %v", res.Recipient)
					}
				})
			}
		}
	}
}

// TestOAEPDefaults: an xmlenc11 rsa-oaep EncryptionMethod without
// DigestMethod and MGF means SHA-1 and MGF1-SHA-1.
func TestOAEPDefaults(t *testing.T) {
	r := newRecipient(t, "defaults")
	enc, err := xmlenc.Encrypt([]byte("x"), recipientsOf(r), xmlenc.EncryptOptions{Digest: xmlenc.SHA1})
	if err != nil {
		t.Fatal(err)
	}
	stripped := strings.NewReplacer(
		`<ds:DigestMethod Algorithm="`+xmlenc.SHA1+`"></ds:DigestMethod>`, "",
		`<xenc11:MGF xmlns:xenc11="`+xmlenc.Namespace11+`" Algorithm="`+xmlenc.MGF1SHA1+`"></xenc11:MGF>`, "",
	).Replace(string(enc.XML))
	// Element names, not bare "MGF": three letters turn up in base64 by chance.
	if strings.Contains(stripped, "DigestMethod") || strings.Contains(stripped, ":MGF") {
		t.Fatalf("not stripped: %s", stripped)
	}
	res, err := xmlenc.Decrypt(mustParse(t, []byte(stripped)), xmlenc.DecryptOptions{Keys: []*keys.KeyPair{r.pair}})
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Plaintext) != "x" {
		t.Fatalf("plaintext %q", res.Plaintext)
	}
}

// TestInPlace encrypts an element and an element's content and decrypts the
// document in place again.
func TestInPlace(t *testing.T) {
	r := newRecipient(t, "inplace")
	src := []byte(interopDoc)
	root := mustParse(t, src)
	dec := xmlenc.DecryptOptions{Keys: []*keys.KeyPair{r.pair}}

	// Content: the bytes come back exactly.
	enc, err := xmlenc.EncryptContent(src, find(root, "Geheim"), recipientsOf(r), xmlenc.EncryptOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out, n, err := xmlenc.DecryptDocument(enc, dec)
	if err != nil || n != 1 || !bytes.Equal(out, src) {
		t.Fatalf("content: %d %v\n%s", n, err, out)
	}

	// Element: the plaintext carries the namespace it inherited, so it
	// parses on its own; in place the document means the same.
	enc, err = xmlenc.EncryptElement(src, find(root, "Geheim"), recipientsOf(r), xmlenc.EncryptOptions{Algorithm: xmlenc.AES128CBC})
	if err != nil {
		t.Fatal(err)
	}
	encRoot := mustParse(t, enc)
	res, err := xmlenc.Decrypt(find(encRoot, "EncryptedData"), dec)
	if err != nil {
		t.Fatal(err)
	}
	if res.Type != xmlenc.TypeElement || mustParse(t, res.Plaintext).Name.Space != "urn:example:x" {
		t.Errorf("element plaintext %s (Type %s)", res.Plaintext, res.Type)
	}
	out, n, err = xmlenc.DecryptDocument(enc, dec)
	if err != nil || n != 1 || tree(mustParse(t, out)) != tree(root) {
		t.Fatalf("element: %d %v\n%s", n, err, out)
	}

	// Two elements encrypted one after the other both come back (with the
	// inherited declaration of x, which they do not use but QName content
	// might).
	enc1, _ := xmlenc.EncryptElement(src, find(root, "Kopf"), recipientsOf(r), xmlenc.EncryptOptions{})
	r1 := mustParse(t, enc1)
	enc2, err := xmlenc.EncryptElement(enc1, find(r1, "Ende"), recipientsOf(r), xmlenc.EncryptOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out, n, err = xmlenc.DecryptDocument(enc2, dec)
	if err != nil || n != 2 || tree(mustParse(t, out)) != tree(root) || !bytes.Contains(out, []byte(`<Kopf xmlns:x="urn:example:x">Kopf</Kopf>`)) {
		t.Fatalf("two: %d %v\n%s", n, err, out)
	}

	// A document without encrypted data is returned unchanged.
	if out, n, err := xmlenc.DecryptDocument(src, dec); err != nil || n != 0 || !bytes.Equal(out, src) {
		t.Errorf("plain document: %d %v", n, err)
	}
}

// edXML builds an EncryptedData by hand for the bad-input cases.
func edXML(alg, keyInfo, cipherData string) string {
	return `<xenc:EncryptedData xmlns:xenc="` + xmlenc.Namespace + `" xmlns:ds="` + xmlenc.DSigNamespace + `" Type="` + xmlenc.TypeContent + `">` +
		`<xenc:EncryptionMethod Algorithm="` + alg + `"/>` + keyInfo + `<xenc:CipherData>` + cipherData + `</xenc:CipherData></xenc:EncryptedData>`
}

func mgmt(key []byte) string {
	return `<ds:KeyInfo><ds:MgmtData>` + base64.StdEncoding.EncodeToString(key) + `</ds:MgmtData></ds:KeyInfo>`
}

func value(b []byte) string {
	return `<xenc:CipherValue>` + base64.StdEncoding.EncodeToString(b) + `</xenc:CipherValue>`
}

// cbcRaw encrypts blocks with AES-CBC and no padding, so a test can choose
// the last byte (the W3C pad length).
func cbcRaw(key, plain []byte) []byte {
	block, _ := aes.NewCipher(key)
	out := make([]byte, aes.BlockSize+len(plain))
	copy(out[aes.BlockSize:], plain)
	cipher.NewCBCEncrypter(block, out[:aes.BlockSize]).CryptBlocks(out[aes.BlockSize:], out[aes.BlockSize:])
	return out
}

// TestBadInput: each broken or hostile input fails with its specific error.
func TestBadInput(t *testing.T) {
	r := newRecipient(t, "reader")
	other := newRecipient(t, "other")
	good, err := xmlenc.Encrypt([]byte("<a>geheim</a>"), recipientsOf(r), xmlenc.EncryptOptions{})
	if err != nil {
		t.Fatal(err)
	}
	goodRef, err := xmlenc.Encrypt([]byte("<a>geheim</a>"), recipientsOf(r), xmlenc.EncryptOptions{CipherReference: "cid:osci_enc"})
	if err != nil {
		t.Fatal(err)
	}
	gcmCT := func(x string) []byte { // the inline GCM ciphertext of good
		i := strings.LastIndex(x, "<xenc:CipherValue>") + len("<xenc:CipherValue>")
		b, _ := base64.StdEncoding.DecodeString(x[i : strings.Index(x[i:], "<")+i])
		return b
	}(string(good.XML))
	replaceCT := func(ct []byte) string {
		x := string(good.XML)
		i := strings.LastIndex(x, "<xenc:CipherValue>")
		j := strings.LastIndex(x, "</xenc:CipherValue>")
		return x[:i] + value(ct) + x[j+len("</xenc:CipherValue>"):]
	}
	tampered := bytes.Clone(gcmCT)
	tampered[20] ^= 1
	key := bytes.Repeat([]byte{7}, 32)
	twoBlocks := bytes.Repeat([]byte("0123456789abcdef"), 2)
	padZero := cbcRaw(key, append(twoBlocks[:31:31], 0))
	pad17 := cbcRaw(key, append(twoBlocks[:31:31], 17))
	// A valid pad but plaintext that is not XML content: in place this must
	// look like any other CBC failure.
	notXML := cbcRaw(key, append([]byte("<unclosed>......"), bytes.Repeat([]byte{1}, 16)...))
	// Our certificate, a stranger's private key: the EncryptedKey names us.
	mismatched := &keys.KeyPair{Key: other.pair.Key, Chain: r.pair.Chain}
	mime, err := osci.ParseMIME([]byte("MIME-Version: 1.0\r\nContent-Type: Multipart/Related; boundary=b/x+1\r\n\r\n--b/x+1\r\nContent-ID: <osci@message>\r\n\r\n<x/>\r\n--b/x+1--\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	withRef := func(uri string) string {
		return strings.Replace(string(goodRef.XML), "cid:osci_enc", uri, 1)
	}
	manyKeys := strings.Replace(string(good.XML), "<ds:KeyInfo><xenc:EncryptedKey", "<ds:KeyInfo>"+strings.Repeat(`<xenc:EncryptedKey><xenc:EncryptionMethod Algorithm="`+xmlenc.RSAOAEP+`"/><xenc:CipherData><xenc:CipherValue>AAAA</xenc:CipherValue></xenc:CipherData></xenc:EncryptedKey>`, 16)+"<xenc:EncryptedKey", 1)

	cases := []struct {
		name     string
		doc      string
		opt      xmlenc.DecryptOptions
		inPlace  bool
		want     error
		contains string
	}{
		{"no key of ours", string(good.XML), xmlenc.DecryptOptions{Keys: []*keys.KeyPair{other.pair}}, false, xmlenc.ErrNoKey, `"CN=other,O=Parzelle test"`},
		{"no keys configured", string(good.XML), xmlenc.DecryptOptions{}, false, xmlenc.ErrNoKey, "no decryption keys"},
		{"wrong private key for our certificate", string(good.XML), xmlenc.DecryptOptions{Keys: []*keys.KeyPair{mismatched}}, false, xmlenc.ErrWrongKey, "CN=reader"},
		{"tampered GCM ciphertext", replaceCT(tampered), xmlenc.DecryptOptions{Keys: []*keys.KeyPair{r.pair}}, false, xmlenc.ErrDecryptionFailed, "aes256-gcm"},
		{"GCM tag cut off", replaceCT(gcmCT[:len(gcmCT)-1]), xmlenc.DecryptOptions{Keys: []*keys.KeyPair{r.pair}}, false, xmlenc.ErrDecryptionFailed, ""},
		{"truncated GCM ciphertext", replaceCT(gcmCT[:27]), xmlenc.DecryptOptions{Keys: []*keys.KeyPair{r.pair}}, false, xmlenc.ErrMalformed, "truncated"},
		{"truncated CBC ciphertext", edXML(xmlenc.AES256CBC, mgmt(key), value(padZero[:40])), xmlenc.DecryptOptions{}, false, xmlenc.ErrMalformed, "truncated"},
		{"CBC pad length 0", edXML(xmlenc.AES256CBC, mgmt(key), value(padZero)), xmlenc.DecryptOptions{}, false, xmlenc.ErrDecryptionFailed, ""},
		{"CBC pad length 17", edXML(xmlenc.AES256CBC, mgmt(key), value(pad17)), xmlenc.DecryptOptions{}, false, xmlenc.ErrDecryptionFailed, ""},
		{"CBC plaintext not XML, in place", "<doc>" + edXML(xmlenc.AES256CBC, mgmt(key), value(notXML)) + "</doc>", xmlenc.DecryptOptions{}, true, xmlenc.ErrDecryptionFailed, ""},
		{"CBC refused", edXML(xmlenc.AES256CBC, mgmt(key), value(pad17)), xmlenc.DecryptOptions{RefuseCBC: true}, false, xmlenc.ErrUnsupportedAlgorithm, "no integrity"},
		{"unknown content algorithm", edXML("http://www.w3.org/2001/04/xmlenc#tripledes-cbc", mgmt(key[:24]), value(pad17)), xmlenc.DecryptOptions{}, false, xmlenc.ErrUnsupportedAlgorithm, "tripledes-cbc"},
		{"rsa-1_5 key transport", strings.Replace(string(good.XML), xmlenc.RSAOAEP, xmlenc.RSA15, 1), xmlenc.DecryptOptions{Keys: []*keys.KeyPair{r.pair}}, false, xmlenc.ErrUnsupportedAlgorithm, "Bleichenbacher"},
		{"unknown OAEP digest", strings.Replace(string(good.XML), xmlenc.SHA256, "urn:md5", 1), xmlenc.DecryptOptions{Keys: []*keys.KeyPair{r.pair}}, false, xmlenc.ErrUnsupportedAlgorithm, "urn:md5"},
		{"unknown CipherReference transform", strings.Replace(withRef("cid:osci_enc"), "></xenc:CipherReference>", `><xenc:Transforms><ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116"/></xenc:Transforms></xenc:CipherReference>`, 1), xmlenc.DecryptOptions{Keys: []*keys.KeyPair{r.pair}, Resolve: mime.Resolve}, false, xmlenc.ErrUnsupportedAlgorithm, "xpath"},
		{"missing CipherReference part", withRef("cid:osci_enc"), xmlenc.DecryptOptions{Keys: []*keys.KeyPair{r.pair}, Resolve: mime.Resolve}, false, xmlenc.ErrCipherReference, "Content-ID <osci_enc>"},
		{"CipherReference without MIME parts", withRef("cid:osci_enc"), xmlenc.DecryptOptions{Keys: []*keys.KeyPair{r.pair}}, false, xmlenc.ErrCipherReference, "no MIME parts"},
		{"oversize inline ciphertext", string(good.XML), xmlenc.DecryptOptions{Keys: []*keys.KeyPair{r.pair}, MaxCipherBytes: 16}, false, xmlenc.ErrTooLarge, "limit 16"},
		{"oversize referenced part", withRef("cid:osci%40message"), xmlenc.DecryptOptions{Keys: []*keys.KeyPair{r.pair}, Resolve: mime.Resolve, MaxCipherBytes: 2}, false, xmlenc.ErrTooLarge, "limit 2"},
		{"too many EncryptedKeys", manyKeys, xmlenc.DecryptOptions{Keys: []*keys.KeyPair{r.pair}}, false, xmlenc.ErrTooLarge, "17 EncryptedKeys"},
		{"bad base64", edXML(xmlenc.AES256GCM, mgmt(key), `<xenc:CipherValue>!!!!</xenc:CipherValue>`), xmlenc.DecryptOptions{}, false, xmlenc.ErrMalformed, "base64"},
		{"MgmtData key of the wrong length", edXML(xmlenc.AES256GCM, mgmt(key[:16]), value(gcmCT)), xmlenc.DecryptOptions{}, false, xmlenc.ErrMalformed, "16-byte key"},
		{"no KeyInfo", edXML(xmlenc.AES256GCM, "", value(gcmCT)), xmlenc.DecryptOptions{Keys: []*keys.KeyPair{r.pair}}, false, xmlenc.ErrNoKey, "no ds:KeyInfo"},
		{"no CipherData content", edXML(xmlenc.AES256GCM, mgmt(key), ""), xmlenc.DecryptOptions{}, false, xmlenc.ErrMalformed, "neither CipherValue nor CipherReference"},
		{"not an EncryptedData", `<xenc:EncryptedKey xmlns:xenc="` + xmlenc.Namespace + `"/>`, xmlenc.DecryptOptions{}, false, xmlenc.ErrMalformed, "expected xenc:EncryptedData"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var err error
			if c.inPlace {
				_, _, err = xmlenc.DecryptDocument([]byte(c.doc), c.opt)
			} else {
				_, err = xmlenc.Decrypt(mustParse(t, []byte(c.doc)), c.opt)
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("want %v, got %v", c.want, err)
			}
			if !strings.Contains(err.Error(), c.contains) {
				t.Errorf("error %q does not mention %q", err, c.contains)
			}
			// The symmetric failures must not tell padding, tag and parse
			// errors apart.
			if c.want == xmlenc.ErrDecryptionFailed {
				for _, leak := range []string{"padding", "tag", "authentication", "syntax", "line"} {
					if strings.Contains(strings.ToLower(err.Error()), leak) {
						t.Errorf("error %q reveals %q", err, leak)
					}
				}
			}
		})
	}
}
