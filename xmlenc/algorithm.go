package xmlenc

import (
	"crypto"
	"fmt"
)

// Namespaces of XML Encryption 1.0 and 1.1, XML-DSig and OSCI 1.2's
// algorithm extension.
const (
	Namespace     = "http://www.w3.org/2001/04/xmlenc#"
	Namespace11   = "http://www.w3.org/2009/xmlenc11#"
	DSigNamespace = "http://www.w3.org/2000/09/xmldsig#"
	// OSCINamespace128 holds osci128:IvLength, the IV length hint OSCI 1.2
	// writes into a GCM EncryptionMethod.
	OSCINamespace128 = "http://xoev.de/transport/osci12/8"
)

// Content encryption algorithms.
const (
	AES128CBC = Namespace + "aes128-cbc"
	AES192CBC = Namespace + "aes192-cbc"
	AES256CBC = Namespace + "aes256-cbc"
	AES128GCM = Namespace11 + "aes128-gcm"
	AES192GCM = Namespace11 + "aes192-gcm"
	AES256GCM = Namespace11 + "aes256-gcm"
)

// Key transport algorithms.
const (
	// RSAOAEP is XML Encryption 1.1's RSA-OAEP: the digest and the mask
	// generation function are named by child elements (SHA-1 and
	// MGF1-SHA-1 when absent).
	RSAOAEP = Namespace11 + "rsa-oaep"
	// RSAOAEPMGF1P is XML Encryption 1.0's RSA-OAEP: MGF1 with SHA-1 always,
	// the digest SHA-1 unless a DigestMethod names another.
	RSAOAEPMGF1P = Namespace + "rsa-oaep-mgf1p"
	// RSA15 is RSAES-PKCS1-v1_5. It is refused: see the package
	// documentation.
	RSA15 = Namespace + "rsa-1_5"
)

// Digest algorithms (for RSA-OAEP) and mask generation functions.
const (
	SHA1   = DSigNamespace + "sha1"
	SHA224 = "http://www.w3.org/2001/04/xmldsig-more#sha224"
	SHA256 = Namespace + "sha256"
	SHA384 = "http://www.w3.org/2001/04/xmldsig-more#sha384"
	SHA512 = Namespace + "sha512"

	MGF1SHA1   = Namespace11 + "mgf1sha1"
	MGF1SHA224 = Namespace11 + "mgf1sha224"
	MGF1SHA256 = Namespace11 + "mgf1sha256"
	MGF1SHA384 = Namespace11 + "mgf1sha384"
	MGF1SHA512 = Namespace11 + "mgf1sha512"
)

// EncryptedData Type values that can be decrypted in place.
const (
	TypeElement = Namespace + "Element"
	TypeContent = Namespace + "Content"
)

// base64Transform is the only CipherReference transform accepted.
const base64Transform = DSigNamespace + "base64"

// contentAlgorithm is a supported content encryption algorithm.
type contentAlgorithm struct {
	uri    string
	name   string // short name, for messages and the command line
	keyLen int
	gcm    bool
}

var contentAlgorithms = []contentAlgorithm{
	{AES128GCM, "aes128-gcm", 16, true},
	{AES192GCM, "aes192-gcm", 24, true},
	{AES256GCM, "aes256-gcm", 32, true},
	{AES128CBC, "aes128-cbc", 16, false},
	{AES192CBC, "aes192-cbc", 24, false},
	{AES256CBC, "aes256-cbc", 32, false},
}

func lookupContent(uri string) (contentAlgorithm, error) {
	for _, a := range contentAlgorithms {
		if a.uri == uri {
			return a, nil
		}
	}
	return contentAlgorithm{}, fmt.Errorf("%w: content encryption %q (supported: AES-GCM and AES-CBC with 128, 192 or 256 bits)", ErrUnsupportedAlgorithm, uri)
}

// ContentAlgorithm returns the URI of a content encryption algorithm given
// by its short name ("aes256-gcm", "aes128-cbc", …) or its URI.
func ContentAlgorithm(name string) (string, error) {
	for _, a := range contentAlgorithms {
		if a.name == name || a.uri == name {
			return a.uri, nil
		}
	}
	return "", fmt.Errorf("%w: content encryption %q (known: aes128-gcm, aes192-gcm, aes256-gcm, aes128-cbc, aes192-cbc, aes256-cbc)", ErrUnsupportedAlgorithm, name)
}

// KeyTransportAlgorithm returns the URI of a key transport algorithm given
// by its short name ("rsa-oaep", "rsa-oaep-mgf1p") or its URI.
func KeyTransportAlgorithm(name string) (string, error) {
	switch name {
	case "rsa-oaep", RSAOAEP:
		return RSAOAEP, nil
	case "rsa-oaep-mgf1p", RSAOAEPMGF1P:
		return RSAOAEPMGF1P, nil
	}
	return "", fmt.Errorf("%w: key transport %q (known: rsa-oaep, rsa-oaep-mgf1p)", ErrUnsupportedAlgorithm, name)
}

var digests = map[string]crypto.Hash{
	SHA1: crypto.SHA1, SHA224: crypto.SHA224, SHA256: crypto.SHA256, SHA384: crypto.SHA384, SHA512: crypto.SHA512,
}

var mgfs = map[string]crypto.Hash{
	MGF1SHA1: crypto.SHA1, MGF1SHA224: crypto.SHA224, MGF1SHA256: crypto.SHA256, MGF1SHA384: crypto.SHA384, MGF1SHA512: crypto.SHA512,
}

func digestURI(h crypto.Hash) string {
	for u, d := range digests {
		if d == h {
			return u
		}
	}
	return ""
}

func mgfURI(h crypto.Hash) string {
	for u, d := range mgfs {
		if d == h {
			return u
		}
	}
	return ""
}
