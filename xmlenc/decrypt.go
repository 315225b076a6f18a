package xmlenc

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"math/big"
	"sort"
	"strings"

	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/xmlsafe"
)

// Default limits of a decryption.
const (
	DefaultMaxCipherBytes   = 64 << 20 // the xmlsafe document limit
	DefaultMaxEncryptedKeys = 16
)

// Resolver returns the bytes a CipherReference URI points to; for OSCI a
// "cid:" URI names a MIME part, and the resolver returns its body after the
// MIME Content-Transfer-Encoding is undone.
type Resolver func(uri string) ([]byte, error)

// DecryptOptions say with which keys and under which limits to decrypt.
type DecryptOptions struct {
	// Keys are our decryption key pairs, tried in order. An EncryptedKey
	// that identifies its recipient (certificate, issuer and serial, subject
	// key identifier, subject name, RSA modulus) is tried with the matching
	// key first; when no EncryptedKey matches, every key is tried on every
	// EncryptedKey. A KeyPair without a certificate (a bare PEM key) is
	// matched by its public key only.
	Keys []*keys.KeyPair
	// Resolve resolves CipherReference URIs; nil refuses them.
	Resolve Resolver
	// Document is the root of the document the EncryptedData belongs to,
	// used to follow ds:RetrievalMethod URIs ("#id") to X509Data when
	// matching recipients (OSCI points at the NonIntermediaryCertificates
	// this way). Optional.
	Document *xmlsafe.Element
	// MaxCipherBytes bounds the ciphertext of one EncryptedData (0 means
	// DefaultMaxCipherBytes).
	MaxCipherBytes int64
	// MaxEncryptedKeys bounds the EncryptedKeys looked at in one KeyInfo (0
	// means DefaultMaxEncryptedKeys).
	MaxEncryptedKeys int
	// RefuseCBC refuses AES-CBC content: CBC has no integrity, so a party
	// that can send modified ciphertexts and observe whether they are
	// accepted may learn the plaintext. Set it where no legacy sender needs
	// CBC.
	RefuseCBC bool
	// Limits are used by DecryptDocument to parse the document.
	Limits xmlsafe.Limits
}

func (o DecryptOptions) maxCipher() int64 {
	if o.MaxCipherBytes > 0 {
		return o.MaxCipherBytes
	}
	return DefaultMaxCipherBytes
}

func (o DecryptOptions) maxKeys() int {
	if o.MaxEncryptedKeys > 0 {
		return o.MaxEncryptedKeys
	}
	return DefaultMaxEncryptedKeys
}

// Result is a decrypted EncryptedData.
type Result struct {
	Plaintext []byte
	// Type and MimeType are the EncryptedData's attributes ("" when absent):
	// TypeElement or TypeContent for XML, or any other URI.
	Type, MimeType string
	// ID is the EncryptedData's Id attribute.
	ID string
	// Algorithm is the content encryption algorithm URI.
	Algorithm string
	// Key is the content encryption key that worked.
	Key []byte
	// Recipient is the key pair that unwrapped the key; nil when the key
	// came from ds:MgmtData.
	Recipient *keys.KeyPair
}

// Decrypt decrypts an xenc:EncryptedData element.
func Decrypt(ed *xmlsafe.Element, opt DecryptOptions) (*Result, error) {
	if ed == nil || ed.Name.Space != Namespace || ed.Name.Local != "EncryptedData" {
		name := "nothing"
		if ed != nil {
			name = fmt.Sprintf("{%s}%s", ed.Name.Space, ed.Name.Local)
		}
		return nil, fmt.Errorf("%w: expected xenc:EncryptedData, got %s", ErrMalformed, name)
	}
	res := &Result{}
	res.Type, _ = ed.Attribute("Type")
	res.MimeType, _ = ed.Attribute("MimeType")
	res.ID, _ = ed.Attribute("Id")
	where := "EncryptedData"
	if res.ID != "" {
		where = fmt.Sprintf("EncryptedData Id=%q", res.ID)
	}

	method := ed.Child(Namespace, "EncryptionMethod")
	if method == nil {
		return nil, fmt.Errorf("%w: %s has no EncryptionMethod (an algorithm agreed out of band is not supported)", ErrMalformed, where)
	}
	algURI, _ := method.Attribute("Algorithm")
	alg, err := lookupContent(algURI)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if !alg.gcm && opt.RefuseCBC {
		return nil, fmt.Errorf("%w: %s uses %s, and CBC content is refused here (it has no integrity protection)", ErrUnsupportedAlgorithm, where, alg.name)
	}
	res.Algorithm = alg.uri
	ivLen := aes.BlockSize
	if alg.gcm {
		ivLen = 12
		if hint := method.Child(OSCINamespace128, "IvLength"); hint != nil {
			switch v, _ := hint.Attribute("Value"); strings.TrimSpace(v) {
			case "12":
			case "16":
				ivLen = 16
			default:
				return nil, fmt.Errorf("%w: %s: osci128:IvLength %q (supported: 12 or 16 bytes)", ErrUnsupportedAlgorithm, where, v)
			}
		}
	}

	ciphertext, err := cipherBytes(ed, opt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	minLen := ivLen + 16 // GCM: IV and tag; CBC: IV and one block
	if len(ciphertext) < minLen || (!alg.gcm && (len(ciphertext)-ivLen)%aes.BlockSize != 0) {
		return nil, fmt.Errorf("%w: %s: %d bytes of %s ciphertext is truncated (at least %d, and for CBC whole blocks)", ErrMalformed, where, len(ciphertext), alg.name, minLen)
	}

	unwrapped, recipient, err := contentKey(ed, alg, opt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	res.Key, res.Recipient = unwrapped, recipient
	block, err := aes.NewCipher(unwrapped)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, where, err)
	}
	if alg.gcm {
		aead, err := cipher.NewGCMWithNonceSize(block, ivLen)
		if err != nil {
			return nil, fmt.Errorf("xmlenc: %s: %w", where, err)
		}
		res.Plaintext, err = aead.Open(nil, ciphertext[:ivLen], ciphertext[ivLen:], nil)
		if err != nil {
			return nil, fmt.Errorf("%s (%s): %w", where, alg.name, ErrDecryptionFailed)
		}
		return res, nil
	}
	plain := make([]byte, len(ciphertext)-ivLen)
	cipher.NewCBCDecrypter(block, ciphertext[:ivLen]).CryptBlocks(plain, ciphertext[ivLen:])
	// W3C padding: the last byte is the pad length (1 … block size); the
	// other pad bytes are arbitrary. The check is the only one made and
	// its failure is reported like every other decryption failure.
	pad := int(plain[len(plain)-1])
	if subtle.ConstantTimeLessOrEq(1, pad)&subtle.ConstantTimeLessOrEq(pad, aes.BlockSize) != 1 {
		return nil, fmt.Errorf("%s (%s): %w", where, alg.name, ErrDecryptionFailed)
	}
	res.Plaintext = plain[:len(plain)-pad]
	return res, nil
}

// cipherBytes returns the ciphertext of an EncryptedData or EncryptedKey:
// inline CipherValue or the resolved CipherReference.
func cipherBytes(el *xmlsafe.Element, opt DecryptOptions) ([]byte, error) {
	cd := el.Child(Namespace, "CipherData")
	if cd == nil {
		return nil, fmt.Errorf("%w: no CipherData", ErrMalformed)
	}
	value, ref := cd.Child(Namespace, "CipherValue"), cd.Child(Namespace, "CipherReference")
	switch {
	case value != nil && ref != nil:
		return nil, fmt.Errorf("%w: CipherData has both CipherValue and CipherReference", ErrMalformed)
	case value != nil:
		return decodeBase64(value.Text, opt.maxCipher(), "CipherValue")
	case ref == nil:
		return nil, fmt.Errorf("%w: CipherData has neither CipherValue nor CipherReference", ErrMalformed)
	}
	uri, _ := ref.Attribute("URI")
	if uri == "" {
		return nil, fmt.Errorf("%w: CipherReference without URI", ErrMalformed)
	}
	base64Encoded := false
	if tr := ref.Child(Namespace, "Transforms"); tr != nil {
		for _, t := range tr.Children {
			a, _ := t.Attribute("Algorithm")
			if t.Name.Space != DSigNamespace || t.Name.Local != "Transform" || a != base64Transform || base64Encoded {
				return nil, fmt.Errorf("%w: CipherReference transform %q (only one base64 transform is supported)", ErrUnsupportedAlgorithm, a)
			}
			base64Encoded = true
		}
	}
	if opt.Resolve == nil {
		return nil, fmt.Errorf("%w: %q: no MIME parts to resolve it against", ErrCipherReference, uri)
	}
	data, err := opt.Resolve(uri)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrCipherReference, uri, err)
	}
	if int64(len(data)) > opt.maxCipher() {
		return nil, fmt.Errorf("%w: CipherReference %q has %d bytes (limit %d)", ErrTooLarge, uri, len(data), opt.maxCipher())
	}
	// OSCI (Governikus) writes the base64 transform although it sends the
	// part binary (Content-Transfer-Encoding binary/8bit): the transform
	// then describes the transfer encoding the MIME layer has already
	// undone. Data that is not base64 text is therefore taken as it is;
	// binary ciphertext of 28 bytes or more is never all base64 characters
	// in practice.
	if base64Encoded && isBase64Text(data) {
		return decodeBase64(string(data), opt.maxCipher(), "CipherReference "+uri)
	}
	return data, nil
}

func isBase64Text(data []byte) bool {
	for _, c := range data {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/', c == '=',
			c == ' ', c == '\t', c == '\r', c == '\n':
		default:
			return false
		}
	}
	return true
}

// decodeBase64 decodes base64 text with white space, refusing more than max
// decoded bytes before decoding anything.
func decodeBase64(text string, max int64, what string) ([]byte, error) {
	text = stripSpace(text)
	if int64(len(text))/4*3 > max+2 {
		return nil, fmt.Errorf("%w: %s holds about %d bytes (limit %d)", ErrTooLarge, what, int64(len(text))/4*3, max)
	}
	out, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not valid base64: %v", ErrMalformed, what, err)
	}
	if int64(len(out)) > max {
		return nil, fmt.Errorf("%w: %s holds %d bytes (limit %d)", ErrTooLarge, what, len(out), max)
	}
	return out, nil
}

func xmlName(space, local string) xml.Name { return xml.Name{Space: space, Local: local} }

func stripSpace(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, s)
}

// contentKey finds the content encryption key in the EncryptedData's
// KeyInfo: ds:MgmtData (OSCI attachment keys) or an EncryptedKey for one of
// our keys.
func contentKey(ed *xmlsafe.Element, alg contentAlgorithm, opt DecryptOptions) ([]byte, *keys.KeyPair, error) {
	ki := ed.Child(DSigNamespace, "KeyInfo")
	if ki == nil {
		return nil, nil, fmt.Errorf("%w: no ds:KeyInfo, so no key (a pre-shared key is not supported)", ErrNoKey)
	}
	var encKeys []*xmlsafe.Element
	var other []string
	for _, c := range ki.Children {
		switch {
		case c.Name.Space == DSigNamespace && c.Name.Local == "MgmtData":
			key, err := decodeBase64(c.Text, 64, "ds:MgmtData")
			if err != nil {
				return nil, nil, err
			}
			if len(key) != alg.keyLen {
				return nil, nil, fmt.Errorf("%w: ds:MgmtData holds a %d-byte key, %s needs %d bytes", ErrMalformed, len(key), alg.name, alg.keyLen)
			}
			return key, nil, nil
		case c.Name.Space == Namespace && c.Name.Local == "EncryptedKey":
			encKeys = append(encKeys, c)
		default:
			other = append(other, c.Name.Local)
		}
	}
	if len(encKeys) == 0 {
		return nil, nil, fmt.Errorf("%w: ds:KeyInfo holds neither ds:MgmtData nor xenc:EncryptedKey (found: %s)", ErrNoKey, strings.Join(other, ", "))
	}
	if len(encKeys) > opt.maxKeys() {
		return nil, nil, fmt.Errorf("%w: ds:KeyInfo holds %d EncryptedKeys (limit %d)", ErrTooLarge, len(encKeys), opt.maxKeys())
	}
	if len(opt.Keys) == 0 {
		return nil, nil, fmt.Errorf("%w: no decryption keys are configured", ErrNoKey)
	}

	type candidate struct {
		ek        *xmlsafe.Element
		transport transport
		ct        []byte
		ids       []identity
	}
	var cands []candidate
	var named []string
	for i, ek := range encKeys {
		tr, err := readTransport(ek)
		if err != nil {
			return nil, nil, fmt.Errorf("EncryptedKey %d: %w", i+1, err)
		}
		ct, err := cipherBytes(ek, DecryptOptions{MaxCipherBytes: 2048}) // RSA up to 16384 bits
		if err != nil {
			return nil, nil, fmt.Errorf("EncryptedKey %d: %w", i+1, err)
		}
		ids := identities(ek, opt.Document)
		for _, id := range ids {
			named = append(named, id.String())
		}
		cands = append(cands, candidate{ek, tr, ct, ids})
	}

	// First pass: EncryptedKeys that name one of our keys. A failure there
	// means the wrong private key (or a damaged key), reported as such.
	var wrong error
	for _, c := range cands {
		for _, kp := range opt.Keys {
			if !matchesAny(c.ids, kp) {
				continue
			}
			key, err := unwrap(c.transport, c.ct, kp, alg)
			if err == nil {
				return key, kp, nil
			}
			if wrong == nil {
				wrong = fmt.Errorf("%w (%s): %w", ErrWrongKey, describe(kp), err)
			}
		}
	}
	// Second pass: the EncryptedKeys that name nobody we know (or whose
	// names could not be resolved), with each key. OAEP failures are
	// uniform (Go's rsa reports one error), so this gives no oracle.
	for _, c := range cands {
		for _, kp := range opt.Keys {
			if matchesAny(c.ids, kp) {
				continue // tried above
			}
			if key, err := unwrap(c.transport, c.ct, kp, alg); err == nil {
				return key, kp, nil
			}
		}
	}
	if wrong != nil {
		return nil, nil, wrong
	}
	var ours []string
	for _, kp := range opt.Keys {
		ours = append(ours, describe(kp))
	}
	recipients := "not named"
	if len(named) > 0 {
		sort.Strings(named)
		recipients = strings.Join(named, "; ")
	}
	return nil, nil, fmt.Errorf("%w: %d EncryptedKey(s) for recipients %s; none decrypts with our key(s) %s", ErrNoKey, len(cands), recipients, strings.Join(ours, "; "))
}

func describe(kp *keys.KeyPair) string {
	if len(kp.Chain) > 0 {
		c := kp.Chain[0]
		return fmt.Sprintf("%q serial %s", c.Subject.String(), c.SerialNumber)
	}
	return keys.KeyType(kp.Key.Public()) + " key without certificate"
}

// transport is a parsed key transport EncryptionMethod.
type transport struct {
	digest, mgf crypto.Hash
	label       []byte
}

func readTransport(ek *xmlsafe.Element) (transport, error) {
	m := ek.Child(Namespace, "EncryptionMethod")
	if m == nil {
		return transport{}, fmt.Errorf("%w: EncryptedKey has no EncryptionMethod", ErrMalformed)
	}
	uri, _ := m.Attribute("Algorithm")
	tr := transport{digest: crypto.SHA1, mgf: crypto.SHA1}
	switch uri {
	case RSAOAEP, RSAOAEPMGF1P:
	case RSA15:
		return tr, fmt.Errorf("%w: key transport %q (RSAES-PKCS1-v1_5) is refused: its decryption is a padding oracle (Bleichenbacher); OSCI 1.2 senders use RSA-OAEP since the OAEPEncryption feature", ErrUnsupportedAlgorithm, uri)
	default:
		return tr, fmt.Errorf("%w: key transport %q (supported: %s, %s)", ErrUnsupportedAlgorithm, uri, RSAOAEP, RSAOAEPMGF1P)
	}
	if d := m.Child(DSigNamespace, "DigestMethod"); d != nil {
		a, _ := d.Attribute("Algorithm")
		h, ok := digests[a]
		if !ok {
			return tr, fmt.Errorf("%w: RSA-OAEP digest %q", ErrUnsupportedAlgorithm, a)
		}
		tr.digest = h
	}
	if g := m.Child(Namespace11, "MGF"); g != nil {
		a, _ := g.Attribute("Algorithm")
		h, ok := mgfs[a]
		if !ok || uri == RSAOAEPMGF1P && h != crypto.SHA1 {
			return tr, fmt.Errorf("%w: RSA-OAEP mask generation function %q with %q", ErrUnsupportedAlgorithm, a, uri)
		}
		tr.mgf = h
	}
	if p := m.Child(Namespace, "OAEPparams"); p != nil {
		label, err := decodeBase64(p.Text, 1024, "OAEPparams")
		if err != nil {
			return tr, err
		}
		tr.label = label
	}
	return tr, nil
}

func unwrap(tr transport, ct []byte, kp *keys.KeyPair, alg contentAlgorithm) ([]byte, error) {
	dec, err := kp.Decrypter()
	if err != nil {
		return nil, err
	}
	key, err := dec.Decrypt(rand.Reader, ct, &rsa.OAEPOptions{Hash: tr.digest, MGFHash: tr.mgf, Label: tr.label})
	if err != nil {
		return nil, fmt.Errorf("RSA-OAEP decryption failed")
	}
	if len(key) != alg.keyLen {
		return nil, fmt.Errorf("the encrypted key holds %d bytes, %s needs %d", len(key), alg.name, alg.keyLen)
	}
	return key, nil
}

// identity is one way an EncryptedKey's KeyInfo names its recipient.
type identity struct {
	kind   string // "certificate", "issuer-serial", "ski", "subject", "modulus"
	cert   *x509.Certificate
	issuer string
	serial *big.Int
	data   []byte
	text   string
}

func (id identity) String() string {
	switch id.kind {
	case "certificate":
		return fmt.Sprintf("certificate %q serial %s", id.cert.Subject.String(), id.cert.SerialNumber)
	case "issuer-serial":
		return fmt.Sprintf("issuer %q serial %s", id.issuer, id.serial)
	case "ski":
		return fmt.Sprintf("subject key identifier %x", id.data)
	case "subject":
		return fmt.Sprintf("subject %q", id.text)
	}
	return "RSA key with modulus " + fmt.Sprintf("%x…", id.data[:min(8, len(id.data))])
}

// identities reads how the EncryptedKey's ds:KeyInfo names its recipient.
func identities(ek *xmlsafe.Element, doc *xmlsafe.Element) []identity {
	ki := ek.Child(DSigNamespace, "KeyInfo")
	if ki == nil {
		return nil
	}
	var out []identity
	for _, c := range ki.Children {
		if c.Name.Space != DSigNamespace {
			continue
		}
		switch c.Name.Local {
		case "X509Data":
			out = append(out, x509Identities(c)...)
		case "RetrievalMethod":
			uri, _ := c.Attribute("URI")
			if target := lookupID(doc, uri); target != nil {
				if target.Name.Space == DSigNamespace && target.Name.Local == "X509Data" {
					out = append(out, x509Identities(target)...)
				} else if x := target.Child(DSigNamespace, "X509Data"); x != nil {
					out = append(out, x509Identities(x)...)
				}
			}
		case "KeyValue":
			if m := c.Path(xmlName(DSigNamespace, "RSAKeyValue"), xmlName(DSigNamespace, "Modulus")); m != nil {
				if n, err := base64.StdEncoding.DecodeString(stripSpace(m.Text)); err == nil && len(n) > 0 {
					out = append(out, identity{kind: "modulus", data: bytes.TrimLeft(n, "\x00")})
				}
			}
		}
	}
	return out
}

func x509Identities(x *xmlsafe.Element) []identity {
	var out []identity
	for _, c := range x.Children {
		if c.Name.Space != DSigNamespace {
			continue
		}
		switch c.Name.Local {
		case "X509Certificate":
			der, err := base64.StdEncoding.DecodeString(stripSpace(c.Text))
			if err != nil {
				continue
			}
			if cert, err := x509.ParseCertificate(der); err == nil {
				out = append(out, identity{kind: "certificate", cert: cert})
			}
		case "X509IssuerSerial":
			name := c.Child(DSigNamespace, "X509IssuerName").TrimmedText()
			serial, ok := new(big.Int).SetString(c.Child(DSigNamespace, "X509SerialNumber").TrimmedText(), 10)
			if ok {
				out = append(out, identity{kind: "issuer-serial", issuer: name, serial: serial})
			}
		case "X509SKI":
			if ski, err := base64.StdEncoding.DecodeString(stripSpace(c.Text)); err == nil && len(ski) > 0 {
				out = append(out, identity{kind: "ski", data: ski})
			}
		case "X509SubjectName":
			out = append(out, identity{kind: "subject", text: c.TrimmedText()})
		}
	}
	return out
}

func lookupID(doc *xmlsafe.Element, uri string) *xmlsafe.Element {
	id, ok := strings.CutPrefix(uri, "#")
	if doc == nil || !ok || id == "" {
		return nil
	}
	var found *xmlsafe.Element
	count := 0
	var walk func(e *xmlsafe.Element)
	walk = func(e *xmlsafe.Element) {
		if v, ok := e.Attribute("Id"); ok && v == id {
			found = e
			count++
		}
		for _, c := range e.Children {
			walk(c)
		}
	}
	walk(doc)
	if count != 1 { // a duplicated Id names nobody
		return nil
	}
	return found
}

func matchesAny(ids []identity, kp *keys.KeyPair) bool {
	for _, id := range ids {
		if id.matches(kp) {
			return true
		}
	}
	return false
}

func (id identity) matches(kp *keys.KeyPair) bool {
	pub, _ := kp.Key.Public().(*rsa.PublicKey)
	var leaf *x509.Certificate
	if len(kp.Chain) > 0 {
		leaf = kp.Chain[0]
	}
	switch id.kind {
	case "certificate":
		if leaf != nil && bytes.Equal(leaf.Raw, id.cert.Raw) {
			return true
		}
		return pub != nil && pub.Equal(id.cert.PublicKey)
	case "modulus":
		return pub != nil && bytes.Equal(pub.N.Bytes(), id.data)
	}
	if leaf == nil {
		return false
	}
	switch id.kind {
	case "issuer-serial":
		return leaf.SerialNumber.Cmp(id.serial) == 0 && sameDN(leaf.Issuer.String(), id.issuer)
	case "ski":
		return len(leaf.SubjectKeyId) > 0 && bytes.Equal(leaf.SubjectKeyId, id.data)
	case "subject":
		return sameDN(leaf.Subject.String(), id.text)
	}
	return false
}

// sameDN compares two RFC 4514-style distinguished names leniently: the
// RDNs in any order, case and the spaces around separators ignored.
func sameDN(a, b string) bool {
	norm := func(s string) string {
		var rdns []string
		var cur strings.Builder
		escaped := false
		for _, r := range s {
			switch {
			case escaped:
				cur.WriteRune(r)
				escaped = false
			case r == '\\':
				cur.WriteRune(r)
				escaped = true
			case r == ',' || r == ';' || r == '+':
				rdns = append(rdns, normRDN(cur.String()))
				cur.Reset()
			default:
				cur.WriteRune(r)
			}
		}
		rdns = append(rdns, normRDN(cur.String()))
		sort.Strings(rdns)
		return strings.Join(rdns, ",")
	}
	return norm(a) == norm(b)
}

func normRDN(s string) string {
	k, v, _ := strings.Cut(s, "=")
	k = strings.ToLower(strings.TrimSpace(k))
	switch k {
	case "e", "email":
		k = "emailaddress"
	case "s":
		k = "st"
	}
	return k + "=" + strings.ToLower(strings.TrimSpace(v))
}
