package xnachweis

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parzelle/parzelle/tenant"
)

// TokenClaims are what an IssuedToken says: who may ask whom for which
// evidence for which purpose, whether by IDNr, and for which request.
type TokenClaims struct {
	ID, Issuer string
	// Requester and Provider are identifiers with their EAS scheme
	// ("urn:cef.eu:names:identifier:EAS:0204:991-12345-67").
	Requester, Provider string
	Purpose             string
	// EvidenceType is the EvidenceTypeClassification.
	EvidenceType string
	// IDNr is true when the request may identify the person by IDNr
	// (§ 7 Abs. 2 IDNrG).
	IDNr bool
	// RequestHash is RequestHash of the request the token is for.
	RequestHash        []byte
	IssuedAt, NotAfter time.Time
}

// TokenVerifier checks a request's IssuedToken: that the tenant's
// Vermittlungsstelle sealed it, that it is valid now, and that it is for
// this request (requester, provider, evidence type, IDNr use, request
// hash). It returns the token's claims, or a *Failure with
// CodeTokenInvalid, CodeTokenExpired or CodeTokenMismatch. Replays are the
// Service's to find: they need the database.
//
// The format of the Vermittlungsstelle's token is not published yet;
// JWSTokens is the one this node ships, and another format is another
// TokenVerifier.
type TokenVerifier interface {
	Verify(e *tenant.Evidence, r *Request, now time.Time) (*TokenClaims, error)
}

// JWSTokens verifies IssuedTokens of the format Parzelle documents: a
// compact JWS signed with ES256, RS256, PS256 or EdDSA by a key of the
// tenant's evidence.tokens, whose claims are
//
//	iss           the Vermittlungsstelle (evidence.tokens.issuer)
//	jti           the token's id, unique: a second use is a replay
//	iat, nbf, exp validity (60 s clock skew); at most MaxTokenLifetime
//	requester     the EvidenceRequester's identifier with its scheme
//	provider      the EvidenceProvider's identifier with its scheme
//	purpose       the purpose of the request (a grant must cover it)
//	evidenceType  the EvidenceTypeClassification asked for
//	idnr          true if the request may name the person's IDNr
//	requestHash   base64url (no padding) of RequestHash of the request
type JWSTokens struct{}

// MaxTokenLifetime bounds exp - iat: a token is issued for one request.
const MaxTokenLifetime = time.Hour

const tokenLeeway = 60 * time.Second

// jwsClaims are the JSON claims of a JWSTokens token.
type jwsClaims struct {
	jwt.RegisteredClaims
	Requester    string `json:"requester"`
	Provider     string `json:"provider"`
	Purpose      string `json:"purpose"`
	EvidenceType string `json:"evidenceType"`
	IDNr         bool   `json:"idnr"`
	RequestHash  string `json:"requestHash"`
}

// Verify implements TokenVerifier.
func (JWSTokens) Verify(e *tenant.Evidence, r *Request, now time.Time) (*TokenClaims, error) {
	if r.Token == "" {
		return nil, fail(CodeTokenInvalid, "the request carries no IssuedToken")
	}
	if len(r.Token) > 16<<10 {
		return nil, fail(CodeTokenInvalid, "the IssuedToken is longer than 16 KiB")
	}
	var peek jwsClaims
	unverified, _, err := jwt.NewParser().ParseUnverified(r.Token, &peek)
	if err != nil {
		return nil, fail(CodeTokenInvalid, "not a compact JWS: %v", err)
	}
	if _, crit := unverified.Header["crit"]; crit {
		return nil, fail(CodeTokenInvalid, "critical header parameters are not supported")
	}
	alg, _ := unverified.Header["alg"].(string)
	if !slices.Contains(tenant.TokenAlgorithms, alg) {
		return nil, fail(CodeTokenInvalid, "algorithm %q is not accepted", alg)
	}
	keys := e.TokenKeys(alg, now)
	if len(keys.Keys) == 0 {
		return nil, fail(CodeTokenInvalid, "no valid key of the Vermittlungsstelle verifies %s", alg)
	}
	var c jwsClaims
	_, err = jwt.NewParser(
		jwt.WithValidMethods(tenant.TokenAlgorithms),
		jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithLeeway(tokenLeeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithIssuer(e.Tokens.Issuer),
	).ParseWithClaims(r.Token, &c, func(*jwt.Token) (any, error) { return keys, nil })
	switch {
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return nil, fail(CodeTokenInvalid, "the seal does not verify with the Vermittlungsstelle's keys")
	case errors.Is(err, jwt.ErrTokenExpired), errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return nil, fail(CodeTokenExpired, "%v", err)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return nil, fail(CodeTokenInvalid, "issuer %q is not the Vermittlungsstelle %q", c.Issuer, e.Tokens.Issuer)
	case err != nil:
		return nil, fail(CodeTokenInvalid, "%v", err)
	}
	t := &TokenClaims{ID: c.ID, Issuer: c.Issuer, Requester: c.Requester, Provider: c.Provider, Purpose: c.Purpose,
		EvidenceType: c.EvidenceType, IDNr: c.IDNr}
	t.RequestHash, _ = base64.RawURLEncoding.DecodeString(c.RequestHash)
	if c.IssuedAt != nil {
		t.IssuedAt = c.IssuedAt.Time
	}
	t.NotAfter = c.ExpiresAt.Time
	switch {
	case t.ID == "":
		return nil, fail(CodeTokenInvalid, "the token has no id (jti)")
	case c.IssuedAt == nil:
		return nil, fail(CodeTokenInvalid, "the token has no issue time (iat)")
	case t.NotAfter.Sub(t.IssuedAt) > MaxTokenLifetime:
		return nil, fail(CodeTokenInvalid, "the token is valid for %s, longer than %s", t.NotAfter.Sub(t.IssuedAt), MaxTokenLifetime)
	}
	return t, t.matches(r)
}

// matches compares the token with the request it came with.
func (t *TokenClaims) matches(r *Request) error {
	requester := false
	for _, a := range r.Requesters {
		requester = requester || a.Scheme+":"+a.ID == t.Requester
	}
	switch {
	case !requester:
		return fail(CodeTokenMismatch, "the token is for requester %q, the request names another", t.Requester)
	case r.Provider.Scheme+":"+r.Provider.ID != t.Provider:
		return fail(CodeTokenMismatch, "the token is for provider %q, the request asks %s:%s", t.Provider, r.Provider.Scheme, r.Provider.ID)
	case r.Evidence.Classification != t.EvidenceType:
		return fail(CodeTokenMismatch, "the token is for evidence type %q, the request asks for %q", t.EvidenceType, r.Evidence.Classification)
	case t.Purpose == "":
		return fail(CodeTokenMismatch, "the token names no purpose")
	case r.Person != nil && r.Person.IDNr != "" && !t.IDNr:
		return fail(CodeTokenMismatch, "the request names an IDNr, the token does not allow its use")
	case !bytes.Equal(r.Hash, t.RequestHash):
		return fail(CodeTokenMismatch, "the token's request hash is not the request's")
	}
	return nil
}

// MintToken makes a token JWSTokens accepts, for the request whose hash
// claims carry, signed with key (ES256 for ECDSA P-256, RS256 for RSA,
// EdDSA for Ed25519), issued at now and valid for ttl. It stands in for the
// Vermittlungsstelle in demos, tests and `parzelle xnachweis token`.
func MintToken(key crypto.Signer, c TokenClaims, now time.Time, ttl time.Duration) (string, error) {
	method, err := tenant.TokenMethod(key)
	if err != nil {
		return "", fmt.Errorf("xnachweis: mint token: %w", err)
	}
	claims := jwsClaims{
		RegisteredClaims: jwt.RegisteredClaims{ID: c.ID, Issuer: c.Issuer, IssuedAt: jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl))},
		Requester: c.Requester, Provider: c.Provider, Purpose: c.Purpose, EvidenceType: c.EvidenceType, IDNr: c.IDNr,
		RequestHash: base64.RawURLEncoding.EncodeToString(c.RequestHash),
	}
	raw, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		return "", fmt.Errorf("xnachweis: mint token: %w", err)
	}
	return raw, nil
}
