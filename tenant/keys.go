package tenant

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/parzelle/parzelle/keys"
	"github.com/parzelle/parzelle/strictyaml"
)

// Keys are the tenant's key and certificate files, the `keys:` section of
// its file:
//
//	keys:
//	  signing:                  # first = current
//	    - key: signing.key      # PEM key + PEM certificate chain, or
//	      cert: signing.crt
//	  decryption:               # current first, then previous ones
//	    - pkcs12: enc.p12       # PKCS#12 with passwordFile or passwordEnv
//	      passwordFile: enc.pin
//	  trust:
//	    signers: [ca.crt]       # trusted for every counterpart
//	    counterparts:
//	      - identity: ags:05315000
//	        signers: [koeln-signing.crt]
//
// Files are relative to the tenant file. Passwords are never written into
// the tenant file itself. The current signing and decryption certificates
// must be valid now and trust certificates must not have expired; keys
// listed after the current one may be expired (an old decryption key must
// keep decrypting) or not yet valid (a standby key).
type Keys struct {
	// Signing are the keys the tenant signs with; the first is current,
	// others are kept ready (standby) and not used.
	Signing []KeySource `yaml:"signing"`
	// Decryption are the keys messages to the tenant are encrypted to:
	// the current one first, then previous ones kept so that messages
	// encrypted to them during a rotation still decrypt.
	Decryption []KeySource `yaml:"decryption"`
	// Trust are the certificates the tenant trusts for signatures.
	Trust SignerTrust `yaml:"trust"`

	material *keys.Material
}

// KeySource is one key pair: either a PKCS#12 file with its password from
// a file or an environment variable, or a PEM key with a PEM certificate
// chain (leaf first).
type KeySource struct {
	PKCS12       string `yaml:"pkcs12"`
	PasswordFile string `yaml:"passwordFile"`
	PasswordEnv  string `yaml:"passwordEnv"`
	Key          string `yaml:"key"`
	Cert         string `yaml:"cert"`
}

// SignerTrust lists the certificates (PEM or DER files; CA certificates as
// anchors, end-entity certificates pinned) trusted for signatures.
type SignerTrust struct {
	// Signers are trusted for signatures of every counterpart.
	Signers []string `yaml:"signers"`
	// Counterparts are trusted for one counterpart identity each, in
	// addition to Signers.
	Counterparts []CounterpartTrust `yaml:"counterparts"`
}

// CounterpartTrust is the certificates trusted for one counterpart.
type CounterpartTrust struct {
	Identity string   `yaml:"identity" conf:"required"`
	Signers  []string `yaml:"signers" conf:"required"`
}

// KeyMaterial returns the tenant's loaded keys and certificates.
func (c *Config) KeyMaterial() *keys.Material {
	if c.Keys.material == nil {
		return &keys.Material{ClientCAs: c.caCerts}
	}
	return c.Keys.material
}

// SigningKey returns the tenant's current signing key, or nil when it has
// none.
func (c *Config) SigningKey() *keys.KeyPair {
	if m := c.KeyMaterial(); len(m.Signing) > 0 {
		return m.Signing[0]
	}
	return nil
}

// DecryptionKeys returns the tenant's decryption keys, current first. The
// slice is shared: do not modify it.
func (c *Config) DecryptionKeys() []*keys.KeyPair { return c.KeyMaterial().Decryption }

// SignerTrust returns the trust store for signatures of the counterpart
// identity ("" for the tenant-wide signers only).
func (c *Config) SignerTrust(counterpart string) *keys.TrustStore {
	return c.KeyMaterial().Trust(counterpart)
}

// KeyMaterial returns the key material of the tenant with the id; it makes
// Set a keys.Tenants.
func (s *Set) KeyMaterial(id string) (*keys.Material, bool) {
	c := s.tenants[id]
	if c == nil {
		return nil, false
	}
	return c.KeyMaterial(), true
}

// TenantIDs returns every tenant's id, sorted.
func (s *Set) TenantIDs() []string {
	ids := make([]string, len(s.ordered))
	for i, c := range s.ordered {
		ids[i] = c.ID
	}
	return ids
}

var _ keys.Tenants = (*Set)(nil)

// keyChecker loads the files of the keys section, feeding each into the
// config hash.
type keyChecker struct {
	c   *Config
	pos *strictyaml.Positions
	h   hash.Hash
	now time.Time
}

// checkKeys reads the key and certificate files the tenant file names,
// feeding them into h so that a rotated file is a new config version.
func (c *Config) checkKeys(pos *strictyaml.Positions, h hash.Hash) {
	k := keyChecker{c: c, pos: pos, h: h, now: time.Now()}
	m := &keys.Material{ClientCAs: c.caCerts, Counterparts: map[string][]*x509.Certificate{}}
	for i, src := range c.Keys.Signing {
		field := fmt.Sprintf("keys.signing[%d]", i)
		if kp := k.keyPair(field, src, i == 0); kp != nil && k.canSign(field, kp) {
			m.Signing = append(m.Signing, kp)
		}
	}
	for i, src := range c.Keys.Decryption {
		field := fmt.Sprintf("keys.decryption[%d]", i)
		if kp := k.keyPair(field, src, i == 0); kp != nil && k.canDecrypt(field, kp) {
			m.Decryption = append(m.Decryption, kp)
		}
	}
	for i, rel := range c.Keys.Trust.Signers {
		m.Signers = append(m.Signers, k.trusted(fmt.Sprintf("keys.trust.signers[%d]", i), rel)...)
	}
	for i, cp := range c.Keys.Trust.Counterparts {
		field := fmt.Sprintf("keys.trust.counterparts[%d]", i)
		if cp.Identity != "" && !identityPattern.MatchString(cp.Identity) {
			pos.Errorf(field+".identity", "%q is not an identity: letters, digits and : . _ / -, e.g. ags:05315000", cp.Identity)
		}
		if _, dup := m.Counterparts[cp.Identity]; dup {
			pos.Errorf(field+".identity", "counterpart %q is listed twice; put all its certificates in one entry", cp.Identity)
		}
		certs := []*x509.Certificate{}
		for j, rel := range cp.Signers {
			certs = append(certs, k.trusted(fmt.Sprintf("%s.signers[%d]", field, j), rel)...)
		}
		m.Counterparts[cp.Identity] = certs
	}
	c.Keys.material = m
}

// read reads a file named in the tenant file (relative to it) and feeds it
// into the hash.
func (k *keyChecker) read(field, rel string) ([]byte, string, bool) {
	path := rel
	if !filepath.IsAbs(path) {
		path = filepath.Join(filepath.Dir(k.c.File), rel)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		k.pos.Errorf(field, "cannot read %s: %v", path, err)
		return nil, path, false
	}
	k.h.Write(data)
	return data, path, true
}

// errorf records a problem reported by the keys package without its
// package prefix.
func (k *keyChecker) errorf(field string, err error) {
	k.pos.Errorf(field, "%s", strings.TrimPrefix(err.Error(), "keys: "))
}

func (k *keyChecker) keyPair(field string, src KeySource, current bool) *keys.KeyPair {
	var kp *keys.KeyPair
	switch {
	case src.PKCS12 != "" && (src.Key != "" || src.Cert != ""):
		k.pos.Errorf(field, "give either pkcs12 or key and cert, not both")
		return nil
	case src.PKCS12 != "":
		password, ok := k.password(field, src)
		if !ok {
			return nil
		}
		data, path, ok := k.read(field+".pkcs12", src.PKCS12)
		if !ok {
			return nil
		}
		var err error
		if kp, err = parsePKCS12Cached(data, password, path); err != nil {
			k.errorf(field+".pkcs12", err)
			return nil
		}
	case src.Key != "" || src.Cert != "":
		if src.PasswordFile != "" || src.PasswordEnv != "" {
			k.pos.Errorf(field, "passwordFile and passwordEnv belong to pkcs12; a PEM key is read unencrypted (protect it with file permissions)")
			return nil
		}
		if src.Key == "" || src.Cert == "" {
			k.pos.Errorf(field, "a PEM key pair needs both key and cert")
			return nil
		}
		keyPEM, keyPath, ok := k.read(field+".key", src.Key)
		certPEM, certPath, ok2 := k.read(field+".cert", src.Cert)
		if !ok || !ok2 {
			return nil
		}
		var err error
		if kp, err = keys.ParsePEM(keyPEM, certPEM, keyPath, certPath); err != nil {
			k.errorf(field, err)
			return nil
		}
	default:
		k.pos.Errorf(field, "give pkcs12 (with passwordFile or passwordEnv) or key and cert")
		return nil
	}
	if !current {
		return kp // kept for a rotation: may have expired
	}
	leaf := kp.Certificate()
	switch {
	case k.now.After(leaf.NotAfter):
		k.pos.Errorf(field, "certificate %q expired on %s; issue a new one (keep the old key after it only for decryption)", leaf.Subject, day(leaf.NotAfter))
		return nil
	case k.now.Before(leaf.NotBefore):
		k.pos.Errorf(field, "certificate %q is not valid before %s; list it after the current one until then", leaf.Subject, day(leaf.NotBefore))
		return nil
	}
	return kp
}

func (k *keyChecker) password(field string, src KeySource) (string, bool) {
	switch {
	case src.PasswordFile != "" && src.PasswordEnv != "":
		k.pos.Errorf(field, "give passwordFile or passwordEnv, not both")
	case src.PasswordFile != "":
		data, _, ok := k.read(field+".passwordFile", src.PasswordFile)
		return strings.TrimRight(string(data), "\r\n"), ok
	case src.PasswordEnv != "":
		v, ok := os.LookupEnv(src.PasswordEnv)
		if !ok {
			k.pos.Errorf(field+".passwordEnv", "environment variable %s is not set", src.PasswordEnv)
		}
		return v, ok
	default:
		k.pos.Errorf(field+".pkcs12", "needs passwordFile or passwordEnv (a password is never written into the tenant file)")
	}
	return "", false
}

func (k *keyChecker) canSign(field string, kp *keys.KeyPair) bool {
	leaf := kp.Certificate()
	switch kp.Key.Public().(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey:
	default:
		k.pos.Errorf(field, "%s keys cannot make XML signatures; use RSA or ECDSA", keys.KeyType(kp.Key.Public()))
		return false
	}
	if leaf.KeyUsage != 0 && leaf.KeyUsage&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0 {
		k.pos.Errorf(field, "certificate %q does not allow signing (its key usage lacks digitalSignature and nonRepudiation)", leaf.Subject)
		return false
	}
	return true
}

func (k *keyChecker) canDecrypt(field string, kp *keys.KeyPair) bool {
	leaf := kp.Certificate()
	if _, err := kp.Decrypter(); err != nil {
		k.pos.Errorf(field, "%s keys cannot decrypt: XML Encryption key transport needs RSA", keys.KeyType(kp.Key.Public()))
		return false
	}
	if leaf.KeyUsage != 0 && leaf.KeyUsage&x509.KeyUsageKeyEncipherment == 0 {
		k.pos.Errorf(field, "certificate %q does not allow key encipherment (its key usage lacks keyEncipherment)", leaf.Subject)
		return false
	}
	return true
}

func (k *keyChecker) trusted(field, rel string) []*x509.Certificate {
	data, path, ok := k.read(field, rel)
	if !ok {
		return nil
	}
	certs, err := keys.ParseCertificates(data, path)
	if err != nil {
		k.errorf(field, err)
		return nil
	}
	for _, cert := range certs {
		if k.now.After(cert.NotAfter) {
			k.pos.Errorf(field, "%s: certificate %q expired on %s; remove it or replace the file", path, cert.Subject, day(cert.NotAfter))
			return nil
		}
	}
	return certs
}

// p12Cache keeps decoded PKCS#12 files by content and password: tenant
// files are re-parsed at every poll (2 s), and decoding a PKCS#12 file
// costs a key derivation of tens of thousands of iterations.
var p12Cache struct {
	sync.Mutex
	pairs map[[32]byte]*keys.KeyPair
}

func parsePKCS12Cached(data []byte, password, path string) (*keys.KeyPair, error) {
	content := sha256.Sum256(data)
	h := sha256.New()
	h.Write(content[:])
	h.Write([]byte(password))
	var sum [32]byte
	h.Sum(sum[:0])
	p12Cache.Lock()
	kp := p12Cache.pairs[sum]
	p12Cache.Unlock()
	if kp != nil {
		return kp, nil
	}
	kp, err := keys.ParsePKCS12(data, password, path)
	if err != nil {
		return nil, err
	}
	p12Cache.Lock()
	if p12Cache.pairs == nil || len(p12Cache.pairs) >= 1024 {
		p12Cache.pairs = map[[32]byte]*keys.KeyPair{} // rotated-away keys go too
	}
	p12Cache.pairs[sum] = kp
	p12Cache.Unlock()
	return kp, nil
}

func day(t time.Time) string { return t.UTC().Format("2006-01-02") }
