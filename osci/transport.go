package osci

import (
	"crypto/x509"
	"fmt"

	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/xmlenc"
)

// EncryptTransport wraps an OSCI message for the receiver's cipher
// certificate, as OSCI 1.2 encrypts the transport layer: the whole MIME
// message encrypted with AES-256-GCM (12-byte IV), its key with RSA-OAEP
// (SHA-256, MGF1-SHA-256), the ciphertext in the MIME part osci_enc.
func EncryptTransport(message []byte, to *x509.Certificate) ([]byte, error) {
	enc, err := xmlenc.Encrypt(message, []*x509.Certificate{to}, xmlenc.EncryptOptions{MimeType: "Multipart/Related", CipherReference: "cid:osci_enc", OSCIIvLength: true})
	if err != nil {
		return nil, fmt.Errorf("osci: transport encryption: %w", err)
	}
	var x xmlWriter
	x.raw(`<soap:Envelope xmlns:soap="` + SOAPNamespace + `"><soap:Body>`)
	x.Write(enc.XML)
	x.raw(`</soap:Body></soap:Envelope>`)
	return packMIME(x.Bytes(), Attachment{ContentID: "osci_enc", ContentType: "application/octet-stream", Data: enc.Cipher}), nil
}

// DecryptTransport returns the message inside a transport-encrypted OSCI
// message, decrypted with one of the keys, and whether it was encrypted
// (a plain message comes back as it is). It refuses with 9100, 9200 and
// 9202 as ParseRequest does.
func DecryptTransport(data []byte, pairs []*keys.KeyPair) ([]byte, *xmlenc.Result, error) {
	msg, env, err := parseEnvelope(data)
	if err != nil {
		return nil, nil, err
	}
	res, err := decryptTransport(msg, env, pairs)
	if err != nil || res == nil {
		return data, nil, err
	}
	return res.Plaintext, res, nil
}
