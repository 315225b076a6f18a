// Package xmldsig signs and verifies XML signatures (XML-DSig 1.0/1.1) on
// xmlsafe trees: enveloped signatures over whole documents (exclusive C14N)
// and detached signatures with many references (OSCI: header blocks by Id,
// the body and cid: MIME parts, inclusive C14N in document context).
//
// Verification hands back the very elements it digested, never an Id to
// look up again, refuses duplicate Ids, and accepts a signature only when
// its certificate chains to a configured trust anchor and was valid at the
// signing time; together that defeats signature wrapping.
package xmldsig

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	_ "crypto/sha256" // registers SHA-224/256
	_ "crypto/sha512" // registers SHA-384/512
	"errors"
	"fmt"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// Namespace is the XML-DSig namespace.
const Namespace = "http://www.w3.org/2000/09/xmldsig#"

// Signature algorithm identifiers.
const (
	RSASHA256    = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
	RSASHA384    = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384"
	RSASHA512    = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"
	ECDSASHA256  = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
	ECDSASHA384  = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384"
	ECDSASHA512  = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512"
	RSAPSSSHA256 = "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1"
	RSAPSSSHA512 = "http://www.w3.org/2007/05/xmldsig-more#sha512-rsa-MGF1"
)

// Digest algorithm identifiers.
const (
	SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
	SHA384 = "http://www.w3.org/2001/04/xmldsig-more#sha384"
	SHA512 = "http://www.w3.org/2001/04/xmlenc#sha512"
)

// Transform identifiers beyond the canonicalization methods.
const (
	EnvelopedSignature = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
	Base64Transform    = "http://www.w3.org/2000/09/xmldsig#base64"
)

type keyKind int

const (
	kindRSA keyKind = iota
	kindRSAPSS
	kindECDSA
)

type signatureMethod struct {
	hash crypto.Hash
	kind keyKind
}

var signatureMethods = map[string]signatureMethod{
	RSASHA256:    {crypto.SHA256, kindRSA},
	RSASHA384:    {crypto.SHA384, kindRSA},
	RSASHA512:    {crypto.SHA512, kindRSA},
	ECDSASHA256:  {crypto.SHA256, kindECDSA},
	ECDSASHA384:  {crypto.SHA384, kindECDSA},
	ECDSASHA512:  {crypto.SHA512, kindECDSA},
	RSAPSSSHA256: {crypto.SHA256, kindRSAPSS},
	RSAPSSSHA512: {crypto.SHA512, kindRSAPSS},
}

var digestMethods = map[string]crypto.Hash{
	SHA256: crypto.SHA256,
	SHA384: crypto.SHA384,
	SHA512: crypto.SHA512,
}

// refusedAlgorithms are known but not accepted, with the reason.
var refusedAlgorithms = map[string]string{
	"http://www.w3.org/2000/09/xmldsig#rsa-sha1":         "SHA-1 signatures are not accepted",
	"http://www.w3.org/2000/09/xmldsig#dsa-sha1":         "DSA/SHA-1 signatures are not accepted",
	"http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1":  "SHA-1 signatures are not accepted",
	"http://www.w3.org/2000/09/xmldsig#sha1":             "SHA-1 digests are not accepted",
	"http://www.w3.org/2000/09/xmldsig#hmac-sha1":        "HMAC signatures are not accepted (no certificate)",
	"http://www.w3.org/2001/04/xmldsig-more#hmac-sha256": "HMAC signatures are not accepted (no certificate)",
}

func unsupported(what, uri string) error {
	if why, ok := refusedAlgorithms[uri]; ok {
		return fmt.Errorf("%s %q refused: %s", what, uri, why)
	}
	return fmt.Errorf("unsupported %s %q", what, uri)
}

// DefaultMethod returns the signature method used for a key: RSA-SHA256 for
// RSA keys, ECDSA with the curve's hash for ECDSA keys.
func DefaultMethod(key crypto.PublicKey) (string, error) {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return RSASHA256, nil
	case *ecdsa.PublicKey:
		switch k.Curve.Params().BitSize {
		case 384:
			return ECDSASHA384, nil
		case 521:
			return ECDSASHA512, nil
		}
		return ECDSASHA256, nil
	}
	return "", fmt.Errorf("xmldsig: no signature method for a %T key", key)
}

// sign signs data with the method's hash and padding. ECDSA signatures
// are returned as r‖s, as XML-DSig wants them.
func sign(key crypto.Signer, method string, data []byte) ([]byte, error) {
	m, ok := signatureMethods[method]
	if !ok {
		return nil, unsupported("signature method", method)
	}
	h := m.hash.New()
	h.Write(data)
	digest := h.Sum(nil)
	var opts crypto.SignerOpts = m.hash
	switch m.kind {
	case kindRSAPSS:
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: m.hash}
	}
	if err := keyFits(key.Public(), m.kind); err != nil {
		return nil, err
	}
	sig, err := key.Sign(rand.Reader, digest, opts)
	if err != nil {
		return nil, fmt.Errorf("xmldsig: sign: %w", err)
	}
	if m.kind == kindECDSA {
		return ecdsaRaw(sig, key.Public().(*ecdsa.PublicKey))
	}
	return sig, nil
}

func keyFits(pub crypto.PublicKey, kind keyKind) error {
	switch pub.(type) {
	case *rsa.PublicKey:
		if kind == kindRSA || kind == kindRSAPSS {
			return nil
		}
	case *ecdsa.PublicKey:
		if kind == kindECDSA {
			return nil
		}
	}
	return fmt.Errorf("xmldsig: a %T key does not fit the signature method", pub)
}

// verifySignature checks sig over data with the certificate's public key.
func verifySignature(pub crypto.PublicKey, method string, data, sig []byte) error {
	m, ok := signatureMethods[method]
	if !ok {
		return unsupported("signature method", method)
	}
	if err := keyFits(pub, m.kind); err != nil {
		return err
	}
	h := m.hash.New()
	h.Write(data)
	digest := h.Sum(nil)
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if m.kind == kindRSAPSS {
			return rsa.VerifyPSS(k, m.hash, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: m.hash})
		}
		return rsa.VerifyPKCS1v15(k, m.hash, digest, sig)
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return fmt.Errorf("ECDSA signature value has %d bytes, want %d", len(sig), 2*size)
		}
		r, s := new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:])
		if !ecdsa.Verify(k, digest, r, s) {
			return errors.New("ECDSA verification failed")
		}
		return nil
	}
	return fmt.Errorf("unsupported key type %T", pub)
}

// ecdsaRaw converts an ASN.1 ECDSA signature to r‖s.
func ecdsaRaw(der []byte, pub *ecdsa.PublicKey) ([]byte, error) {
	var r, s big.Int
	var inner cryptobyte.String
	in := cryptobyte.String(der)
	if !in.ReadASN1(&inner, asn1.SEQUENCE) || !inner.ReadASN1Integer(&r) || !inner.ReadASN1Integer(&s) {
		return nil, errors.New("xmldsig: malformed ECDSA signature from signer")
	}
	size := (pub.Curve.Params().BitSize + 7) / 8
	out := make([]byte, 2*size)
	r.FillBytes(out[:size])
	s.FillBytes(out[size:])
	return out, nil
}
