package xnachweis

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/problem"
	"github.com/parzelle/parzelle/tenant"
)

// Path is where the transport listener takes evidence requests.
const Path = "/xnachweis/v1/evidence"

// SignatureHeader carries the transport signature of every answer on the
// HTTPS path: a JWS in compact serialization with a detached payload
// (RFC 7515, appendix F) over the response body, by the answering tenant's
// signing key, its certificate chain in the x5c header. To verify, put the
// base64url of the body between the two dots and verify the JWS with the
// leaf of x5c, which must chain to a certificate the requester trusts.
const SignatureHeader = "X-JWS-Signature"

var (
	problemNoCaller = problem.Kind{Slug: "xnachweis-not-a-requester", Title: "Client certificate may present no evidence requests", Status: http.StatusForbidden}
	problemMedia    = problem.Kind{Slug: "xnachweis-media-type", Title: "Evidence requests are XML", Status: http.StatusUnsupportedMediaType}
	problemMethod   = problem.Kind{Slug: "xnachweis-method", Title: "Evidence requests are POSTed", Status: http.StatusMethodNotAllowed}
	problemSign     = problem.Kind{Slug: "xnachweis-signature", Title: "The answer could not be signed", Status: http.StatusInternalServerError}
)

// Handler serves POST Path: the XML request in, the XML answer out, in the
// style of a secure connection node's passive receive. The client
// certificate must belong to a requester or connection node a tenant's
// evidence section names; others get problem JSON. Every answer, an error
// response included, carries the transport signature.
func (s *Service) Handler(principal func(context.Context) *tenant.Principal) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			problem.Write(w, r, problemMethod, "POST the DE.EvidenceRequest to "+Path)
			return
		}
		c := Caller{Principal: principal(r.Context()), Via: "https"}
		if c.Principal == nil || len(s.Callers(c)) == 0 {
			problem.Write(w, r, problemNoCaller, "no tenant of this node names the client certificate as an evidence requester or connection node")
			return
		}
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || (mt != "application/xml" && mt != "text/xml") {
			problem.Write(w, r, problemMedia, "send the request as application/xml")
			return
		}
		max := s.MaxRequest
		if max <= 0 {
			max = DefaultMaxRequest
		}
		// One byte more than allowed tells a request that is too large.
		body, err := io.ReadAll(io.LimitReader(r.Body, max+1))
		if err != nil {
			return
		}
		a := s.Answer(r.Context(), c, body)
		kp, err := s.Keys.SigningKey(r.Context(), a.Tenant.ID)
		var sig string
		if err == nil {
			sig, err = SignDetached(kp, a.Body)
		}
		if err != nil {
			s.log().Error("sign an evidence answer", "tenant", a.Tenant.ID, "error", err)
			problem.Write(w, r, problemSign, "the tenant's signing key is not usable; the operator has been told")
			return
		}
		w.Header().Set("Content-Type", "application/xml; charset=utf-8")
		w.Header().Set(SignatureHeader, sig)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(a.Status())
		_, _ = w.Write(a.Body)
	})
}

// jwsHeader is the protected header of a transport signature.
type jwsHeader struct {
	Alg string   `json:"alg"`
	Typ string   `json:"typ"`
	Cty string   `json:"cty"`
	X5c []string `json:"x5c"`
	Iat int64    `json:"iat"`
}

// SignDetached returns the detached JWS (header..signature) of body by the
// key pair: RS256 for RSA, ES256 for ECDSA P-256.
func SignDetached(kp *keys.KeyPair, body []byte) (string, error) {
	h := jwsHeader{Typ: "JOSE", Cty: "application/xml", Iat: time.Now().Unix()}
	switch k := kp.Key.Public().(type) {
	case *rsa.PublicKey:
		h.Alg = "RS256"
	case *ecdsa.PublicKey:
		if k.Curve.Params().BitSize != 256 {
			return "", fmt.Errorf("xnachweis: sign: an ECDSA key on %s cannot make ES256 signatures", k.Curve.Params().Name)
		}
		h.Alg = "ES256"
	default:
		return "", fmt.Errorf("xnachweis: sign: %T keys cannot sign", k)
	}
	for _, c := range kp.Chain {
		h.X5c = append(h.X5c, base64.StdEncoding.EncodeToString(c.Raw))
	}
	hj, err := json.Marshal(h)
	if err != nil {
		return "", err
	}
	protected := base64.RawURLEncoding.EncodeToString(hj)
	digest := sha256.Sum256([]byte(protected + "." + base64.RawURLEncoding.EncodeToString(body)))
	sig, err := kp.Key.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("xnachweis: sign: %w", err)
	}
	if h.Alg == "ES256" {
		if sig, err = ecdsaRaw(sig); err != nil {
			return "", err
		}
	}
	return protected + ".." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// VerifyDetached checks a transport signature over body and returns the
// signer's certificate, which must chain to roots (at now).
func VerifyDetached(jws string, body []byte, roots *x509.CertPool, now time.Time) (*x509.Certificate, error) {
	protected, sig64, ok := strings.Cut(jws, "..")
	if !ok || strings.Contains(sig64, ".") {
		return nil, errors.New("xnachweis: the signature is not a detached compact JWS")
	}
	hj, err := base64.RawURLEncoding.DecodeString(protected)
	if err != nil {
		return nil, fmt.Errorf("xnachweis: signature header: %w", err)
	}
	var h jwsHeader
	if err := json.Unmarshal(hj, &h); err != nil {
		return nil, fmt.Errorf("xnachweis: signature header: %w", err)
	}
	if len(h.X5c) == 0 {
		return nil, errors.New("xnachweis: the signature names no certificate (x5c)")
	}
	var chain []*x509.Certificate
	for _, c := range h.X5c {
		der, err := base64.StdEncoding.DecodeString(c)
		if err != nil {
			return nil, fmt.Errorf("xnachweis: x5c: %w", err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("xnachweis: x5c: %w", err)
		}
		chain = append(chain, cert)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("xnachweis: the signer's certificate: %w", err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(sig64)
	if err != nil {
		return nil, fmt.Errorf("xnachweis: signature: %w", err)
	}
	digest := sha256.Sum256([]byte(protected + "." + base64.RawURLEncoding.EncodeToString(body)))
	switch pub := chain[0].PublicKey.(type) {
	case *rsa.PublicKey:
		if h.Alg != "RS256" {
			return nil, fmt.Errorf("xnachweis: algorithm %q for an RSA key", h.Alg)
		}
		err = rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig)
	case *ecdsa.PublicKey:
		if h.Alg != "ES256" || len(sig) != 64 {
			return nil, fmt.Errorf("xnachweis: algorithm %q for an ECDSA key", h.Alg)
		}
		if !ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			err = errors.New("verification failed")
		}
	default:
		return nil, fmt.Errorf("xnachweis: %T keys are not supported", pub)
	}
	if err != nil {
		return nil, fmt.Errorf("xnachweis: the signature does not verify: %w", err)
	}
	return chain[0], nil
}

// ecdsaRaw turns an ASN.1 ECDSA P-256 signature into JWS's r||s.
func ecdsaRaw(der []byte) ([]byte, error) {
	var v struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &v); err != nil {
		return nil, fmt.Errorf("xnachweis: sign: %w", err)
	}
	out := make([]byte, 64)
	v.R.FillBytes(out[:32])
	v.S.FillBytes(out[32:])
	return out, nil
}
