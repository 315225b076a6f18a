package xmlenc

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
)

// EncryptOptions choose the algorithms and the form of an EncryptedData.
// The zero value gives AES-256-GCM content with the key transported by
// RSA-OAEP (xmlenc11, SHA-256, MGF1-SHA-256) in one EncryptedKey per
// recipient and the ciphertext inline.
type EncryptOptions struct {
	// Algorithm is the content encryption URI (default AES256GCM); the CBC
	// ones are for tools without GCM.
	Algorithm string
	// KeyTransport is RSAOAEP (default) or RSAOAEPMGF1P (XML Encryption
	// 1.0; with SHA-1 it is what xmlsec1 1.2 understands).
	KeyTransport string
	// Digest is the RSA-OAEP digest URI: default SHA256 for RSAOAEP, SHA1
	// for RSAOAEPMGF1P. MGF (RSAOAEP only) defaults to MGF1 with the same
	// digest.
	Digest, MGF string
	// MgmtData puts the content key into ds:MgmtData instead of
	// EncryptedKeys (what OSCI does for attachments, whose key then travels
	// inside an encrypted content container); recipients are not needed.
	MgmtData bool
	// CipherReference, when set (e.g. "cid:osci_enc"), writes a
	// CipherReference to that URI instead of a CipherValue; the ciphertext
	// is returned in Encrypted.Cipher for the MIME part.
	CipherReference string
	// Type, MimeType and ID become the EncryptedData's attributes.
	Type, MimeType, ID string
	// OSCIIvLength writes osci128:IvLength Value="12" into a GCM
	// EncryptionMethod, as OSCI 1.2 senders do.
	OSCIIvLength bool
	// Key is the content encryption key; nil makes a random one.
	Key []byte
	// Rand is the randomness source (default crypto/rand).
	Rand io.Reader
}

// Encrypted is the result of Encrypt.
type Encrypted struct {
	// XML is the xenc:EncryptedData element with its own namespace
	// declarations, so it can be put anywhere in a document.
	XML []byte
	// Cipher is the ciphertext (IV, ciphertext, tag) for the MIME part when
	// EncryptOptions.CipherReference is set.
	Cipher []byte
	// Key is the content encryption key.
	Key []byte
}

// Encrypt encrypts plaintext for the recipients' RSA certificates.
func Encrypt(plaintext []byte, recipients []*x509.Certificate, opt EncryptOptions) (*Encrypted, error) {
	rnd := opt.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	if opt.Algorithm == "" {
		opt.Algorithm = AES256GCM
	}
	alg, err := lookupContent(opt.Algorithm)
	if err != nil {
		return nil, err
	}
	if opt.KeyTransport == "" {
		opt.KeyTransport = RSAOAEP
	}
	tr, err := encryptTransport(opt)
	if err != nil {
		return nil, err
	}
	if !opt.MgmtData && len(recipients) == 0 {
		return nil, errors.New("xmlenc: encrypt: no recipient certificate given")
	}
	pubs := make([]*rsa.PublicKey, len(recipients))
	if !opt.MgmtData {
		for i, c := range recipients {
			pub, ok := c.PublicKey.(*rsa.PublicKey)
			if !ok {
				return nil, fmt.Errorf("xmlenc: encrypt: recipient %q has a %T key; key transport needs RSA", c.Subject.String(), c.PublicKey)
			}
			if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageKeyEncipherment == 0 {
				return nil, fmt.Errorf("xmlenc: encrypt: the certificate of %q does not allow key encipherment (keyUsage)", c.Subject.String())
			}
			pubs[i] = pub
		}
	}

	key := opt.Key
	if key == nil {
		key = make([]byte, alg.keyLen)
		if _, err := io.ReadFull(rnd, key); err != nil {
			return nil, fmt.Errorf("xmlenc: encrypt: random key: %w", err)
		}
	} else if len(key) != alg.keyLen {
		return nil, fmt.Errorf("xmlenc: encrypt: the given key has %d bytes, %s needs %d", len(key), alg.name, alg.keyLen)
	}
	ct, err := seal(alg, key, plaintext, rnd)
	if err != nil {
		return nil, err
	}

	var b bytes.Buffer
	b.WriteString(`<xenc:EncryptedData xmlns:xenc="` + Namespace + `" xmlns:ds="` + DSigNamespace + `"`)
	writeAttr(&b, "Id", opt.ID)
	writeAttr(&b, "Type", opt.Type)
	writeAttr(&b, "MimeType", opt.MimeType)
	b.WriteString(`><xenc:EncryptionMethod Algorithm="` + alg.uri + `">`)
	if alg.gcm && opt.OSCIIvLength {
		b.WriteString(`<osci128:IvLength xmlns:osci128="` + OSCINamespace128 + `" Value="12"></osci128:IvLength>`)
	}
	b.WriteString(`</xenc:EncryptionMethod><ds:KeyInfo>`)
	if opt.MgmtData {
		b.WriteString(`<ds:MgmtData>` + base64.StdEncoding.EncodeToString(key) + `</ds:MgmtData>`)
	} else {
		for i, pub := range pubs {
			wrapped, err := rsa.EncryptOAEPWithOptions(rnd, pub, key, &rsa.OAEPOptions{Hash: tr.digest, MGFHash: tr.mgf})
			if err != nil {
				return nil, fmt.Errorf("xmlenc: encrypt for %q: %w", recipients[i].Subject.String(), err)
			}
			b.WriteString(`<xenc:EncryptedKey`)
			writeAttr(&b, "Recipient", recipients[i].Subject.CommonName)
			b.WriteString(`><xenc:EncryptionMethod Algorithm="` + opt.KeyTransport + `">`)
			if !(opt.KeyTransport == RSAOAEPMGF1P && tr.digest == crypto.SHA1) {
				b.WriteString(`<ds:DigestMethod Algorithm="` + digestURI(tr.digest) + `"></ds:DigestMethod>`)
			}
			if opt.KeyTransport == RSAOAEP {
				b.WriteString(`<xenc11:MGF xmlns:xenc11="` + Namespace11 + `" Algorithm="` + mgfURI(tr.mgf) + `"></xenc11:MGF>`)
			}
			b.WriteString(`</xenc:EncryptionMethod><ds:KeyInfo><ds:X509Data><ds:X509Certificate>`)
			b.WriteString(base64.StdEncoding.EncodeToString(recipients[i].Raw))
			b.WriteString(`</ds:X509Certificate></ds:X509Data></ds:KeyInfo><xenc:CipherData><xenc:CipherValue>`)
			b.WriteString(base64.StdEncoding.EncodeToString(wrapped))
			b.WriteString(`</xenc:CipherValue></xenc:CipherData></xenc:EncryptedKey>`)
		}
	}
	b.WriteString(`</ds:KeyInfo><xenc:CipherData>`)
	out := &Encrypted{Key: key}
	if opt.CipherReference != "" {
		b.WriteString(`<xenc:CipherReference`)
		writeAttr(&b, "URI", opt.CipherReference)
		b.WriteString(`></xenc:CipherReference>`)
		out.Cipher = ct
	} else {
		b.WriteString(`<xenc:CipherValue>` + base64.StdEncoding.EncodeToString(ct) + `</xenc:CipherValue>`)
	}
	b.WriteString(`</xenc:CipherData></xenc:EncryptedData>`)
	out.XML = b.Bytes()
	return out, nil
}

// encryptTransport resolves the key transport options to hashes.
func encryptTransport(opt EncryptOptions) (transport, error) {
	if opt.MgmtData {
		return transport{}, nil
	}
	switch opt.KeyTransport {
	case RSAOAEP, RSAOAEPMGF1P:
	default:
		return transport{}, fmt.Errorf("%w: key transport %q (supported: %s, %s)", ErrUnsupportedAlgorithm, opt.KeyTransport, RSAOAEP, RSAOAEPMGF1P)
	}
	tr := transport{digest: crypto.SHA256}
	if opt.KeyTransport == RSAOAEPMGF1P {
		tr.digest = crypto.SHA1
	}
	if opt.Digest != "" {
		h, ok := digests[opt.Digest]
		if !ok {
			return tr, fmt.Errorf("%w: RSA-OAEP digest %q", ErrUnsupportedAlgorithm, opt.Digest)
		}
		tr.digest = h
	}
	tr.mgf = tr.digest
	if opt.KeyTransport == RSAOAEPMGF1P {
		tr.mgf = crypto.SHA1
		if opt.MGF != "" && opt.MGF != MGF1SHA1 {
			return tr, fmt.Errorf("%w: %s always uses MGF1 with SHA-1, not %q", ErrUnsupportedAlgorithm, RSAOAEPMGF1P, opt.MGF)
		}
	} else if opt.MGF != "" {
		h, ok := mgfs[opt.MGF]
		if !ok {
			return tr, fmt.Errorf("%w: RSA-OAEP mask generation function %q", ErrUnsupportedAlgorithm, opt.MGF)
		}
		tr.mgf = h
	}
	return tr, nil
}

// seal encrypts with the IV prefixed and, for GCM, the tag appended.
func seal(alg contentAlgorithm, key, plaintext []byte, rnd io.Reader) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("xmlenc: encrypt: %w", err)
	}
	if alg.gcm {
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("xmlenc: encrypt: %w", err)
		}
		out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
		if _, err := io.ReadFull(rnd, out); err != nil {
			return nil, fmt.Errorf("xmlenc: encrypt: random IV: %w", err)
		}
		return aead.Seal(out, out, plaintext, nil), nil
	}
	// W3C padding: pad bytes random, the last one the pad length.
	pad := aes.BlockSize - len(plaintext)%aes.BlockSize
	out := make([]byte, aes.BlockSize+len(plaintext)+pad)
	if _, err := io.ReadFull(rnd, out[:aes.BlockSize]); err != nil {
		return nil, fmt.Errorf("xmlenc: encrypt: random IV: %w", err)
	}
	body := out[aes.BlockSize:]
	copy(body, plaintext)
	if _, err := io.ReadFull(rnd, body[len(plaintext):len(body)-1]); err != nil {
		return nil, fmt.Errorf("xmlenc: encrypt: random padding: %w", err)
	}
	body[len(body)-1] = byte(pad)
	cipher.NewCBCEncrypter(block, out[:aes.BlockSize]).CryptBlocks(body, body)
	return out, nil
}

func writeAttr(b *bytes.Buffer, name, value string) {
	if value == "" {
		return
	}
	b.WriteString(" " + name + `="`)
	_ = xml.EscapeText(b, []byte(value))
	b.WriteString(`"`)
}
