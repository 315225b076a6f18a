package tenant

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/parzelle/parzelle/pki"
)

// tokenTenants writes two tenants that accept tokens: duesseldorf from its
// own IdP (an ECDSA certificate, an RSA and an Ed25519 public key) and both
// from a shared Land IdP, each with its own key. It returns their Set and
// the private keys by name.
func tokenTenants(t *testing.T, now time.Time) (*Set, map[string]crypto.Signer, string) {
	t.Helper()
	dir := t.TempDir()
	ca := testCA(t, dir, "Token Test CA")
	priv := map[string]crypto.Signer{}
	writePub := func(name string, key crypto.Signer) {
		der, err := x509.MarshalPKIXPublicKey(key.Public())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
		priv[name] = key
	}
	cert, ecKey, err := ca.Issue(pki.Template{Subject: pkix.Name{CommonName: "idp"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(90 * time.Minute)}, pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ec.crt"), pki.EncodeCertificate(cert), 0o644); err != nil {
		t.Fatal(err)
	}
	priv["ec"] = ecKey
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	writePub("rsa", rsaKey)
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	writePub("ed", edKey)
	for _, name := range []string{"land-duesseldorf", "land-koeln", "foreign"} {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		writePub(name, k)
	}
	files := map[string]string{
		"duesseldorf": `tokens:
    - issuer: https://idp.duesseldorf.demo
      audience: parzelle
      keys: [ec.crt, rsa.pub, ed.pub]
    - issuer: https://idp.land.demo
      audience: parzelle
      keys: [land-duesseldorf.pub]`,
		"koeln": `tokens:
    - issuer: https://idp.land.demo
      audience: parzelle-koeln
      keys: [land-koeln.pub]`,
	}
	var configs []*Config
	for id, tokens := range files {
		path := filepath.Join(dir, id+".yaml")
		content := "id: " + id + "\nname: " + id + "\nidentities:\n  - {id: \"ags:" + id + "\", type: xoev, category: Meldebehörde, transports: [xta]}\naccess:\n  " + tokens + "\n"
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := ParseFile(path)
		if err != nil {
			t.Fatal(err)
		}
		configs = append(configs, c)
	}
	return NewSet(configs...), priv, dir
}

// mint signs claims with the method and key, as an identity provider would
// (or an attacker).
func mint(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	raw, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestAuthenticateToken(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	set, keys, dir := tokenTenants(t, now)
	claims := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{
			"iss": "https://idp.duesseldorf.demo", "aud": []string{"parzelle"}, "sub": "clerk1",
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
			"tenant": "duesseldorf", "role": "sachbearbeitung", "purpose": "auskunft",
		}
		if edit != nil {
			edit(c)
		}
		return c
	}
	clerk := Actor{Tenant: "duesseldorf", Kind: ActorToken, Subject: "clerk1", Role: "sachbearbeitung", Purpose: "auskunft"}
	idpPEM, err := os.ReadFile(filepath.Join(dir, "ec.crt"))
	if err != nil {
		t.Fatal(err)
	}
	good := mint(t, jwt.SigningMethodES256, keys["ec"], claims(nil))
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"https://idp.duesseldorf.demo","aud":"parzelle","sub":"clerk1","exp":`+
		strconv.FormatInt(now.Add(time.Hour).Unix(), 10)+`,"tenant":"duesseldorf","role":"fachverfahren"}`)) + "." + parts[2]
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	none := mint(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil))
	crit := jwt.NewWithClaims(jwt.SigningMethodES256, claims(nil))
	crit.Header["crit"] = []string{"exp"}
	critRaw, err := crit.SignedString(keys["ec"])
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name  string
		raw   string
		at    time.Time
		actor Actor
		err   string
	}{
		{"ES256 with a certificate", good, now, clerk, ""},
		{"RS256 with a public key", mint(t, jwt.SigningMethodRS256, keys["rsa"], claims(nil)), now, clerk, ""},
		{"PS256", mint(t, jwt.SigningMethodPS256, keys["rsa"], claims(nil)), now, clerk, ""},
		{"EdDSA", mint(t, jwt.SigningMethodEdDSA, keys["ed"], claims(nil)), now, clerk, ""},
		{"purpose is optional", mint(t, jwt.SigningMethodES256, keys["ec"], claims(func(c jwt.MapClaims) { delete(c, "purpose") })), now,
			Actor{Tenant: "duesseldorf", Kind: ActorToken, Subject: "clerk1", Role: "sachbearbeitung"}, ""},
		{"aud as a string", mint(t, jwt.SigningMethodES256, keys["ec"], claims(func(c jwt.MapClaims) { c["aud"] = "parzelle" })), now, clerk, ""},
		{"expired within the leeway", good, now.Add(time.Hour + 50*time.Second), clerk, ""},
		{"shared issuer, koeln's key and audience", mint(t, jwt.SigningMethodES256, keys["land-koeln"], claims(func(c jwt.MapClaims) {
			c["iss"], c["tenant"], c["aud"] = "https://idp.land.demo", "koeln", "parzelle-koeln"
		})), now, Actor{Tenant: "koeln", Kind: ActorToken, Subject: "clerk1", Role: "sachbearbeitung", Purpose: "auskunft"}, ""},
		{"shared issuer, duesseldorf's key", mint(t, jwt.SigningMethodES256, keys["land-duesseldorf"], claims(func(c jwt.MapClaims) { c["iss"] = "https://idp.land.demo" })), now, clerk, ""},

		{"HS256 with the public key as secret", mint(t, jwt.SigningMethodHS256, idpPEM, claims(nil)), now, Actor{}, `algorithm "HS256" is not accepted (accepted: ES256, RS256, PS256, EdDSA)`},
		{"alg none", none, now, Actor{}, `algorithm "none" is not accepted`},
		{"ES384", mint(t, jwt.SigningMethodES384, p384, claims(nil)), now, Actor{}, `algorithm "ES384" is not accepted`},
		{"crit header", critRaw, now, Actor{}, "critical header parameters (crit) are not supported"},
		{"not a token", "hello.world", now, Actor{}, "not a signed token (compact JWS)"},
		{"oversize", strings.Repeat("a", maxTokenSize+1), now, Actor{}, "longer than 16384 bytes"},
		{"unknown issuer", mint(t, jwt.SigningMethodES256, keys["ec"], claims(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" })), now, Actor{}, `unknown issuer "https://evil.example"`},
		{"no issuer", mint(t, jwt.SigningMethodES256, keys["ec"], claims(func(c jwt.MapClaims) { delete(c, "iss") })), now, Actor{}, "the iss claim is missing"},
		{"a key the issuer does not have", mint(t, jwt.SigningMethodES256, keys["foreign"], claims(nil)), now, Actor{}, `the signature does not verify with the keys of issuer "https://idp.duesseldorf.demo"`},
		{"tampered payload", tampered, now, Actor{}, "the signature does not verify"},
		{"an issuer without a key for the algorithm", mint(t, jwt.SigningMethodEdDSA, keys["ed"], claims(func(c jwt.MapClaims) { c["iss"] = "https://idp.land.demo" })), now, Actor{},
			`issuer "https://idp.land.demo" has no valid key for EdDSA in tenant "duesseldorf"`},
		{"expired", good, now.Add(time.Hour + 61*time.Second), Actor{}, "expired at " + now.Add(time.Hour).UTC().Format(time.RFC3339)},
		{"no exp", mint(t, jwt.SigningMethodES256, keys["ec"], claims(func(c jwt.MapClaims) { delete(c, "exp") })), now, Actor{}, "the exp claim is missing (tokens must expire)"},
		{"not yet valid", good, now.Add(-2 * time.Minute), Actor{}, "not valid before " + now.UTC().Format(time.RFC3339)},
		{"issued in the future", mint(t, jwt.SigningMethodES256, keys["ec"], claims(func(c jwt.MapClaims) { delete(c, "nbf"); c["iat"] = now.Add(2 * time.Minute).Unix() })), now, Actor{}, "issued in the future"},
		{"wrong audience", mint(t, jwt.SigningMethodES256, keys["ec"], claims(func(c jwt.MapClaims) { c["aud"] = []string{"other", "parzelle-koeln"} })), now, Actor{},
			`wrong audience ["other" "parzelle-koeln"]: issuer "https://idp.duesseldorf.demo" must address it to "parzelle"`},
		{"no audience", mint(t, jwt.SigningMethodES256, keys["ec"], claims(func(c jwt.MapClaims) { delete(c, "aud") })), now, Actor{}, "the aud claim is missing"},
		{"another tenant's token from this issuer", mint(t, jwt.SigningMethodES256, keys["ec"], claims(func(c jwt.MapClaims) { c["tenant"] = "koeln" })), now, Actor{},
			`the token is for tenant "koeln", but its issuer "https://idp.duesseldorf.demo" signs for tenant "duesseldorf"`},
		{"shared issuer, the other tenant's key", mint(t, jwt.SigningMethodES256, keys["land-koeln"], claims(func(c jwt.MapClaims) {
			c["iss"], c["aud"] = "https://idp.land.demo", "parzelle-koeln"
		})), now, Actor{}, `the token is for tenant "duesseldorf", but its issuer "https://idp.land.demo" signs for tenant "koeln"`},
		{"no tenant", mint(t, jwt.SigningMethodES256, keys["ec"], claims(func(c jwt.MapClaims) { delete(c, "tenant") })), now, Actor{}, "the tenant claim is missing"},
		{"no sub", mint(t, jwt.SigningMethodES256, keys["ec"], claims(func(c jwt.MapClaims) { delete(c, "sub") })), now, Actor{}, "the sub claim is missing"},
		{"no role", mint(t, jwt.SigningMethodES256, keys["ec"], claims(func(c jwt.MapClaims) { delete(c, "role") })), now, Actor{}, "the role claim is missing"},
		{"role not a string", mint(t, jwt.SigningMethodES256, keys["ec"], claims(func(c jwt.MapClaims) { c["role"] = []string{"a", "b"} })), now, Actor{}, "not a signed token"},
		{"the IdP certificate expired", mint(t, jwt.SigningMethodES256, keys["ec"], claims(func(c jwt.MapClaims) { c["exp"] = now.Add(3 * time.Hour).Unix() })), now.Add(2 * time.Hour), Actor{},
			`issuer "https://idp.duesseldorf.demo" has no valid key for ES256 in tenant "duesseldorf"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := set.AuthenticateToken(tc.raw, tc.at)
			if tc.err == "" {
				if err != nil || a != tc.actor {
					t.Fatalf("got %+v, %v; want %+v", a, err, tc.actor)
				}
				return
			}
			if !errors.Is(err, ErrBadToken) || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("got %+v, %v; want ErrBadToken with %q", a, err, tc.err)
			}
			if a != (Actor{}) {
				t.Errorf("a refused token gave an actor: %+v", a)
			}
		})
	}
}

// TestSignToken issues tokens with each key type and authenticates them.
func TestSignToken(t *testing.T) {
	set, keys, _ := tokenTenants(t, time.Now())
	now := time.Now()
	for _, name := range []string{"ec", "rsa", "ed"} {
		t.Run(name, func(t *testing.T) {
			raw, err := SignToken(keys[name], TokenClaims{Issuer: "https://idp.duesseldorf.demo", Audience: "parzelle", Tenant: "duesseldorf", Subject: "s", Role: "r", Purpose: "p", TTL: time.Minute}, now)
			if err != nil {
				t.Fatal(err)
			}
			a, err := set.AuthenticateToken(raw, now)
			if want := (Actor{Tenant: "duesseldorf", Kind: ActorToken, Subject: "s", Role: "r", Purpose: "p"}); err != nil || a != want {
				t.Fatalf("got %+v, %v; want %+v", a, err, want)
			}
			if _, err := set.AuthenticateToken(raw, now.Add(2*time.Minute)); !errors.Is(err, ErrBadToken) {
				t.Errorf("accepted after its TTL: %v", err)
			}
		})
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := SignToken(p384, TokenClaims{TTL: time.Minute}, now); err == nil || !strings.Contains(err.Error(), "P-384") {
		t.Errorf("a P-384 key: %v", err)
	}
	if _, err := SignToken(keys["ec"], TokenClaims{}, now); err == nil {
		t.Error("a token without lifetime was signed")
	}
}

// TestTokenKeysInConfigHash: replacing an IdP key file makes a new
// configuration version, like any other referenced file.
func TestTokenKeysInConfigHash(t *testing.T) {
	set, _, dir := tokenTenants(t, time.Now())
	before := set.Tenant("koeln").SHA256
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(k.Public())
	if err := os.WriteFile(filepath.Join(dir, "land-koeln.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := ParseFile(filepath.Join(dir, "koeln.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if c.SHA256 == before {
		t.Error("the config hash did not change with the IdP key")
	}
}

// TestTokenKeyFiles refuses key files that cannot verify tokens.
func TestTokenKeyFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, key any) {
		der, err := x509.MarshalPKIXPublicKey(key)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	write("p384.pub", p384.Public())
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	write("rsa1024.pub", rsa1024.Public())
	os.WriteFile(filepath.Join(dir, "empty.pem"), []byte("nothing here\n"), 0o644)
	for file, want := range map[string]string{
		"p384.pub":    "an ECDSA key on P-384 cannot verify ES256 tokens; use P-256",
		"rsa1024.pub": "an RSA key of 1024 bits is too short for tokens; use at least 2048",
		"empty.pem":   "no PEM certificate or public key found",
	} {
		t.Run(file, func(t *testing.T) {
			content := "id: keys\nname: keys\nidentities:\n  - {id: \"ags:1\", type: xoev, category: M, transports: [xta]}\naccess:\n  tokens:\n    - issuer: https://idp.example\n      audience: parzelle\n      keys: [" + file + "]\n"
			_, err := Parse(filepath.Join(dir, "keys.yaml"), []byte(content))
			if want := "keys.yaml:9: access.tokens[0].keys[0]: " + filepath.Join(dir, file) + ": " + want; err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("got %v, want %q", err, want)
			}
		})
	}
}
