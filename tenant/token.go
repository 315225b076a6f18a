package tenant

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TokenIssuer is an issuer of signed tokens (JWT) for people acting for
// the tenant, an entry of `access.tokens`: tokens whose iss is Issuer, whose
// aud contains Audience and whose signature verifies with one of Keys
// (certificate or PEM public key files, relative to the tenant file).
type TokenIssuer struct {
	Issuer   string   `yaml:"issuer" conf:"required"`
	Audience string   `yaml:"audience" conf:"required"`
	Keys     []string `yaml:"keys" conf:"required"`

	keys []tokenKey
}

// tokenKey is one verification key of an issuer; notAfter is the end of
// its certificate's validity (zero for a bare public key).
type tokenKey struct {
	key      crypto.PublicKey
	notAfter time.Time
	source   string
}

// TokenAlgorithms are the JWS algorithms accepted for tokens: no "none" and
// no HMAC, whose shared secret could be the issuer's public key.
var TokenAlgorithms = []string{"ES256", "RS256", "PS256", "EdDSA"}

// maxTokenSize bounds the token an API caller can make us parse.
const maxTokenSize = 16 << 10

// tokenLeeway is the clock skew allowed for exp, nbf and iat.
const tokenLeeway = 60 * time.Second

// ErrBadToken is wrapped by every error of AuthenticateToken.
var ErrBadToken = errors.New("tenant: bad token")

func (ti *TokenIssuer) check(k *keyChecker, field string, seen map[string]bool) {
	if ti.Issuer != "" {
		if u, err := url.Parse(ti.Issuer); err != nil || u.Scheme == "" || u.Host == "" || strings.ContainsAny(ti.Issuer, " \t") {
			k.pos.Errorf(field+".issuer", "%q is not an issuer URL such as https://idp.example (it must equal the tokens' iss claim)", ti.Issuer)
		}
		if seen[ti.Issuer] {
			k.pos.Errorf(field+".issuer", "issuer %q is listed twice; put all its keys in one entry", ti.Issuer)
		}
		seen[ti.Issuer] = true
	}
	for j, rel := range ti.Keys {
		kf := fmt.Sprintf("%s.keys[%d]", field, j)
		data, path, ok := k.read(kf, rel)
		if !ok {
			continue
		}
		keys, err := parseTokenKeys(data, k.now)
		if err != nil {
			k.pos.Errorf(kf, "%s: %v", path, err)
			continue
		}
		for i := range keys {
			keys[i].source = path
		}
		ti.keys = append(ti.keys, keys...)
	}
}

// parseTokenKeys reads the CERTIFICATE and PUBLIC KEY blocks of PEM data
// as token verification keys.
func parseTokenKeys(data []byte, now time.Time) ([]tokenKey, error) {
	var keys []tokenKey
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		var k tokenKey
		switch block.Type {
		case "CERTIFICATE":
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("certificate %d: %w", len(keys)+1, err)
			}
			if now.After(cert.NotAfter) {
				return nil, fmt.Errorf("certificate %q expired on %s; remove it or replace the file", cert.Subject, day(cert.NotAfter))
			}
			k = tokenKey{key: cert.PublicKey, notAfter: cert.NotAfter}
		case "PUBLIC KEY":
			pub, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("public key %d: %w", len(keys)+1, err)
			}
			k = tokenKey{key: pub}
		default:
			return nil, fmt.Errorf("a %q PEM block is neither a certificate nor a public key", block.Type)
		}
		switch pub := k.key.(type) {
		case *ecdsa.PublicKey:
			if pub.Curve != elliptic.P256() {
				return nil, fmt.Errorf("an ECDSA key on %s cannot verify ES256 tokens; use P-256", pub.Curve.Params().Name)
			}
		case *rsa.PublicKey:
			if pub.N.BitLen() < 2048 {
				return nil, fmt.Errorf("an RSA key of %d bits is too short for tokens; use at least 2048", pub.N.BitLen())
			}
		case ed25519.PublicKey:
		default:
			return nil, fmt.Errorf("%T keys cannot verify tokens; use ECDSA P-256, RSA or Ed25519", k.key)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM certificate or public key found")
	}
	return keys, nil
}

// tokenIssuerOf is one tenant's entry for an issuer, as the Set indexes it.
type tokenIssuerOf struct {
	tenant string
	*TokenIssuer
}

// tokenClaims are the claims a token for a person carries.
type tokenClaims struct {
	jwt.RegisteredClaims
	Tenant  string `json:"tenant"`
	Role    string `json:"role"`
	Purpose string `json:"purpose,omitempty"`
}

func badToken(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadToken}, args...)...)
}

// AuthenticateToken checks a signed token (compact JWS) for a person and
// returns its actor: signed with ES256, RS256, PS256 or EdDSA by a key of
// the access.tokens entry of the tenant its tenant claim names, with that
// entry's issuer as iss and audience in aud, not expired at now (exp is
// required; exp, nbf and iat allow 60 s of clock skew), and with sub and
// role claims. Every error wraps ErrBadToken and says what is wrong.
func (s *Set) AuthenticateToken(raw string, now time.Time) (Actor, error) {
	if len(raw) > maxTokenSize {
		return Actor{}, badToken("the token is longer than %d bytes", maxTokenSize)
	}
	var peek tokenClaims
	unverified, _, err := jwt.NewParser().ParseUnverified(raw, &peek)
	if err != nil {
		return Actor{}, badToken("not a signed token (compact JWS): %v", err)
	}
	if _, crit := unverified.Header["crit"]; crit {
		return Actor{}, badToken("critical header parameters (crit) are not supported")
	}
	alg, _ := unverified.Header["alg"].(string)
	if !slices.Contains(TokenAlgorithms, alg) {
		return Actor{}, badToken("algorithm %q is not accepted (accepted: %s)", alg, strings.Join(TokenAlgorithms, ", "))
	}
	if peek.Issuer == "" {
		return Actor{}, badToken("the iss claim is missing")
	}
	entries := slices.Clone(s.issuers[peek.Issuer])
	if len(entries) == 0 {
		return Actor{}, badToken("unknown issuer %q", peek.Issuer)
	}
	// The entry of the tenant the token names first: an issuer may serve
	// several tenants, each with its own keys and audience.
	slices.SortStableFunc(entries, func(a, b tokenIssuerOf) int {
		switch {
		case a.tenant == peek.Tenant && b.tenant != peek.Tenant:
			return -1
		case b.tenant == peek.Tenant && a.tenant != peek.Tenant:
			return 1
		}
		return 0
	})
	var sigErr error
	for _, e := range entries {
		keys := e.keysFor(alg, now)
		if len(keys.Keys) == 0 {
			if sigErr == nil {
				sigErr = badToken("issuer %q has no valid key for %s in tenant %q", e.Issuer, alg, e.tenant)
			}
			continue
		}
		var claims tokenClaims
		_, err := jwt.NewParser(
			jwt.WithValidMethods(TokenAlgorithms),
			jwt.WithTimeFunc(func() time.Time { return now }),
			jwt.WithLeeway(tokenLeeway),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithIssuer(e.Issuer),
			jwt.WithAudience(e.Audience),
		).ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return keys, nil })
		if errors.Is(err, jwt.ErrTokenSignatureInvalid) {
			sigErr = badToken("the signature does not verify with the keys of issuer %q", e.Issuer)
			continue
		}
		if err != nil {
			return Actor{}, claimError(err, &claims, e)
		}
		switch {
		case claims.Tenant == "":
			return Actor{}, badToken("the tenant claim is missing")
		case claims.Tenant != e.tenant:
			return Actor{}, badToken("the token is for tenant %q, but its issuer %q signs for tenant %q", claims.Tenant, e.Issuer, e.tenant)
		case claims.Subject == "":
			return Actor{}, badToken("the sub claim is missing")
		case claims.Role == "":
			return Actor{}, badToken("the role claim is missing")
		}
		return Actor{Tenant: e.tenant, Kind: ActorToken, Subject: claims.Subject, Role: claims.Role, Purpose: claims.Purpose}, nil
	}
	return Actor{}, sigErr
}

// keysFor returns the issuer's keys that can verify alg and are valid at
// now.
func (ti *TokenIssuer) keysFor(alg string, now time.Time) jwt.VerificationKeySet {
	var set jwt.VerificationKeySet
	for _, k := range ti.keys {
		if !k.notAfter.IsZero() && now.After(k.notAfter) {
			continue
		}
		var fits bool
		switch k.key.(type) {
		case *ecdsa.PublicKey:
			fits = alg == "ES256"
		case *rsa.PublicKey:
			fits = alg == "RS256" || alg == "PS256"
		case ed25519.PublicKey:
			fits = alg == "EdDSA"
		}
		if fits {
			set.Keys = append(set.Keys, k.key)
		}
	}
	return set
}

// TokenClaims are what SignToken puts into a token for a person.
type TokenClaims struct {
	Issuer, Audience, Tenant, Subject, Role, Purpose string
	// TTL is how long the token is valid from its issue time.
	TTL time.Duration
}

// SignToken makes a token that AuthenticateToken accepts from a tenant
// trusting the key's issuer: signed with ES256 for an ECDSA P-256 key,
// RS256 for RSA and EdDSA for Ed25519, issued at now and expiring TTL later.
// It is meant for demos, tests and tools, not as an identity provider.
func SignToken(key crypto.Signer, c TokenClaims, now time.Time) (string, error) {
	method, err := TokenMethod(key)
	if err != nil {
		return "", fmt.Errorf("tenant: sign token: %w", err)
	}
	if c.TTL <= 0 {
		return "", errors.New("tenant: sign token: the lifetime must be positive")
	}
	claims := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    c.Issuer,
			Subject:   c.Subject,
			Audience:  jwt.ClaimStrings{c.Audience},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(c.TTL)),
		},
		Tenant: c.Tenant, Role: c.Role, Purpose: c.Purpose,
	}
	raw, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		return "", fmt.Errorf("tenant: sign token: %w", err)
	}
	return raw, nil
}

// TokenMethod is the JWS algorithm tokens signed with the key use: ES256
// for an ECDSA P-256 key, RS256 for RSA, EdDSA for Ed25519.
func TokenMethod(key crypto.Signer) (jwt.SigningMethod, error) {
	switch k := key.Public().(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("an ECDSA key on %s cannot make ES256 tokens; use P-256", k.Curve.Params().Name)
		}
		return jwt.SigningMethodES256, nil
	case *rsa.PublicKey:
		return jwt.SigningMethodRS256, nil
	case ed25519.PublicKey:
		return jwt.SigningMethodEdDSA, nil
	default:
		return nil, fmt.Errorf("%T keys cannot sign tokens; use ECDSA P-256, RSA or Ed25519", k)
	}
}

// claimError says which claim of a token with a valid signature is wrong.
func claimError(err error, c *tokenClaims, e tokenIssuerOf) error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return badToken("malformed: %v", err)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && c.ExpiresAt == nil:
		return badToken("the exp claim is missing (tokens must expire)")
	case errors.Is(err, jwt.ErrTokenExpired):
		return badToken("expired at %s", c.ExpiresAt.UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return badToken("not valid before %s", c.NotBefore.UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return badToken("issued in the future (iat %s)", c.IssuedAt.UTC().Format(time.RFC3339))
	case (errors.Is(err, jwt.ErrTokenRequiredClaimMissing) || errors.Is(err, jwt.ErrTokenInvalidAudience)) && len(c.Audience) == 0:
		return badToken("the aud claim is missing (issuer %q must address it to %q)", e.Issuer, e.Audience)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return badToken("wrong audience %q: issuer %q must address it to %q", []string(c.Audience), e.Issuer, e.Audience)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return badToken("wrong issuer %q", c.Issuer)
	}
	return badToken("%v", err)
}
